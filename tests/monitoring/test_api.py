"""GET /api/v1/functions/{id}/logs, /invocations and /invocations/summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.monitoring.models import LogLine
from tests.monitoring.conftest import ago, invocation_record, log_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def lines(fn, dev, prod, sink):
    """Six lines, one second apart (INFO booting oldest), across environments, streams, versions."""
    start = ago(minutes=10)
    specs = [
        ("INFO booting", dev, "stdout", "", 1),
        ("[ERROR] boom", dev, "stderr", "req-a", 1),
        ("l2 Payment accepted", prod, "stdout", "req-b", 2),
        ("l3 START RequestId: req-b", prod, "system", "req-b", 2),
        ("WARNING:app:slow payment", prod, "stderr", "req-c", 2),
        ("l5 payment retried", dev, "stdout", "req-a", 1),
    ]
    records = [
        log_record(fn, env, text, ts=start + timedelta(seconds=i), stream=stream, request_id=rid, version=version)
        for i, (text, env, stream, rid, version) in enumerate(specs)
    ]
    sink.submit_logs(records)
    sink.flush()
    return start


def texts(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [line["text"] for line in response.json()["results"]]


def test_logs_list_newest_first_with_every_field(world, fn, lines, client_for):
    response = client_for(world.carol).get(f"/api/v1/functions/{fn.pk}/logs")  # a viewer may read

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 6
    assert texts(response) == [
        "l5 payment retried",
        "WARNING:app:slow payment",
        "l3 START RequestId: req-b",
        "l2 Payment accepted",
        "[ERROR] boom",
        "INFO booting",
    ]
    assert body["results"][1] == {
        "id": LogLine.objects.get(text="WARNING:app:slow payment").id,
        "ts": (lines + timedelta(seconds=4)).isoformat().replace("+00:00", "Z"),
        "stream": "stderr",
        "level": "warning",
        "request_id": "req-c",
        "version": 2,
        "environment": "prod",
        "text": "WARNING:app:slow payment",
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"environment": "dev"}, ["l5 payment retried", "[ERROR] boom", "INFO booting"]),
        ({"request_id": "req-a"}, ["l5 payment retried", "[ERROR] boom"]),
        ({"q": "PAYMENT"}, ["l5 payment retried", "WARNING:app:slow payment", "l2 Payment accepted"]),
        ({"stream": "system"}, ["l3 START RequestId: req-b"]),
        ({"level": "ERROR"}, ["[ERROR] boom"]),
        ({"level": "warning"}, ["WARNING:app:slow payment"]),
        # a stdout line that says no level (a bare print()) is info; stderr and system keep none
        ({"level": "info"}, ["l5 payment retried", "l2 Payment accepted", "INFO booting"]),
        ({"version": 2}, ["WARNING:app:slow payment", "l3 START RequestId: req-b", "l2 Payment accepted"]),
        ({"environment": "prod", "q": "payment", "stream": "stdout"}, ["l2 Payment accepted"]),
    ],
)
def test_logs_filters(world, fn, lines, client_for, query, expected):
    assert texts(client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/logs", query)) == expected


def test_logs_since_until_take_iso_8601(world, fn, lines, client_for):
    since = (lines + timedelta(seconds=2)).isoformat()
    until = (lines + timedelta(seconds=4)).isoformat()
    response = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/logs", {"since": since, "until": until})
    assert texts(response) == ["l3 START RequestId: req-b", "l2 Payment accepted"]


@pytest.mark.parametrize("param", ["since", "until"])
def test_a_bad_time_is_refused_naming_the_parameter(world, fn, lines, client_for, param):
    response = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/logs", {param: "yesterday"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {param}
    assert error["message"].startswith(f"{param}: Datetime has wrong format.")


@pytest.mark.parametrize(
    ("query", "field"), [({"level": "loud"}, "level"), ({"stream": "tty"}, "stream"), ({"version": "x"}, "version")]
)
def test_other_bad_filters_are_refused(world, fn, client_for, query, field):
    response = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/logs", query)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {field}


def test_an_unknown_environment_is_404(world, fn, client_for):
    response = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/logs", {"environment": "ghost"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_logs_paginate_with_limit_and_offset(world, fn, lines, client_for):
    url = f"/api/v1/functions/{fn.pk}/logs"
    page = client_for(world.bob).get(url, {"limit": 2, "offset": 2}).json()
    assert page["count"] == 6
    assert page["next"] == f"http://testserver{url}?limit=2&offset=4"
    assert page["previous"] == f"http://testserver{url}?limit=2"
    assert [line["text"] for line in page["results"]] == ["l3 START RequestId: req-b", "l2 Payment accepted"]


def test_outsiders_get_404_and_a_token_needs_the_read_scope(world, fn, dev, lines, sink, client_for):
    sink.submit_invocation(invocation_record(fn, dev))
    sink.flush()
    for path in ("logs", "invocations", "invocations/summary"):
        url = f"/api/v1/functions/{fn.pk}/{path}"
        for client in (client_for(world.charlie), client_for(world.charlie, scopes=["read"])):
            response = client.get(url)
            assert response.status_code == 404, path
            assert response.json() == {"error": {"code": "not_found", "message": "Function not found.", "fields": {}}}
        assert client_for(world.bob, scopes=["read"]).get(url).status_code == 200
        assert client_for(world.bob, scopes=["deploy"]).get(url).status_code == 403
        # read-only routes
        assert client_for(world.alice).post(url, {}, format="json").status_code == 405


def test_list_endpoints_cost_the_same_queries_for_1_or_50_rows(world, fn, dev, prod, sink, client_for):
    client = client_for(world.bob)
    sink.submit_logs([log_record(fn, dev, "first")])
    sink.submit_invocation(invocation_record(fn, dev))
    sink.flush()

    def cost(path: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"/api/v1/functions/{fn.pk}/{path}").status_code == 200
        return len(ctx.captured_queries)

    small = {path: cost(path) for path in ("logs", "invocations")}
    sink.submit_logs([log_record(fn, dev if i % 2 else prod, f"l{i}") for i in range(60)])
    for i in range(60):
        sink.submit_invocation(invocation_record(fn, dev if i % 2 else prod, request_id=f"r{i}"))
    sink.flush()
    assert {path: cost(path) for path in ("logs", "invocations")} == small
    assert max(small.values()) <= 6  # session, user, function (scoped), count, page


# --- invocations -------------------------------------------------------------------------------


@pytest.fixture
def calls(fn, dev, prod, sink):
    start = ago(minutes=30)
    specs = [
        ("r0", dev, "ok", True, 1),
        ("r1", dev, "error", False, 1),
        ("r2", prod, "ok", False, 2),
        ("r3", prod, "timeout", True, 2),
        ("r4", dev, "throttled", False, 2),
    ]
    for i, (request_id, env, status, cold, version) in enumerate(specs):
        sink.submit_invocation(
            invocation_record(
                fn,
                env,
                request_id=request_id,
                started_at=start + timedelta(seconds=i),
                status=status,
                cold_start=cold,
                version=version,
            )
        )
    sink.flush()
    return start


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["request_id"] for row in response.json()["results"]]


def test_invocations_list_newest_first(world, fn, calls, client_for):
    response = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/invocations")
    assert ids(response) == ["r4", "r3", "r2", "r1", "r0"]
    assert response.json()["results"][1] == {
        "request_id": "r3",
        "environment": "prod",
        "version": 2,
        "trigger": "invoke",
        "started_at": (calls + timedelta(seconds=3)).isoformat().replace("+00:00", "Z"),
        "duration_ms": 12.5,
        "init_duration_ms": 80.0,
        "cold_start": True,
        "status": "timeout",
        "error_type": "RuntimeError",
        "peak_rss_kb": 20480,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"environment": "prod"}, ["r3", "r2"]),
        ({"status": "ok"}, ["r2", "r0"]),
        ({"request_id": "r1"}, ["r1"]),
        ({"version": 1}, ["r1", "r0"]),
        ({"cold_start": "true"}, ["r3", "r0"]),
        ({"cold_start": "false"}, ["r4", "r2", "r1"]),
        ({"environment": "dev", "status": "ok", "cold_start": "true"}, ["r0"]),
    ],
)
def test_invocations_filters(world, fn, calls, client_for, query, expected):
    assert ids(client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/invocations", query)) == expected


def test_invocations_bad_filters_are_400(world, fn, client_for):
    client = client_for(world.bob)
    for query, field in (({"status": "fine"}, "status"), ({"cold_start": "maybe"}, "cold_start")):
        response = client.get(f"/api/v1/functions/{fn.pk}/invocations", query)
        assert response.status_code == 400
        assert set(response.json()["error"]["fields"]) == {field}


def test_summary_counts_and_percentiles_over_the_window(world, fn, dev, prod, sink, client_for):
    # Given 100 dev requests of 1..100 ms in the last hour (every 10th an error, 3 cold),
    # a throttled one, one outside the window and one in prod
    for ms in range(1, 101):
        sink.submit_invocation(
            invocation_record(
                fn,
                dev,
                request_id=f"r{ms}",
                duration_ms=float(ms),
                started_at=ago(minutes=30, seconds=ms),
                status="error" if ms % 10 == 0 else "ok",
                cold_start=ms in (1, 2, 3),
            )
        )
    sink.submit_invocation(invocation_record(fn, dev, status="throttled", duration_ms=0.0, started_at=ago(minutes=5)))
    sink.submit_invocation(invocation_record(fn, dev, status="timeout", duration_ms=900.0, started_at=ago(hours=3)))
    sink.submit_invocation(invocation_record(fn, prod, status="timeout", duration_ms=500.0, started_at=ago(minutes=1)))
    sink.flush()
    client = client_for(world.bob)

    # When the dev summary over the default hour is asked for
    summary = client.get(f"/api/v1/functions/{fn.pk}/invocations/summary", {"environment": "dev"}).json()

    # Then the counts cover the window's 101 requests; percentiles the 100 that ran (nearest rank)
    assert summary["window_s"] == 3600
    assert {k: summary[k] for k in ("count", "errors", "throttles", "timeouts", "cold_starts")} == {
        "count": 101,
        "errors": 10,
        "throttles": 1,
        "timeouts": 0,
        "cold_starts": 3,
    }
    assert (summary["p50_duration_ms"], summary["p95_duration_ms"], summary["p99_duration_ms"]) == (50.0, 95.0, 99.0)

    # And every environment together, and a wider window, count what they cover
    everywhere = client.get(f"/api/v1/functions/{fn.pk}/invocations/summary").json()
    assert (everywhere["count"], everywhere["timeouts"], everywhere["errors"]) == (102, 1, 11)
    assert everywhere["p99_duration_ms"] == 100.0
    wide = client.get(f"/api/v1/functions/{fn.pk}/invocations/summary", {"window_s": 4 * 3600}).json()
    assert wide["count"] == 103


def test_summary_of_nothing_has_no_percentiles(world, fn, client_for):
    summary = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/invocations/summary").json()
    assert summary["count"] == 0
    assert summary["p50_duration_ms"] is None
    assert summary["p99_duration_ms"] is None


@pytest.mark.parametrize("window", ["0", "-5", "abc", str(31 * 24 * 3600)])
def test_summary_refuses_a_bad_window(world, fn, client_for, window):
    response = client_for(world.bob).get(f"/api/v1/functions/{fn.pk}/invocations/summary", {"window_s": window})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"window_s"}
