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
        self._socket_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self._inflight: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.draining = False

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)
        st = self.path.stat()
        self._socket_id = (st.st_dev, st.st_ino)

    async def drain(self, grace_s: float, hurry: asyncio.Event | None = None) -> int:
        """Graceful shutdown, first half: stop listening, answer new invocations on open
        connections as unavailable, and wait up to ``grace_s`` (or until ``hurry`` is set) for
        those in flight. Returns how many were still running when it stopped waiting."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            logger.info("supervisor: draining %d in-flight invocation(s), up to %s s", len(pending), grace_s)
            waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(asyncio.wait(pending))}
            if hurry is not None:
                waiters.add(asyncio.ensure_future(hurry.wait()))
            _, rest = await asyncio.wait(waiters, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in rest | waiters:
                waiter.cancel()
        return sum(1 for t in self._inflight if not t.done())

    async def close(self) -> None:
        self.draining = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        # Only the socket this server bound: never one that another process bound since.
        with contextlib.suppress(FileNotFoundError):
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == self._socket_id:
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()
        self._writers.add(writer)
        try:
            while True:
                message = await read_frame(reader)
                task = asyncio.create_task(self._handle(message, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if message.get("op") not in ("ping", "isolation", "reload"):
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        seq = message.get("seq")
        try:
            if message.get("op") == "ping":
                answer: dict[str, Any] = {
                    "seq": seq,
                    "pid": os.getpid(),
                    "draining": self.draining,
                    "inflight": sum(1 for t in self._inflight if not t.done()),
                }
            elif message.get("op") == "reload":
                await self.engine.reload_routes()
                answer = {"seq": seq, "ok": True}
            elif message.get("op") == "isolation":
                answer = {"seq": seq, "isolation": await self.engine.isolation()}
            elif self.draining:
                answer = {"seq": seq, "unavailable": "the supervisor is shutting down"}
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
        if "unavailable" in answer:
            return Outcome(
                request_id=str(frame["id"]),
                version=rv.number,
                status="unavailable",
                error={
                    "type": "EngineUnavailable",
                    "message": f"The function engine is unavailable: {answer['unavailable']}",
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


def supervisor_ping(path: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """Ask the supervisor at ``path`` whether it serves (blocking; for /readyz of a web
    process). Raises OSError/TimeoutError/ValueError when it does not answer as a supervisor."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(encode_frame({"op": "ping", "seq": 1}))
        buffer = b""
        while len(buffer) < 4 or len(buffer) < 4 + _HEADER.unpack(buffer[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the supervisor closed the connection")
            buffer += chunk
        (length,) = _HEADER.unpack(buffer[:4])
        answer = json.loads(buffer[4 : 4 + length])
    if not isinstance(answer, dict) or "pid" not in answer:
        raise ValueError(f"not a supervisor's answer: {answer!r:.200}")
    return answer


def engine_readiness() -> str | None:
    """The /readyz check "engine" of a web process whose engine is the supervisor (None: the
    engine runs in this process, nothing to check)."""
    from django.conf import settings

    if settings.STRATUS_ENGINE != "remote":
        return None
    path = Path(settings.STRATUS_SUPERVISOR_SOCKET)
    try:
        answer = supervisor_ping(path)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"the supervisor at {path} is unreachable ({type(exc).__name__}: {exc})") from None
    if answer.get("draining"):
        raise RuntimeError(f"the supervisor at {path} (pid {answer['pid']}) is shutting down")
    return f"supervisor pid {answer['pid']}"
