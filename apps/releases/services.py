"""Releases: move one version into one binding in steps (batch gray release).

Every operation is one transaction that locks the release row (select_for_update), checks
the state it needs (409 naming the state otherwise), changes traffic only through
``traffic_apply`` (binding revision, timeline, audit, routes announced after commit) and
records an audit event. Auto-advance and gates run in ``apps.releases.tasks`` from the
state stored here, so a duplicated or late task never skips, repeats or reverses a step.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import Conflict, DomainError, Forbidden
from apps.core.outbox import enqueue_after_commit
from apps.functions.backends.registry import backend_name_for
from apps.functions.deploy_services import traffic_apply
from apps.functions.models import Binding, Function, TrafficChange, Version
from apps.functions.traffic import Traffic
from apps.monitoring.models import Invocation
from apps.releases.gates import GateResult, gate_evaluate
from apps.releases.models import Release
from apps.releases.selectors import RELEASE_RELATED, active_release
from apps.tenancy import permissions
from apps.tenancy.models import Environment

PREWARM_LOOKBACK_S = 60
GATE_KEYS = {"min_requests", "max_error_rate", "max_error_rate_delta", "max_p95_factor", "window_s"}
PLAN_KEYS = {"steps", "advance", "dwell_s", "gate"}
# How long an auto release waits before looking again when its gate has no verdict yet.
GATE_RECHECK_S = 5


# --- the plan ----------------------------------------------------------------------------------


def _plan_error(field: str, message: str) -> DomainError:
    return DomainError(f"{field}: {message}", code="invalid", fields={field: [message]})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plan_validate(plan: Any) -> dict[str, Any]:
    """The normalised plan, or a 400 naming the first field that breaks a rule.

    ``"direct"`` (or {"steps": "direct"}) is steps [100]. Otherwise steps are integers 1..100,
    strictly increasing, ending at 100; advance is manual (default) or auto; auto needs
    dwell_s ≥ 1; gate is optional."""
    if plan == "direct":
        plan = {"steps": "direct"}
    if not isinstance(plan, dict):
        raise _plan_error("plan", 'must be "direct" or an object with "steps".')
    unknown = sorted(set(plan) - PLAN_KEYS)
    if unknown:
        raise _plan_error(f"plan.{unknown[0]}", f"unknown field; known: {', '.join(sorted(PLAN_KEYS))}.")
    steps = plan.get("steps")
    if steps == "direct":
        steps = [100]
    if not isinstance(steps, list) or not steps:
        raise _plan_error("plan.steps", 'must be a non-empty list of percentages ending at 100, or "direct".')
    if not all(_is_int(s) and 1 <= s <= 100 for s in steps):
        raise _plan_error("plan.steps", "every step must be an integer from 1 to 100.")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise _plan_error("plan.steps", "steps must be strictly increasing.")
    if steps[-1] != 100:
        raise _plan_error("plan.steps", "the last step must be 100.")
    advance = plan.get("advance", "manual")
    if advance not in ("manual", "auto"):
        raise _plan_error("plan.advance", 'must be "manual" or "auto".')
    dwell_s = plan.get("dwell_s")
    if dwell_s is not None and not (_is_int(dwell_s) and dwell_s >= 1):
        raise _plan_error("plan.dwell_s", "must be an integer of seconds, at least 1.")
    if advance == "auto" and dwell_s is None and len(steps) > 1:
        raise _plan_error("plan.dwell_s", "is required when advance is auto.")
    gate = plan.get("gate")
    if gate is not None:
        gate = _gate_validate(gate)
    return {"steps": steps, "advance": advance, "dwell_s": dwell_s, "gate": gate}


def _gate_validate(gate: Any) -> dict[str, Any]:
    if not isinstance(gate, dict):
        raise _plan_error("plan.gate", "must be an object.")
    unknown = sorted(set(gate) - GATE_KEYS)
    if unknown:
        raise _plan_error(f"plan.gate.{unknown[0]}", f"unknown field; known: {', '.join(sorted(GATE_KEYS))}.")
    checks = {
        "min_requests": (lambda v: _is_int(v) and v >= 1, "must be an integer, at least 1."),
        "max_error_rate": (lambda v: _is_number(v) and 0 <= v <= 1, "must be a number from 0 to 1."),
        "max_error_rate_delta": (lambda v: _is_number(v) and 0 <= v <= 1, "must be a number from 0 to 1."),
        "max_p95_factor": (lambda v: _is_number(v) and v >= 1, "must be a number, at least 1."),
        "window_s": (lambda v: _is_int(v) and v >= 1, "must be an integer of seconds, at least 1."),
    }
    for key, (ok, message) in checks.items():
        if key in gate and gate[key] is not None and not ok(gate[key]):
            raise _plan_error(f"plan.gate.{key}", message)
    gate = {k: v for k, v in gate.items() if v is not None}
    if not {"max_error_rate", "max_error_rate_delta", "max_p95_factor"} & set(gate):
        raise _plan_error("plan.gate", "needs at least one of max_error_rate, max_error_rate_delta, max_p95_factor.")
    gate.setdefault("min_requests", 1)
    return gate


# --- helpers ---------------------------------------------------------------------------------------


def _lock(release: Release) -> Release:
    return Release.objects.select_for_update(of=("self",)).select_related(*RELEASE_RELATED).get(pk=release.pk)


def _require_state(release: Release, action: str, *states: str) -> None:
    if release.state not in states:
        wanted = " or ".join(states)
        raise Conflict(
            f"Cannot {action} release {release.pk}: it is {release.state} (needs {wanted}).", code="release_state"
        )


def _audit(actor: Actor | None, release: Release, action: str, **changes: Any) -> None:
    binding = release.binding
    audit_record(
        actor=actor,
        org=binding.environment.project.org,
        action=f"release.{action}",
        target=release,
        target_repr=f"release {release.pk} of {binding.function.name} v{release.version.number} "
        f"in {binding.environment.name}",
        changes={"environment": binding.environment.name, "version": release.version.number, **changes},
    )


def prewarm_count(*, release: Release, percent: int, now: datetime | None = None) -> int:
    """Canary instances to pre-start before it takes ``percent`` of the traffic: the stable
    version's average concurrency over the last minute (sum of durations / 60 s), scaled to
    the share and divided by the canary's instance_concurrency; at least 1, at most the
    canary's max_instances."""
    now = now or timezone.now()
    config = release.version.config
    per_instance = max(1, int(config.get("instance_concurrency") or 1))
    cap = max(1, int(config.get("max_instances") or 1))
    busy_ms = 0.0
    if release.stable_version is not None:
        busy_ms = (
            Invocation.objects.filter(
                function_id=release.binding.function_id,
                binding_id=release.binding_id,
                version=release.stable_version.number,
                started_at__gte=now - timedelta(seconds=PREWARM_LOOKBACK_S),
                started_at__lte=now,
            ).aggregate(total=Sum("duration_ms"))["total"]
            or 0.0
        )
    concurrency = busy_ms / (PREWARM_LOOKBACK_S * 1000)
    return min(cap, max(1, math.ceil(concurrency * percent / 100 / per_instance)))


def _step_traffic(release: Release, percent: int, now: datetime) -> list[dict[str, Any]]:
    canary = release.version.number
    if percent >= 100 or release.stable_version is None:
        return Traffic.only(canary).to_json()
    warm = prewarm_count(release=release, percent=percent, now=now)
    return Traffic.split(stable=release.stable_version.number, canary=canary, percent=percent, warm=warm).to_json()


def _queue_advance(release: Release, countdown: float) -> None:
    """After commit, queue release_advance for the release's current step."""
    from apps.releases.tasks import release_advance

    release_id, index = release.pk, release.step_index
    countdown = max(0.0, countdown)
    enqueue_after_commit(release_advance, release_id, index, countdown=countdown)


def _apply_step(actor: Actor | None, release: Release, index: int, now: datetime, reason: str | None = None) -> Release:
    """Serve step ``index`` of the plan (the caller holds the release lock)."""
    steps = release.steps
    percent = steps[index]
    if reason is None:
        reason = (
            TrafficChange.Reason.RELEASE_START
            if index == 0
            else TrafficChange.Reason.COMPLETE
            if percent == 100
            else TrafficChange.Reason.STEP
        )
    traffic_apply(
        actor=actor,
        binding=release.binding,
        traffic=_step_traffic(release, percent, now),
        reason=reason,
        version=release.version,
        release=release,
        note=f"step {index + 1}/{len(steps)}: {percent}%",
    )
    release.step_index = index
    release.step_started_at = now
    release.gate_result = {}
    if percent == 100:
        release.state = Release.State.COMPLETED
        release.finished_at = now
        release.next_check_at = None
    else:
        release.state = Release.State.RUNNING
        if release.plan.get("advance") == "auto":
            dwell = int(release.plan["dwell_s"])
            release.next_check_at = now + timedelta(seconds=dwell)
            _queue_advance(release, dwell)
    release.save()
    return release


def _back_to_stable(
    actor: Actor | None, release: Release, reason: str, failure: dict[str, Any], now: datetime
) -> Release:
    """All traffic back to the stable version (when a step ever shifted any), state aborted."""
    if release.step_index >= 0 and release.stable_version is not None:
        traffic_apply(
            actor=actor,
            binding=release.binding,
            traffic=[{"version": release.stable_version.number, "weight": 100}],
            reason=reason,
            version=release.stable_version,
            release=release,
            note=f"release {release.pk} aborted at step {release.step_index + 1}/{len(release.steps)} "
            f"({release.canary_percent}%)" + (f": gate {failure.get('figure')}" if failure.get("by") == "gate" else ""),
        )
    release.state = Release.State.ABORTED
    release.failure = failure
    release.finished_at = now
    release.next_check_at = None
    release.save()
    return release


# --- operations --------------------------------------------------------------------------------------


@transaction.atomic
def release_start(
    *, actor: Actor, function: Function, environment: Environment, version: Version, plan: Any
) -> Release:
    """Start moving ``version`` into the binding of ``function`` in ``environment``."""
    permissions.require_deploy(actor, environment)
    if environment.project_id != function.project_id or version.function_id != function.pk:
        raise DomainError("The version and environment must belong to this function's project.", code="invalid")
    plan = plan_validate(plan)
    direct = plan["steps"] == [100]
    binding = Binding.objects.select_for_update().filter(function=function, environment=environment).first()
    if binding is None and direct:
        binding, _ = Binding.objects.get_or_create(
            function=function, environment=environment, defaults={"backend": backend_name_for(environment)}
        )
    running = active_release(binding=binding) if binding is not None else None
    if running is not None:
        raise Conflict(
            f"Release {running.pk} is already {running.state} on '{environment.name}' (one active release per "
            "binding): promote, abort or wait for it first.",
            code="release_active",
        )
    stable_number = binding.split().sole() if binding is not None else None
    if binding is None or (stable_number is None and not direct):
        raise Conflict(
            f"Nothing to shift from: deploy first (a batched release needs one version serving 100% in "
            f"'{environment.name}').",
            code="no_stable",
        )
    if stable_number == version.number:
        raise Conflict(f"Version {version.number} already serves 100% in '{environment.name}'.", code="already_stable")
    stable = function.versions.get(number=stable_number) if stable_number is not None else None
    now = timezone.now()
    try:
        with transaction.atomic():
            release = Release.objects.create(
                binding=binding,
                version=version,
                stable_version=stable,
                plan=plan,
                state=(
                    Release.State.AWAITING_APPROVAL if environment.requires_release_approval else Release.State.RUNNING
                ),
                requested_by=actor if actor.is_authenticated else None,
                approval_required=environment.requires_release_approval,
            )
    except IntegrityError:
        running = active_release(binding=binding)
        raise Conflict(
            f"Release {running.pk if running else '?'} is already active on '{environment.name}' (one active "
            "release per binding).",
            code="release_active",
        ) from None
    release = _lock(release)
    _audit(actor, release, "start", plan=plan, stable_version=stable_number)
    if release.state == Release.State.AWAITING_APPROVAL:
        return release
    return _apply_step(actor, release, 0, now)


def _require_approver(actor: Actor, release: Release, action: str) -> None:
    environment = release.binding.environment
    if not permissions.can_deploy(actor, environment):
        raise Forbidden(f"{action} a release needs the deploy right on environment '{environment.name}'.")
    if release.requested_by_id is not None and release.requested_by_id == getattr(actor, "pk", None):
        raise Forbidden(f"{action} a release needs a second person: the requester cannot approve or reject it.")


@transaction.atomic
def release_approve(*, actor: Actor, release: Release) -> Release:
    release = _lock(release)
    _require_approver(actor, release, "Approving")
    _require_state(release, "approve", Release.State.AWAITING_APPROVAL)
    now = timezone.now()
    release.approved_by = signed_in(actor)
    release.approved_at = now
    _audit(actor, release, "approve")
    return _apply_step(actor, release, 0, now)


@transaction.atomic
def release_reject(*, actor: Actor, release: Release) -> Release:
    release = _lock(release)
    _require_approver(actor, release, "Rejecting")
    _require_state(release, "reject", Release.State.AWAITING_APPROVAL)
    now = timezone.now()
    release.state = Release.State.REJECTED
    release.approved_by = signed_in(actor)
    release.approved_at = now
    release.finished_at = now
    release.failure = {"by": "approver", "user": actor.get_username()}
    release.save()
    _audit(actor, release, "reject")
    return release


@transaction.atomic
def release_promote(*, actor: Actor, release: Release) -> Release:
    """Move to the next step now (a person's decision: the gate is not consulted)."""
    release = _lock(release)
    permissions.require_deploy(actor, release.binding.environment)
    _require_state(release, "promote", Release.State.RUNNING, Release.State.PAUSED)
    index = release.step_index + 1
    _audit(actor, release, "promote", step=index, percent=release.steps[index])
    return _apply_step(actor, release, index, timezone.now())


@transaction.atomic
def release_promote_all(*, actor: Actor, release: Release) -> Release:
    """Straight to 100%: the release completes."""
    release = _lock(release)
    permissions.require_deploy(actor, release.binding.environment)
    _require_state(release, "promote", Release.State.RUNNING, Release.State.PAUSED)
    _audit(actor, release, "promote_all", from_step=release.step_index)
    return _apply_step(actor, release, len(release.steps) - 1, timezone.now(), reason=TrafficChange.Reason.COMPLETE)


@transaction.atomic
def release_pause(*, actor: Actor, release: Release) -> Release:
    """Stop advancing (traffic stays as it is) until resumed, promoted or aborted."""
    release = _lock(release)
    permissions.require_deploy(actor, release.binding.environment)
    _require_state(release, "pause", Release.State.RUNNING)
    release.state = Release.State.PAUSED
    release.next_check_at = None
    release.save()
    _audit(actor, release, "pause", step=release.step_index)
    return release


@transaction.atomic
def release_resume(*, actor: Actor, release: Release) -> Release:
    """Back to running; the step's dwell and gate window start again from now."""
    release = _lock(release)
    permissions.require_deploy(actor, release.binding.environment)
    _require_state(release, "resume", Release.State.PAUSED)
    now = timezone.now()
    release.state = Release.State.RUNNING
    release.step_started_at = now
    release.gate_result = {}
    if release.plan.get("advance") == "auto":
        dwell = int(release.plan["dwell_s"])
        release.next_check_at = now + timedelta(seconds=dwell)
        _queue_advance(release, dwell)
    release.save()
    _audit(actor, release, "resume", step=release.step_index)
    return release


@transaction.atomic
def release_abort(*, actor: Actor, release: Release) -> Release:
    """All traffic back to the stable version at 100%."""
    release = _lock(release)
    permissions.require_deploy(actor, release.binding.environment)
    _require_state(release, "abort", *Release.ACTIVE_STATES)
    now = timezone.now()
    failure = {
        "by": "user",
        "user": actor.get_username(),
        "step": release.step_index,
        "percent": release.canary_percent,
        "at": now.isoformat(),
    }
    _audit(actor, release, "abort", step=release.step_index)
    return _back_to_stable(actor, release, TrafficChange.Reason.ABORT, failure, now)


def _gate_abort(release: Release, result: GateResult, now: datetime) -> Release:
    assert result.failed is not None
    failure = {"by": "gate", "step": release.step_index, "percent": release.canary_percent, **result.failed}
    _audit(None, release, "gate_failure", failure=failure, figures=result.figures)
    return _back_to_stable(None, release, TrafficChange.Reason.GATE_FAILURE, failure, now)


def release_tick(*, release_id: int, step_index: int | None = None, now: datetime | None = None) -> float | None:
    """Evaluate what is due for one release, under its row lock: the gate (a failure aborts,
    in manual mode too), then, for auto releases whose dwell has elapsed and whose gate
    passed (or has none), the next step.

    ``step_index`` given (a release_advance task): nothing happens unless the release is
    running at that very step, so duplicated and late tasks are no-ops. Returns the seconds
    after which this step wants another look (the caller re-queues), or None."""
    with transaction.atomic():
        release = (
            Release.objects.select_for_update(of=("self",))
            .select_related(*RELEASE_RELATED)
            .filter(pk=release_id)
            .first()
        )
        if release is None or release.state != Release.State.RUNNING:
            return None
        if step_index is not None and release.step_index != step_index:
            return None
        now = now or timezone.now()
        result = None
        if release.plan.get("gate"):
            result = gate_evaluate(release, now)
            release.gate_result = {**result.as_json(), "at": now.isoformat(), "step": release.step_index}
            if result.passed is False:
                _gate_abort(release, result, now)
                return None
        if release.plan.get("advance") != "auto":
            release.save(update_fields=["gate_result", "updated_at"])
            return None
        due = release.next_step_at
        assert due is not None
        if now < due:
            wait = (due - now).total_seconds()
        elif result is not None and result.passed is None:
            wait = float(min(GATE_RECHECK_S, int(release.plan["dwell_s"])))
        else:
            _audit(None, release, "advance", step=release.step_index + 1, gate=release.gate_result or None)
            _apply_step(None, release, release.step_index + 1, now)
            return None
        if step_index is None:
            # The sweep: it looks again on its own schedule and queues nothing.
            release.save(update_fields=["gate_result", "updated_at"])
            return None
        # Not yet: one follow-up, unless one is already scheduled for later (a duplicated
        # task then stops here, so chains of follow-ups never multiply).
        scheduled = release.next_check_at
        if scheduled is not None and scheduled > now + timedelta(seconds=0.5):
            release.save(update_fields=["gate_result", "updated_at"])
            return None
        release.next_check_at = now + timedelta(seconds=wait)
        release.save(update_fields=["gate_result", "next_check_at", "updated_at"])
        return wait
