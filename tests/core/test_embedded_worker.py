"""The embedded worker drains a burst of queued tasks at once, not one poll at a time.

kombu's in-memory transport used to sleep its 1 s polling interval whenever the worker held
its prefetch limit, so 40 queued tasks took ~20 s and a pipeline run queued behind a burst of
deploys waited that long (apps/core/memory_transport.py). The bound below is 4x what the
burst takes here and still a third of what the polling transport needed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from celery import shared_task

BURST = 40
_done: list[int] = []
_done_lock = threading.Lock()


@shared_task(name="tests.core.burst_task")
def burst_task(n: int) -> None:
    with _done_lock:
        _done.append(n)


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_tasks_drains_without_polling_pauses(settings):
    from apps.core import worker

    started_here = not worker.is_running()
    worker.start()
    try:
        _done.clear()
        begin = time.monotonic()
        for n in range(BURST):
            burst_task.delay(n)
        deadline = begin + 7.0
        while time.monotonic() < deadline and len(_done) < BURST:
            time.sleep(0.01)
        elapsed = time.monotonic() - begin
        assert sorted(_done) == list(range(BURST)), f"{len(_done)} of {BURST} tasks ran within {elapsed:.1f} s"
    finally:
        if started_here:
            worker.stop()


def test_a_waiting_consumer_wakes_on_put_not_on_its_polling_interval():
    from kombu import Connection, Exchange, Queue

    from apps.core.memory_transport import Transport

    queue = Queue("wake-test", Exchange("wake-test"), routing_key="wake-test")
    received: list[float] = []
    put_at: list[float] = []

    def on_message(body: object, message: Any) -> None:
        received.append(time.monotonic())
        message.ack()

    def put() -> None:
        time.sleep(0.2)
        with Connection("memory://", transport=Transport) as other:
            put_at.append(time.monotonic())
            other.Producer().publish({"x": 1}, exchange=queue.exchange, routing_key="wake-test", declare=[queue])

    with (
        Connection("memory://", transport=Transport, transport_options={"polling_interval": 30}) as conn,
        conn.Consumer(queue, callbacks=[on_message]),
    ):
        thread = threading.Thread(target=put)
        thread.start()
        conn.drain_events(timeout=10)  # polling would first look again after 30 s
        thread.join()
    assert received, "nothing delivered"
    assert received[0] - put_at[0] < 5.0
