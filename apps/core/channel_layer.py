"""The embedded default's channel layer: Channels' in-memory layer, safe across threads.

Channels' InMemoryChannelLayer keeps an asyncio.Queue per channel and puts into it from
whichever thread sends. A consumer waits on that queue on the server's loop, while run log
lines and live-tail lines are published from other threads (the worker, the records
flusher), each through async_to_sync on a loop of its own: the put then wakes the waiting
consumer from a foreign thread, which asyncio does not support (the server's loop only
noticed on its next I/O or timer, ~100 ms later under uvicorn, and the queue's internals
were touched from two threads at once).

Here a queue remembers the loop of the consumer receiving on it, and a send from any other
loop is handed to that loop (run_coroutine_threadsafe) to put the message there. A lock
orders "a receiver claims the queue" against "a sender looks for its owner", so no message
is put from a foreign thread into a queue that a receiver is about to wait on, and none is
put into a queue that was just dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

HANDOFF_S = 5.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._owners: dict[str, asyncio.AbstractEventLoop] = {}  # channel -> its receiver's loop

    def _queue(self, channel: str) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        return queue

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        running = asyncio.get_running_loop()
        with self._lock:
            owner = self._owners.get(channel)
            # An owner loop that no longer runs (a server that stopped with a receive pending)
            # would never put the message: nobody waits there, so put it here.
            if owner is None or owner is running or not owner.is_running():
                try:
                    self._queue(channel).put_nowait((time.time() + self.expiry, deepcopy(message)))
                except asyncio.QueueFull:
                    raise ChannelFull(channel) from None
                return
        # The receiver's loop puts it, and so wakes the receiver the way asyncio expects. A loop
        # that stops before it gets to it must not hang the sender: give up after HANDOFF_S.
        handoff = asyncio.run_coroutine_threadsafe(self.send(channel, message), owner)
        try:
            await asyncio.wait_for(asyncio.wrap_future(handoff), HANDOFF_S)
        except TimeoutError:
            handoff.cancel()
            raise ChannelFull(channel) from None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.group_send_threadsafe(group, message, running=asyncio.get_running_loop())

    def group_send_threadsafe(
        self, group: str, message: dict[str, Any], *, running: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """group_send without an event loop of the caller's: what a thread with none (the
        records flusher publishing live-tail lines) calls, so a publish costs no async_to_sync
        (a loop made and run per call: milliseconds). A member whose receiver waits on another
        loop gets the message queued on that loop without waiting for it (call_soon_threadsafe
        runs callbacks in order, so a channel's messages stay in order): ten watchers cost one
        wake-up of the server's loop, not ten round trips to it in turn. A member nobody waits
        on is put here, under the lock that receive() claims its queue with. A full queue
        misses the message, as in Channels."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        # The base class iterates the group's live dict, which a consumer on another thread
        # may change meanwhile: iterate a copy.
        with self._lock:
            channels = list(self.groups.get(group, {}))
        for channel in channels:
            item = (time.time() + self.expiry, deepcopy(message))
            with self._lock:  # the owner checked and the put made under one lock, as in send()
                owner = self._owners.get(channel)
                if owner is None or owner is running or not owner.is_running():
                    self._put_locked(channel, item)
                    continue
            owner.call_soon_threadsafe(self._put, channel, item)

    def _put(self, channel: str, item: tuple[float, dict[str, Any]]) -> None:
        with self._lock:
            self._put_locked(channel, item)

    def _put_locked(self, channel: str, item: tuple[float, dict[str, Any]]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue(channel).put_nowait(item)

    async def receive(self, channel: str) -> Any:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        with self._lock:
            queue = self._queue(channel)
            self._owners[channel] = asyncio.get_running_loop()
        try:
            _, message = await queue.get()
        finally:
            with self._lock:
                if queue.empty():
                    self.channels.pop(channel, None)
                    self._owners.pop(channel, None)
        return message

    async def flush(self) -> None:
        with self._lock:
            self._owners = {}
        await super().flush()
