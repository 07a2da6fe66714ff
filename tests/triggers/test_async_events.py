"""Asynchronous invocation through the real engine: the 202 and its status URL, idempotency,
the 256 KB limit, retries with backoff to the dead-letter queue, lease expiry (a worker
killed mid-attempt), redrive, and many events through two dispatchers at once."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.monitoring.models import Invocation
from apps.monitoring.sink import get_sink
from apps.tenancy.models import Environment
from apps.triggers import async_services
from apps.triggers.dispatcher import Dispatcher
from apps.triggers.models import AsyncAttempt, AsyncEvent
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_routed

HANDLER = """
def handler(event, context):
    print("async", context.aws_request_id)
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("fails for good")
    return {"got": event, "request_id": context.aws_request_id}
"""


@pytest.fixture
def fast_backoff(settings: Any) -> None:
    settings.STRATUS_ASYNC_BACKOFF_BASE_S = 0.01
    settings.STRATUS_ASYNC_BACKOFF_MAX_S = 0.05


def deployed(world: Any, name: str = "worker") -> Any:
    fn = make_function(world, name, {"main.py": HANDLER})
    deploy_latest(world, fn)
    return fn


def run_due(limit: int = 50, now: Any = None) -> list[Any]:
    """One dispatcher pass in this thread: claim what is due and run it."""
    claimed = async_services.async_events_claim(now=now, limit=limit)
    for item in claimed:
        async_services.async_attempt_run(event_id=item.event_id, number=item.number)
    return claimed


def invoke_async(client: Any, fn: Any, event: Any, **headers: str) -> Any:
    return client.post(
        f"/api/v1/functions/{fn.pk}/invoke",
        {"environment": "dev", "event": event, "invocation_type": "event"},
        format="json",
        headers=headers,
    )


def test_an_event_is_stored_answered_202_with_a_status_url_and_runs(world, engine, client_for):
    fn = deployed(world)
    client = client_for(world.bob)

    # When bob invokes asynchronously
    response = invoke_async(client, fn, {"order": 7})

    # Then 202 with the request id and status URL at once, the event stored, queued
    assert response.status_code == 202, response.content
    body = response.json()
    rid = body["request_id"]
    assert body == {"request_id": rid, "status_url": f"http://testserver/api/v1/async-events/{rid}"} or body[
        "status_url"
    ].endswith(f"/api/v1/async-events/{rid}")
    assert response.headers["Location"] == body["status_url"]
    status = client.get(f"/api/v1/async-events/{rid}").json()
    assert (status["state"], status["attempts"], status["payload"], status["version"]) == ("queued", 0, {"order": 7}, 1)

    # When a dispatcher runs it
    assert len(run_due()) == 1

    # Then it succeeded in one attempt, the handler saw the event's request id, the record is "event"
    status = client.get(f"/api/v1/async-events/{rid}").json()
    assert (status["state"], status["attempts"], status["failures"]) == ("succeeded", 1, 0)
    [attempt] = status["attempt_history"]
    assert (attempt["number"], attempt["status"], attempt["request_id"], attempt["version"]) == (1, "ok", rid, 1)
    assert attempt["duration_ms"] is not None and attempt["error"] == ""
    get_sink().flush()
    record = Invocation.objects.get(request_id=rid)
    assert (record.trigger, record.status) == ("event", "ok")
    assert status["logs_url"] == f"/api/v1/functions/{fn.pk}/logs?request_id={rid}"


def test_an_idempotency_key_answers_the_first_202_again_for_24_hours(world, engine, client_for):
    fn = deployed(world)
    client = client_for(world.bob)
    first = invoke_async(client, fn, {"n": 1}, **{"Idempotency-Key": "order-7"})
    again = invoke_async(client, fn, {"n": 2}, **{"Idempotency-Key": "order-7"})
    other = invoke_async(client, fn, {"n": 3}, **{"Idempotency-Key": "order-8"})

    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 202)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert other.json()["request_id"] != first.json()["request_id"]
    assert AsyncEvent.objects.filter(function=fn).count() == 2
    assert AsyncEvent.objects.get(request_id=first.json()["request_id"]).payload == {"n": 1}

    # After 24 h the key is free again: a new event
    AsyncEvent.objects.filter(idempotency_key="order-7").update(created_at=timezone.now() - timedelta(hours=25))
    later = invoke_async(client, fn, {"n": 4}, **{"Idempotency-Key": "order-7"})
    assert later.status_code == 202 and later.json()["request_id"] != first.json()["request_id"]
    assert AsyncEvent.objects.filter(function=fn).count() == 3


def test_an_event_over_256_kb_answers_413_and_stores_nothing(world, engine, client_for, served):
    fn = deployed(world)
    big = {"blob": "x" * (256 * 1024)}
    response = invoke_async(client_for(world.bob), fn, big)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and "256 KB" in error["message"] and "event" in error["fields"]

    # And on the gateway
    wait_routed(engine, fn)
    answer = served.post(url(fn), content=b"y" * (256 * 1024 + 1), headers={"X-Stratus-Invocation-Type": "Event"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "payload_too_large"
    assert AsyncEvent.objects.count() == 0


def test_the_gateway_stores_the_request_before_its_202_and_the_function_gets_it(world, engine, served):
    fn = deployed(world, "hook")
    wait_routed(engine, fn)
    answer = served.post(
        url(fn, path="orders?x=1"),
        content=json.dumps({"id": 9}).encode(),
        headers={
            "X-Stratus-Invocation-Type": "Event",
            "Idempotency-Key": "gw-1",
            "Content-Type": "application/json",
            "Authorization": "Bearer not-stored",
        },
    )
    assert answer.status_code == 202, answer.text
    rid = answer.json()["request_id"]
    # Stored when the 202 arrived (the commit came first)
    event = AsyncEvent.objects.get(request_id=rid)
    assert (event.source, event.kind, event.state, event.version) == ("gateway", "request", "queued", 1)
    assert "not-stored" not in json.dumps(event.payload)
    assert answer.headers["x-stratus-invocation-id"] == rid
    replay = served.post(
        url(fn, path="orders"), content=b"{}", headers={"X-Stratus-Invocation-Type": "event", "Idempotency-Key": "gw-1"}
    )
    assert replay.status_code == 202 and replay.json() == answer.json()

    run_due()
    event.refresh_from_db()
    assert event.state == "succeeded"
    get_sink().flush()
    record = Invocation.objects.get(request_id=rid)
    assert record.trigger == "event"


def test_a_function_failing_for_good_is_retried_with_backoff_then_dead_lettered(
    world, engine, client_for, fast_backoff
):
    fn = deployed(world)
    client = client_for(world.bob)
    rid = invoke_async(client, fn, {"fail": True}).json()["request_id"]

    # Attempts run until the retries (default 2) are spent
    for _ in range(3):
        event = wait_for(lambda: AsyncEvent.objects.filter(request_id=rid, next_attempt_at__lte=timezone.now()).first())
        assert event.state == "queued"
        assert len(run_due()) == 1
    event = AsyncEvent.objects.get(request_id=rid)
    assert (event.state, event.attempts, event.failures, event.error_type) == ("dead", 3, 3, "ValueError")
    history = list(AsyncAttempt.objects.filter(event=event).values_list("number", "status", "error_type"))
    assert history == [(1, "error", "ValueError"), (2, "error", "ValueError"), (3, "error", "ValueError")]
    assert run_due() == []  # nothing more

    # The DLQ lists it, filtered by error type and version; viewers read it
    viewer = client_for(world.carol)
    listed = viewer.get(f"/api/v1/functions/{fn.pk}/dead-letters?error_type=ValueError&version=1").json()
    assert [e["request_id"] for e in listed["results"]] == [rid]
    assert viewer.get(f"/api/v1/functions/{fn.pk}/dead-letters?error_type=TypeError").json()["results"] == []
    assert viewer.get(f"/api/v1/functions/{fn.pk}/dead-letters?version=x").status_code == 400
    detail = viewer.get(f"/api/v1/async-events/{rid}").json()
    assert [a["status"] for a in detail["attempt_history"]] == ["error", "error", "error"]
    assert "fails for good" in detail["attempt_history"][0]["error"]
    # A viewer may not redrive
    assert viewer.post(f"/api/v1/async-events/{rid}/redrive", {}, format="json").status_code == 403

    # Redrive with an edited payload: it runs again and succeeds, its history kept
    redriven = client.post(f"/api/v1/async-events/{rid}/redrive", {"payload": {"fail": False}}, format="json")
    assert redriven.status_code == 200 and redriven.json()["state"] == "queued"
    run_due()
    event.refresh_from_db()
    assert (event.state, event.attempts, event.redrives, event.payload) == ("succeeded", 4, 1, {"fail": False})
    assert client.post(f"/api/v1/async-events/{rid}/redrive", {}, format="json").status_code == 409


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(settings):
    settings.STRATUS_ASYNC_BACKOFF_BASE_S = 2.0
    settings.STRATUS_ASYNC_BACKOFF_MAX_S = 30.0
    for failures, full in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)):
        waits = [async_services.backoff_s(failures) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits), (failures, min(waits), max(waits))
        assert max(waits) - min(waits) > full / 10  # jittered, not one value


def test_the_async_config_validates_each_field_and_applies(world, client_for, engine, fast_backoff):
    fn = deployed(world)
    client = client_for(world.bob)
    base = f"/api/v1/functions/{fn.pk}/async-config"
    assert client.get(f"{base}?environment=dev").json() == {
        "environment": "dev",
        "max_retries": 2,
        "max_event_age_s": 21600,
    }
    for body, field in (
        ({"max_retries": 11}, "max_retries"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_event_age_s": 59}, "max_event_age_s"),
        ({"max_event_age_s": 86401}, "max_event_age_s"),
        ({"retries": 1}, "retries"),
    ):
        response = client.put(f"{base}?environment=dev", body, format="json")
        assert response.status_code == 400 and list(response.json()["error"]["fields"]) == [field], body
    assert client.put(base, {"max_retries": 1}, format="json").json()["error"]["fields"] == {
        "environment": ["This field is required."]
    }
    assert client_for(world.carol).put(f"{base}?environment=dev", {"max_retries": 0}, format="json").status_code == 403
    ok = client.put(f"{base}?environment=dev", {"max_retries": 0, "max_event_age_s": 60}, format="json")
    assert ok.status_code == 200 and ok.json()["max_retries"] == 0

    # With no retries, one failure is dead at once
    rid = invoke_async(client, fn, {"fail": True}).json()["request_id"]
    run_due()
    assert AsyncEvent.objects.get(request_id=rid).state == "dead"

    # An event older than the maximum age is dead-lettered unrun
    rid = invoke_async(client, fn, {"n": 1}).json()["request_id"]
    assert run_due(now=timezone.now() + timedelta(seconds=61)) == []
    event = AsyncEvent.objects.get(request_id=rid)
    assert (event.state, event.attempts, event.error_type) == ("dead", 0, "EventAgeExceeded")


def test_a_worker_killed_mid_attempt_leaves_the_event_to_be_claimed_again_after_its_lease(world, engine, client_for):
    fn = deployed(world)
    rid = invoke_async(client_for(world.bob), fn, {"n": 1}).json()["request_id"]

    # Given a dispatcher claimed it and died before finishing (nothing ran the attempt)
    [claimed] = async_services.async_events_claim(runner="doomed:1")
    assert async_services.async_events_claim() == []  # the lease holds it meanwhile

    # When the lease expires, another dispatcher claims it again and runs it
    later = timezone.now() + timedelta(seconds=fn.timeout_s) + async_services.LEASE_MARGIN + timedelta(seconds=1)
    [again] = async_services.async_events_claim(now=later, runner="alive:2")
    assert (again.event_id, again.number) == (claimed.event_id, 2)
    # The dead worker's late finish (were it only slow) changes nothing
    assert async_services.async_attempt_run(event_id=claimed.event_id, number=1) is None
    async_services.async_attempt_run(event_id=again.event_id, number=again.number)

    event = AsyncEvent.objects.get(request_id=rid)
    assert (event.state, event.attempts, event.failures) == ("succeeded", 2, 1)
    history = list(AsyncAttempt.objects.filter(event=event).values_list("number", "status", "error_type", "runner"))
    assert history == [(1, "lost", "Lost", "doomed:1"), (2, "ok", "", "alive:2")]


def test_redrive_a_selection_at_a_rate_and_purge(world, engine, client_for, fast_backoff):
    fn = deployed(world)
    client = client_for(world.bob)
    client.put(f"/api/v1/functions/{fn.pk}/async-config?environment=dev", {"max_retries": 0}, format="json")
    rids = [invoke_async(client, fn, {"fail": True, "i": i}).json()["request_id"] for i in range(4)]
    run_due()
    assert AsyncEvent.objects.filter(state="dead").count() == 4

    bad = client.post(f"/api/v1/functions/{fn.pk}/dead-letters/redrive", {"rate_per_s": 0}, format="json")
    assert bad.status_code == 400 and "request_ids" in bad.json()["error"]["fields"]
    bad = client.post(
        f"/api/v1/functions/{fn.pk}/dead-letters/redrive", {"filters": {}, "rate_per_s": 0}, format="json"
    )
    assert bad.status_code == 400 and "rate_per_s" in bad.json()["error"]["fields"]

    before = timezone.now()
    answer = client.post(
        f"/api/v1/functions/{fn.pk}/dead-letters/redrive", {"request_ids": rids[:3], "rate_per_s": 2}, format="json"
    )
    assert answer.json() == {"count": 3}
    due = sorted(AsyncEvent.objects.filter(request_id__in=rids[:3]).values_list("next_attempt_at", flat=True))
    offsets = [round((d - before).total_seconds() * 2) / 2 for d in due]
    assert offsets == [0.0, 0.5, 1.0]  # 2 per second

    purged = client.post(f"/api/v1/functions/{fn.pk}/dead-letters/purge", {"filters": {}}, format="json")
    assert purged.json() == {"count": 1}  # only the one still dead
    assert not AsyncEvent.objects.filter(request_id=rids[3]).exists()
    assert (
        client_for(world.carol)
        .post(f"/api/v1/functions/{fn.pk}/dead-letters/purge", {"filters": {}}, format="json")
        .status_code
        == 403
    )


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="concurrent claims need PostgreSQL")
def test_200_events_10_percent_failing_through_two_dispatchers_at_once(world, engine, client_for, fast_backoff):
    fn = deployed(world)
    env = Environment.objects.get(project=world.web, name="dev")
    failing = {i for i in range(200) if i % 10 == 0}
    for i in range(200):
        async_services.async_event_enqueue(
            actor=world.bob, function=fn, environment=env, payload={"i": i, "fail": i in failing}
        )

    # Two dispatchers (as two processes would) run at once on the same queue
    first, second = Dispatcher(workers=4, poll_s=0.05), Dispatcher(workers=4, poll_s=0.05)
    first.start()
    second.start()
    try:
        wait_for(lambda: not AsyncEvent.objects.filter(state__in=["queued", "running"]).exists(), timeout=240)
    finally:
        first.stop()
        second.stop()

    events = {e.payload["i"]: e for e in AsyncEvent.objects.filter(function=fn)}
    assert sorted(i for i, e in events.items() if e.state == "dead") == sorted(failing)
    assert all(e.state == "succeeded" for i, e in events.items() if i not in failing)
    # Each success ran once, each failure 1 + 2 retries; no attempt ran twice
    attempts = {i: list(e.attempt_rows.order_by("number").values_list("status", flat=True)) for i, e in events.items()}
    for i, statuses in attempts.items():
        fails = [s for s in statuses if s != "throttled"]
        assert fails == (["error"] * 3 if i in failing else ["ok"]), (i, statuses)
    get_sink().flush()
    records = Invocation.objects.filter(function=fn, trigger="event").exclude(status="throttled")
    assert records.count() == 20 * 3 + 180
    per_request = records.values_list("request_id", flat=True)
    assert len(set(per_request)) == 200
    # No event had two attempts at once: each attempt started after the previous one finished
    for event in events.values():
        rows = list(event.attempt_rows.order_by("number"))
        for before_row, after_row in zip(rows, rows[1:], strict=False):
            assert before_row.finished_at is not None and before_row.finished_at <= after_row.started_at


def test_two_claims_at_once_split_the_events(world, engine):
    fn = deployed(world)
    env = Environment.objects.get(project=world.web, name="dev")
    for i in range(30):
        async_services.async_event_enqueue(actor=world.bob, function=fn, environment=env, payload={"i": i})
    results: list[list[Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def claim(name: str) -> None:
        from django.db import close_old_connections

        barrier.wait()
        try:
            results.append(async_services.async_events_claim(limit=30, runner=name))
        except BaseException as exc:  # a claim must never fail (e.g. on the attempt's unique key)
            errors.append(exc)
        finally:
            close_old_connections()

    if connection.vendor == "postgresql":
        threads = [threading.Thread(target=claim, args=(f"d{n}",)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:  # SQLite: one writer at a time; the second claim finds nothing left
        barrier = threading.Barrier(1)
        claim("d0")
        claim("d1")
    assert errors == [] and len(results) == 2
    ids = [c.event_id for batch in results for c in batch]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert AsyncAttempt.objects.count() == 30
