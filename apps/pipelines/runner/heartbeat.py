"""The worker's pulse on a run: ``heartbeat_at`` refreshed every ``HEARTBEAT_S`` while this
process works on it (the reaper fails a run whose pulse stopped), and the first sign that
the run left RUNNING under us (canceled or reaped elsewhere)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.db import connection
from django.utils import timezone

from apps.pipelines.models import Run

logger = logging.getLogger(__name__)

HEARTBEAT_S = 2.0


def worker_name() -> str:
    """This thread of this process on this host: the ``worker`` a claimed run records."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class Heartbeat:
    """Refreshes heartbeat_at every HEARTBEAT_S; notices a cancel made elsewhere."""

    def __init__(self, run_id: int, worker: str) -> None:
        self.run_id = run_id
        self.worker = worker
        self.stop_event = threading.Event()
        self.stopped = threading.Event()  # the run left RUNNING under us (canceled, reaped)
        self.thread = threading.Thread(target=self._loop, name=f"run-{run_id}-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self.stop_event.wait(HEARTBEAT_S):
                try:
                    updated = Run.objects.filter(pk=self.run_id, state=Run.State.RUNNING, worker=self.worker).update(
                        heartbeat_at=timezone.now()
                    )
                    if not updated:
                        self.stopped.set()
                except Exception:  # noqa: BLE001 - the next beat tries again
                    logger.exception("heartbeat of run %s failed", self.run_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
