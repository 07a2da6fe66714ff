"""Run the local engine as its own service (production): function instances live here, and
web processes started with STRATUS_ENGINE=remote reach it over STRATUS_SUPERVISOR_SOCKET."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the function supervisor (the local engine) on a Unix socket."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--socket", default=str(settings.STRATUS_SUPERVISOR_SOCKET))

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._run(options["socket"]))

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
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await server.close()
        await engine.close()
        sink.stop()
