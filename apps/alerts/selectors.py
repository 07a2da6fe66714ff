"""Reads for alerts: the metric a rule watches, rules, history, silences, deliveries, and the
console's firing banner. Callers pass objects already scoped to the user (a function from
apps.functions.selectors.function_get, a project from project_get), or use the *_get
selectors here, which scope by the projects the user may see.

``metric_reading`` computes the shared metric names (the contract with the metrics rollups)
straight from the Invocation records over a sliding window. It is the one place alert
evaluation reads figures, so it can later read the per-minute rollups instead (a window of
whole minutes from the rollup table plus the current partial minute from the records)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet
from django.utils import timezone

from apps.alerts.models import AlertEvent, AlertRule, AlertState, Metric, Notification, Silence
from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.functions.models import Function
from apps.monitoring.models import Invocation
from apps.tenancy import permissions
from apps.tenancy.models import Environment, Project

PERCENTILES = {Metric.DURATION_P50: 0.50, Metric.DURATION_P90: 0.90, Metric.DURATION_P99: 0.99}
# peak_concurrency is a sweep over the window's (start, end) pairs in Python; past this many
# records the reading is taken over the newest ones only (the rollups will answer it exactly).
CONCURRENCY_MAX_ROWS = 50_000


@dataclass(frozen=True)
class Reading:
    """A metric over a window: its value (None when it has none, e.g. error_rate with no
    invocations) and how many invocations the window holds (for min_invocations)."""

    value: float | None
    invocations: int


def _window(function_id: int, environment_id: int, window_s: int, now: datetime) -> QuerySet[Invocation]:
    since = now - timedelta(seconds=window_s)
    return Invocation.objects.filter(
        function_id=function_id, environment_id=environment_id, started_at__gt=since, started_at__lte=now
    ).exclude(trigger=Invocation.Trigger.DRAFT)


def metric_reading(*, function_id: int, environment_id: int, metric: str, window_s: int, now: datetime) -> Reading:
    """``metric`` of a function in an environment over ``(now - window_s, now]``.

    One aggregate query answers the counts, averages and peaks; a percentile adds one
    ORDER BY … OFFSET query (nearest rank, as apps.monitoring.selectors.invocation_summary);
    peak_concurrency reads the window's start and end times."""
    qs = _window(function_id, environment_id, window_s, now)
    S = Invocation.Status
    ran = ~Q(status=S.THROTTLED)  # throttled requests never ran: no duration, no memory
    agg = qs.aggregate(
        invocations=Count("id"),
        errors=Count("id", filter=Q(status__in=[S.ERROR, S.TIMEOUT, S.CRASHED])),
        throttles=Count("id", filter=Q(status=S.THROTTLED)),
        timeouts=Count("id", filter=Q(status=S.TIMEOUT)),
        cold_starts=Count("id", filter=Q(cold_start=True)),
        duration_avg=Avg("duration_ms", filter=ran),
        init_duration_avg=Avg("init_duration_ms", filter=Q(cold_start=True)),
        peak_memory_kb=Max("peak_rss_kb"),
    )
    n = int(agg["invocations"])
    value: float | None
    if metric in (Metric.INVOCATIONS, Metric.ERRORS, Metric.THROTTLES, Metric.TIMEOUTS, Metric.COLD_STARTS):
        value = float(agg[metric])
    elif metric == Metric.ERROR_RATE:
        value = agg["errors"] / n if n else None
    elif metric in (Metric.DURATION_AVG, Metric.INIT_DURATION_AVG, Metric.PEAK_MEMORY_KB):
        value = None if agg[metric] is None else float(agg[metric])
    elif metric in PERCENTILES:
        count = n - int(agg["throttles"])
        value = None
        if count:
            rank = max(1, math.ceil(PERCENTILES[metric] * count))  # type: ignore[index]
            found = list(qs.filter(ran).order_by("duration_ms").values_list("duration_ms", flat=True)[rank - 1 : rank])
            value = found[0] if found else None
    elif metric == Metric.PEAK_CONCURRENCY:
        value = float(_peak_concurrency(qs.filter(ran))) if n else None
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return Reading(value=value, invocations=n)


def metric_value(*, function_id: int, environment_id: int, metric: str, window_s: int, now: datetime) -> float | None:
    return metric_reading(
        function_id=function_id, environment_id=environment_id, metric=metric, window_s=window_s, now=now
    ).value


def _peak_concurrency(qs: QuerySet[Invocation]) -> int:
    """Most requests in flight at once: a sweep over starts (+1) and ends (-1); an end at the
    same instant as a start counts first (back-to-back requests do not overlap)."""
    rows = list(qs.order_by("-started_at").values_list("started_at", "duration_ms")[:CONCURRENCY_MAX_ROWS])
    edges: list[tuple[datetime, int]] = []
    for started, duration_ms in rows:
        edges.append((started, 1))
        edges.append((started + timedelta(milliseconds=duration_ms), -1))
    edges.sort()
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


# --- rules, history, silences, deliveries ------------------------------------------------------

RULE_RELATED = ("function__project__org", "environment")


def alert_rule_list(*, function: Function | None = None, project: Project | None = None) -> QuerySet[AlertRule]:
    qs = AlertRule.objects.select_related(*RULE_RELATED)
    if function is not None:
        qs = qs.filter(function=function)
    if project is not None:
        qs = qs.filter(function__project=project)
    return qs.order_by("function__name", "environment__name", "name")


def alert_rule_get(*, user: Actor, alert_rule_id: int | str) -> AlertRule:
    """A rule of a project the user may see; 404 otherwise (as for a rule that does not exist)."""
    try:
        pk = int(alert_rule_id)
    except (TypeError, ValueError):
        raise NotFound("Alert rule not found.")
    rule = (
        AlertRule.objects.filter(pk=pk, function__project__in=permissions.visible_projects(user))
        .select_related(*RULE_RELATED)
        .first()
    )
    if rule is None:
        raise NotFound("Alert rule not found.")
    return rule


def alert_event_list(*, rule: AlertRule | None = None, project: Project | None = None) -> QuerySet[AlertEvent]:
    qs = AlertEvent.objects.select_related("rule__function", "rule__environment")
    if rule is not None:
        qs = qs.filter(rule=rule)
    if project is not None:
        qs = qs.filter(rule__function__project=project)
    return qs.order_by("-at", "-id")


def notification_list(*, rule: AlertRule) -> QuerySet[Notification]:
    """A rule's notifications, newest first, with their delivery attempts (two queries a page)."""
    return (
        Notification.objects.filter(event__rule=rule)
        .select_related("event")
        .prefetch_related("delivery_attempts")
        .order_by("-created_at", "-id")
    )


def silence_list(*, function: Function | None = None, project: Project | None = None) -> QuerySet[Silence]:
    qs = Silence.objects.select_related("function", "environment", "rule", "created_by")
    if function is not None:
        qs = qs.filter(function=function)
    if project is not None:
        qs = qs.filter(function__project=project)
    return qs.order_by("-ends_at", "-id")


def silence_get(*, user: Actor, silence_id: int | str) -> Silence:
    try:
        pk = int(silence_id)
    except (TypeError, ValueError):
        raise NotFound("Silence not found.")
    silence = (
        Silence.objects.filter(pk=pk, function__project__in=permissions.visible_projects(user))
        .select_related("function__project__org", "environment", "rule")
        .first()
    )
    if silence is None:
        raise NotFound("Silence not found.")
    return silence


def silences_covering(*, rule: AlertRule, now: datetime) -> QuerySet[Silence]:
    """Silences in force for ``rule`` at ``now``: its own, or its function's (in its
    environment or in all)."""
    return Silence.objects.filter(function_id=rule.function_id, starts_at__lte=now, ends_at__gt=now).filter(
        Q(rule=rule)
        | Q(rule__isnull=True, environment__isnull=True)
        | Q(rule__isnull=True, environment=rule.environment_id)
    )


def silenced_until(*, rules: list[AlertRule], now: datetime | None = None) -> dict[int, datetime]:
    """For a page of rules: rule id → when the longest silence covering it ends (one query)."""
    now = now or timezone.now()
    if not rules:
        return {}
    silences = list(
        Silence.objects.filter(
            function_id__in={r.function_id for r in rules}, starts_at__lte=now, ends_at__gt=now
        ).values("function_id", "environment_id", "rule_id", "ends_at")
    )
    out: dict[int, datetime] = {}
    for rule in rules:
        for s in silences:
            covers = s["function_id"] == rule.function_id and (
                s["rule_id"] == rule.pk or (s["rule_id"] is None and s["environment_id"] in (None, rule.environment_id))
            )
            if covers and (rule.pk not in out or s["ends_at"] > out[rule.pk]):
                out[rule.pk] = s["ends_at"]
    return out


def firing_for_banner(*, project: Project, function: Function | None = None, limit: int = 3) -> list[AlertRule]:
    """The firing rules the console's banner names: of the function when a function page is
    shown, else of the project. One indexed query (state, function), at most ``limit`` rows
    (the banner says how many more). The caller already sees ``project``."""
    qs = AlertRule.objects.filter(state=AlertState.FIRING, enabled=True)
    qs = qs.filter(function=function) if function is not None else qs.filter(function__project=project)
    return list(qs.select_related("function", "environment").order_by("-state_since", "-id")[: limit + 1])


def environment_of(*, function: Function, environment_id: int) -> Environment | None:
    return Environment.objects.filter(project_id=function.project_id, pk=environment_id).first()


def rows_with_silences(rules: list[AlertRule]) -> list[dict[str, Any]]:
    until = silenced_until(rules=rules)
    return [{"rule": r, "silenced_until": until.get(r.pk)} for r in rules]
