"""Reads of the metric rollups (apps/monitoring/rollups.py) as columnar series, per-project
summaries, and the running totals /metrics exposes. Callers pass a function or project
already scoped to the user (apps.functions.selectors.function_get, tenancy project_get).

Names (the contract shared with dashboards and alerts): invocations, errors (error + timeout +
crashed), throttles, timeouts, cold_starts, error_rate (errors / invocations, None without
invocations), duration_p50/p90/p99 and duration_avg (ms, requests that ran), init_duration_avg
(ms, cold starts), peak_memory_kb, peak_concurrency. Percentiles are interpolated from the
fixed histogram (histogram.py: within 4.4 % of the exact nearest-rank value)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.core.actors import Actor
from apps.core.errors import DomainError
from apps.functions.models import Function
from apps.monitoring.histogram import BUCKET_COLUMNS, percentile_sql
from apps.monitoring.models import (
    ALL_ENVIRONMENTS,
    ALL_VERSIONS,
    BASE_ROWS,
    MetricHour,
    MetricMinute,
    MetricRollup,
    MetricTotal,
)
from apps.tenancy import permissions
from apps.tenancy.models import Environment, Project

COUNT_NAMES = ("invocations", "errors", "throttles", "timeouts", "cold_starts")
PERCENTILE_NAMES = {"duration_p50": 0.50, "duration_p90": 0.90, "duration_p99": 0.99}
METRIC_NAMES: tuple[str, ...] = (
    *COUNT_NAMES,
    "error_rate",
    "duration_p50",
    "duration_p90",
    "duration_p99",
    "duration_avg",
    "init_duration_avg",
    "peak_memory_kb",
    "peak_concurrency",
)

# What the inner aggregate selects (alias, SQL over the rollup rows). PostgreSQL sums bigints
# as numeric: cast back, so the percentile's rank is integer arithmetic on both databases.
_AGGREGATES = (
    ("invocations", "CAST(SUM(invocations) AS BIGINT)"),
    ("errors", "CAST(SUM(errors) AS BIGINT)"),
    ("throttles", "CAST(SUM(throttles) AS BIGINT)"),
    ("timeouts", "CAST(SUM(timeouts) AS BIGINT)"),
    ("cold_starts", "CAST(SUM(cold_starts) AS BIGINT)"),
    ("n", "CAST(SUM(duration_count) AS BIGINT)"),
    ("dsum", "SUM(duration_sum)"),
    ("dmax", "MAX(duration_max)"),
    ("icount", "CAST(SUM(init_count) AS BIGINT)"),
    ("isum", "SUM(init_sum)"),
    ("mem", "MAX(peak_memory_kb)"),
    ("conc", "MAX(peak_concurrency)"),
)


@dataclass(frozen=True)
class SeriesQuery:
    start: int  # Unix seconds, a multiple of step
    end: int  # exclusive, a multiple of step
    step: int  # seconds: a multiple of 60 (minute rows) or of 3600 (hour rows)
    names: tuple[str, ...]

    @property
    def points(self) -> int:
        return (self.end - self.start) // self.step

    @property
    def timestamps(self) -> list[int]:
        return list(range(self.start, self.end, self.step))


MAX_POINTS = 1500
DEFAULT_RANGE = timedelta(hours=1)
STEP_CHOICES = (60, 300, 900, 3600, 6 * 3600, 86400)


def series_query_parse(
    *, start: datetime | None, end: datetime | None, step: int | None, names: str | None, now: datetime | None = None
) -> SeriesQuery:
    """Check a series request against the rollups' rules and align it to its step; raises
    DomainError (400) naming the rule broken. Without a step, the smallest of STEP_CHOICES
    that keeps to MAX_POINTS (and to hour rows for data past the minute retention)."""
    now = now or timezone.now()
    end = end or now
    start = start or end - DEFAULT_RANGE
    if end <= start:
        raise DomainError("end must be after start.", code="end_before_start", fields={"end": ["must be after start"]})
    retention = timedelta(days=settings.STRATUS_METRICS_RETENTION_DAYS)
    if start < now - retention:
        raise DomainError(
            f"Metrics are kept {retention.days} days: start must be within them.",
            code="range_out_of_retention",
            fields={"start": [f"at most {retention.days} days ago"]},
        )
    wanted = tuple(n.strip() for n in (names or "").split(",") if n.strip()) or METRIC_NAMES
    unknown = [n for n in wanted if n not in METRIC_NAMES]
    if unknown:
        raise DomainError(
            f"Unknown metric name(s): {', '.join(unknown)}. Known: {', '.join(METRIC_NAMES)}.",
            code="unknown_metric",
            fields={"names": [f"unknown: {', '.join(unknown)}"]},
        )
    minutes_kept_since = now - timedelta(days=settings.STRATUS_METRICS_MINUTE_RETENTION_DAYS)
    hourly_only = start < minutes_kept_since
    span = (end - start).total_seconds()
    if step is None:
        step = next(
            (c for c in STEP_CHOICES if span / c <= MAX_POINTS and not (hourly_only and c % 3600)), STEP_CHOICES[-1]
        )
    if step % 60:
        raise DomainError(
            "step must be a multiple of 60 seconds (the rollups are per minute).",
            code="step_not_minute_multiple",
            fields={"step": ["a multiple of 60"]},
        )
    if hourly_only and step % 3600:
        raise DomainError(
            f"Data older than {settings.STRATUS_METRICS_MINUTE_RETENTION_DAYS} days is kept per hour: "
            "step must be a multiple of 3600 for this range.",
            code="step_too_small",
            fields={"step": ["a multiple of 3600 for a range past the minute retention"]},
        )
    lo = int(start.timestamp()) // step * step
    hi = -(-int(end.timestamp()) // step) * step
    if (hi - lo) // step > MAX_POINTS:
        raise DomainError(
            f"{(hi - lo) // step} points asked; at most {MAX_POINTS} per series: use a larger step or a shorter range.",
            code="too_many_points",
            fields={"step": [f"at least {-(-(hi - lo) // MAX_POINTS // 60) * 60} for this range"]},
        )
    return SeriesQuery(start=lo, end=hi, step=step, names=wanted)


def _table(step: int) -> type[MetricRollup]:
    table: type[MetricRollup] = MetricHour if step % 3600 == 0 else MetricMinute
    return table


def _aggregate_rows(
    *,
    table: type[MetricRollup],
    where: str,
    params: list[Any],
    group: Sequence[str],
    percentiles: Iterable[str],
) -> list[dict[str, Any]]:
    """SELECT the aggregates of ``table``'s rows matching ``where`` grouped by the ``group``
    expressions (aliased g0, g1 …), with the asked percentiles computed by the database
    (histogram.percentile_sql over the summed cumulative columns)."""
    wanted = list(percentiles)
    q = connection.ops.quote_name
    groups = [f"{expr} AS g{i}" for i, expr in enumerate(group)]
    inner = [*groups, *(f"{sql} AS {alias}" for alias, sql in _AGGREGATES)]
    if wanted:
        inner += [f"SUM({q(c)}) AS {c}" for c in BUCKET_COLUMNS]
    outer = [f"g{i}" for i in range(len(group))] + [alias for alias, _ in _AGGREGATES]
    outer += [f"{percentile_sql(PERCENTILE_NAMES[name], n='n', maximum='dmax')} AS {name}" for name in wanted]
    sql = (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} "  # noqa: S608 - names from the model
        f"FROM {q(table._meta.db_table)} WHERE {where} GROUP BY {', '.join(group)}) AS agg"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [col[0] for col in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _values(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """One point's named values from an aggregate row."""
    invocations = int(row["invocations"] or 0)
    n = int(row["n"] or 0)
    icount = int(row["icount"] or 0)
    dmax = row["dmax"]
    out: dict[str, Any] = {}
    for name in names:
        if name in COUNT_NAMES:
            out[name] = int(row[name] or 0)
        elif name == "error_rate":
            out[name] = (int(row["errors"] or 0) / invocations) if invocations else None
        elif name in PERCENTILE_NAMES:
            value = row[name]
            # Interpolation never passes the exact maximum of the rows it read.
            out[name] = None if value is None else round(min(float(value), float(dmax)), 3)
        elif name == "duration_avg":
            out[name] = round(float(row["dsum"]) / n, 3) if n else None
        elif name == "init_duration_avg":
            out[name] = round(float(row["isum"]) / icount, 3) if icount else None
        elif name == "peak_memory_kb":
            out[name] = None if row["mem"] is None else int(row["mem"])
        elif name == "peak_concurrency":
            out[name] = None if row["conc"] is None else int(row["conc"])
    return out


def _empty(name: str) -> Any:
    return 0 if name in COUNT_NAMES else None


# The fast path's SQL per name: each value straight from the point's one stored row (the
# percentiles as stored at write time; the ratios need no histogram).
_STORED_SQL = {
    **{name: name for name in COUNT_NAMES},
    "error_rate": "CAST(errors AS DOUBLE PRECISION) / NULLIF(invocations, 0)",
    **{name: name for name in PERCENTILE_NAMES},
    "duration_avg": "duration_sum / NULLIF(duration_count, 0)",
    "init_duration_avg": "init_sum / NULLIF(init_count, 0)",
    "peak_memory_kb": "peak_memory_kb",
    "peak_concurrency": "peak_concurrency",
}
_ROUNDED = ("duration_avg", "init_duration_avg")


def _stored_series(
    *, table: type[MetricRollup], where: str, params: list[Any], query: SeriesQuery, blank: Any
) -> dict[int, dict[str, list[Any]]]:
    """The fast path: the rows of ``table`` matching ``where`` as stored, one per point (per
    version), no GROUP BY and no histogram column read, transposed into columns by version."""
    columns = ["bucket", "version", *(_STORED_SQL[name] for name in query.names)]
    sql = f"SELECT {', '.join(columns)} FROM {connection.ops.quote_name(table._meta.db_table)} WHERE {where}"  # noqa: S608 - names from the model
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    by_version: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_version.setdefault(int(row[1]), []).append(row)
    out: dict[int, dict[str, list[Any]]] = {}
    for version, version_rows in by_version.items():
        series = blank()
        indexes = [(int(row[0]) - query.start) // query.step for row in version_rows]
        for j, name in enumerate(query.names, start=2):
            target = series[name]
            rounded = name in _ROUNDED
            for i, row in zip(indexes, version_rows, strict=True):
                value = row[j]
                target[i] = round(float(value), 3) if rounded and value is not None else value
        out[version] = series
    return out


def metric_series(
    *,
    function: Function,
    environment: Environment | None,
    version: int | None,
    query: SeriesQuery,
    group_by_version: bool = False,
) -> dict[str, Any]:
    """Columnar series of ``function`` over [query.start, query.end): {"start", "end", "step",
    "timestamps": [...], "series": {name: [...]}} (each list one value per timestamp, 0 or
    None where nothing ran), or with ``group_by_version`` "groups": [{"version", "series"}]
    per version that had invocations in the range (canary vs stable during a release).

    Which rows answer (rollups.py keeps, per bucket, a row per version, an "all versions" row
    per environment and an "all environments" row): the one row that is the asked series,
    so nothing is counted twice. At the tables' own step (60 s on minute rows, 3600 s on hour
    rows) that is the fast path: one stored row per point (per version with group_by), read
    by the unique index, percentiles as stored. Other steps (5 min, 6 h …) merge the rows
    of each point in SQL (sums, and percentiles from the summed histograms); so do a version
    asked across every environment and group_by=version without an environment, which sum
    the versions' rows over environments."""
    table = _table(query.step)
    where = "function_id = %s AND bucket >= %s AND bucket < %s"
    params: list[Any] = [function.pk, query.start, query.end]
    across_environments = environment is None and (version is not None or group_by_version)
    if across_environments:
        where += " AND environment_id > %s"  # the versions' own rows of every environment
        params.append(ALL_ENVIRONMENTS)
    else:
        where += " AND environment_id = %s"
        params.append(environment.pk if environment is not None else ALL_ENVIRONMENTS)
    if version is not None:
        where += " AND version = %s"
        params.append(version)
    elif group_by_version:
        where += " AND version > %s"
        params.append(ALL_VERSIONS)
    else:
        where += " AND version = %s"
        params.append(ALL_VERSIONS)
    native = query.step == (3600 if table is MetricHour else 60)
    points = query.points

    def blank() -> dict[str, list[Any]]:
        return {name: [_empty(name)] * points for name in query.names}

    by_version: dict[int, dict[str, list[Any]]]
    if native and not across_environments:
        by_version = _stored_series(table=table, where=where, params=params, query=query, blank=blank)
    else:
        # Integer division on both databases: the point each row falls in.
        rows = _aggregate_rows(
            table=table,
            where=where,
            params=params,
            group=[f"((bucket - {int(query.start)}) / {int(query.step)})", "version"],
            percentiles=[n for n in query.names if n in PERCENTILE_NAMES],
        )
        by_version = {}
        for row in rows:
            target = by_version.setdefault(int(row["g1"]), blank())
            for name, value in _values(row, query.names).items():
                target[name][int(row["g0"])] = value
    result: dict[str, Any] = {
        "start": query.start,
        "end": query.end,
        "step": query.step,
        "timestamps": query.timestamps,
    }
    if group_by_version:
        result["groups"] = [{"version": v, "series": by_version[v]} for v in sorted(by_version)]
    else:
        # One version (the asked one, or the aggregate rows' 0) or none in the range.
        result["series"] = next(iter(by_version.values()), None) or blank()
    return result


SUMMARY_NAMES = ("invocations", "errors", "error_rate", "duration_p99")


def project_metrics_summary(
    *, project: Project, environment: Environment | None, now: datetime | None = None
) -> dict[str, Any]:
    """Per function of ``project``: invocations, errors, error rate and p99 over the last hour
    (minute rows) and the last 24 h (hour rows: the current hour and the 23 before it), and
    hourly invocations and errors for sparklines. Four queries whatever the number of
    functions."""
    now = now or timezone.now()
    epoch = int(now.timestamp())
    this_hour = epoch - epoch % 3600
    windows: dict[str, tuple[type[MetricRollup], int, int]] = {
        "last_hour": (MetricMinute, epoch - epoch % 60 - 59 * 60, epoch + 60),
        "last_24h": (MetricHour, this_hour - 23 * 3600, this_hour + 3600),
    }
    functions = list(Function.objects.filter(project=project).order_by("name").values_list("pk", "name"))
    ids = [pk for pk, _ in functions]
    by_function: dict[int, dict[str, Any]] = {
        pk: {"function_id": pk, "name": name, **{w: dict.fromkeys(SUMMARY_NAMES) for w in windows}}
        for pk, name in functions
    }
    for pk in by_function:
        for w in windows:
            by_function[pk][w].update(invocations=0, errors=0)
    if ids:
        marks = ", ".join(["%s"] * len(ids))
        # The aggregate rows of the environment (or of every environment): one row per bucket.
        env_sql = " AND environment_id = %s AND version = %s"
        env_params = [environment.pk if environment is not None else ALL_ENVIRONMENTS, ALL_VERSIONS]
        for window, (table, lo, hi) in windows.items():
            rows = _aggregate_rows(
                table=table,
                where=f"function_id IN ({marks}) AND bucket >= %s AND bucket < %s{env_sql}",
                params=[*ids, lo, hi, *env_params],
                group=["function_id"],
                percentiles=["duration_p99"],
            )
            for row in rows:
                by_function[int(row["g0"])][window] = _values(row, SUMMARY_NAMES)
        spark = SeriesQuery(
            start=this_hour - 23 * 3600, end=this_hour + 3600, step=3600, names=("invocations", "errors")
        )
        rows = _aggregate_rows(
            table=MetricHour,
            where=f"function_id IN ({marks}) AND bucket >= %s AND bucket < %s{env_sql}",
            params=[*ids, spark.start, spark.end, *env_params],
            group=["function_id", f"((bucket - {spark.start}) / 3600)"],
            percentiles=[],
        )
        sparks = {pk: {"invocations": [0] * spark.points, "errors": [0] * spark.points} for pk in ids}
        for row in rows:
            target = sparks[int(row["g0"])]
            target["invocations"][int(row["g1"])] = int(row["invocations"] or 0)
            target["errors"][int(row["g1"])] = int(row["errors"] or 0)
        for pk, data in sparks.items():
            by_function[pk]["sparkline"] = {"start": spark.start, "step": spark.step, **data}
    return {
        "generated_at": now,
        "environment": environment.name if environment is not None else None,
        "functions": list(by_function.values()),
    }


def visible_function_ids(*, user: Actor) -> list[int]:
    """The functions ``user`` may read (every org they belong to): what /metrics shows them."""
    return list(Function.objects.filter(project__in=permissions.visible_projects(user)).values_list("pk", flat=True))


def metric_totals(*, functions: Iterable[int], active_since: datetime | None = None) -> list[dict[str, Any]]:
    """The running totals (MetricTotal) of ``functions``' series that saw an invocation since
    ``active_since`` (default: the last 24 h), with names for labels: what /metrics exposes."""
    since = active_since or timezone.now() - timedelta(days=1)
    ids = list(functions)
    if not ids:
        return []
    fields = [
        "function_id",
        "function__name",
        "function__project__name",
        "function__project__org__slug",
        "environment__name",
        "version",
        "invocations",
        "errors",
        "throttles",
        "timeouts",
        "crashes",
        "cold_starts",
        "duration_count",
        "duration_sum",
        *BUCKET_COLUMNS,
    ]
    qs = MetricTotal.objects.filter(function_id__in=ids, bucket__gte=int(since.timestamp()))
    return list(qs.order_by("function_id", "environment_id", "version").values(*fields))


def recent_peak_concurrency(
    *, functions: Iterable[int], window_s: int = 300, now: datetime | None = None
) -> dict[tuple[int, str, int], int]:
    """Peak concurrency per (function, environment name, version) over the last ``window_s``
    seconds of minute rows (a gauge for /metrics)."""
    now = now or timezone.now()
    ids = list(functions)
    if not ids:
        return {}
    since = int(now.timestamp()) - window_s
    rows = (
        MetricMinute.objects.filter(BASE_ROWS, function_id__in=ids, bucket__gte=since, peak_concurrency__isnull=False)
        .values_list("function_id", "environment__name", "version", "peak_concurrency")
        .order_by()
    )
    out: dict[tuple[int, str, int], int] = {}
    for fid, env, version, peak in rows:
        key = (fid, env, version)
        out[key] = max(out.get(key, 0), int(peak or 0))
    return out
