"""The plan builder of a function's Releases tab: what the form holds, the plan it means,
the preview of each step, and starting the release through the API's serializer and the
same service as POST /api/v1/functions/{id}/releases/."""

from __future__ import annotations

import re
from typing import Any

from django.http import QueryDict

from apps.core.errors import DomainError
from apps.core.page_utils import domain_field_errors, field_errors
from apps.functions.models import Binding, Function, Version
from apps.releases import services
from apps.releases.api.serializers import ReleaseStartSerializer
from apps.releases.pages.present import deploy_reason, step_split
from apps.tenancy import permissions
from apps.tenancy.models import Environment

GATE_FIELDS = ("min_requests", "max_error_rate", "max_error_rate_delta", "max_p95_factor", "window_s")
INT_FIELDS = {"min_requests", "window_s", "dwell_s"}
DEFAULTS = {"steps": "10, 50, 100", "advance": "manual", "dwell_s": "60"}


def form_values(post: QueryDict | None, environments: list[Environment], versions: list[Version]) -> dict[str, str]:
    """What the form shows: the posted values (a failed start leaves them), else defaults
    (the newest version, the first environment it could move into)."""
    if post is not None:
        keys = ("environment", "version", "steps", "advance", "dwell_s", *GATE_FIELDS)
        return {key: post.get(key, "").strip() for key in keys}
    values = dict(DEFAULTS)
    values["version"] = str(versions[0].number) if versions else ""
    values["environment"] = environments[0].name if environments else ""
    return values


def _number(text: str, integer: bool) -> Any:
    """The number typed, or the text itself (the service names the rule it breaks)."""
    try:
        return int(text) if integer else float(text)
    except ValueError:
        if not integer:
            return text
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number


def plan_of(values: dict[str, str]) -> Any:
    """The API's plan object for the form's values."""
    steps_text = values.get("steps", "").strip()
    if steps_text.lower() == "direct":
        steps: Any = "direct"
    else:
        steps = [_number(token, True) for token in re.split(r"[\s,/;]+", steps_text) if token]
    plan: dict[str, Any] = {"steps": steps, "advance": values.get("advance") or "manual"}
    if values.get("dwell_s"):
        plan["dwell_s"] = _number(values["dwell_s"], True)
    if plan["advance"] != "auto":
        plan.pop("dwell_s", None)  # a manual plan waits for a person: no dwell to validate
    gate = {key: _number(values[key], key in INT_FIELDS) for key in GATE_FIELDS if values.get(key)}
    if gate:
        plan["gate"] = gate
    return plan


def _form_field(key: str) -> str:
    """A service or serializer field name as the form's field name ("general": not one field)."""
    if key == "__all__":
        return "general"
    if key.startswith("plan.gate."):
        return key.removeprefix("plan.gate.")
    if key == "plan.gate":
        return "gate"
    if key.startswith("plan."):
        return key.removeprefix("plan.")
    return key


def _errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        out.setdefault(_form_field(key), []).extend(messages)
    return out


def preview(
    *, user: Any, function: Function, values: dict[str, str], environments: list[Environment]
) -> dict[str, Any]:
    """What the plan would do, step by step, or the field errors the start would answer."""
    errors: dict[str, list[str]] = {}
    environment = next((e for e in environments if e.name == values.get("environment")), None)
    if environment is None:
        errors["environment"] = ["Pick an environment."]
    try:
        version = int(values.get("version") or "")
    except ValueError:
        errors["version"] = ["Pick a version."]
        version = 0
    try:
        plan = services.plan_validate(plan_of(values))
    except DomainError as exc:
        errors.update(_errors(domain_field_errors(exc)))
        plan = None
    if errors or environment is None or plan is None:
        return {"errors": errors}
    binding = Binding.objects.filter(function=function, environment=environment).first()
    stable = binding.split().sole() if binding is not None else None
    notes = []
    if stable is None and plan["steps"] != [100]:
        notes.append(
            f"Nothing to shift from: deploy first (a batched release needs one version serving 100% in "
            f"'{environment.name}')."
        )
    elif stable == version:
        notes.append(f"Version {version} already serves 100% in '{environment.name}'.")
    if not permissions.can_deploy(user, environment):
        notes.append(deploy_reason("Starting a release", environment))
    if environment.requires_release_approval:
        notes.append(
            f"{environment.name} requires approval: a second person with the deploy right approves before step 1."
        )
    gate = plan.get("gate")
    rows = []
    for i, percent in enumerate(plan["steps"]):
        last = i == len(plan["steps"]) - 1
        if last:
            then = f"v{version} is the stable version; the release completes."
        elif plan["advance"] == "auto":
            then = f"after {plan['dwell_s']} s" + (", if the gate passes," if gate else "") + " the next step."
        else:
            then = "waits for Promote" + (" (the gate can abort it at any time)." if gate else ".")
        segments = step_split(percent, version, stable)
        rows.append({"number": i + 1, "percent": percent, "segments": segments, "then": then})
    return {
        "errors": {},
        "rows": rows,
        "plan": plan,
        "notes": notes,
        "stable": stable,
        "environment": environment,
        "version": version,
    }


def start(*, user: Any, function: Function, values: dict[str, str]) -> Any:
    """Start the release (the API's serializer, then the API's service). Returns the release,
    or the field errors to show next to the form's fields."""
    from apps.functions import version_selectors
    from apps.tenancy import selectors as tenancy_selectors

    serializer = ReleaseStartSerializer(
        data={"environment": values.get("environment"), "version": values.get("version"), "plan": plan_of(values)}
    )
    if not serializer.is_valid():
        return _errors(field_errors(serializer.errors))
    data = serializer.validated_data
    try:
        environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
    except DomainError as exc:
        return {"environment": [exc.message]}
    try:
        version = version_selectors.version_get(function=function, number=data["version"])
    except DomainError as exc:
        return {"version": [exc.message]}
    try:
        return services.release_start(
            actor=user, function=function, environment=environment, version=version, plan=data["plan"]
        )
    except DomainError as exc:
        if exc.status_code == 403:
            return {"environment": [deploy_reason("Starting a release", environment)]}
        return _errors(domain_field_errors(exc))
