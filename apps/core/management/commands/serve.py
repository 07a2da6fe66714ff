"""Serve the console: one ASGI process (uvicorn). In the embedded default it also runs the
in-process Celery worker, so `make run` needs no other service."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core import worker

SWITCH_INTERVAL_S = 0.001


class Command(BaseCommand):
    help = "Serve the console (ASGI) on HOST:PORT; starts the in-process worker in the embedded default."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (production)")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.STRATUS_EMBEDDED_WORKER:
            if options["workers"] != 1:
                self.stderr.write("The embedded worker needs a single process; use --workers 1 or set REDIS_URL.")
                raise SystemExit(2)
            worker.start()
            self.stdout.write("in-process worker: started")
        if settings.STRATUS_ENGINE == "embedded":
            if options["workers"] != 1:
                self.stderr.write(
                    "The embedded engine needs a single process; use --workers 1 or STRATUS_ENGINE=remote."
                )
                raise SystemExit(2)
            # Started by the ASGI lifespan on the server's loop, before the first request:
            # reserved (min_instances) instances come back up from the database at once.
            self.stdout.write("local engine: embedded (starts with the server)")
        # Before the engine starts (lifespan): its firewall keeps tenant code off this port.
        if options["port"] not in settings.STRATUS_LISTEN_PORTS:
            settings.STRATUS_LISTEN_PORTS.append(options["port"])
        # One process runs the gateway's event loop and the threads of the API, the record
        # writer and the worker. Under load the loop holds the GIL, and a thread back from a
        # database call waits up to the switch interval (5 ms by default) for it, at every
        # query: a deploy of ~100 queries took seconds. 1 ms keeps that wait short; the loop
        # loses little (make bench: deploy under load and throughput both measure it).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.stdout.write(f"Stratus console: http://{options['host']}:{options['port']}/")
        uvicorn.run(
            "console.asgi:application",
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            log_level="warning",
            lifespan="on",
        )
