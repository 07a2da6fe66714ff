"""Asynchronous invocation: accepting events (202), running their attempts with retries, the
dead-letter queue (redrive, purge) and the retry configuration per function and environment.

The life of an event (apps.triggers.models.AsyncEvent):

    queued ──claim──▶ running ──ok──▶ succeeded
      ▲                  │
      └── retry (backoff)┤ error / timeout / crash / lost (lease expired)
                         └── retries spent, or maximum event age ──▶ dead (the DLQ) ──redrive──▶ queued

- Accepting stores the event before the caller gets its 202 (a restart loses none); an
  ``Idempotency-Key`` is unique per function for 24 h: a repeat answers the first's 202.
- Claims (``async_events_claim``) take due events with ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL and a conditional UPDATE on SQLite, as the schedule claims do, and give each a
  lease (the function's timeout + LEASE_MARGIN). An attempt whose worker died keeps the
  event "running" until the lease expires; the next claim marks that attempt lost and runs
  the event again. Delivery is therefore at least once: a handler dedupes on its request id,
  which is the event's and the same on every attempt (docs/TRIGGERS.md).
- Throttled attempts are retried without spending a retry (bounded by the event's age).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor
from apps.core.errors import Conflict, DomainError
from apps.engine import services as engine_services
from apps.engine.engine import Outcome, new_request_id
from apps.functions.models import Function
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment
from apps.triggers.models import AsyncAttempt, AsyncConfig, AsyncEvent, AsyncState, AttemptStatus
from apps.triggers.services import runner_name

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 256 * 1024
IDEMPOTENCY_TTL = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX = 255
MAX_RETRIES_RANGE = (0, 10)
DEFAULT_MAX_RETRIES = 2
MAX_EVENT_AGE_RANGE = (60, 24 * 3600)
DEFAULT_MAX_EVENT_AGE_S = 6 * 3600
LEASE_MARGIN = timedelta(seconds=30)
REDRIVE_RATE_RANGE = (0.1, 1000.0)
DEFAULT_REDRIVE_RATE = 10.0
SELECTION_MAX = 1000
STATUS_PATH = "/api/v1/async-events/{request_id}"
AGE_EXCEEDED = "EventAgeExceeded"


def _bad(field: str, message: str, code: str = "invalid") -> DomainError:
    return DomainError(f"{field}: {message}", code=code, fields={field: [message]})


def status_url(request_id: str) -> str:
    """Where the event's state is read (absolute: the gateway answers on the functions host,
    where the console's API does not)."""
    return settings.PUBLIC_URL.rstrip("/") + STATUS_PATH.format(request_id=request_id)


def accepted_body(event: AsyncEvent) -> dict[str, Any]:
    """The 202's body; a repeat with the same Idempotency-Key answers it again, unchanged."""
    return {"request_id": event.request_id, "status_url": status_url(event.request_id)}


def payload_size_check(size: int, field: str = "event") -> None:
    if size > MAX_EVENT_BYTES:
        raise DomainError(
            f"{field}: {size} bytes is over the 256 KB limit of an asynchronous event.",
            code="payload_too_large",
            fields={field: ["At most 256 KB (262144 bytes)."]},
            status_code=413,
        )


def _json_size(payload: Any) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


def idempotency_key_check(key: str | None) -> str:
    if key is None:
        return ""
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or any(ord(c) < 33 or ord(c) > 126 for c in key):
        raise _bad("Idempotency-Key", "1 to 255 printable ASCII characters without spaces.")
    return key


# --- accepting ----------------------------------------------------------------------------------


def async_event_enqueue(
    *,
    actor: Actor,
    function: Function,
    environment: Environment,
    payload: Any,
    version_number: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[AsyncEvent, bool]:
    """Accept an event of the invoke API (``invocation_type`` event): checked, its version
    picked as a synchronous call would pick it, stored. Returns the event and whether it is
    new (False: the Idempotency-Key's first event, answered again)."""
    engine_services.invoke_permission_check(actor=actor, environment=environment)
    key = idempotency_key_check(idempotency_key)
    payload_size_check(_json_size(payload))
    if key:
        first = _idempotent_first(function.pk, key, timezone.now())
        if first is not None:
            return first, False
    rv, _ = engine_services.invocation_target(function=function, environment=environment, version_number=version_number)
    return _store(
        function_id=function.pk,
        environment_id=environment.pk,
        kind="event",
        source="api",
        payload=payload,
        version=rv.number,
        key=key,
    )


def async_request_accept(
    *, function_id: int, environment_id: int, version: int, request: dict[str, Any], idempotency_key: str | None
) -> tuple[AsyncEvent, bool]:
    """Accept an HTTP request the gateway was asked to run asynchronously
    (``X-Stratus-Invocation-Type: Event``): the gateway checked the route, the token and the
    size and picked the version; this stores it. Runs on a thread of the gateway's."""
    key = idempotency_key_check(idempotency_key)
    return _store(
        function_id=function_id,
        environment_id=environment_id,
        kind="request",
        source="gateway",
        payload=request,
        version=version,
        key=key,
    )


def _idempotent_first(function_id: int, key: str, now: datetime) -> AsyncEvent | None:
    return AsyncEvent.objects.filter(
        function_id=function_id, idempotency_key=key, created_at__gt=now - IDEMPOTENCY_TTL
    ).first()


def _store(
    *, function_id: int, environment_id: int, kind: str, source: str, payload: Any, version: int, key: str
) -> tuple[AsyncEvent, bool]:
    now = timezone.now()
    event = AsyncEvent(
        function_id=function_id,
        environment_id=environment_id,
        request_id=new_request_id(),
        kind=kind,
        source=source,
        payload=payload,
        version=version,
        idempotency_key=key,
        next_attempt_at=now,
        created_at=now,
        enqueued_at=now,
    )
    if not key:
        event.save(force_insert=True)
        _dispatch_wake()
        return event, True
    try:
        with transaction.atomic():
            # A key older than 24 h is free again: its old event lets go of it.
            AsyncEvent.objects.filter(
                function_id=function_id, idempotency_key=key, created_at__lte=now - IDEMPOTENCY_TTL
            ).update(idempotency_key="")
            event.save(force_insert=True)
    except IntegrityError:
        # Two requests with one key at once: the unique constraint let one in; answer its 202.
        first = _idempotent_first(function_id, key, now)
        if first is None:
            raise
        return first, False
    _dispatch_wake()
    return event, True


def _dispatch_wake() -> None:
    """Wake this process's dispatcher, if it runs here, after the commit (no wait of a poll)."""
    from apps.triggers import dispatcher

    transaction.on_commit(dispatcher.wake)


# --- configuration ------------------------------------------------------------------------------


def async_config_get(*, function: Function, environment: Environment) -> AsyncConfig:
    """The saved configuration, or the defaults (unsaved) when there is none."""
    config = AsyncConfig.objects.filter(function=function, environment=environment).first()
    if config is None:
        config = AsyncConfig(
            function=function,
            environment=environment,
            max_retries=DEFAULT_MAX_RETRIES,
            max_event_age_s=DEFAULT_MAX_EVENT_AGE_S,
        )
    return config


def _int_in(field: str, value: Any, bounds: tuple[int, int], unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, f"a whole number from {bounds[0]} to {bounds[1]}{unit}.")
    if not bounds[0] <= value <= bounds[1]:
        raise _bad(field, f"must be from {bounds[0]} to {bounds[1]}{unit}; got {value}.")
    return value


def async_config_set(
    *, actor: Actor, function: Function, environment: Environment, fields: dict[str, Any]
) -> AsyncConfig:
    """Set ``max_retries`` (0-10) and/or ``max_event_age_s`` (60 s to 24 h); applies to the
    next retry decision of every event, queued ones included."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Changing async settings")
    known = ("max_retries", "max_event_age_s")
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise _bad(unknown[0], f"unknown field; known: {', '.join(known)}.")
    data: dict[str, int] = {}
    if "max_retries" in fields:
        data["max_retries"] = _int_in("max_retries", fields["max_retries"], MAX_RETRIES_RANGE)
    if "max_event_age_s" in fields:
        data["max_event_age_s"] = _int_in(
            "max_event_age_s", fields["max_event_age_s"], MAX_EVENT_AGE_RANGE, " seconds (1 minute to 24 hours)"
        )
    with transaction.atomic():
        config, _ = AsyncConfig.objects.select_for_update().get_or_create(
            function=function,
            environment=environment,
            defaults={"max_retries": DEFAULT_MAX_RETRIES, "max_event_age_s": DEFAULT_MAX_EVENT_AGE_S},
        )
        for name, value in data.items():
            setattr(config, name, value)
        config.save()
        audit_record(
            actor=actor,
            org=function.project.org,
            action="async_config.update",
            target=function,
            changes={"environment": environment.name, **data},
        )
    return config


def _configs_for(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], tuple[int, int]]:
    """(function, environment) → (max_retries, max_event_age_s), defaults filled in: one query."""
    found: dict[tuple[int, int], tuple[int, int]] = {
        pair: (DEFAULT_MAX_RETRIES, DEFAULT_MAX_EVENT_AGE_S) for pair in pairs
    }
    if pairs:
        fids = {f for f, _ in pairs}
        for row in AsyncConfig.objects.filter(function_id__in=fids).values(
            "function_id", "environment_id", "max_retries", "max_event_age_s"
        ):
            pair = (row["function_id"], row["environment_id"])
            if pair in found:
                found[pair] = (row["max_retries"], row["max_event_age_s"])
    return found


# --- claiming and running attempts -------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedAttempt:
    event_id: int
    number: int


def backoff_s(failures: int) -> float:
    """The wait before the retry after the ``failures``-th failure: exponential (base × 2^(n-1),
    capped) with equal jitter (half of it random), so retries of many events failing together
    spread out instead of returning in a wave."""
    base = float(getattr(settings, "STRATUS_ASYNC_BACKOFF_BASE_S", 5.0))
    cap = float(getattr(settings, "STRATUS_ASYNC_BACKOFF_MAX_S", 300.0))
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def async_events_claim(
    *, now: datetime | None = None, limit: int = 50, runner: str | None = None
) -> list[ClaimedAttempt]:
    """Claim up to ``limit`` due events: queued ones whose attempt is due, and running ones
    whose lease expired (their attempt is marked lost and counts as a failure). Each claimed
    event becomes running with a lease and a new attempt row, in one transaction. Events past
    their maximum age, or whose lost attempt spent the last retry, go to the DLQ unrun."""
    now = now or timezone.now()
    runner = runner or runner_name()
    if limit <= 0:
        return []
    claimed: list[ClaimedAttempt] = []
    with transaction.atomic():
        due = AsyncEvent.objects.filter(state=AsyncState.QUEUED, next_attempt_at__lte=now)
        stale = AsyncEvent.objects.filter(state=AsyncState.RUNNING, lease_expires_at__lt=now)
        qs = (due | stale).order_by("next_attempt_at", "id")
        if connection.vendor == "postgresql":
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        rows = list(
            qs.values(
                "pk",
                "request_id",
                "function_id",
                "environment_id",
                "state",
                "attempts",
                "failures",
                "enqueued_at",
                "function__timeout_s",
            )[:limit]
        )
        configs = _configs_for({(r["function_id"], r["environment_id"]) for r in rows})
        for row in rows:
            max_retries, max_age_s = configs[(row["function_id"], row["environment_id"])]
            failures = row["failures"]
            lost = row["state"] == AsyncState.RUNNING
            guard = AsyncEvent.objects.filter(pk=row["pk"], state=row["state"], attempts=row["attempts"])
            if lost:
                failures += 1
            error_type, error = "", ""
            if lost and failures > max_retries:
                error_type, error = "Lost", "The worker running the last attempt stopped (its lease expired)."
            elif now - row["enqueued_at"] > timedelta(seconds=max_age_s):
                error_type = AGE_EXCEEDED
                error = f"Not run within the maximum event age ({max_age_s} s)."
            if error_type:
                if (
                    guard.update(
                        state=AsyncState.DEAD,
                        failures=failures,
                        error_type=error_type,
                        error=error,
                        finished_at=now,
                        lease_expires_at=None,
                    )
                    and lost
                ):
                    _attempt_lost_mark(row["pk"], row["attempts"], now)
                continue
            number = row["attempts"] + 1
            won = guard.update(
                state=AsyncState.RUNNING,
                attempts=number,
                failures=failures,
                lease_expires_at=now + timedelta(seconds=row["function__timeout_s"]) + LEASE_MARGIN,
                runner=runner,
            )
            if not won:
                continue  # another dispatcher took it (SQLite: its update came first)
            if lost:
                _attempt_lost_mark(row["pk"], row["attempts"], now)
            AsyncAttempt.objects.create(
                event_id=row["pk"], number=number, request_id=row["request_id"], started_at=now, runner=runner
            )
            claimed.append(ClaimedAttempt(row["pk"], number))
    return claimed


def _attempt_lost_mark(event_id: int, number: int, now: datetime) -> None:
    AsyncAttempt.objects.filter(event_id=event_id, number=number, status=AttemptStatus.RUNNING).update(
        status=AttemptStatus.LOST,
        finished_at=now,
        error_type="Lost",
        error="The worker running this attempt stopped before it finished (its lease expired).",
    )


def _outcome_error(outcome: Outcome) -> tuple[str, str]:
    error = outcome.error or {}
    kind = str(error.get("type") or outcome.status.capitalize())[:100]
    return kind, f"{kind}: {error.get('message', '')}"[:2000]


def async_attempt_run(*, event_id: int, number: int) -> AsyncEvent | None:
    """Run attempt ``number`` of a claimed event and record its outcome; then the event
    succeeds, is queued for a retry after a backoff, or goes to the DLQ. Does nothing when the
    event is no longer this attempt's (its lease expired and another dispatcher took it)."""
    event = (
        AsyncEvent.objects.select_related("function__project__org", "environment")
        .filter(pk=event_id, state=AsyncState.RUNNING, attempts=number)
        .first()
    )
    if event is None:
        return None
    started = time.monotonic()
    status: str
    version: int | None = event.version
    error_type = error = ""
    try:
        outcome = engine_services.async_invoke(
            function=event.function,
            environment=event.environment,
            version_number=event.version,
            kind=event.kind,
            payload=event.payload,
            request_id=event.request_id,
        )
    except DomainError as exc:
        status, error_type, error = AttemptStatus.FAILED, exc.code, exc.message
        duration = (time.monotonic() - started) * 1000
    except Exception as exc:  # the engine's own failure: recorded, the dispatcher lives on
        log.exception("async event %s: attempt %s failed", event.pk, number)
        status, error_type, error = AttemptStatus.FAILED, type(exc).__name__, f"{type(exc).__name__}: {exc}"
        duration = (time.monotonic() - started) * 1000
    else:
        status, duration, version = outcome.status, outcome.duration_ms, outcome.version
        if status != AttemptStatus.OK:
            error_type, error = _outcome_error(outcome)
    now = timezone.now()
    with transaction.atomic():
        AsyncAttempt.objects.filter(event_id=event.pk, number=number).update(
            status=status,
            request_id=event.request_id,
            version=version,
            finished_at=now,
            duration_ms=round(duration, 3),
            error_type=error_type,
            error=error,
        )
        mine = AsyncEvent.objects.filter(pk=event.pk, state=AsyncState.RUNNING, attempts=number)
        if status == AttemptStatus.OK:
            mine.update(state=AsyncState.SUCCEEDED, finished_at=now, lease_expires_at=None, error_type="", error="")
            return event
        max_retries, max_age_s = _configs_for({(event.function_id, event.environment_id)})[
            (event.function_id, event.environment_id)
        ]
        failures = event.failures + (0 if status == AttemptStatus.THROTTLED else 1)
        retry_at = now + timedelta(seconds=backoff_s(max(1, failures)))
        too_old = retry_at - event.enqueued_at > timedelta(seconds=max_age_s)
        if failures > max_retries or too_old:
            note = " (maximum event age reached)" if too_old and failures <= max_retries else ""
            mine.update(
                state=AsyncState.DEAD,
                failures=failures,
                finished_at=now,
                lease_expires_at=None,
                error_type=AGE_EXCEEDED if note else error_type,
                error=error + note,
            )
        else:
            mine.update(
                state=AsyncState.QUEUED,
                failures=failures,
                next_attempt_at=retry_at,
                lease_expires_at=None,
                error_type=error_type,
                error=error,
            )
    return event


# --- the dead-letter queue ----------------------------------------------------------------------


def _require_redrive(actor: Actor, function: Function, environments: list[Environment]) -> None:
    """Redriving runs the function again: the edit-code right and the right to invoke in
    each environment concerned (a protected one needs the deploy right there)."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Redriving events")
    for environment in environments:
        engine_services.invoke_permission_check(actor=actor, environment=environment)


def async_event_redrive(
    *,
    actor: Actor,
    event: AsyncEvent,
    payload: Any = None,
    replace_payload: bool = False,
    version_number: int | None = None,
) -> AsyncEvent:
    """Queue a dead event again, now: its retries start afresh and its age counts from now;
    optionally with an edited payload (an API event's) or for another version. Its attempts
    so far stay in its history."""
    _require_redrive(actor, event.function, [event.environment])
    if event.state != AsyncState.DEAD:
        raise Conflict(f"Event {event.request_id} is {event.state}: only a dead event is redriven.", code="not_dead")
    changes: dict[str, Any] = {}
    if replace_payload:
        if event.kind != "event":
            raise _bad("payload", "a request the gateway accepted is redriven as it came; its payload is not edited.")
        payload_size_check(_json_size(payload), "payload")
        changes["payload"] = payload
    if version_number is not None:
        if not event.function.versions.filter(number=version_number).exists():
            raise _bad("version", f"version {version_number} of '{event.function.name}' does not exist.")
        changes["version"] = version_number
    now = timezone.now()
    with transaction.atomic():
        updated = AsyncEvent.objects.filter(pk=event.pk, state=AsyncState.DEAD).update(
            state=AsyncState.QUEUED,
            failures=0,
            next_attempt_at=now,
            enqueued_at=now,
            finished_at=None,
            error_type="",
            error="",
            redrives=F("redrives") + 1,
            **changes,
        )
        if not updated:
            raise Conflict(f"Event {event.request_id} was redriven or purged meanwhile.", code="not_dead")
        audit_record(
            actor=actor,
            org=event.function.project.org,
            action="async_event.redrive",
            target=event.function,
            changes={
                "request_id": event.request_id,
                "version": changes.get("version", event.version),
                "payload_edited": "payload" in changes,
            },
        )
    _dispatch_wake()
    event.refresh_from_db()
    return event


def _selection(
    function: Function, request_ids: list[str] | None, filtered: QuerySet[AsyncEvent] | None
) -> QuerySet[AsyncEvent]:
    qs = AsyncEvent.objects.filter(function=function, state=AsyncState.DEAD)
    if request_ids is not None:
        if not isinstance(request_ids, list) or not all(isinstance(r, str) for r in request_ids):
            raise _bad("request_ids", "a list of request ids.")
        if len(request_ids) > SELECTION_MAX:
            raise _bad("request_ids", f"at most {SELECTION_MAX} at once.")
        return qs.filter(request_id__in=request_ids)
    if filtered is None:
        raise _bad("request_ids", "name the events (request_ids) or give filters.")
    return qs.filter(pk__in=filtered.values("pk"))


def async_events_redrive(
    *,
    actor: Actor,
    function: Function,
    request_ids: list[str] | None = None,
    filtered: QuerySet[AsyncEvent] | None = None,
    rate_per_s: Any = DEFAULT_REDRIVE_RATE,
) -> int:
    """Redrive a selection of dead events (by request id, or what a DLQ filter matches; at
    most SELECTION_MAX) at ``rate_per_s``: the i-th is due i/rate seconds from now, so the
    dispatchers start them no faster than that, durably (a restart keeps the pacing)."""
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int | float):
        raise _bad(
            "rate_per_s", f"a number of events per second from {REDRIVE_RATE_RANGE[0]} to {REDRIVE_RATE_RANGE[1]:g}."
        )
    if not REDRIVE_RATE_RANGE[0] <= float(rate_per_s) <= REDRIVE_RATE_RANGE[1]:
        raise _bad(
            "rate_per_s", f"must be from {REDRIVE_RATE_RANGE[0]} to {REDRIVE_RATE_RANGE[1]:g} events per second."
        )
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Redriving events")
    selected = list(
        _selection(function, request_ids, filtered)
        .order_by("created_at", "id")
        .values_list("pk", "environment_id")[:SELECTION_MAX]
    )
    env_ids = {env for _, env in selected}
    _require_redrive(actor, function, list(Environment.objects.filter(pk__in=env_ids)))
    now = timezone.now()
    step = 1.0 / float(rate_per_s)
    count = 0
    with transaction.atomic():
        for i, (pk, _) in enumerate(selected):
            count += AsyncEvent.objects.filter(pk=pk, state=AsyncState.DEAD).update(
                state=AsyncState.QUEUED,
                failures=0,
                next_attempt_at=now + timedelta(seconds=i * step),
                enqueued_at=now + timedelta(seconds=i * step),
                finished_at=None,
                error_type="",
                error="",
                redrives=F("redrives") + 1,
            )
        audit_record(
            actor=actor,
            org=function.project.org,
            action="async_event.redrive_many",
            target=function,
            changes={"count": count, "rate_per_s": rate_per_s},
        )
    _dispatch_wake()
    return count


def async_events_purge(
    *,
    actor: Actor,
    function: Function,
    request_ids: list[str] | None = None,
    filtered: QuerySet[AsyncEvent] | None = None,
) -> int:
    """Delete dead events (by request id, or what a DLQ filter matches) with their attempts."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Purging dead events")
    with transaction.atomic():
        pks = list(_selection(function, request_ids, filtered).values_list("pk", flat=True)[: SELECTION_MAX * 10])
        deleted = AsyncEvent.objects.filter(pk__in=pks, state=AsyncState.DEAD).delete()[1].get("triggers.AsyncEvent", 0)
        audit_record(
            actor=actor,
            org=function.project.org,
            action="async_event.purge",
            target=function,
            changes={"count": deleted},
        )
    return deleted
