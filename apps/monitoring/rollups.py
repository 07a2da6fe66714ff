"""Metric rollups: per-minute, per-hour and running-total counts per (function, environment,
version), built from invocation records.

Rows: per bucket, the (function, environment, version) row, and two aggregates the charts
read: "all versions" (function, environment, version 0) and "all environments" (function,
environment 0, version 0); sentinels, not NULLs, so the unique key and ON CONFLICT hold on
both databases. The running totals (what /metrics exposes) keep the versions' rows only,
so nothing is counted twice. Each minute and hour row stores its p50/p90/p99, recomputed
in the upsert's transaction for only the rows a batch touched (``_percentiles_store``), so
a chart at the table's own step reads one row per point (metric_selectors.metric_series).

- ``rollups_apply``: called by services.records_write with the records it just inserted, in
  its transaction: one upsert statement per table (``INSERT … ON CONFLICT DO UPDATE`` adding
  the counts, keeping the maxima) for the whole batch, whatever its size, since a batch of
  thousands of records folds into a few (series, minute) rows. A record replayed by the sink
  is not inserted again, so it is not counted again.
- ``rollups_rebuild``: recount a time range from the stored records (idempotent: the range's
  rows are replaced, in one transaction). The running totals are not rebuilt: they are
  counters since the first invocation and outlive the records.
- ``rollups_compact``: the periodic retention (apps.monitoring.tasks): minute rows older than
  STRATUS_METRICS_MINUTE_RETENTION_DAYS go (their hours were built alongside them), hour rows
  and idle totals older than STRATUS_METRICS_RETENTION_DAYS go; bounded batches per run.

Peak concurrency is the engine's own count, carried on each record (Invocation.concurrency:
requests in flight in the pool of that (binding, version) when the request was admitted);
the rollups keep its maximum. With several engine hosts serving one version it is the
busiest host's figure, not the sum.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.monitoring.histogram import BUCKET_COLUMNS, EDGES, bucket_index, percentile
from apps.monitoring.models import (
    ALL_ENVIRONMENTS,
    ALL_VERSIONS,
    Invocation,
    MetricHour,
    MetricMinute,
    MetricRollup,
    MetricTotal,
)
from apps.monitoring.records import InvocationRecord

MINUTE = 60
HOUR = 3600
# Rows per DELETE statement, statements per table per compaction run.
COMPACT_BATCH = 5000
COMPACT_MAX_BATCHES = 20
# Records read per round trip when rebuilding.
REBUILD_CHUNK = 5000

_ERRORS = {Invocation.Status.ERROR, Invocation.Status.TIMEOUT, Invocation.Status.CRASHED}
_COUNTS = (
    "invocations",
    "errors",
    "throttles",
    "timeouts",
    "crashes",
    "cold_starts",
    "duration_count",
    "duration_sum",
    "init_count",
    "init_sum",
)
_MAXIMA = ("duration_max", "peak_memory_kb", "peak_concurrency")
_KEY = ("function_id", "environment_id", "version", "bucket")
COLUMNS: tuple[str, ...] = (*_KEY, *_COUNTS, *_MAXIMA, *BUCKET_COLUMNS)

SeriesKey = tuple[int, int, int]  # function, environment, version


def max_query_params() -> int:
    """Parameters one statement may carry. Django assumes SQLite's historic 999; the library
    in use says its own (250,000 since SQLite 3.32), read from the open connection.
    PostgreSQL's wire protocol numbers parameters in 16 bits."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return int(connection.features.max_query_params or 65535)


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


@dataclass
class Counts:
    """One row being accumulated: plain per-bucket counts (the overflow last), cumulated
    when written."""

    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    timeouts: int = 0
    crashes: int = 0
    cold_starts: int = 0
    duration_count: int = 0
    duration_sum: float = 0.0
    init_count: int = 0
    init_sum: float = 0.0
    duration_max: float | None = None
    peak_memory_kb: int | None = None
    peak_concurrency: int | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * (len(EDGES) + 1))

    def add(
        self,
        status: str,
        duration_ms: float,
        cold_start: bool,
        init_duration_ms: float | None,
        peak_rss_kb: int | None,
        concurrency: int | None,
    ) -> None:
        self.invocations += 1
        if status in _ERRORS:
            self.errors += 1
        if status == Invocation.Status.TIMEOUT:
            self.timeouts += 1
        elif status == Invocation.Status.CRASHED:
            self.crashes += 1
        if status == Invocation.Status.THROTTLED:
            self.throttles += 1
        else:
            # Throttled requests never ran: no duration, no histogram entry.
            self.duration_count += 1
            self.duration_sum += duration_ms
            self.duration_max = _max(self.duration_max, duration_ms)
            self.buckets[bucket_index(duration_ms)] += 1
        if cold_start:
            self.cold_starts += 1
            if init_duration_ms is not None:
                self.init_count += 1
                self.init_sum += init_duration_ms
        self.peak_memory_kb = _max(self.peak_memory_kb, peak_rss_kb)
        self.peak_concurrency = _max(self.peak_concurrency, concurrency)

    def row(self, key: SeriesKey, bucket: int) -> list[Any]:
        cumulative: list[int] = []
        total = 0
        for value in self.buckets[: len(EDGES)]:
            total += value
            cumulative.append(total)
        return [
            *key,
            bucket,
            *(getattr(self, name) for name in _COUNTS),
            *(getattr(self, name) for name in _MAXIMA),
            *cumulative,
        ]


@dataclass
class Accumulator:
    """A batch of records folded into rows: per minute, per hour, per series (totals)."""

    minutes: dict[tuple[SeriesKey, int], Counts] = field(default_factory=dict)
    hours: dict[tuple[SeriesKey, int], Counts] = field(default_factory=dict)
    totals: dict[SeriesKey, tuple[int, Counts]] = field(default_factory=dict)
    keep_minutes_from: int | None = None  # minutes older than this are not kept (rebuild)
    with_totals: bool = True

    def add(
        self,
        key: SeriesKey,
        epoch: float,
        status: str,
        duration_ms: float,
        cold_start: bool,
        init_duration_ms: float | None,
        peak_rss_kb: int | None,
        concurrency: int | None,
    ) -> None:
        second = int(epoch)
        minute = second - second % MINUTE
        hour = second - second % HOUR
        facts = (status, float(duration_ms), bool(cold_start), init_duration_ms, peak_rss_kb, concurrency)
        function_id, environment_id, _ = key
        # The row of the series and the two aggregates the charts read (models.ALL_VERSIONS,
        # ALL_ENVIRONMENTS): three rows per bucket instead of one, so that a read is one row
        # per point.
        keys = (key, (function_id, environment_id, ALL_VERSIONS), (function_id, ALL_ENVIRONMENTS, ALL_VERSIONS))
        if self.keep_minutes_from is None or minute >= self.keep_minutes_from:
            for k in keys:
                self.minutes.setdefault((k, minute), Counts()).add(*facts)
        for k in keys:
            self.hours.setdefault((k, hour), Counts()).add(*facts)
        if self.with_totals:
            last, counts = self.totals.get(key) or (minute, Counts())
            counts.add(*facts)
            self.totals[key] = (max(last, minute), counts)

    def write(self) -> None:
        _upsert(MetricMinute, [c.row(k, b) for (k, b), c in self.minutes.items()])
        _upsert(MetricHour, [c.row(k, b) for (k, b), c in self.hours.items()])
        if self.with_totals:
            _upsert(MetricTotal, [c.row(k, b) for k, (b, c) in self.totals.items()], totals=True)


PERCENTILES = (("duration_p50", 0.50), ("duration_p90", 0.90), ("duration_p99", 0.99))


def _upsert(model: type[MetricRollup], rows: Sequence[Sequence[Any]], *, totals: bool = False) -> None:
    """Add ``rows`` to ``model``'s rows of the same key (a new key inserts): one statement per
    as many rows as the parameter limit allows. In the minute and hour tables the touched
    rows' percentiles are then recomputed from their histograms as they stand after the
    upsert (RETURNING gives them; the upsert's row locks, held to the commit, keep a
    concurrent writer from interleaving) and stored with one UPDATE per statement."""
    if not rows:
        return
    q = connection.ops.quote_name
    table = q(model._meta.db_table)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"  # SQLite's MAX(a, b) is scalar
    conflict = _KEY[:3] if totals else _KEY
    sets = [f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}" for c in (*_COUNTS, *BUCKET_COLUMNS)]
    sets += [
        f"{q(c)} = {greatest}(COALESCE({table}.{q(c)}, excluded.{q(c)}), COALESCE(excluded.{q(c)}, {table}.{q(c)}))"
        for c in _MAXIMA
    ]
    if totals:
        sets.append(f"{q('bucket')} = {greatest}({table}.{q('bucket')}, excluded.{q('bucket')})")
    returning = "" if totals else f" RETURNING id, duration_count, duration_max, {', '.join(BUCKET_COLUMNS)}"
    names = ", ".join(q(c) for c in COLUMNS)
    row_sql = f"({', '.join(['%s'] * len(COLUMNS))})"
    per_statement = max(1, min(500, max_query_params() // len(COLUMNS)))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            sql = (
                f"INSERT INTO {table} ({names}) VALUES {', '.join([row_sql] * len(batch))} "  # noqa: S608 - names from the model
                f"ON CONFLICT ({', '.join(q(c) for c in conflict)}) DO UPDATE SET {', '.join(sets)}{returning}"
            )
            cursor.execute(sql, [value for row in batch for value in row])
            if not totals:
                _percentiles_store(cursor, table, cursor.fetchall())


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)  # µs: what the API shows


def _percentiles_store(cursor: Any, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """Store the percentiles of ``rows`` (id, duration_count, duration_max, cumulative
    columns…): one UPDATE … FROM (VALUES …) keyed by id, on both databases (SQLite ≥ 3.33).
    The CASTs type the VALUES for PostgreSQL when a column holds only NULLs."""
    if not rows:
        return
    values: list[Any] = []
    for row in rows:
        pk, n, dmax, cumulative = row[0], int(row[1]), row[2], row[3:]
        values.append(pk)
        values.extend(_rounded(percentile(cumulative, n, p, dmax)) for _, p in PERCENTILES)
    row_sql = "(CAST(%s AS BIGINT), " + ", ".join(["CAST(%s AS DOUBLE PRECISION)"] * len(PERCENTILES)) + ")"
    sets = ", ".join(f"{name} = v.column{i + 2}" for i, (name, _) in enumerate(PERCENTILES))
    cursor.execute(
        f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([row_sql] * len(rows))}) AS v "  # noqa: S608 - names from the model
        f"WHERE {table}.id = v.column1",
        values,
    )


def rollups_apply(*, records: Iterable[InvocationRecord]) -> int:
    """Count newly stored invocation records into the rollups (call inside the transaction
    that inserted them). Draft runs are not counted. Returns the records counted."""
    acc = Accumulator()
    counted = 0
    for r in records:
        if r.trigger == Invocation.Trigger.DRAFT:
            continue
        acc.add(
            (r.function_id, r.environment_id, r.version),
            r.started_at.timestamp(),
            r.status,
            r.duration_ms,
            r.cold_start,
            r.init_duration_ms,
            r.peak_rss_kb,
            r.concurrency,
        )
        counted += 1
    acc.write()
    return counted


@dataclass
class RebuildResult:
    start: datetime
    end: datetime
    records: int
    minute_rows: int
    hour_rows: int


def rollups_rebuild(
    *, start: datetime, end: datetime, function_ids: Iterable[int] | None = None, now: datetime | None = None
) -> RebuildResult:
    """Recount the minute and hour rollups of [start, end) from the stored invocation records,
    replacing what the range held (one transaction: readers see the old rows or the new).
    The range widens to whole hours. Running the same rebuild twice gives the same rows;
    minutes older than the minute retention are not rebuilt. For records pruned already
    (older than STRATUS_INVOCATION_RETENTION_DAYS) a rebuild would empty the range: callers
    keep to the records' retention."""
    now = now or timezone.now()
    lo = int(start.timestamp()) // HOUR * HOUR
    hi = -(-int(end.timestamp()) // HOUR) * HOUR
    keep_minutes_from = int((now - timedelta(days=settings.STRATUS_METRICS_MINUTE_RETENTION_DAYS)).timestamp())
    acc = Accumulator(keep_minutes_from=keep_minutes_from, with_totals=False)
    begin, finish = datetime.fromtimestamp(lo, tz=UTC), datetime.fromtimestamp(hi, tz=UTC)
    qs = Invocation.objects.filter(started_at__gte=begin, started_at__lt=finish).exclude(
        trigger=Invocation.Trigger.DRAFT
    )
    ids = sorted(set(function_ids)) if function_ids is not None else None
    if ids is not None:
        qs = qs.filter(function_id__in=ids)
    fields = (
        "function_id",
        "environment_id",
        "version",
        "started_at",
        "status",
        "duration_ms",
        "cold_start",
        "init_duration_ms",
        "peak_rss_kb",
        "concurrency",
    )
    records = 0
    with transaction.atomic():
        for row in qs.order_by().values_list(*fields).iterator(chunk_size=REBUILD_CHUNK):
            acc.add((row[0], row[1], row[2]), row[3].timestamp(), *row[4:])
            records += 1
        for model in (MetricMinute, MetricHour):
            old = model.objects.filter(bucket__gte=lo, bucket__lt=hi)
            if ids is not None:
                old = old.filter(function_id__in=ids)
            old.delete()
        acc.write()
    return RebuildResult(
        start=begin, end=finish, records=records, minute_rows=len(acc.minutes), hour_rows=len(acc.hours)
    )


@dataclass
class CompactResult:
    minutes_deleted: int = 0
    hours_deleted: int = 0
    totals_deleted: int = 0


def _delete_older(model: type[MetricRollup], cutoff: int) -> int:
    deleted = 0
    for _ in range(COMPACT_MAX_BATCHES):
        batch = model._default_manager.filter(bucket__lt=cutoff).order_by("bucket").values("pk")[:COMPACT_BATCH]
        count, _ = model._default_manager.filter(pk__in=batch).delete()
        deleted += count
        if count < COMPACT_BATCH:
            break
    return deleted


def rollups_compact(*, now: datetime | None = None) -> CompactResult:
    """Retention of the rollups, bounded work per call (COMPACT_MAX_BATCHES deletes of
    COMPACT_BATCH rows per table): minute rows past the minute retention (the hour rows
    counted the same records as they came, so nothing is recomputed: a late record, replayed
    from a journal after the minutes went, still lands in its hour), hour rows and totals
    idle past the retention."""
    now = now or timezone.now()
    minute_cutoff = int((now - timedelta(days=settings.STRATUS_METRICS_MINUTE_RETENTION_DAYS)).timestamp())
    cutoff = int((now - timedelta(days=settings.STRATUS_METRICS_RETENTION_DAYS)).timestamp())
    return CompactResult(
        minutes_deleted=_delete_older(MetricMinute, minute_cutoff),
        hours_deleted=_delete_older(MetricHour, cutoff),
        totals_deleted=_delete_older(MetricTotal, cutoff),
    )
