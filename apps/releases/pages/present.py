"""What the release pages show about a release, computed once per render: the card's
figures, its traffic bar, the actions its state offers and, for each, whether the viewer
may take it or the reason in words. The services stay the authority: a forged POST is
refused by them, and the page words their refusal the same way (``action_reason``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from apps.functions.pages.common import traffic_segments
from apps.releases.gates import gate_evaluate
from apps.releases.models import Release
from apps.tenancy import permissions
from apps.tenancy.models import Environment

# Which actions each state offers, in the order the card shows them.
STATE_ACTIONS: dict[str, tuple[str, ...]] = {
    Release.State.AWAITING_APPROVAL: ("approve", "reject", "abort"),
    Release.State.RUNNING: ("promote", "promote-all", "pause", "abort"),
    Release.State.PAUSED: ("promote", "promote-all", "resume", "abort"),
}
VERBS = {
    "promote": "Promoting",
    "promote-all": "Promoting",
    "pause": "Pausing",
    "resume": "Resuming",
    "abort": "Aborting",
    "approve": "Approving",
    "reject": "Rejecting",
    "start": "Starting a release",
}
# The badge's vocabulary (apps/core/templatetags/console.py) says waiting_approval.
BADGE_STATE: dict[str, str] = {"awaiting_approval": "waiting_approval"}


def deploy_reason(verb: str, environment: Environment) -> str:
    """Why someone without the deploy right on ``environment`` cannot ``verb`` there."""
    name = environment.name
    if environment.protected:
        return f"{verb} in {name} needs an admin or a deployer grant on {name}."
    return f"{verb} in {name} needs the developer role (or higher) on this project."


def action_reason(user: Any, release: Release, action: str) -> str:
    """The empty string when ``user`` may take ``action`` on ``release`` (as far as rights go), else why not."""
    environment = release.binding.environment
    if not permissions.can_deploy(user, environment):
        return deploy_reason(VERBS[action], environment)
    if action in ("approve", "reject") and release.requested_by_id == getattr(user, "pk", None):
        return f"{VERBS[action]} needs a second person: you requested this release."
    return ""


def badge_state(state: str) -> str:
    return BADGE_STATE.get(state, state)


def step_split(percent: int, canary: int, stable: int | None) -> list[dict[str, Any]]:
    """What one step of a plan sends where (as services._step_traffic shapes it)."""
    if percent >= 100 or stable is None:
        return [{"version": canary, "weight": 100, "role": "stable" if percent >= 100 else "canary"}]
    return [
        {"version": stable, "weight": 100 - percent, "role": "stable"},
        {"version": canary, "weight": percent, "role": "canary"},
    ]


def finished_traffic(release: Release) -> list[dict[str, Any]]:
    """What the release left serving when it ended (the binding may have moved on since)."""
    if release.state == Release.State.COMPLETED:
        return [{"version": release.version.number, "weight": 100, "role": "stable"}]
    if release.stable_version is not None:
        return [{"version": release.stable_version.number, "weight": 100, "role": "stable"}]
    return []


@dataclass
class Card:
    release: Release
    badge: str
    active: bool
    segments: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    figures: dict[str, Any] | None
    gate: dict[str, Any] | None
    verdict: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""
    fingerprint: str = ""
    poll_url: str = ""
    url: str = ""
    step_words: str = ""


def _failure_words(release: Release) -> str:
    failure = release.failure or {}
    by = failure.get("by")
    at = f" at step {failure['step'] + 1} ({failure.get('percent')}%)" if isinstance(failure.get("step"), int) else ""
    if by == "gate":
        return f"Aborted by its gate{at}: {_breach(failure)}."
    if by == "user":
        return f"Aborted by {failure.get('user')}{at}."
    if by == "approver":
        return f"Rejected by {failure.get('user')}."
    if by == "rollback":
        return f"Rolled back by {failure.get('actor') or 'someone'} while it ran."
    return ""


def _wording(release: Release, action: str) -> dict[str, str]:
    """The button's label and, for destructive or production actions, the confirm dialog's
    text: which environment, which version, what serves afterwards."""
    env = release.binding.environment
    canary = f"v{release.version.number}"
    stable = f"v{release.stable_version.number}" if release.stable_version is not None else None
    steps = release.steps
    nxt = steps[release.step_index + 1] if release.step_index + 1 < len(steps) else 100
    label, confirm, style = action.replace("-", " ").capitalize(), "", "secondary"
    if action == "promote":
        label, style = f"Promote to {nxt}%", ""
        if env.protected:
            rest = f", {stable} keeps {100 - nxt}%" if stable and nxt < 100 else ""
            confirm = f"Promote in {env.name}: {canary} takes {nxt}% of the traffic{rest}."
    elif action == "promote-all":
        label = "Promote all (100%)"
        after = f" and {stable} stops serving" if stable else ""
        confirm = f"Promote all in {env.name}: {canary} takes 100% of the traffic now{after}."
    elif action == "abort":
        style = "danger"
        if release.step_index < 0:
            confirm = f"Abort release {release.pk}: nothing has shifted yet; {env.name} keeps serving as it is."
        else:
            back = f"all traffic in {env.name} goes back to {stable} at 100%" if stable else "traffic stays as it is"
            confirm = f"Abort release {release.pk}: {back} and {canary} stops serving."
    elif action == "approve":
        label, style = "Approve", ""
        confirm = f"Approve release {release.pk}: {canary} starts taking {steps[0] if steps else 100}% of {env.name}."
    elif action == "reject":
        confirm = f"Reject release {release.pk}: {canary} will not be released to {env.name}."
    return {"label": label, "confirm": confirm, "style": style}


def _breach(failed: dict[str, Any]) -> str:
    """A failed gate figure in words: 'canary error rate 5.26 % over the limit 5.00 % (stable 0.00 %)'."""
    figure = failed.get("figure")
    fmt, name = (_ms, "p95") if figure == "p95_ms" else (_pct, "error rate")
    return (
        f"canary {name} {fmt(failed.get('canary'))} over the limit {fmt(failed.get('limit'))} "
        f"(stable {fmt(failed.get('stable'))})"
    )


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.2f} %"


def _ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f} ms"


def _step_words(release: Release) -> str:
    steps, index = release.steps, release.step_index
    canary = f"v{release.version.number}"
    if release.state == Release.State.AWAITING_APPROVAL:
        return f"Waiting for approval before step 1 ({steps[0] if steps else 100}% to {canary})"
    if release.state == Release.State.COMPLETED:
        return f"Completed: {canary} serves 100%"
    if index < 0:
        return "No traffic shifted"
    where = f"Step {index + 1} of {len(steps)} · {release.canary_percent}% to {canary}"
    if release.is_active:
        return where
    return f"Ended at step {index + 1} of {len(steps)} ({release.canary_percent}% to {canary})"


def release_card(release: Release, user: Any, *, here: str = "", live_figures: bool = True) -> Card:
    """Everything the live card shows. ``live_figures``: evaluate the gate's figures now (the
    same function the gate uses, over the same window) for an active release."""
    active = release.is_active
    canary = release.version.number
    segments = traffic_segments(list(release.binding.traffic or []), canary) if active else finished_traffic(release)
    steps = [
        {
            "number": i + 1,
            "percent": percent,
            "current": i == release.step_index,
            "done": i < release.step_index,
        }
        for i, percent in enumerate(release.steps)
    ]
    figures = None
    gate = release.plan.get("gate") or None
    verdict = ""
    result: dict[str, Any] = {}
    if active and live_figures and release.step_index >= 0:
        evaluated = gate_evaluate(release, timezone.now())
        result = {
            "figures": evaluated.figures,
            "limits": evaluated.limits,
            "passed": evaluated.passed,
            "reason": evaluated.reason,
            "failed": evaluated.failed,
        }
    elif release.gate_result:
        result = dict(release.gate_result)
    if result.get("figures"):
        canary_f, stable_f = result["figures"].get("canary", {}), result["figures"].get("stable", {})
        limits = result.get("limits") or {}
        figures = {
            "rows": [
                ("Requests", canary_f.get("requests", 0), stable_f.get("requests", 0), ""),
                ("Errors", canary_f.get("errors", 0), stable_f.get("errors", 0), ""),
                (
                    "Error rate",
                    _pct(canary_f.get("error_rate")),
                    _pct(stable_f.get("error_rate")),
                    _pct(limits["error_rate"]) if "error_rate" in limits else "",
                ),
                (
                    "p95 latency",
                    _ms(canary_f.get("p95_ms")),
                    _ms(stable_f.get("p95_ms")),
                    _ms(limits["p95_ms"]) if "p95_ms" in limits else "",
                ),
            ],
        }
        if gate:
            passed = result.get("passed")
            verdict = {True: "passing", False: "failing", None: "no verdict yet"}[passed]
            if passed is False and result.get("failed"):
                verdict += f": {_breach(result['failed'])}"
            elif passed is None and result.get("reason"):
                verdict += f" ({result['reason']})"
    offered = STATE_ACTIONS.get(release.state, ())
    if release.step_index + 2 >= len(release.steps):
        offered = tuple(a for a in offered if a != "promote-all")  # the next step is 100% already
    actions: list[dict[str, Any]] = [
        {"name": action, "reason": action_reason(user, release, action), **_wording(release, action)}
        for action in offered
    ]
    kwargs = {"function_id": release.binding.function_id, "release_id": release.pk}
    for entry in actions:
        entry["url"] = reverse("function-release-action", kwargs={**kwargs, "action": entry["name"]})
        entry["allowed"] = not entry["reason"]
        entry["testid"] = f"release-{release.pk}-{entry['name']}"
    card = Card(
        release=release,
        badge=badge_state(release.state),
        active=active,
        segments=segments,
        steps=steps,
        figures=figures,
        gate=gate,
        verdict=verdict,
        actions=actions,
        failure=_failure_words(release),
        url=reverse("function-release", kwargs=kwargs),
        step_words=_step_words(release),
    )
    card.fingerprint = hashlib.sha256(
        json.dumps(
            [release.state, release.step_index, str(release.updated_at), segments, figures, verdict, actions],
            default=str,
        ).encode()
    ).hexdigest()[:16]
    card.poll_url = (
        reverse("function-release-card", kwargs=kwargs)
        + "?"
        + urlencode({"since": card.fingerprint, "here": here or card.url})
    )
    return card
