"""Reads of logs and invocations. Callers pass a function already scoped to the user
(apps.functions.selectors.function_get), so every read here stays inside it."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.functions.models import Function
from apps.monitoring.models import Invocation, LogLine
from apps.tenancy.models import Environment

PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def log_line_list(*, function: Function, environment: Environment | None, filters: dict[str, Any]) -> QuerySet[LogLine]:
    """A function's lines, newest first, narrowed by the API's filters."""
    qs = LogLine.objects.filter(function=function)
    if environment is not None:
        qs = qs.filter(environment=environment)
    for key in ("request_id", "stream", "level", "version"):
        if filters.get(key) is not None:
            qs = qs.filter(**{key: filters[key]})
    if filters.get("q"):
        qs = qs.filter(text__icontains=filters["q"])
    if filters.get("since"):
        qs = qs.filter(ts__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(ts__lt=filters["until"])
    return qs.select_related("environment").order_by("-ts", "-id")


def invocation_list(
    *, function: Function, environment: Environment | None, filters: dict[str, Any]
) -> QuerySet[Invocation]:
    """A function's invocations, newest first, narrowed by the API's filters."""
    qs = Invocation.objects.filter(function=function)
    if environment is not None:
        qs = qs.filter(environment=environment)
    for key in ("request_id", "status", "version", "cold_start"):
        if filters.get(key) is not None:
            qs = qs.filter(**{key: filters[key]})
    if filters.get("since"):
        qs = qs.filter(started_at__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(started_at__lt=filters["until"])
    return qs.select_related("environment").order_by("-started_at", "-id")


def invocation_summary(
    *, function: Function, environment: Environment | None, window_s: int, now: datetime | None = None
) -> dict[str, Any]:
    """Counts and duration percentiles of a function's invocations started in the last
    ``window_s`` seconds. Percentiles are nearest-rank over the requests that ran (throttled
    ones never did): the value at rank ceil(p·n), read with ORDER BY … OFFSET, so the
    database sorts and only one row per percentile comes back (same SQL on SQLite and
    PostgreSQL). ``errors`` counts error, timeout and crashed; ``throttles`` and
    ``timeouts`` are also given on their own. Draft runs (the WebIDE's Run) are left out:
    they are how code is tried, not how the function behaves."""
    now = now or timezone.now()
    since = now - timedelta(seconds=window_s)
    qs = Invocation.objects.filter(function=function, started_at__gte=since, started_at__lte=now).exclude(
        trigger=Invocation.Trigger.DRAFT
    )
    if environment is not None:
        qs = qs.filter(environment=environment)
    S = Invocation.Status
    counts = qs.aggregate(
        count=Count("id"),
        errors=Count("id", filter=Q(status__in=[S.ERROR, S.TIMEOUT, S.CRASHED])),
        throttles=Count("id", filter=Q(status=S.THROTTLED)),
        timeouts=Count("id", filter=Q(status=S.TIMEOUT)),
        cold_starts=Count("id", filter=Q(cold_start=True)),
    )
    ran = counts["count"] - counts["throttles"]
    durations = qs.exclude(status=S.THROTTLED).order_by("duration_ms").values_list("duration_ms", flat=True)
    summary: dict[str, Any] = {"window_s": window_s, "since": since, "until": now, **counts}
    for name, p in PERCENTILES:
        rank = max(1, math.ceil(p * ran))
        # A slice, not an index: rows pruned since the count leave None rather than raising.
        value = list(durations[rank - 1 : rank]) if ran else []
        summary[f"{name}_duration_ms"] = value[0] if value else None
    return summary
