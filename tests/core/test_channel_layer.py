"""The embedded default's in-memory channel layer, sent to from threads other than the
receiver's (the worker and the records flusher publish that way)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from apps.core.channel_layer import InMemoryChannelLayer


def _receiver_on_an_idle_loop(layer: Any, group: str | None = None) -> tuple[str, concurrent.futures.Future[Any]]:
    """A receiver waiting on a plain asyncio loop of its own thread, with nothing else that
    could wake that loop: only a proper hand-off from the sender can."""
    ready: concurrent.futures.Future[str] = concurrent.futures.Future()
    received: concurrent.futures.Future[Any] = concurrent.futures.Future()

    async def main() -> None:
        channel = await layer.new_channel()
        if group:
            await layer.group_add(group, channel)
        ready.set_result(channel)
        received.set_result(await layer.receive(channel))

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True).start()
    channel = ready.result(5)
    time.sleep(0.1)  # it is waiting in the loop's select now
    return channel, received


@pytest.mark.parametrize("via_group", [False, True])
def test_a_send_from_another_thread_wakes_the_receiver(via_group: bool) -> None:
    layer = InMemoryChannelLayer()
    channel, received = _receiver_on_an_idle_loop(layer, group="run.1" if via_group else None)
    if via_group:
        async_to_sync(layer.group_send)("run.1", {"type": "run.lines", "n": 1})
    else:
        async_to_sync(layer.send)(channel, {"type": "run.lines", "n": 1})
    assert received.result(timeout=5) == {"type": "run.lines", "n": 1}


def test_a_group_send_from_a_thread_without_a_loop_wakes_the_receiver_in_order() -> None:
    """group_send_threadsafe (the records flusher's live-tail publish): no event loop of the
    sender's, the receiver's idle loop woken by the hand-off, a hundred messages in order."""
    layer = InMemoryChannelLayer()
    _, received = _receiver_on_an_idle_loop(layer, group="logs.f1")
    sender = threading.Thread(
        target=lambda: [layer.group_send_threadsafe("logs.f1", {"type": "log.lines", "n": n}) for n in range(100)]
    )
    sender.start()
    sender.join(5)
    assert received.result(timeout=5) == {"type": "log.lines", "n": 0}
    (channel,) = list(layer.channels)  # the queue holds the others, in order

    async def drain() -> list[int]:
        return [(await layer.receive(channel))["n"] for _ in range(99)]

    assert asyncio.run(drain()) == list(range(1, 100))


def test_sends_on_the_receivers_own_loop_and_before_it_waits_still_arrive_in_order() -> None:
    layer = InMemoryChannelLayer()

    async def main() -> list[Any]:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "x", "n": 1})  # no receiver yet
        await asyncio.to_thread(async_to_sync(layer.send), channel, {"type": "x", "n": 2})
        return [await layer.receive(channel), await layer.receive(channel)]

    assert [m["n"] for m in asyncio.run(main())] == [1, 2]
    assert layer.channels == {}  # drained queues are dropped


def test_a_receiver_whose_loop_stopped_does_not_hang_the_sender() -> None:
    layer = InMemoryChannelLayer()
    loop = asyncio.new_event_loop()
    waiting = threading.Event()

    async def receive_forever() -> None:
        channel = "gone.inmemory!abc"
        await layer.group_add("run.2", channel)
        waiting.set()
        await layer.receive(channel)

    task = loop.create_task(receive_forever())
    thread = threading.Thread(target=loop.run_until_complete, args=(asyncio.sleep(0.2),))
    thread.start()
    assert waiting.wait(5)
    thread.join(5)  # the loop has stopped, its receive still pending
    started = time.monotonic()
    async_to_sync(layer.group_send)("run.2", {"type": "run.lines"})
    assert time.monotonic() - started < 2
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()
