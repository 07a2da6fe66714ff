"""Metric rollups (apps/monitoring/rollups.py): counts and percentiles against hand-computed
values, incremental vs rebuilt, replays, drafts, compaction and retention."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from apps.monitoring import histogram, rollups, services
from apps.monitoring.histogram import BUCKET_COLUMNS, EDGES, MAX_RELATIVE_ERROR
from apps.monitoring.metric_selectors import SeriesQuery, metric_series
from apps.monitoring.models import BASE_ROWS, MetricHour, MetricMinute, MetricTotal
from apps.monitoring.records import InvocationRecord
from tests.monitoring.conftest import invocation_record

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)


def record(fn, env, at, duration_ms, **kw) -> InvocationRecord:
    concurrency = kw.pop("concurrency", None)
    base = invocation_record(fn, env, started_at=at, duration_ms=duration_ms, **kw)
    return InvocationRecord(**{**vars(base), "concurrency": concurrency})


def exact(durations: list[float], p: float) -> float:
    ordered = sorted(durations)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def series_at(fn, start: datetime, minutes: int = 1, step: int = 60, **kw):
    lo = int(start.timestamp()) // step * step
    query = SeriesQuery(start=lo, end=lo + minutes * 60, step=step, names=kw.pop("names", tuple()))
    return metric_series(function=fn, environment=None, version=None, query=query, **kw)


ALL = (
    "invocations",
    "errors",
    "throttles",
    "timeouts",
    "cold_starts",
    "error_rate",
    "duration_p50",
    "duration_p90",
    "duration_p99",
    "duration_avg",
    "init_duration_avg",
    "peak_memory_kb",
    "peak_concurrency",
)


def test_one_minute_counts_and_percentiles_match_hand_computed_values(fn, dev):
    # Given 100 requests in one minute lasting 1..100 ms, of which: #7 timed out, #8 crashed,
    # #9 errored, #10 was throttled (it never ran: its 0 ms are no duration), #1-#3 were cold
    # (init 80 ms), peak memory and concurrency vary
    at = NOW
    records = []
    for i in range(1, 101):
        status = {7: "timeout", 8: "crashed", 9: "error", 10: "throttled"}.get(i, "ok")
        records.append(
            record(
                fn,
                dev,
                at + timedelta(seconds=i * 0.5),
                0.0 if i == 10 else float(i),
                request_id=f"r{i}",
                status=status,
                cold_start=i <= 3,
                concurrency=i % 7,
            )
        )
    services.records_write(logs=[], invocations=records)

    # When the minute is read through the series selector
    body = series_at(fn, at, names=ALL)
    s = {name: values[0] for name, values in body["series"].items()}

    # Then the counts are the hand counts
    assert s["invocations"] == 100
    assert s["errors"] == 3
    assert s["throttles"] == 1
    assert s["timeouts"] == 1
    assert s["cold_starts"] == 3
    assert s["error_rate"] == pytest.approx(0.03)
    ran = [float(i) for i in range(1, 101) if i != 10]
    assert s["duration_avg"] == pytest.approx(sum(ran) / 99, abs=1e-3)
    assert s["init_duration_avg"] == 80.0
    assert s["peak_memory_kb"] == 20480
    assert s["peak_concurrency"] == 6
    # and the percentiles are within the histogram's bound of the exact nearest-rank values
    # (99 ran: ranks 50, 90, 99 -> 51, 91 and 100 ms)
    for name, p, want in (("duration_p50", 0.5, 51.0), ("duration_p90", 0.9, 91.0), ("duration_p99", 0.99, 100.0)):
        assert exact(ran, p) == want
        assert abs(s[name] - want) / want < MAX_RELATIVE_ERROR, (name, s[name])
    # p99 is the largest value here: interpolation is clamped to the exact maximum
    assert s["duration_p99"] == 100.0


def test_interpolated_percentile_by_hand(fn, dev):
    # Given 4 requests of 10, 10, 10 and 12 ms: 10 ms falls in [2^(53/16), 2^(54/16))
    for i, d in enumerate((10.0, 10.0, 10.0, 12.0)):
        services.records_write(logs=[], invocations=[record(fn, dev, NOW, d, request_id=f"r{i}")])
    lo, hi = EDGES[53], EDGES[54]
    assert lo <= 10.0 < hi

    body = series_at(fn, NOW, names=("duration_p50",))

    # Then p50 (rank 2 of 4, 3 in that bucket) is lo + (hi - lo) * 2/3
    assert body["series"]["duration_p50"][0] == pytest.approx(lo + (hi - lo) * 2 / 3, abs=1e-3)


def test_sql_and_python_percentiles_agree_on_a_lognormal_sample_within_the_bound(fn, dev):
    rng = random.Random(16)
    durations = [round(rng.lognormvariate(4.0, 1.2), 3) for _ in range(3000)]
    services.records_write(
        logs=[], invocations=[record(fn, dev, NOW, d, request_id=f"r{i}") for i, d in enumerate(durations)]
    )
    body = series_at(fn, NOW, names=("duration_p50", "duration_p90", "duration_p99"))
    row = MetricMinute.objects.filter(BASE_ROWS).get(function=fn)
    cumulative = [getattr(row, c) for c in BUCKET_COLUMNS]
    for name, p in (("duration_p50", 0.5), ("duration_p90", 0.9), ("duration_p99", 0.99)):
        sql_value = body["series"][name][0]
        py_value = histogram.percentile(cumulative, row.duration_count, p, row.duration_max)
        assert sql_value == pytest.approx(py_value, abs=1e-3)
        assert abs(sql_value - exact(durations, p)) / exact(durations, p) < MAX_RELATIVE_ERROR


def test_hour_rows_and_totals_count_the_same_records(fn, dev, prod):
    start = NOW.replace(minute=0) if NOW.minute < 50 else NOW - timedelta(minutes=15)
    recs = [
        record(fn, dev if i % 2 else prod, start + timedelta(minutes=i % 5), 5.0 + i, request_id=f"r{i}")
        for i in range(40)
    ]
    services.records_write(logs=[], invocations=recs)
    minutes = MetricMinute.objects.filter(BASE_ROWS, function=fn)
    assert sum(m.invocations for m in minutes) == 40
    assert sum(h.invocations for h in MetricHour.objects.filter(BASE_ROWS, function=fn)) == 40
    assert sum(t.invocations for t in MetricTotal.objects.filter(function=fn)) == 40
    assert MetricTotal.objects.filter(function=fn).count() == 2  # one per environment


def test_a_replayed_batch_is_not_counted_twice(fn, dev):
    recs = [record(fn, dev, NOW, 3.0, request_id=f"r{i}") for i in range(5)]
    keys = [(42, i + 1) for i in range(5)]
    services.records_write(logs=[], invocations=recs, invocation_keys=keys)
    result = services.records_write(logs=[], invocations=recs, invocation_keys=keys)
    assert result.duplicates == 5
    assert MetricMinute.objects.filter(BASE_ROWS).get(function=fn).invocations == 5
    assert MetricTotal.objects.get(function=fn).invocations == 5


def test_draft_runs_are_not_counted(fn, dev):
    services.records_write(logs=[], invocations=[record(fn, dev, NOW, 3.0, trigger="draft", version=0)])
    assert not MetricMinute.objects.exists()
    assert not MetricTotal.objects.exists()


def rows(model) -> list[tuple]:
    fields = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
    out = []
    for values in model.objects.order_by("function_id", "environment_id", "version", "bucket").values_list(*fields):
        out.append(tuple(round(v, 6) if isinstance(v, float) else v for v in values))
    return out


def test_incremental_and_rebuilt_rollups_agree_and_rebuild_is_idempotent(fn, dev, prod):
    # Given records over three hours written in several batches, as the sink does
    rng = random.Random(3)
    start = NOW - timedelta(hours=3)
    recs = [
        record(
            fn,
            dev if i % 3 else prod,
            start + timedelta(seconds=rng.uniform(0, 3 * 3600)),
            rng.lognormvariate(3, 1),
            request_id=f"r{i}",
            status=rng.choice(["ok", "ok", "ok", "error", "throttled", "timeout"]),
            cold_start=rng.random() < 0.1,
            version=1 + i % 2,
            concurrency=rng.randint(1, 9),
        )
        for i in range(600)
    ]
    for chunk in range(0, 600, 97):
        services.records_write(logs=[], invocations=recs[chunk : chunk + 97])
    incremental = rows(MetricMinute), rows(MetricHour)
    assert sum(r.invocations for r in MetricMinute.objects.filter(BASE_ROWS)) == 600

    # When the range is rebuilt from the records, twice
    first = rollups.rollups_rebuild(start=start - timedelta(minutes=1), end=NOW + timedelta(minutes=1))
    rebuilt = rows(MetricMinute), rows(MetricHour)
    rollups.rollups_rebuild(start=start - timedelta(minutes=1), end=NOW + timedelta(minutes=1))

    # Then the rows are the same as the incremental ones, and the same again
    assert first.records == 600
    assert rebuilt == incremental
    assert (rows(MetricMinute), rows(MetricHour)) == incremental


def test_rebuild_repairs_a_damaged_range(fn, dev):
    services.records_write(logs=[], invocations=[record(fn, dev, NOW, 3.0, request_id=f"r{i}") for i in range(4)])
    MetricMinute.objects.update(invocations=999, c000=7)
    MetricHour.objects.all().delete()
    rollups.rollups_rebuild(start=NOW, end=NOW + timedelta(minutes=1))
    assert [m.invocations for m in MetricMinute.objects.all()] == [4, 4, 4]  # the row and its two aggregates
    assert [m.c000 for m in MetricMinute.objects.all()] == [0, 0, 0]
    assert MetricHour.objects.filter(BASE_ROWS).get().invocations == 4


def test_compaction_keeps_hours_past_seven_days_and_nothing_past_ninety(fn, dev):
    # Given records 2 days, 8 days and 91 days old
    now = NOW
    for age, rid in ((timedelta(days=2), "a"), (timedelta(days=8), "b"), (timedelta(days=91), "c")):
        services.records_write(logs=[], invocations=[record(fn, dev, now - age, 4.0, request_id=rid)])
    assert MetricMinute.objects.filter(BASE_ROWS).count() == 3

    # When compaction runs
    result = rollups.rollups_compact(now=now)

    # Then minutes older than 7 days are gone, their hours stay; everything older than 90 days
    # is gone (the totals stay: they saw an invocation 2 days ago)
    assert result.minutes_deleted == 2 * 3  # each with its two aggregate rows
    assert result.hours_deleted == 1 * 3
    day = 86400
    assert [m.bucket // day for m in MetricMinute.objects.filter(BASE_ROWS)] == [
        int((now - timedelta(days=2)).timestamp()) // day
    ]
    assert sorted(h.bucket for h in MetricHour.objects.filter(BASE_ROWS)) == sorted(
        int((now - a).timestamp()) // 3600 * 3600 for a in (timedelta(days=8), timedelta(days=2))
    )
    assert MetricTotal.objects.get().invocations == 3
    # and the 8-day-old hour still answers a 7-day+ chart at a 1-hour step
    lo = int((now - timedelta(days=8, hours=1)).timestamp()) // 3600 * 3600
    body = metric_series(
        function=fn,
        environment=None,
        version=None,
        query=SeriesQuery(start=lo, end=lo + 3 * 3600, step=3600, names=("invocations",)),
    )
    assert sum(body["series"]["invocations"]) == 1


def test_compaction_does_bounded_work_per_run(fn, dev, monkeypatch):
    old = NOW - timedelta(days=10)
    services.records_write(
        logs=[], invocations=[record(fn, dev, old + timedelta(minutes=i), 4.0, request_id=f"r{i}") for i in range(7)]
    )
    monkeypatch.setattr(rollups, "COMPACT_BATCH", 6)
    monkeypatch.setattr(rollups, "COMPACT_MAX_BATCHES", 2)
    # 7 minutes, each a row and two aggregate rows: 21 rows, at most 12 a run
    assert rollups.rollups_compact(now=NOW).minutes_deleted == 12
    assert rollups.rollups_compact(now=NOW).minutes_deleted == 9
    assert not MetricMinute.objects.exists()


@override_settings(STRATUS_METRICS_MINUTE_RETENTION_DAYS=1)
def test_rebuild_does_not_bring_back_minutes_past_their_retention(fn, dev):
    at = NOW - timedelta(days=2)
    services.records_write(logs=[], invocations=[record(fn, dev, at, 4.0)])
    rollups.rollups_compact(now=NOW)
    rollups.rollups_rebuild(start=at, end=at + timedelta(minutes=1), now=NOW)
    assert not MetricMinute.objects.exists()
    assert MetricHour.objects.filter(BASE_ROWS).get().invocations == 1


def test_the_periodic_task_is_scheduled_and_compacts(fn, dev):
    from apps.monitoring.tasks import rollups_compact_task
    from console.celery import app

    schedule = app.conf.beat_schedule["monitoring-rollups-compact"]
    assert schedule["task"] == "apps.monitoring.tasks.rollups_compact_task"
    services.records_write(logs=[], invocations=[record(fn, dev, datetime.now(UTC) - timedelta(days=8), 4.0)])
    assert rollups_compact_task() == 3  # the minute row and its two aggregates
    assert not MetricMinute.objects.exists()
    assert MetricHour.objects.count() == 3


def test_aggregate_rows_sum_the_versions_and_environments_and_store_their_percentiles(fn, dev, prod):
    # Given two batches into the same minute: versions 1 and 2 in dev, version 1 in prod
    rng = random.Random(7)
    durations = [round(rng.lognormvariate(3.0, 1.0), 3) for _ in range(300)]
    recs = [
        record(fn, prod if i % 3 == 0 else dev, NOW, d, request_id=f"r{i}", version=1 + (i % 2))
        for i, d in enumerate(durations)
    ]
    services.records_write(logs=[], invocations=recs[:120])
    services.records_write(logs=[], invocations=recs[120:])

    rows_by_key = {(m.environment_id, m.version): m for m in MetricMinute.objects.filter(function=fn)}
    # Then besides the three series there is one "all versions" row per environment and one
    # "all environments" row
    assert sorted(rows_by_key) == sorted(
        [(dev.pk, 1), (dev.pk, 2), (prod.pk, 1), (prod.pk, 2), (dev.pk, 0), (prod.pk, 0), (0, 0)]
    )
    everything = rows_by_key[(0, 0)]
    assert everything.invocations == 300
    assert (
        rows_by_key[(dev.pk, 0)].invocations
        == rows_by_key[(dev.pk, 1)].invocations + rows_by_key[(dev.pk, 2)].invocations
    )
    assert [getattr(everything, c) for c in BUCKET_COLUMNS] == [
        sum(getattr(m, c) for k, m in rows_by_key.items() if k[0] and k[1]) for c in BUCKET_COLUMNS
    ]
    # and every row's stored percentiles are those of its histogram after both batches
    for m in rows_by_key.values():
        cumulative = [getattr(m, c) for c in BUCKET_COLUMNS]
        for name, p in (("duration_p50", 0.5), ("duration_p90", 0.9), ("duration_p99", 0.99)):
            expected = histogram.percentile(cumulative, m.duration_count, p, m.duration_max)
            assert getattr(m, name) == pytest.approx(expected, abs=5e-4)  # stored to the µs
    # within the histogram's bound of the exact values of all 300
    for name, p in (("duration_p50", 0.5), ("duration_p99", 0.99)):
        assert abs(getattr(everything, name) - exact(durations, p)) / exact(durations, p) < MAX_RELATIVE_ERROR


def test_native_steps_read_stored_rows_and_other_steps_merge_them_alike(fn, dev, prod):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rng = random.Random(11)
    start = NOW - timedelta(minutes=30)
    recs = [
        record(
            fn,
            dev if i % 2 else prod,
            start + timedelta(seconds=rng.uniform(0, 30 * 60)),
            rng.lognormvariate(3, 1),
            request_id=f"r{i}",
            version=1 + i % 3 // 2,
            status=rng.choice(["ok", "ok", "error", "throttled"]),
        )
        for i in range(900)
    ]
    services.records_write(logs=[], invocations=recs)
    lo = int(start.timestamp()) // 300 * 300
    names = ("invocations", "errors", "throttles", "duration_p50", "duration_p99", "duration_avg")

    def read(step: int, **kw):
        query = SeriesQuery(start=lo, end=lo + 2400, step=step, names=names)
        with CaptureQueriesContext(connection) as ctx:
            body = metric_series(function=fn, query=query, **{"environment": None, "version": None, **kw})
        return body, ctx.captured_queries[-1]["sql"]

    # At the minute step: one stored row per point, no GROUP BY, no histogram column read
    fast, sql = read(60)
    assert "GROUP BY" not in sql and "c000" not in sql
    assert sum(fast["series"]["invocations"]) == 900
    # At 5 minutes the minute rows merge per point: the same counts, 5 minutes at a time
    slow, sql = read(300)
    assert "GROUP BY" in sql
    per_five = [sum(fast["series"]["invocations"][i : i + 5]) for i in range(0, 40, 5)]
    assert slow["series"]["invocations"] == per_five
    # An environment's series and a version across environments sum the right rows (no double count)
    dev_body, _ = read(60, environment=dev)
    prod_body, _ = read(60, environment=prod)
    assert sum(dev_body["series"]["invocations"]) + sum(prod_body["series"]["invocations"]) == 900
    v1, sql = read(60, version=1)
    v2, _ = read(60, version=2)
    assert sum(v1["series"]["invocations"]) == sum(1 for r in recs if r.version == 1)
    assert sum(v1["series"]["invocations"]) + sum(v2["series"]["invocations"]) == 900
    grouped, _ = read(60, group_by_version=True)
    assert [g["version"] for g in grouped["groups"]] == [1, 2]
    assert grouped["groups"][0]["series"]["invocations"] == v1["series"]["invocations"]
