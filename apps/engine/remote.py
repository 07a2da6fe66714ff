"""The supervisor as its own service: `manage.py run_supervisor` serves the engine on a Unix
socket, and web processes (STRATUS_ENGINE=remote) forward invocations to it.

Each side keeps its own routing table (same loader, same change announcements). A web
process resolves the URL, checks the token and picks the version; it sends the supervisor the
version's identity (function, environment, binding, number, pool key) and the request frame.
The supervisor finds that version in its table, or builds it from the database when it is
not routed (the invoke API trying another version) or its table is a moment behind.

Frames are the bootstrap's framing (4-byte length + JSON); requests carry a ``seq`` so many
travel at once on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

from apps.engine.engine import CallSite, Engine, Outcome, RoutedEngine
from apps.engine.instance import LogLine, encode_frame
from apps.engine.routing import DRAFT_NUMBER, RouteVersion, draft_version_from_db, version_from_db

logger = logging.getLogger(__name__)
_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (length,) = _HEADER.unpack(await reader.readexactly(4))
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        message = json.loads(await reader.readexactly(length))
    except RecursionError:  # a function's answer nested ~1,000 deep, plus our framing
        raise ValueError("a frame nested too deeply to decode") from None
    if not isinstance(message, dict):
        raise ValueError("a frame must hold a JSON object")
    return message


def outcome_to_wire(outcome: Outcome) -> dict[str, Any]:
    return {
        "request_id": outcome.request_id,
        "version": outcome.version,
        "status": outcome.status,
        "reply": outcome.reply,
        "error": outcome.error,
        "logs": [[line.ts.isoformat(), line.stream, line.text] for line in outcome.logs],
        "duration_ms": outcome.duration_ms,
        "init_duration_ms": outcome.init_duration_ms,
        "cold_start": outcome.cold_start,
        "peak_rss_kb": outcome.peak_rss_kb,
    }


def outcome_from_wire(data: dict[str, Any]) -> Outcome:
    return Outcome(
        request_id=data["request_id"],
        version=data["version"],
        status=data["status"],
        reply=data.get("reply"),
        error=data.get("error"),
        logs=[LogLine(datetime.fromisoformat(ts), stream, text) for ts, stream, text in data.get("logs", [])],
        duration_ms=data.get("duration_ms", 0.0),
        init_duration_ms=data.get("init_duration_ms"),
        cold_start=data.get("cold_start", False),
        peak_rss_kb=data.get("peak_rss_kb"),
    )


def version_identity(rv: RouteVersion, site: CallSite) -> dict[str, Any]:
    return {
        "function_id": site.function_id,
        "environment_id": site.environment_id,
        "binding_id": rv.pool_key[0],
        "number": rv.number,
        "pool_key": list(rv.pool_key),
        "draft": rv.number == DRAFT_NUMBER,
    }


def _build_version(identity: dict[str, Any]) -> RouteVersion | None:
    """A version straight from the database (not routed, or routed after our last reload)."""
    from django.db import connection

    try:
        if identity.get("draft"):
            return draft_version_from_db(function_id=identity["function_id"], environment_id=identity["environment_id"])
        return version_from_db(
            function_id=identity["function_id"],
            environment_id=identity["environment_id"],
            number=identity["number"],
            binding_id=identity["binding_id"],
        )
    finally:
        connection.close()


class SupervisorServer:
    """Serves an Engine on a Unix socket (owner-only: the web processes run as our user)."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self.engine = engine
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None
        self._adhoc: dict[tuple[Any, ...], RouteVersion] = {}

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await read_frame(reader)
                task = asyncio.create_task(self._handle(message, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _handle(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        seq = message.get("seq")
        try:
            if message.get("op") == "reload":
                await self.engine.reload_routes()
                answer: dict[str, Any] = {"seq": seq, "ok": True}
            elif message.get("op") == "isolation":
                answer = {"seq": seq, "isolation": await self.engine.isolation()}
            else:
                answer = {"seq": seq, "outcome": outcome_to_wire(await self._invoke(message))}
        except Exception as exc:
            logger.exception("supervisor request failed")
            answer = {"seq": seq, "failure": f"{type(exc).__name__}: {exc}"}
        # The web process may be gone meanwhile (uvloop raises RuntimeError on a closed handle).
        if not writer.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(encode_frame(answer))

    async def _invoke(self, message: dict[str, Any]) -> Outcome:
        identity = message["version"]
        rv = await self._resolve(identity)
        if rv is None:
            raise LookupError(f"version {identity['number']} of function {identity['function_id']} does not exist")
        site = CallSite(**message["site"])
        started_at = datetime.fromisoformat(message["started_at"])
        return await self.engine.invoke(rv, message["frame"], site=site, started_at=started_at)

    async def _resolve(self, identity: dict[str, Any]) -> RouteVersion | None:
        key = tuple(identity["pool_key"])
        for route in self.engine.routes.values():
            if route.binding_id == identity["binding_id"]:
                rv = route.versions.get(identity["number"])
                if rv is not None and rv.pool_key == key:
                    return rv
        rv = self._adhoc.get(key)
        if rv is None:
            rv = await asyncio.to_thread(_build_version, identity)
            # A draft saved again since the web process asked runs as saved now, but is not
            # remembered under the older content's key.
            if rv is not None and rv.pool_key == key:
                if len(self._adhoc) > 1000:
                    self._adhoc.clear()
                self._adhoc[key] = rv
        return rv


class RemoteEngine(RoutedEngine):
    """A web process's view of the supervisor: same interface as Engine."""

    def __init__(self, path: Path, *, resync_s: float | None = None) -> None:
        super().__init__(resync_s=resync_s)
        self.path = Path(path)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._seq = 0
        self._connect_lock: asyncio.Lock | None = None

    async def start(self) -> None:
        self._connect_lock = asyncio.Lock()
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self._writer is not None:
            self._writer.close()

    async def _connection(self) -> asyncio.StreamWriter:
        assert self._connect_lock is not None
        async with self._connect_lock:
            if self._writer is None or self._writer.is_closing():
                reader, writer = await asyncio.open_unix_connection(str(self.path))
                self._writer = writer
                self._reader_task = asyncio.create_task(self._read_loop(reader))
            return self._writer

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                future = self._pending.pop(int(message.get("seq", -1)), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            lost = ConnectionError("the supervisor closed the connection")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()
            if self._writer is not None:
                self._writer.close()

    async def _call(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        writer = await self._connection()
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        try:
            try:
                writer.write(encode_frame({**message, "seq": seq}))
            except RuntimeError as exc:  # uvloop: the connection closed since _connection()
                raise ConnectionError(f"the supervisor connection is closed ({exc})") from None
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(seq, None)

    async def isolation(self) -> dict[str, Any]:
        answer = await self._call({"op": "isolation"}, 5)
        return dict(answer["isolation"])

    async def invoke(
        self, rv: RouteVersion, frame: dict[str, Any], *, site: CallSite, started_at: datetime | None = None
    ) -> Outcome:
        from datetime import UTC

        started_at = started_at or datetime.now(UTC)
        message = {
            "op": "invoke",
            "version": version_identity(rv, site),
            "site": {
                "function_id": site.function_id,
                "environment_id": site.environment_id,
                "binding_id": site.binding_id,
                "trigger": site.trigger,
            },
            "started_at": started_at.isoformat(),
            "frame": frame,
        }
        try:
            answer = await self._call(message, rv.spec.timeout_s + 30)
        except (OSError, ConnectionError, TimeoutError) as exc:
            return Outcome(
                request_id=str(frame["id"]),
                version=rv.number,
                status="unavailable",
                error={
                    "type": "EngineUnavailable",
                    "message": f"The function engine is unavailable: {exc}",
                    "stack": [],
                },
            )
        if "outcome" not in answer:
            return Outcome(
                request_id=str(frame["id"]),
                version=rv.number,
                status="unavailable",
                error={"type": "EngineError", "message": str(answer.get("failure", "unknown failure")), "stack": []},
            )
        return outcome_from_wire(answer["outcome"])
