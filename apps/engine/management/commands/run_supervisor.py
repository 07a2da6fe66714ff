"""Run the local engine as its own service (production): function instances live here, and
web processes started with STRATUS_ENGINE=remote reach it over STRATUS_SUPERVISOR_SOCKET.

One per data directory (STRATUS_SUPERVISOR_LOCK, an flock held for the process's lifetime): a
second one exits at once, naming the holder, without touching the socket. SIGTERM/SIGINT: stop
taking invocations, let those in flight finish for up to STRATUS_SHUTDOWN_GRACE_S, then stop
the instances; a second signal stops waiting."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run the function supervisor (the local engine) on a Unix socket."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--socket", default=str(settings.STRATUS_SUPERVISOR_SOCKET))

    def handle(self, *args: Any, **options: Any) -> None:
        from apps.engine.supervisor_lock import SupervisorLock, SupervisorRunning

        lock = SupervisorLock(settings.STRATUS_SUPERVISOR_LOCK)
        try:
            lock.acquire()
        except SupervisorRunning as exc:
            raise CommandError(f"supervisor: not starting: {exc}") from None
        try:
            asyncio.run(self._run(options["socket"]))
        finally:
            lock.release()

    async def _run(self, path: str) -> None:
        from apps.engine.host import build_local_engine, listen_for_route_changes
        from apps.engine.remote import SupervisorServer
        from apps.monitoring.sink import get_sink

        sink = get_sink()
        sink.start()
        engine = build_local_engine()
        await engine.start()
        server = SupervisorServer(engine, Path(path))
        await server.start()
        tasks = []
        if settings.REDIS_URL:
            tasks.append(asyncio.create_task(listen_for_route_changes(engine)))
        self.stdout.write(f"supervisor: serving the local engine on {path}")
        self.stdout.flush()
        stop = asyncio.Event()
        hurry = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            (hurry if stop.is_set() else stop).set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await stop.wait()
        grace = float(settings.STRATUS_SHUTDOWN_GRACE_S)
        self.stdout.write(f"supervisor: shutting down, in-flight invocations get up to {grace:g} s")
        self.stdout.flush()
        left = await server.drain(grace, hurry)
        if left:
            self.stderr.write(f"supervisor: {left} invocation(s) still running after the grace period are cut off")
        for task in tasks:
            task.cancel()
        await server.close()
        await engine.close()
        sink.stop()
        self.stdout.write("supervisor: stopped")
        self.stdout.flush()
