"""The outbox (apps/core/outbox.py): a row per task a change owes the broker, sent once
however many senders race for it; /readyz shows what waits; and route announcements that
Redis refused reach the other processes as soon as Redis answers again (apps/engine/host.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery import shared_task
from django.db import transaction
from django.utils import timezone

from apps.core import outbox
from apps.core.models import Outbox
from apps.engine import host
from tests.broker import private_redis, wait_until  # noqa: F401


@shared_task(name="tests.core.outbox_probe")
def outbox_probe(n: int, label: str = "") -> None:
    """Never consumed here: the tests count its sends."""


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    lock = threading.Lock()

    def apply_async(args: Any = None, kwargs: Any = None, **_: Any) -> None:
        time.sleep(0.05)  # a broker round trip: long enough for racing senders to overlap
        with lock:
            calls.append((args, kwargs))

    from console.celery import app

    monkeypatch.setattr(app.tasks[outbox_probe.name], "apply_async", apply_async)
    return calls


@pytest.mark.django_db(transaction=True)
def test_the_after_commit_send_and_racing_reconcilers_send_a_row_once(
    sends: list[tuple[Any, Any]],
) -> None:
    callbacks: list[Any] = []
    with pytest.MonkeyPatch.context() as patch, transaction.atomic():
        patch.setattr(transaction, "on_commit", callbacks.append)  # held back, run below
        pk = outbox.enqueue_after_commit(outbox_probe, 7, label="x")
    assert sends == [] and len(callbacks) == 1  # the row is committed; nothing sent yet

    # The after-commit send and three drains (other processes' reconcilers, the periodic
    # task) all at once: one of them sends, the others find the row taken or sent.
    racers = [threading.Thread(target=callbacks[0])] + [threading.Thread(target=outbox.drain) for _ in range(3)]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join(10)
    # and once more afterwards, as a late reconciler would
    outbox.drain()
    outbox.send(pk)

    assert sends == [((7,), {"label": "x"})]
    row = Outbox.objects.get(pk=pk)
    assert row.sent_at is not None and row.attempts == 1 and row.last_error == ""


@pytest.mark.django_db
def test_readyz_shows_how_many_tasks_wait_and_for_how_long(client: Any) -> None:
    old = timezone.now() - timedelta(minutes=5)
    Outbox.objects.create(task="x", next_attempt_at=old, attempts=3, last_error="OperationalError: refused")
    Outbox.objects.filter().update(created_at=old)
    Outbox.objects.create(task="y", next_attempt_at=timezone.now(), sent_at=timezone.now())

    report = client.get("/readyz").json()["outbox"]

    assert report["pending"] == 1
    assert 299 <= report["oldest_age_s"] <= 330
    assert report["last_error"] == "OperationalError: refused"


class CountingEngine:
    def __init__(self) -> None:
        self.reloads = 0

    async def reload_routes(self) -> None:
        self.reloads += 1


class Listener:
    """host.listen_for_route_changes on its own loop in a thread, as a web process runs it."""

    def __init__(self) -> None:
        self.engine = CountingEngine()
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.task = self.loop.create_task(host.listen_for_route_changes(self.engine))  # type: ignore[arg-type]
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)


def test_a_route_change_redis_refused_reaches_listeners_as_soon_as_redis_answers(
    private_redis: Any,  # noqa: F811
    settings: Any,
) -> None:
    settings.REDIS_URL = private_redis.url
    admin = redis.Redis(port=private_redis.port)
    listener = Listener()
    try:
        wait_until(lambda: listener.engine.reloads == 1, timeout=5, what="the listener subscribed")
        # Given Redis refuses new connections while the listener's stays open (max clients
        # reached: the listener sees nothing wrong, so nothing makes it resync)
        admin.config_set("maxclients", 1)  # below what is connected: those stay, new ones are refused
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=private_redis.port).ping()

        # When a deploy announces its routes
        host.routes_changed((42,))
        time.sleep(1.5)
        assert listener.engine.reloads == 1  # the publish could not go out

        # Then once Redis takes connections again the announcement goes out, in seconds,
        # not at the listener's periodic resync
        admin.config_set("maxclients", 10000)
        wait_until(lambda: listener.engine.reloads >= 2, timeout=8, what="the listener heard the republished change")
    finally:
        listener.stop()
        outbox.reconciler.join(5)


def test_a_listener_reloads_when_it_gets_back_to_a_restarted_redis(
    private_redis: Any,  # noqa: F811
    settings: Any,
) -> None:
    settings.REDIS_URL = private_redis.url
    listener = Listener()
    try:
        wait_until(lambda: listener.engine.reloads == 1, timeout=5, what="the listener subscribed")
        private_redis.stop()
        time.sleep(0.5)
        private_redis.start()
        # Announcements made while it was away are lost: it reloads as soon as it is back.
        wait_until(lambda: listener.engine.reloads >= 2, timeout=8, what="a reload on resubscribing")
    finally:
        listener.stop()
