"""`python -m bench.metrics`: the metric rollups' write cost and the metrics API's read time.

Targets (issue 16): with 1,000,000 invocation records stored, the metrics API answers 24 h at
a 1-minute step and 7 d at a 1-hour step in <= 50 ms; the rollups keep up with 2,000
invocations/s.

1. Baseline, same run: the plain invocation INSERT the sink did before rollups existed
   (services._insert_rows, no rollups), ``--baseline`` records in batches of ``--batch``.
2. The sink's write with rollups (services.records_write: INSERT + the three upserts and the
   percentile updates, one transaction per batch) of ``--baseline`` records at the density
   of 2,000/s traffic, batches of ``--batch`` (the sink writes ~1,000 per 0.5 s flush).
   Then ``--records`` records over the last 7 days, bulk-loaded (COPY on PostgreSQL) and
   their rollups built by rollups_rebuild, a day at a time.
3. GET /api/v1/functions/{id}/metrics through the whole Django/DRF stack (test Client):
   every metric name, all environments and versions (the "all environments" rows: one per
   point), one environment, and by version in one environment, ``--reads`` times each after
   a warm-up.

SQLite in a throwaway data dir by default; ``--database-url postgres://…/NAME`` runs on
PostgreSQL in a database NAME that it drops and creates (never an existing one you need).
Prints a table, writes bench-results/metrics.json. A missed target is printed, not an exit
status (as bench.run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TARGET_READ_MS = 50.0
TARGET_RATE = 2000.0


def _records(fn: Any, envs: list[Any], count: int, *, start: datetime, span_s: float, seed: int) -> list[Any]:
    from apps.monitoring.records import InvocationRecord

    rng = random.Random(seed)
    statuses = ["ok"] * 95 + ["error"] * 3 + ["timeout", "throttled"]
    offsets = sorted(rng.uniform(0, span_s) for _ in range(count))
    out = []
    for i, offset in enumerate(offsets):
        cold = rng.random() < 0.02
        out.append(
            InvocationRecord(
                request_id=f"b{seed}-{i}",
                function_id=fn.pk,
                environment_id=envs[i % len(envs)].pk,
                binding_id=None,
                version=1 + (i % 7 == 0),
                trigger="http",
                started_at=start + timedelta(seconds=offset),
                duration_ms=round(rng.lognormvariate(3.5, 1.0), 3),
                init_duration_ms=round(rng.uniform(80, 300), 3) if cold else None,
                cold_start=cold,
                status=rng.choice(statuses),
                error_type="",
                peak_rss_kb=rng.randint(20_000, 60_000),
                concurrency=rng.randint(1, 8),
            )
        )
    return out


def _bulk_load(fn: Any, envs: list[Any], count: int, *, start: datetime, span_s: float, chunk: int = 100_000) -> None:
    """Store ``count`` invocation records without rollups, ``chunk`` at a time (bounded
    memory): COPY on PostgreSQL, services._insert_rows' multi-row INSERTs on SQLite."""
    from django.db import connection, transaction

    from apps.monitoring import services
    from apps.monitoring.models import Invocation

    for part in range(0, count, chunk):
        n = min(chunk, count - part)
        span = span_s / count
        records = _records(fn, envs, n, start=start + timedelta(seconds=part * span), span_s=n * span, seed=100 + part)
        rows = [services.invocation_row(r) for r in records]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                names = ", ".join(services.INVOCATION_COLUMNS)
                sql = f"COPY {Invocation._meta.db_table} ({names}) FROM STDIN"
                with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                services._insert_rows(Invocation, services.INVOCATION_COLUMNS, rows)


def _setup_database(url: str | None) -> str:
    data_dir = tempfile.mkdtemp(prefix="stratus-bench-metrics-")
    for name in ("DATABASE_URL", "REDIS_URL", "STRATUS_ENGINE", "STRATUS_PRODUCTION"):
        os.environ.pop(name, None)
    os.environ["STRATUS_DATA_DIR"] = data_dir
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    if url:
        import psycopg

        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = url
        return "PostgreSQL"
    return "SQLite"


def _ms(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_METRICS_DATABASE_URL", ""))
    parser.add_argument("--out", default="bench-results/metrics.json")
    args = parser.parse_args(argv)

    database = _setup_database(args.database_url or None)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    logging.getLogger("stratus.request").setLevel(logging.WARNING)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction
    from django.test import Client

    from apps.functions import services as function_services
    from apps.monitoring import rollups, services
    from apps.monitoring.metric_selectors import METRIC_NAMES
    from apps.monitoring.models import Invocation, MetricMinute
    from apps.tenancy import org_services, project_services
    from apps.tenancy.models import Environment

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0, interactive=False)
    alice = get_user_model().objects.create_user(username="alice", password="bench-pw-123")  # noqa: S106
    org = org_services.org_create(actor=alice, slug="bench", name="Bench")
    project = project_services.project_create(actor=alice, org=org, slug="web", name="Web")
    fn = function_services.function_create(
        actor=alice, project=project, name="api", runtime="python3.11", handler="main.handler"
    )
    other = function_services.function_create(
        actor=alice, project=project, name="baseline", runtime="python3.11", handler="main.handler"
    )
    envs = list(Environment.objects.filter(project=project, name__in=["dev", "prod"]).order_by("name"))
    now = datetime.now(UTC)
    week_ago = now - timedelta(days=7)

    # 1. Baseline: the plain INSERT of the records, no rollups (another function's rows), at
    # the density of 2,000/s traffic: what one flush holds falls in the same minute or two.
    rate_span = args.baseline / TARGET_RATE
    baseline = _records(other, envs, args.baseline, start=now - timedelta(hours=3), span_s=rate_span, seed=1)
    began = time.perf_counter()
    for i in range(0, len(baseline), args.batch):
        rows = [services.invocation_row(r) for r in baseline[i : i + args.batch]]
        with transaction.atomic():
            services._insert_rows(Invocation, services.INVOCATION_COLUMNS, rows)
    baseline_s = time.perf_counter() - began

    # 2. The sink's write with rollups, same density and count as the baseline.
    dense = _records(fn, envs, args.baseline, start=now - timedelta(hours=2), span_s=rate_span, seed=3)
    began = time.perf_counter()
    for i in range(0, len(dense), args.batch):
        services.records_write(logs=[], invocations=dense[i : i + args.batch])
    rollup_s = time.perf_counter() - began
    # and the stored load the reads run against: records spread over the last 7 days, loaded
    # as the bulk they are (COPY on PostgreSQL, large multi-row INSERTs on SQLite), the
    # rollups then built by the rebuild path a day at a time (what an operator runs to repair
    # a range): minutes, not the hour that a million sink batches would take.
    began = time.perf_counter()
    _bulk_load(fn, envs, args.records, start=week_ago, span_s=7 * 86400 - 60)
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    day = week_ago.replace(minute=0, second=0, microsecond=0)
    while day < now:
        rollups.rollups_rebuild(start=day, end=min(day + timedelta(days=1), now + timedelta(minutes=1)), now=now)
        day += timedelta(days=1)
    rebuild_s = time.perf_counter() - began
    stored = Invocation.objects.count()
    minute_rows = MetricMinute.objects.filter(function=fn).count()

    # 3. Reads through the API.
    client = Client()
    client.force_login(alice)
    names = ",".join(METRIC_NAMES)

    def iso(dt: datetime) -> str:
        return dt.isoformat().replace("+00:00", "Z")

    reads = {
        "24h @ 1 min": f"start={iso(now - timedelta(days=1))}&end={iso(now)}&step=60",
        "7d @ 1 h": f"start={iso(week_ago)}&end={iso(now)}&step=3600",
        "24h @ 1 min, prod": f"start={iso(now - timedelta(days=1))}&end={iso(now)}&step=60&environment=prod",
        "24h @ 1 min, prod by version": (
            f"start={iso(now - timedelta(days=1))}&end={iso(now)}&step=60&environment=prod&group_by=version"
        ),
        "24h @ 5 min (merged)": f"start={iso(now - timedelta(days=1))}&end={iso(now)}&step=300",
    }
    results: dict[str, dict[str, float]] = {}
    if os.environ.get("BENCH_METRICS_PROFILE"):  # where a read's time goes (cProfile, top 25)
        import cProfile
        import pstats

        url = f"/api/v1/functions/{fn.pk}/metrics?{reads['24h @ 1 min']}&names={names}"
        client.get(url)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(5):
            client.get(url)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    # Baseline in the same run: the function's own API detail (the same session, middleware,
    # scoping and JSON rendering, no metrics), so a loaded machine shows as a ratio.
    detail = f"/api/v1/functions/{fn.pk}/"
    assert client.get(detail).status_code == 200
    samples = []
    for _ in range(args.reads):
        t = time.perf_counter()
        client.get(detail)
        samples.append(time.perf_counter() - t)
    baseline_read = {"p50_ms": _ms(samples, 0.5), "p99_ms": _ms(samples, 0.99), "points": 0}
    for label, query in reads.items():
        url = f"/api/v1/functions/{fn.pk}/metrics?{query}&names={names}"
        response = client.get(url)
        assert response.status_code == 200, response.content[:500]
        points = len(response.json()["timestamps"])
        samples = []
        for _ in range(args.reads):
            t = time.perf_counter()
            client.get(url)
            samples.append(time.perf_counter() - t)
        results[label] = {"p50_ms": _ms(samples, 0.5), "p99_ms": _ms(samples, 0.99), "points": points}

    baseline_rate = args.baseline / baseline_s
    rollup_rate = args.baseline / rollup_s
    print(f"Metrics: {stored:,} invocation records stored ({database}), {minute_rows:,} minute rows for the function")
    print(f"{'write (batches of ' + str(args.batch) + ')':<34} {'records/s':>10} {'target':>8}")
    print(f"{'plain INSERT (baseline)':<34} {baseline_rate:>10,.0f} {'':>8}")
    flag = "" if rollup_rate >= TARGET_RATE else "  MISSED"
    print(f"{'INSERT + rollups (records_write)':<34} {rollup_rate:>10,.0f} {TARGET_RATE:>8,.0f}{flag}")
    print(f"{'rollups cost vs baseline':<34} {baseline_rate / rollup_rate:>9.2f}x")
    print(f"{'bulk load of the 7 days (no rollups)':<34} {args.records / load_s:>10,.0f}")
    print(f"{'rollups rebuilt from them':<34} {args.records / rebuild_s:>10,.0f}")
    print(f"{'read (all names)':<34} {'points':>6} {'p50 ms':>8} {'p99 ms':>8} {'target':>7} {'vs baseline':>11}")
    b, b99 = baseline_read["p50_ms"], baseline_read["p99_ms"]
    print(f"{'baseline: GET the function (API)':<34} {'':>6} {b:>8.1f} {b99:>8.1f} {'':>7} {1:>10.1f}x")
    for label, r in results.items():
        flag = "" if r["p50_ms"] <= TARGET_READ_MS else "  MISSED"
        ratio = r["p50_ms"] / b if b else 0.0
        print(
            f"{label:<34} {r['points']:>6.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {TARGET_READ_MS:>7.0f} "
            f"{ratio:>10.1f}x{flag}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "database": database,
                "records_stored": stored,
                "batch": args.batch,
                "baseline_insert_per_s": round(baseline_rate),
                "insert_with_rollups_per_s": round(rollup_rate),
                "bulk_load_7d_per_s": round(args.records / load_s),
                "rebuild_7d_per_s": round(args.records / rebuild_s),
                "target_per_s": TARGET_RATE,
                "reads": results,
                "baseline_read": baseline_read,
                "target_read_ms": TARGET_READ_MS,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
