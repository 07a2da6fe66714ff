"""Writes of triggers: create, update, pause/resume, delete, run now, and the run of one fire.

Rights: writing a trigger needs ``edit_code`` on the function's project (developers and up)
and the right to invoke in its environment (in a protected one, the deploy right there):
a schedule invokes on its writer's behalf, so it may do no more than they may. Viewers read
(selectors); outsiders get 404 from the selectors before any service runs.

Every save recomputes ``next_fire_at`` from now, so an edit, a pause or a resume applies at
the scheduler's next tick (no restart, nothing cached elsewhere). The claim of due
occurrences is apps.triggers.scheduler.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import DomainError
from apps.engine import services as engine_services
from apps.engine.engine import new_request_id
from apps.functions.models import Function
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment
from apps.triggers import schedule
from apps.triggers.models import FINISHED, FireStatus, MisfirePolicy, OverlapPolicy, Trigger, TriggerFire

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 256 * 1024
FIELDS = (
    "name",
    "expression",
    "timezone",
    "payload",
    "enabled",
    "overlap_policy",
    "misfire_policy",
    "start_at",
    "end_at",
)
EVENT_SOURCE = "stratus.triggers"
PREVIEW_COUNT = 10


def _bad(field: str, message: str, code: str = "invalid") -> DomainError:
    return DomainError(f"{field}: {message}", code=code, fields={field: [message]})


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


# --- validation ---------------------------------------------------------------------------------


def _datetime(field: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise _bad(field, "an ISO 8601 date and time with an offset, e.g. 2026-12-01T09:00:00Z.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, "an ISO 8601 date and time with an offset, e.g. 2026-12-01T09:00:00Z.")
    if parsed.tzinfo is None:
        raise _bad(field, "needs an offset (Z or +01:00): a time without one is ambiguous.")
    return parsed


def validate_fields(data: dict[str, Any], *, current: Trigger | None, now: datetime) -> dict[str, Any]:
    """The given fields checked and normalised (a 400 naming the first rule broken), merged
    over ``current``'s for the cross-field rules (the expression with its timezone, start
    before end)."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise _bad(unknown[0], f"unknown field; known: {', '.join(FIELDS)}.")
    out: dict[str, Any] = {}
    if "name" in data:
        name = data["name"].strip() if isinstance(data["name"], str) else ""
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            raise _bad("name", "a trigger's name is 1 to 100 printable characters.")
        out["name"] = name
    if "payload" in data:
        payload = data["payload"]
        if payload is None:
            payload = {}
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > MAX_PAYLOAD_BYTES:
            raise DomainError(
                f"payload: {size} bytes of JSON is over the 256 KB limit.",
                code="payload_too_large",
                fields={"payload": ["At most 256 KB of JSON."]},
            )
        out["payload"] = payload
    for flag in ("enabled",):
        if flag in data:
            if not isinstance(data[flag], bool):
                raise _bad(flag, "must be true or false.")
            out[flag] = data[flag]
    if "overlap_policy" in data:
        if data["overlap_policy"] not in OverlapPolicy.values:
            raise _bad("overlap_policy", f"must be one of {', '.join(OverlapPolicy.values)}.")
        out["overlap_policy"] = data["overlap_policy"]
    if "misfire_policy" in data:
        if data["misfire_policy"] not in MisfirePolicy.values:
            raise _bad("misfire_policy", f"must be one of {', '.join(MisfirePolicy.values)}.")
        out["misfire_policy"] = data["misfire_policy"]
    for key in ("start_at", "end_at"):
        if key in data:
            out[key] = _datetime(key, data[key])
    expression = out.get("expression", data.get("expression", current.expression if current else None))
    tz_name = data.get("timezone", current.timezone if current else "UTC")
    if "expression" in data or "timezone" in data:
        try:
            expr, _ = schedule.validate(expression or "", tz_name, now=now)
        except schedule.ExpressionError as exc:
            raise _bad(exc.field, str(exc))
        out["expression"], out["timezone"], out["kind"] = expr.text, tz_name, expr.kind
    start = out.get("start_at", current.start_at if current else None)
    end = out.get("end_at", current.end_at if current else None)
    if start and end and end <= start:
        raise _bad("end_at", "must be after start_at.")
    return out


# --- fire times ---------------------------------------------------------------------------------


def next_fire_compute(trigger: Trigger, *, after: datetime) -> datetime | None:
    """The trigger's first occurrence strictly after ``after`` within its start/end, or None."""
    expr = schedule.parse(trigger.expression)
    tz = schedule.zone_get(trigger.timezone)
    if trigger.start_at and after < trigger.start_at:
        after = trigger.start_at - timedelta(microseconds=1)
    anchor = trigger.start_at or trigger.created_at or after
    nxt = schedule.next_fire(expr, tz, after, anchor=anchor)
    if nxt is None or (trigger.end_at and nxt > trigger.end_at):
        return None
    return nxt


def _reschedule(trigger: Trigger, now: datetime) -> None:
    trigger.next_fire_at = next_fire_compute(trigger, after=now) if trigger.enabled else None


def preview(*, expression: Any, timezone_name: Any, start: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The next ``PREVIEW_COUNT`` fire times (UTC and local) and a readable description."""
    now = now or timezone.now()
    after = _datetime("start", start) or now
    if not isinstance(timezone_name, str):
        raise _bad("timezone", "an IANA timezone name, e.g. Europe/Berlin.")
    try:
        expr, tz = schedule.validate(expression if isinstance(expression, str) else "", timezone_name, now=after)
    except schedule.ExpressionError as exc:
        raise _bad(exc.field, str(exc))
    times = schedule.fire_times(expr, tz, after, PREVIEW_COUNT, anchor=after)
    return {
        "expression": expr.text,
        "kind": expr.kind,
        "timezone": timezone_name,
        "description": schedule.describe(expr, timezone_name),
        "fire_times": [
            {"utc": t.isoformat().replace("+00:00", "Z"), "local": t.astimezone(tz).isoformat()} for t in times
        ],
    }


# --- writes -------------------------------------------------------------------------------------


def _require_write(actor: Actor, function: Function, environment: Environment, action: str) -> None:
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, action)
    engine_services.invoke_permission_check(actor=actor, environment=environment)


def trigger_create(*, actor: Actor, function: Function, environment: Environment, fields: dict[str, Any]) -> Trigger:
    """A new schedule for ``function`` in ``environment``; its first occurrence is computed now."""
    _require_write(actor, function, environment, "Creating a trigger")
    if environment.project_id != function.project_id:
        raise _bad("environment", f"'{environment.name}' is not an environment of this function's project.")
    for required in ("name", "expression"):
        if required not in fields:
            raise _bad(required, "this field is required.")
    now = timezone.now()
    data = validate_fields({"timezone": "UTC", **fields}, current=None, now=now)
    if Trigger.objects.filter(function=function, name=data["name"]).exists():
        raise DomainError(
            f"Trigger '{data['name']}' already exists on this function.",
            code="already_exists",
            fields={"name": ["Already taken on this function."]},
        )
    trigger = Trigger(function=function, environment=environment, created_by=signed_in(actor), **data)
    trigger.created_at = now
    _reschedule(trigger, now)
    if trigger.kind == "at" and trigger.next_fire_at is None:
        raise _bad("expression", "at(...) is in the past (or after end_at): it would never fire.")
    with transaction.atomic():
        try:
            trigger.save()
        except IntegrityError:
            raise DomainError(
                f"Trigger '{data['name']}' already exists on this function.",
                code="already_exists",
                fields={"name": ["Already taken on this function."]},
            )
        audit_record(
            actor=actor,
            org=function.project.org,
            action="trigger.create",
            target=function,
            changes={"trigger": trigger.pk, "environment": environment.name, **_audit_view(data)},
        )
    return trigger


def _audit_view(data: dict[str, Any]) -> dict[str, Any]:
    view = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items() if k != "payload"}
    if "payload" in data:
        view["payload_bytes"] = len(json.dumps(data["payload"]))
    return view


def trigger_update(*, actor: Actor, trigger: Trigger, fields: dict[str, Any]) -> Trigger:
    """Change some fields; the next occurrence is recomputed from now (applies at once)."""
    _require_write(actor, trigger.function, trigger.environment, "Changing a trigger")
    now = timezone.now()
    data = validate_fields(fields, current=trigger, now=now)
    with transaction.atomic():
        # The row lock orders this write against a scheduler's claim (PostgreSQL); the claim's
        # conditional update on next_fire_at does the same on SQLite.
        locked = Trigger.objects.select_for_update().get(pk=trigger.pk)
        if (
            "name" in data
            and Trigger.objects.filter(function=locked.function_id, name=data["name"]).exclude(pk=locked.pk).exists()
        ):
            raise _bad("name", "already taken on this function.", code="already_exists")
        for key, value in data.items():
            setattr(locked, key, value)
        _reschedule(locked, now)
        locked.save()
        audit_record(
            actor=actor,
            org=trigger.function.project.org,
            action="trigger.update",
            target=trigger.function,
            changes={"trigger": trigger.pk, **_audit_view(data)},
        )
    locked.function, locked.environment = trigger.function, trigger.environment
    return locked


def trigger_pause(*, actor: Actor, trigger: Trigger) -> Trigger:
    return trigger_update(actor=actor, trigger=trigger, fields={"enabled": False})


def trigger_resume(*, actor: Actor, trigger: Trigger) -> Trigger:
    """Enable again; occurrences that fell while paused are not run (the next is after now)."""
    return trigger_update(actor=actor, trigger=trigger, fields={"enabled": True})


def trigger_delete(*, actor: Actor, trigger: Trigger) -> None:
    _require_write(actor, trigger.function, trigger.environment, "Deleting a trigger")
    with transaction.atomic():
        audit_record(
            actor=actor,
            org=trigger.function.project.org,
            action="trigger.delete",
            target=trigger.function,
            changes={"trigger": trigger.pk, "name": trigger.name},
        )
        trigger.delete()


def trigger_run_now(*, actor: Actor, trigger: Trigger) -> TriggerFire:
    """Fire once now, outside the schedule (overlap policy not applied: it is asked for),
    with the trigger's payload; the run happens in the background (the fire is returned
    running). It does not move the schedule."""
    _require_write(actor, trigger.function, trigger.environment, "Running a trigger")
    now = timezone.now()
    with transaction.atomic():
        fire = TriggerFire.objects.create(
            trigger=trigger,
            scheduled_at=now,
            manual=True,
            status=FireStatus.RUNNING,
            request_id=new_request_id(),
            fired_at=now,
            last_run_at=trigger.last_fired_at,
            runner=runner_name(),
        )
        Trigger.objects.filter(pk=trigger.pk).update(last_fired_at=now)
        audit_record(
            actor=actor,
            org=trigger.function.project.org,
            action="trigger.run",
            target=trigger.function,
            changes={"trigger": trigger.pk, "request_id": fire.request_id},
        )
    from apps.triggers import scheduler

    transaction.on_commit(lambda: scheduler.submit(fire.pk))
    return fire


# --- running a fire -----------------------------------------------------------------------------


def fire_event(trigger: Trigger, fire: TriggerFire) -> dict[str, Any]:
    """The event a scheduled function receives: EventBridge's scheduled event shape, with
    Stratus's facts in ``detail`` (docs/TRIGGERS.md)."""
    tz = schedule.zone_get(trigger.timezone)

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(schedule.UTC).isoformat().replace("+00:00", "Z")

    project = trigger.function.project
    return {
        "version": "0",
        "id": fire.request_id,
        "detail-type": "Scheduled Event",
        "source": EVENT_SOURCE,
        "account": project.org.slug,
        "time": iso(fire.scheduled_at),
        "region": "local",
        "resources": [
            f"stratus:{project.org.slug}:{project.slug}:{trigger.environment.name}:"
            f"{trigger.function.name}:trigger/{trigger.name}"
        ],
        "detail": {
            "trigger": {
                "id": trigger.pk,
                "name": trigger.name,
                "expression": trigger.expression,
                "timezone": trigger.timezone,
            },
            "scheduled_time": iso(fire.scheduled_at),
            "scheduled_time_local": fire.scheduled_at.astimezone(tz).isoformat(),
            "last_run_time": iso(fire.last_run_at),
            "manual": fire.manual,
            "payload": trigger.payload,
        },
    }


def fire_run(*, fire_id: int) -> TriggerFire | None:
    """Run one claimed fire (status running) through the engine and record its outcome, then
    run the trigger's queued fires one after another (overlap policy queue). Safe to call for
    a fire that is no longer running: it does nothing."""
    fire = (
        TriggerFire.objects.select_related("trigger__function__project__org", "trigger__environment")
        .filter(pk=fire_id, status=FireStatus.RUNNING)
        .first()
    )
    if fire is None:
        return None
    trigger = fire.trigger
    started = time.monotonic()
    try:
        outcome = engine_services.schedule_invoke(
            function=trigger.function,
            environment=trigger.environment,
            event=fire_event(trigger, fire),
            request_id=fire.request_id,
        )
    except DomainError as exc:
        fire.status, fire.error = FireStatus.FAILED, exc.message
        fire.duration_ms = (time.monotonic() - started) * 1000
    except Exception as exc:  # the engine's own failure: record it, keep the scheduler alive
        log.exception("trigger %s: fire %s failed", trigger.pk, fire.pk)
        fire.status, fire.error = FireStatus.FAILED, f"{type(exc).__name__}: {exc}"
        fire.duration_ms = (time.monotonic() - started) * 1000
    else:
        fire.status = outcome.status
        fire.duration_ms = round(outcome.duration_ms, 3)
        fire.version = outcome.version or None
        if outcome.error:
            fire.error = f"{outcome.error.get('type', 'Error')}: {outcome.error.get('message', '')}"[:2000]
    fire.finished_at = timezone.now()
    TriggerFire.objects.filter(pk=fire.pk, status=FireStatus.RUNNING).update(
        status=fire.status,
        duration_ms=fire.duration_ms,
        version=fire.version,
        error=fire.error,
        finished_at=fire.finished_at,
    )
    fires_prune(trigger_id=trigger.pk)
    queued_next = fire_queued_claim(trigger_id=trigger.pk)
    if queued_next is not None:
        fire_run(fire_id=queued_next)
    return fire


def fire_queued_claim(*, trigger_id: int) -> int | None:
    """The trigger's oldest queued fire, moved to running when nothing of it runs (an atomic
    conditional update: two finishing runs never start it twice)."""
    if TriggerFire.objects.filter(trigger_id=trigger_id, status=FireStatus.RUNNING).exists():
        return None
    oldest = (
        TriggerFire.objects.filter(trigger_id=trigger_id, status=FireStatus.QUEUED)
        .order_by("scheduled_at", "id")
        .values_list("pk", flat=True)
        .first()
    )
    if oldest is None:
        return None
    claimed = TriggerFire.objects.filter(pk=oldest, status=FireStatus.QUEUED).update(
        status=FireStatus.RUNNING, fired_at=timezone.now(), runner=runner_name()
    )
    return oldest if claimed else None


def fires_prune(*, trigger_id: int) -> int:
    """Keep a trigger's newest STRATUS_TRIGGER_FIRES_KEPT finished fires."""
    keep = int(getattr(settings, "STRATUS_TRIGGER_FIRES_KEPT", 100))
    cutoff = (
        TriggerFire.objects.filter(trigger_id=trigger_id)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)[keep : keep + 1]
    )
    edge = list(cutoff)
    if not edge:
        return 0
    deleted, _ = TriggerFire.objects.filter(
        trigger_id=trigger_id,
        created_at__lte=edge[0],
        status__in=[*FINISHED, FireStatus.FAILED, FireStatus.SKIPPED, FireStatus.MISSED, FireStatus.LOST],
    ).delete()
    return deleted
