"""/healthz: the process answers. /readyz: it can do its work (database, channel layer,
broker, and in the embedded default the in-process worker; with STRATUS_ENGINE=remote the
supervisor), else 503 naming what failed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# Informational sections of /readyz that other apps contribute (the engine's "isolation":
# what confines tenant code on this host). They never make the answer 503.
_reports: dict[str, Callable[[], Any]] = {}


# Checks that other apps contribute (the engine's "engine" when it is the supervisor): a
# check returns what to show after "ok", None when it does not apply, or raises (503).
_checks: dict[str, Callable[[], str | None]] = {}


def register_report(name: str, report: Callable[[], Any]) -> None:
    _reports[name] = report


def register_check(name: str, check: Callable[[], str | None]) -> None:
    _checks[name] = check


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_roundtrip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("readyz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.ping", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned another message")


def _check_broker() -> None:
    from console.celery import app

    if settings.STRATUS_EMBEDDED_WORKER:
        from apps.core import worker

        if not worker.is_running():
            raise RuntimeError("the in-process worker is not running")
        return
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    ok = True
    for name, check in (
        ("database", _check_database),
        ("channel_layer", async_to_sync(_channel_roundtrip)),
        ("broker", _check_broker),
        *_checks.items(),
    ):
        started = time.perf_counter()
        try:
            detail = check()
            if detail is None and name in _checks:
                continue  # does not apply to this process
            took = f"{(time.perf_counter() - started) * 1000:.1f} ms"
            checks[name] = f"ok ({detail}, {took})" if detail else f"ok ({took})"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; report it
            ok = False
            checks[name] = f"failed: {type(exc).__name__}: {exc}"
    body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
    for name, report in _reports.items():
        try:
            body[name] = report()
        except Exception as exc:  # noqa: BLE001 - informational: say what went wrong
            body[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return JsonResponse(body, status=200 if ok else 503)
