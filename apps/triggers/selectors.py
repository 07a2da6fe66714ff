"""Reads of triggers and their fires, scoped to the caller through the projects they see."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from apps.core.actors import Actor
from apps.core.errors import DomainError, NotFound
from apps.functions.models import Function
from apps.tenancy import permissions
from apps.triggers.models import AsyncAttempt, AsyncEvent, AsyncState, Trigger, TriggerFire

RELATED = ("function__project__org", "environment")


def trigger_list(*, function: Function) -> QuerySet[Trigger]:
    return Trigger.objects.filter(function=function).select_related(*RELATED).order_by("name", "id")


def trigger_get(*, user: Actor, trigger_id: int | str) -> Trigger:
    """A trigger of a project the user may see; 404 otherwise (as for one that does not exist)."""
    try:
        pk = int(trigger_id)
    except (TypeError, ValueError):
        raise NotFound("Trigger not found.")
    trigger = (
        Trigger.objects.filter(pk=pk, function__project__in=permissions.visible_projects(user))
        .select_related(*RELATED)
        .first()
    )
    if trigger is None:
        raise NotFound("Trigger not found.")
    return trigger


def fire_list(*, trigger: Trigger) -> QuerySet[TriggerFire]:
    return TriggerFire.objects.filter(trigger=trigger).order_by("-created_at", "-id")


def recent_fires(*, function: Function, limit: int = 20) -> list[TriggerFire]:
    """The function's last ``limit`` fires over all its triggers, newest first (one query)."""
    return list(
        TriggerFire.objects.filter(trigger__function=function)
        .select_related("trigger__environment")
        .order_by("-created_at", "-id")[:limit]
    )


# --- asynchronous events ------------------------------------------------------------------------


def async_event_get(*, user: Actor, request_id: str) -> AsyncEvent:
    """An event of a project the user may see, by its request id; 404 otherwise."""
    event = (
        AsyncEvent.objects.filter(
            request_id=str(request_id)[:64], function__project__in=permissions.visible_projects(user)
        )
        .select_related("function__project__org", "environment")
        .first()
    )
    if event is None:
        raise NotFound("Async event not found.")
    return event


def async_attempts(*, event: AsyncEvent) -> list[AsyncAttempt]:
    return list(AsyncAttempt.objects.filter(event=event).order_by("number"))


def _when(field: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DomainError(f"{field}: an ISO 8601 date and time.", fields={field: ["An ISO 8601 date and time."]})
    if parsed.tzinfo is None:
        raise DomainError(f"{field}: needs an offset (Z or +01:00).", fields={field: ["Needs an offset."]})
    return parsed


def async_event_list(
    *,
    function: Function,
    state: str | None = None,
    environment: str | None = None,
    error_type: str | None = None,
    version: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> QuerySet[AsyncEvent]:
    """A function's events, newest first, filtered (a bad filter answers 400 naming it)."""
    qs = AsyncEvent.objects.filter(function=function).select_related("environment")
    if state:
        states = state.split(",")
        bad = [s for s in states if s not in AsyncState.values]
        if bad:
            raise DomainError(
                f"state: '{bad[0]}' is not one of {', '.join(AsyncState.values)}.",
                fields={"state": [f"One of {', '.join(AsyncState.values)}."]},
            )
        qs = qs.filter(state__in=states)
    if environment:
        qs = qs.filter(environment__name=environment)
    if error_type:
        qs = qs.filter(error_type=error_type)
    if version:
        if not version.isdigit():
            raise DomainError("version: a version number.", fields={"version": ["A version number."]})
        qs = qs.filter(version=int(version))
    start, end = _when("since", since), _when("until", until)
    if start:
        qs = qs.filter(created_at__gte=start)
    if end:
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("-created_at", "-id")


def async_queue_stats(*, function: Function) -> dict[str, object]:
    """Per environment: events queued/running (the depth), the oldest waiting one's age, and
    the dead-letter count (dropped events): one grouped query and one for the oldest."""
    from django.db.models import Count, Min

    rows = (
        AsyncEvent.objects.filter(function=function)
        .values("environment__name", "state")
        .annotate(n=Count("id"), oldest=Min("enqueued_at"))
    )
    out: dict[str, dict[str, object]] = {}
    now = timezone.now()
    for row in rows:
        env = out.setdefault(
            row["environment__name"], {"queued": 0, "running": 0, "succeeded": 0, "dead": 0, "oldest_age_s": None}
        )
        env[row["state"]] = row["n"]
        if row["state"] == AsyncState.QUEUED and row["oldest"] is not None:
            env["oldest_age_s"] = round((now - row["oldest"]).total_seconds(), 3)
    return {"environments": out}
