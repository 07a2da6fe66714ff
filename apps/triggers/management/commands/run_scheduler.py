"""`manage.py run_scheduler`: the schedules' 1 s loop as a process of its own (production),
beside the Celery workers. Any number may run: occurrences are claimed, never fired twice."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the trigger scheduler: claim due schedule occurrences every second and invoke them."

    def handle(self, *args: Any, **options: Any) -> None:
        from apps.triggers import scheduler

        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        loop = scheduler.start_in_process()
        self.stdout.write("scheduler: running (1 s tick)")
        stopping.wait()
        loop.stop()
        # Let fires in progress finish (their records would otherwise stay "running").
        scheduler.executor_shutdown(wait=True)
        from apps.triggers import dispatcher

        dispatcher.stop_in_process(wait=True)  # attempts in progress finish (else: lease expiry)
        self.stdout.write("scheduler: stopped")
