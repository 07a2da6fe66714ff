"""The live tail for token clients: ``GET /api/v1/functions/{id}/logs/stream``, Server-Sent
Events (text/event-stream) with the websocket's filters (monitoring/tail.py).

Events: ``backlog``, ``lines``, ``dropped`` and ``closing``, each ``data:`` one JSON object as
on the websocket; the event ``id:`` is the cursor, so a client that reconnects with
``Last-Event-ID`` (EventSource does) resumes with no gap and no duplicate. A comment line
(``: heartbeat``) every STRATUS_LOG_TAIL_HEARTBEAT_S keeps proxies from closing a quiet stream.

Served by the ASGI app as an async iterator: while no line comes, the stream waits on the
channel layer and holds neither a thread nor a database connection (reads happen in a
worker thread that hands its connection back, tail.db_call)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from apps.monitoring import tail
from apps.monitoring.services import log_control_group_name

logger = logging.getLogger(__name__)


def sse_event(frame: dict[str, Any]) -> bytes:
    data = json.dumps(frame, separators=(",", ":"))
    cursor = frame.get("cursor")
    head = f"id: {cursor}\n" if cursor is not None else ""
    return f"{head}event: {frame['type']}\ndata: {data}\n\n".encode()


async def event_stream(
    *, log_tail: tail.LogTail, filters: tail.Filters, backlog: int, after: int | None
) -> AsyncIterator[bytes]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    groups = [log_control_group_name(function_id=log_tail.function_id), log_tail.group_for(filters)]
    for group in groups:
        await layer.group_add(group, channel)  # first: nothing committed meanwhile slips by
    closing = asyncio.Event()

    async def listen() -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "log.lines":
                await log_tail.on_message(message)
            elif message.get("type") == "log.function_deleted":
                log_tail.push_message({"type": "closing", "reason": "function_deleted"})
                closing.set()
                return

    listener: asyncio.Task[None] | None = None
    try:
        yield b": stream open\n\n"
        await log_tail.start(filters=filters, backlog=backlog, after=after)
        listener = asyncio.create_task(listen())
        heartbeat = float(getattr(settings, "STRATUS_LOG_TAIL_HEARTBEAT_S", 15.0))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(log_tail.ready.wait(), timeout=heartbeat)
            frames = log_tail.take()
            if frames:
                yield b"".join(sse_event(frame) for frame in frames)
            else:
                yield b": heartbeat\n\n"
            if closing.is_set() and not log_tail.frames:
                return
            if listener.done() and not closing.is_set():
                listener.result()  # the channel layer failed: end the stream (the client resumes)
    finally:
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        for group in groups:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)
