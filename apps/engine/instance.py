"""One running function instance, seen from the supervisor: the frame protocol over its
control socket (runtime/stratus_bootstrap/protocol.py), requests in flight, their logs.

The bootstrap serves requests in arrival order; with instance_concurrency > 1 the supervisor
pipelines up to that many requests on the socket, and each waits for its own reply frame.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apps.engine.sandbox import ExitInfo, InstanceSpec, SpawnedInstance

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
_read_loops: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class LogLine:
    ts: datetime
    stream: str
    text: str


@dataclass
class Reply:
    """The reply frame of one request and the log lines the instance wrote while serving it."""

    message: dict[str, Any]
    logs: list[LogLine] = field(default_factory=list)


class InstanceDied(Exception):
    """The instance exited (or its channel broke) before answering."""

    def __init__(self, info: ExitInfo | None, detail: str = "") -> None:
        self.info = info
        reason = info.reason if info else (detail or "the instance closed its channel")
        super().__init__(reason)
        self.out_of_memory = bool(info and info.out_of_memory)


class InitFailed(Exception):
    """The handler could not be loaded: ``error`` is the bootstrap's {type, message, stack}."""

    def __init__(self, error: dict[str, Any], logs: list[LogLine] | None = None) -> None:
        super().__init__(error.get("message", "init failed"))
        self.error = error
        self.logs = logs or []


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def _expire(future: asyncio.Future[Reply]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Instance:
    def __init__(self, spawned: SpawnedInstance, spec: InstanceSpec) -> None:
        self.spawned = spawned
        self.spec = spec
        self.pid = spawned.pid
        self.in_flight = 0
        self.served = 0
        self.started_at = time.monotonic()
        self.last_used = self.started_at
        self.init_ms: float | None = None
        self.import_ms: float | None = None
        self.dead = False
        self.exit_info: ExitInfo | None = None
        self.retire = False  # set after an out-of-memory error: serve nothing more
        self._rss: int | None = None
        self._rss_at = 0.0
        self._pending: dict[str, tuple[asyncio.Future[Reply], list[LogLine]]] = {}
        self._orphan_logs: list[LogLine] = []
        self._ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float) -> float:
        """Wait for the ``ready`` frame; returns init_ms. Raises InitFailed or InstanceDied."""
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self.spawned.sock)
        self._task = asyncio.create_task(self._read_loop(), name=f"instance-{self.pid}")
        # The loop keeps only weak references to tasks: hold the read loop until it ends, so a
        # forgotten instance is still reaped.
        _read_loops.add(self._task)
        self._task.add_done_callback(_read_loops.discard)
        try:
            message = await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            self.kill()
            raise InitFailed(
                {"type": "InitTimeout", "message": f"Init did not finish within {timeout_s:g} s", "stack": []},
                self.take_orphan_logs(),
            ) from None
        if message.get("type") == "init_error":
            self.kill()
            raise InitFailed(message.get("error") or {}, self.take_orphan_logs())
        self.init_ms = float(message.get("init_ms") or 0.0)
        return self.init_ms

    def take_orphan_logs(self) -> list[LogLine]:
        """Lines written outside any request (at import)."""
        lines, self._orphan_logs = self._orphan_logs, []
        return lines

    async def request(self, message: dict[str, Any], timeout_s: float) -> Reply:
        """Send one request frame and wait for its reply. TimeoutError when the function runs
        past ``timeout_s`` (the caller kills the instance), InstanceDied if it exits first."""
        if self.dead or self._writer is None:
            raise InstanceDied(self.exit_info, "the instance is not running")
        request_id = str(message["id"])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        logs: list[LogLine] = []
        self._pending[request_id] = (future, logs)
        # A timer on the future itself, not asyncio.wait_for (which wraps every request in
        # one more task and its callbacks on the gateway's hot path).
        timer = loop.call_later(timeout_s, _expire, future)
        try:
            self._writer.write(encode_frame(message))
            return await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)

    def logs_so_far(self, request_id: str) -> list[LogLine]:
        entry = self._pending.get(request_id)
        return list(entry[1]) if entry else []

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        try:
            while True:
                header = await reader.readexactly(4)
                (length,) = _HEADER.unpack(header)
                if length > MAX_FRAME_BYTES:
                    raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
                message = json.loads(await reader.readexactly(length))
                self._dispatch(message)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        finally:
            await self._on_exit()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "log":
            line = LogLine(datetime.now(UTC), str(message.get("stream", "stdout")), str(message.get("text", "")))
            entry = self._pending.get(str(message.get("id")))
            if entry is not None:
                entry[1].append(line)
            else:
                self._orphan_logs.append(line)
                del self._orphan_logs[:-1000]  # bounded: import-time chatter
            return
        if kind in ("ready", "init_error"):
            if not self._ready.done():
                self._ready.set_result(message)
            return
        entry = self._pending.get(str(message.get("id")))
        if entry is not None and not entry[0].done():
            entry[0].set_result(Reply(message, entry[1]))

    async def _on_exit(self) -> None:
        self.dead = True
        try:
            self.exit_info = await asyncio.wait_for(self.spawned.wait_exit(), 5)
        except TimeoutError:
            self.spawned.kill()
            self.exit_info = None
        error = InstanceDied(self.exit_info)
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: start() re-raises it if it is waiting
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)
        if self._writer is not None:
            self._writer.close()

    def kill(self) -> None:
        self.dead = True
        self.spawned.kill()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Ask the bootstrap to shut down (runs ASGI lifespan shutdown), then kill."""
        if not self.dead and self._writer is not None:
            try:
                self._writer.write(encode_frame({"type": "shutdown"}))
                await asyncio.wait_for(self.spawned.wait_exit(), grace_s)
            except (TimeoutError, ConnectionError, OSError):
                pass
        self.kill()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except TimeoutError:
                self._task.cancel()

    def peak_rss_kb(self) -> int | None:
        """The instance's peak RSS (VmHWM), read from /proc at most once a second: it only
        grows, and the read costs a syscall trio per request otherwise."""
        now = time.monotonic()
        if now - self._rss_at >= 1.0 or self._rss is None:
            self._rss = self.spawned.peak_rss_kb() or self._rss
            self._rss_at = now
        return self._rss
