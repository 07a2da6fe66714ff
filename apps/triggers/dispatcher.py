"""The asynchronous events' dispatcher: a loop that claims due events and runs their attempts
on a thread pool, next to the scheduler (started and stopped with it: the embedded default's
worker, `manage.py run_scheduler`, or every Celery worker with STRATUS_SCHEDULER_IN_WORKER).

It claims only as many events as it has free threads: an event claimed but waiting in a
queue here would hold a lease it is not using, and another dispatcher with free threads
could not take it. It polls every POLL_S, and an enqueue in this process wakes it at once
(``wake``, after the commit). Any number of dispatchers may run: claims are exclusive
(apps.triggers.async_services.async_events_claim).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

from apps.triggers import async_services

log = logging.getLogger(__name__)

POLL_S = 0.2


class Dispatcher:
    def __init__(self, workers: int | None = None, poll_s: float = POLL_S) -> None:
        self.workers = workers or int(getattr(settings, "STRATUS_ASYNC_WORKERS", 16))
        self.poll_s = poll_s
        self._free = threading.Semaphore(self.workers)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="stratus-async")
        self._thread = threading.Thread(target=self._run, name="stratus-async-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        if self._executor is not None:
            self._executor.shutdown(wait=wait)
        self._executor = None

    def wake(self) -> None:
        self._wake.set()

    def free_slots(self) -> int:
        with self._busy_lock:
            return self.workers - self._busy

    def dispatch_once(self) -> int:
        """Claim as many due events as there are free threads and start their attempts."""
        free = self.free_slots()
        if free <= 0 or self._executor is None:
            return 0
        claimed = async_services.async_events_claim(limit=free)
        for item in claimed:
            with self._busy_lock:
                self._busy += 1
            self._executor.submit(self._attempt, item.event_id, item.number)
        return len(claimed)

    def _attempt(self, event_id: int, number: int) -> None:
        close_old_connections()
        try:
            async_services.async_attempt_run(event_id=event_id, number=number)
        except Exception:
            log.exception("async event %s: attempt %s failed", event_id, number)
        finally:
            close_old_connections()
            with self._busy_lock:
                self._busy -= 1
            self._wake.set()  # a thread is free: look for more at once

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            claimed = 0
            try:
                close_old_connections()
                claimed = self.dispatch_once()
            except Exception:
                log.exception("async dispatch failed")
            # A full batch may mean more are due: go again without waiting.
            if not claimed or self.free_slots() == 0:
                self._wake.wait(self.poll_s)
        close_old_connections()


_dispatcher: Dispatcher | None = None
_lock = threading.Lock()


def wake() -> None:
    dispatcher = _dispatcher
    if dispatcher is not None:
        dispatcher.wake()


def start_in_process() -> Dispatcher:
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            _dispatcher = Dispatcher()
            _dispatcher.start()
        return _dispatcher


def stop_in_process(wait: bool = False) -> None:
    global _dispatcher
    with _lock:
        dispatcher, _dispatcher = _dispatcher, None
    if dispatcher is not None:
        dispatcher.stop(wait=wait)
