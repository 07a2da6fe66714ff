"""GET /api/v1/functions/{id}/metrics, /api/v1/projects/{id}/metrics/summary and the
Prometheus exposition at /metrics (its token-scope guard, its text parsed by
prometheus_client's own parser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.functions import services as function_services
from apps.monitoring import services
from apps.monitoring.records import InvocationRecord
from tests.monitoring.conftest import invocation_record

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def write(fn, env, at, durations, version=1, status="ok", prefix="r", concurrency=None):
    recs = []
    for i, d in enumerate(durations):
        base = invocation_record(
            fn, env, started_at=at, duration_ms=d, request_id=f"{prefix}{i}", version=version, status=status
        )
        recs.append(InvocationRecord(**{**vars(base), "concurrency": concurrency}))
    services.records_write(logs=[], invocations=recs)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def url(fn, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/functions/{fn.pk}/metrics?{query}"


def test_series_are_columnar_at_one_minute(world, fn, dev, prod, client_for):
    # Given invocations 10 and 3 minutes ago (one of them failing), in dev and prod
    write(fn, dev, NOW - timedelta(minutes=10), [10.0, 20.0])
    write(fn, prod, NOW - timedelta(minutes=3), [30.0], status="error", prefix="e")
    start, end = NOW - timedelta(minutes=15), NOW

    # When a viewer asks for the last 15 minutes at 1-minute step
    response = client_for(world.carol).get(
        url(fn, start=iso(start), end=iso(end), step=60, names="invocations,errors,error_rate,duration_p99")
    )

    # Then one value per minute, at the minutes that ran
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["step"] == 60
    assert body["timestamps"] == list(range(int(start.timestamp()), int(end.timestamp()), 60))
    assert set(body["series"]) == {"invocations", "errors", "error_rate", "duration_p99"}
    invocations = body["series"]["invocations"]
    assert invocations[5] == 2 and invocations[12] == 1 and sum(invocations) == 3
    assert body["series"]["errors"][12] == 1
    assert body["series"]["error_rate"][12] == 1.0
    assert body["series"]["error_rate"][0] is None  # no invocations: no rate
    assert body["series"]["duration_p99"][5] == 20.0  # the clamp to the exact maximum

    # and ?environment= narrows to one environment
    only_dev = client_for(world.carol).get(url(fn, start=iso(start), end=iso(end), environment="dev")).json()
    assert sum(only_dev["series"]["invocations"]) == 2


def test_group_by_version_gives_canary_and_stable_side_by_side(world, fn, prod, client_for):
    write(fn, prod, NOW - timedelta(minutes=2), [10.0] * 9, version=1)
    write(fn, prod, NOW - timedelta(minutes=2), [50.0], version=2, status="error", prefix="c")
    body = client_for(world.alice).get(url(fn, group_by="version", names="invocations,error_rate")).json()
    groups = {g["version"]: g["series"] for g in body["groups"]}
    assert sorted(groups) == [1, 2]
    assert sum(groups[1]["invocations"]) == 9
    assert [r for r in groups[2]["error_rate"] if r is not None] == [1.0]
    # and ?version= picks one
    body = client_for(world.alice).get(url(fn, version=2, names="invocations")).json()
    assert sum(body["series"]["invocations"]) == 1


def test_seven_days_at_one_hour_reads_hour_rows(world, fn, dev, client_for):
    write(fn, dev, NOW - timedelta(days=3), [5.0, 6.0])
    body = client_for(world.alice).get(url(fn, start=iso(NOW - timedelta(days=7)), end=iso(NOW), step=3600)).json()
    assert len(body["timestamps"]) in (168, 169)
    assert sum(body["series"]["invocations"]) == 2
    assert body["series"]["peak_memory_kb"].count(20480) == 1


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"names": "invocations,latency"}, "unknown_metric", "names"),
        ({"start": "START", "end": "END"}, "end_before_start", "end"),
        ({"step": 90}, "step_not_minute_multiple", "step"),
        ({"start": "WEEK_AGO", "step": 60}, "too_many_points", "step"),
        ({"start": "TEN_DAYS_AGO", "step": 600}, "step_too_small", "step"),
        ({"start": "YEAR_AGO", "step": 86400}, "range_out_of_retention", "start"),
        ({"group_by": "environment"}, "invalid", "group_by"),
    ],
)
def test_bad_series_requests_answer_400_naming_the_rule(world, fn, client_for, params, code, field):
    values = {
        "END": iso(NOW - timedelta(hours=2)),
        "START": iso(NOW - timedelta(hours=1)),
        "WEEK_AGO": iso(NOW - timedelta(days=6)),
        "TEN_DAYS_AGO": iso(NOW - timedelta(days=10)),
        "YEAR_AGO": iso(NOW - timedelta(days=365)),
    }
    response = client_for(world.alice).get(url(fn, **{k: values.get(str(v), v) for k, v in params.items()}))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert field in error["fields"]


def test_outsider_and_unknown_function_answer_404(world, fn, client_for):
    assert client_for(world.charlie).get(url(fn)).status_code == 404
    assert client_for(world.alice).get("/api/v1/functions/999999/metrics").status_code == 404
    project = f"/api/v1/projects/{world.web.pk}/metrics/summary"
    assert client_for(world.charlie).get(project).status_code == 404


def test_project_summary_per_function_with_sparklines(world, fn, dev, client_for):
    other = function_services.function_create(
        actor=world.alice, project=world.web, name="quiet", runtime="python3.11", handler="main.handler"
    )
    write(fn, dev, NOW - timedelta(minutes=1), [10.0, 10.0, 10.0])
    write(fn, dev, NOW - timedelta(hours=5), [40.0], status="timeout", prefix="t")

    body = client_for(world.carol).get(f"/api/v1/projects/{world.web.pk}/metrics/summary").json()

    rows = {f["name"]: f for f in body["functions"]}
    assert list(rows) == ["checkout", "quiet"]
    checkout = rows["checkout"]
    assert checkout["last_hour"] == {"invocations": 3, "errors": 0, "error_rate": 0.0, "duration_p99": 10.0}
    assert checkout["last_24h"]["invocations"] == 4
    assert checkout["last_24h"]["errors"] == 1
    assert checkout["last_24h"]["error_rate"] == 0.25
    assert len(checkout["sparkline"]["invocations"]) == 24
    assert sum(checkout["sparkline"]["invocations"]) == 4
    assert sum(checkout["sparkline"]["errors"]) == 1
    assert rows["quiet"]["last_hour"]["invocations"] == 0
    assert rows["quiet"]["last_hour"]["error_rate"] is None
    assert other.pk == rows["quiet"]["function_id"]


# --- Prometheus -----------------------------------------------------------------------------


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_exposition_parses_and_counts_per_series(world, fn, dev, prod, client_for):
    # The peak gauge covers the last 5 minutes of the wall clock: records of a minute ago now,
    # not of the module's NOW (taken at collection, maybe half an hour before this test runs).
    a_minute_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    write(fn, dev, a_minute_ago, [0.5, 3.0, 3.0, 1500.0], concurrency=3)
    write(fn, dev, a_minute_ago, [0.0], status="throttled", prefix="th")
    write(fn, prod, a_minute_ago, [7.0], version=2, status="timeout", prefix="to")

    response = client_for(world.alice, scopes=["metrics"]).get("/metrics")

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    parsed = families(response.content.decode())
    calls = {
        (s.labels["environment"], s.labels["version"], s.labels["status"]): s.value
        for s in parsed["stratus_function_invocations"].samples
    }
    assert calls[("dev", "1", "ok")] == 4
    assert calls[("dev", "1", "throttled")] == 1
    assert calls[("prod", "2", "timeout")] == 1
    assert calls[("prod", "2", "ok")] == 0
    sample = next(iter(parsed["stratus_function_invocations"].samples))
    assert sample.labels["org"] == "alpha" and sample.labels["function"] == "checkout"
    buckets = {
        s.labels["le"]: s.value
        for s in parsed["stratus_function_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["environment"] == "dev"
    }
    assert buckets["0.001"] == 1  # 0.5 ms
    assert buckets["0.004"] == 3  # and the two of 3 ms
    assert buckets["1.024"] == 3
    assert buckets["2.048"] == 4  # 1.5 s
    assert buckets["+Inf"] == 4  # the throttled one never ran
    dev_sum = next(
        s.value
        for s in parsed["stratus_function_duration_seconds"].samples
        if s.name.endswith("_sum") and s.labels["environment"] == "dev"
    )
    assert dev_sum == pytest.approx(1.5065)
    peaks = {s.labels["environment"]: s.value for s in parsed["stratus_function_concurrency_peak"].samples}
    assert peaks == {"dev": 3}


def test_prometheus_shows_only_the_callers_orgs(world, fn, dev, client_for):
    write(fn, dev, NOW - timedelta(minutes=1), [3.0])
    text = client_for(world.charlie, scopes=["metrics"]).get("/metrics").content.decode()
    assert "checkout" not in text
    assert "stratus_function_invocations" in text  # the families, empty


def test_prometheus_guard_refuses_without_the_metrics_scope(world, client_for):
    response = client_for(world.alice, scopes=["read"]).get("/metrics")
    assert response.status_code == 403
    assert "metrics" in response.json()["error"]["message"]
    anonymous = client_for(world.alice, scopes=["metrics"])
    anonymous.credentials()
    assert anonymous.get("/metrics").status_code in (401, 403)
    forged = client_for(world.alice, scopes=["metrics"])
    forged.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert forged.get("/metrics").status_code == 401
