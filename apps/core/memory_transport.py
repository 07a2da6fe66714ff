"""kombu's in-memory transport, woken by events instead of by polling.

The embedded default's broker lives in this process (apps/core/worker.py). kombu's virtual
transports poll: whenever the queue is empty, or the worker already holds as many
unacknowledged messages as its prefetch limit allows, ``drain_events`` sleeps
``polling_interval`` (1 s) before it looks again. A burst of deploy tasks then drained at
about two a second, and a pipeline run queued behind forty of them waited 20 s to start.

Here every put, ack and reject bumps a generation counter under a condition variable, and
the worker waits on that condition instead of sleeping: a queued task starts as soon as a
worker thread is free, and an idle worker costs nothing. ``polling_interval`` stays as the
longest wait between looks, a safety net for any state change that does not pass through
the three hooks (none is known).
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import memory


class _Wakeups:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def bump(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait_past(self, seen: int, timeout: float) -> None:
        """Return once the generation moved past ``seen`` (at once if it already did), or
        after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen, timeout)


wakeups = _Wakeups()


class Channel(memory.Channel):
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        wakeups.bump()

    def _put_fanout(self, exchange: str, message: Any, routing_key: str | None = None, **kwargs: Any) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        wakeups.bump()

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        # An ack frees a prefetch slot: the worker may take the next message now.
        super().basic_ack(delivery_tag, multiple)
        wakeups.bump()

    def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        wakeups.bump()


class Transport(memory.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A broker inside this process has no host: without this kombu's virtual transport
        # defaults to 'localhost' and warns "No hostname was supplied" each time the worker or
        # the producer pool opens a connection, a warning in every embedded console's log.
        return {"port": self.default_port}

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        # kombu.transport.virtual.Transport.drain_events, with the sleep replaced by a wait
        # for the next put/ack/reject.
        assert self.cycle is not None  # set when the transport is built
        started = monotonic()
        while True:
            seen = wakeups.generation
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                wait = self.polling_interval or 1.0
                if timeout is not None:
                    left = timeout - (monotonic() - started)
                    if left <= 0:
                        raise TimeoutError() from None  # socket.timeout, as kombu raises
                    wait = min(wait, left)
                wakeups.wait_past(seen, wait)
