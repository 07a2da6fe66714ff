"""One running function instance, seen from the supervisor: the frame protocol over its
control socket (runtime/stratus_bootstrap/protocol.py), requests in flight, their logs.

The bootstrap serves requests in arrival order; with instance_concurrency > 1 the supervisor
pipelines up to that many requests on the socket, and each waits for its own reply frame.

What arrives on the socket is not trusted. The bootstraps split log lines at 16 KiB, but the
function runs in the same process and can write frames to the control fd itself, so the
supervisor enforces its own limits (``FrameLimits``): a frame's length prefix is checked
before a byte of its body is buffered, bodies are read into a buffer of exactly their size
(nothing grows and stays grown), and log lines are counted per request as they arrive. An
instance that breaks a limit is killed at once; its requests fail with ``LimitExceeded``,
whose message names the limit.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apps.engine.sandbox import ExitInfo, InstanceSpec, SpawnedInstance

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
# Frames up to this size are parsed out of one fixed read buffer; a bigger body gets a buffer
# of its own, exactly its size, dropped once the frame is dispatched.
_READ_BUFFER_BYTES = 64 * 1024
# How both bootstraps begin a log frame (the key order of their encoders): a frame too big for
# a log line is recognised as one by its first bytes and refused without reading the rest.
_LOG_FRAME_PREFIX = b'{"type":"log"'
_exits: set[asyncio.Task[None]] = set()


def response_frame_limit(max_body_bytes: int) -> int:
    """The biggest reply frame worth reading: a body at the gateway's limit, base64-encoded,
    plus 1 MiB for headers and JSON escapes. A body a little over the limit still arrives and
    gets the gateway's response_too_large; a frame past this is refused unread."""
    return (max_body_bytes + 2) // 3 * 4 + 1024 * 1024


@dataclass(frozen=True)
class FrameLimits:
    """What one instance may send (see the module docstring; README, "The local engine")."""

    # Characters: the bootstraps split at 16 KiB of UTF-8, which is never more characters
    # (a line of undecodable bytes becomes U+FFFD characters, 3 bytes each in UTF-8).
    log_line_chars: int = 16 * 1024
    log_lines_per_request: int = 10_000
    log_bytes_per_request: int = 1024 * 1024  # UTF-8 bytes of the lines' text
    response_frame_bytes: int = response_frame_limit(6 * 1024 * 1024)
    # Lines written outside any request (at import, by background threads) are kept, newest
    # first, up to these bounds; nothing stops an instance for them.
    orphan_lines: int = 1000
    orphan_bytes: int = 1024 * 1024

    @property
    def log_frame_bytes(self) -> int:
        # A line at the limit with every character escaped as \uXXXX, plus id, stream and keys.
        return self.log_line_chars * 6 + 1024


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


class LimitExceeded(InstanceDied):
    """The instance broke one of the supervisor's FrameLimits and was killed for it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(None, message)
        self.error_type = error_type
        self.message = message


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


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _InFlight:
    """One request waiting for its reply, and what it logged so far."""

    __slots__ = ("future", "logs", "log_bytes")

    def __init__(self, future: asyncio.Future[Reply], logs: list[LogLine]) -> None:
        self.future = future
        self.logs = logs
        self.log_bytes = 0


class _FrameReader(asyncio.BufferedProtocol):
    """Cuts the instance's byte stream into frames as it arrives (asyncio's buffered protocol:
    the socket is read straight into our buffers). Small frames come out of one fixed 64 KiB
    buffer; a bigger body is read into a bytearray of exactly its announced size, after the
    announced size has been checked against the limits."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.buf = bytearray(_READ_BUFFER_BYTES)
        self.start = 0  # unparsed bytes are buf[start:end]
        self.end = 0
        self.body: bytearray | None = None  # a big frame's body being filled
        self.got = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.body is not None:
            return memoryview(self.body)[self.got :]
        return memoryview(self.buf)[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.body is not None:
            self.got += nbytes
            if self.got == len(self.body):
                body, self.body = self.body, None
                self.instance._on_frame(body)
            return
        self.end += nbytes
        self._parse()

    def _parse(self) -> None:
        buf, instance = self.buf, self.instance
        limits = instance.limits
        while not instance.refused:
            available = self.end - self.start
            if available < _HEADER.size:
                break
            (length,) = _HEADER.unpack_from(buf, self.start)
            body_at = self.start + _HEADER.size
            if length > limits.log_frame_bytes:
                prefix = bytes(buf[body_at : min(self.end, body_at + len(_LOG_FRAME_PREFIX))])
                if prefix == _LOG_FRAME_PREFIX:
                    instance.refuse_log_line(f"a log frame of {length} bytes")
                    return
                if length > limits.response_frame_bytes:
                    instance.refuse_frame(length)
                    return
                if len(prefix) < len(_LOG_FRAME_PREFIX):
                    break  # not enough of the body yet to tell a log frame from a reply
            if available - _HEADER.size >= length:
                self.start = body_at + length
                instance._on_frame(buf[body_at : self.start])
                continue
            if _HEADER.size + length > len(buf):
                body = bytearray(length)
                self.got = self.end - body_at
                body[: self.got] = buf[body_at : self.end]
                self.body = body
                self.start = self.end = 0
                return
            break  # the rest of a frame that fits the buffer
        if self.start:
            left = self.end - self.start
            buf[:left] = buf[self.start : self.end]
            self.start, self.end = 0, left

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.body = None
        self.instance._on_connection_lost()


class Instance:
    def __init__(self, spawned: SpawnedInstance, spec: InstanceSpec, limits: FrameLimits | None = None) -> None:
        self.spawned = spawned
        self.spec = spec
        self.limits = limits or FrameLimits()
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
        self.refused: LimitExceeded | None = None  # the limit it broke, if any
        self._rss: int | None = None
        self._rss_at = 0.0
        self._pending: dict[str, _InFlight] = {}
        # The last answered request, whose lines may still arrive (Node: a timer the handler left
        # running after its answer): (request id, where its late lines go, lines it may still add).
        self._late: tuple[str, Callable[[LogLine], None], list[int]] | None = None
        self._orphan_logs: collections.deque[LogLine] = collections.deque()
        self._orphan_bytes = 0
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()  # after _on_exit
        self._transport: asyncio.Transport | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float) -> float:
        """Wait for the ``ready`` frame; returns init_ms. Raises InitFailed or InstanceDied."""
        transport, _ = await asyncio.get_running_loop().create_unix_connection(
            lambda: _FrameReader(self), sock=self.spawned.sock
        )
        self._transport = transport
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
        lines = list(self._orphan_logs)
        self._orphan_logs.clear()
        self._orphan_bytes = 0
        return lines

    async def request(
        self,
        message: dict[str, Any],
        timeout_s: float,
        logs: list[LogLine] | None = None,
        late_logs: Callable[[LogLine], None] | None = None,
    ) -> Reply:
        """Send one request frame and wait for its reply. TimeoutError when the function runs
        past ``timeout_s`` (the caller kills the instance), InstanceDied if it exits first (or
        its channel is gone), LimitExceeded if it broke a limit meanwhile. The request's log
        lines are appended to ``logs`` as they arrive, so the caller has them however it ends;
        lines with its id that arrive after the reply (until the next request) go to
        ``late_logs``, within the same per-request line limit."""
        transport = self._transport
        if self.refused is not None:
            raise self.refused
        if self.dead or transport is None or transport.is_closing():
            raise InstanceDied(self.exit_info, "the instance's channel is closed")
        request_id = str(message["id"])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._late = None
        entry = _InFlight(future, [] if logs is None else logs)
        self._pending[request_id] = entry
        # A timer on the future itself, not asyncio.wait_for (which wraps every request in
        # one more task and its callbacks on the gateway's hot path).
        timer = loop.call_later(timeout_s, _expire, future)
        try:
            try:
                transport.write(encode_frame(message))
            except (RuntimeError, OSError) as exc:
                # The channel broke under us (uvloop raises on a closed handle; the read side
                # may not have seen the end yet): the instance is as good as dead.
                self.kill()
                raise InstanceDied(self.exit_info, f"the instance's channel is closed ({exc})") from None
            return await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
            if late_logs is not None:
                self._late = (request_id, late_logs, [self.limits.log_lines_per_request - len(entry.logs)])

    # --- frames from the instance (called by _FrameReader) ---------------------------------

    def _on_frame(self, body: bytes | bytearray) -> None:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError included; nested ~1,000 deep
            message = None
        if not isinstance(message, dict):
            self._refuse("Runtime.ProtocolError", "The function sent a frame that is not a JSON object")
            return
        kind = message.get("type")
        if kind == "log":
            self._on_log(message)
            return
        if kind in ("ready", "init_error"):
            if not self._ready.done():
                self._ready.set_result(message)
            return
        entry = self._pending.get(str(message.get("id")))
        if entry is not None and not entry.future.done():
            entry.future.set_result(Reply(message, entry.logs))

    def _on_log(self, message: dict[str, Any]) -> None:
        text = message.get("text", "")
        if not isinstance(text, str):
            text = str(text)
        limits = self.limits
        if len(text) > limits.log_line_chars:
            self.refuse_log_line(f"a log line of {len(text)} characters")
            return
        line = LogLine(datetime.now(UTC), str(message.get("stream", "stdout")), text)
        size = _utf8_size(text)
        entry = self._pending.get(str(message.get("id")))
        late = self._late
        if entry is None and late is not None and late[0] == str(message.get("id")) and late[2][0] > 0:
            late[2][0] -= 1
            late[1](line)
            return
        if entry is None:
            # Outside any request (import-time chatter, a background thread): kept bounded.
            self._orphan_logs.append(line)
            self._orphan_bytes += size
            while len(self._orphan_logs) > limits.orphan_lines or self._orphan_bytes > limits.orphan_bytes:
                self._orphan_bytes -= _utf8_size(self._orphan_logs.popleft().text)
            return
        entry.log_bytes += size
        if len(entry.logs) >= limits.log_lines_per_request:
            self._refuse(
                "Runtime.LogLimitExceeded",
                f"The function wrote more than {limits.log_lines_per_request:,} log lines in one request "
                f"(the limit per request)",
            )
            return
        if entry.log_bytes > limits.log_bytes_per_request:
            self._refuse(
                "Runtime.LogLimitExceeded",
                f"The function wrote more than {limits.log_bytes_per_request:,} bytes of log lines in one "
                f"request (the limit per request)",
            )
            return
        entry.logs.append(line)

    def refuse_log_line(self, what: str) -> None:
        self._refuse(
            "Runtime.LogLineTooLong",
            f"The function wrote {what} to its control channel; a log line is limited to "
            f"{self.limits.log_line_chars:,} characters",
        )

    def refuse_frame(self, length: int) -> None:
        self._refuse(
            "Runtime.ResponseTooLarge",
            f"The function sent a frame of {length:,} bytes; a response frame is limited to "
            f"{self.limits.response_frame_bytes:,} bytes (the response body limit, base64-encoded, "
            f"plus headers)",
        )

    def _refuse(self, error_type: str, message: str) -> None:
        """Kill the instance for breaking a limit: nothing more of it is read, and every
        request waiting on it fails with the limit's name."""
        if self.refused is not None:
            return
        error = LimitExceeded(error_type, f"{message}: the instance was stopped.")
        self.refused = error
        logger.warning(
            "function instance %s stopped: %s",
            self.pid,
            error,
            extra={"function_id": self.spec.function_id, "version": self.spec.function_version},
        )
        self.kill()
        if self._transport is not None:
            self._transport.abort()
        self._fail_waiters(error)

    def _fail_waiters(self, error: InstanceDied) -> None:
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: start() re-raises it if it is waiting
        for entry in list(self._pending.values()):
            if not entry.future.done():
                entry.future.set_exception(error)

    def _on_connection_lost(self) -> None:
        self.dead = True
        # Held until it ends: the loop keeps only weak references to tasks.
        task = asyncio.get_running_loop().create_task(self._on_exit(), name=f"instance-{self.pid}-exit")
        _exits.add(task)
        task.add_done_callback(_exits.discard)

    async def _on_exit(self) -> None:
        try:
            try:
                self.exit_info = await asyncio.wait_for(self.spawned.wait_exit(), 5)
            except TimeoutError:
                self.spawned.kill()
                self.exit_info = None
            self._fail_waiters(self.refused or InstanceDied(self.exit_info))
        finally:
            if not self._closed.done():
                self._closed.set_result(None)

    # --- lifecycle ------------------------------------------------------------------------

    def kill(self) -> None:
        self.dead = True
        self.spawned.kill()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Ask the bootstrap to shut down (runs ASGI lifespan shutdown), then kill. Safe to call
        any number of times, at once too: the instance is stopped once."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(grace_s))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace_s: float) -> None:
        transport = self._transport
        if not self.dead and transport is not None and not transport.is_closing():
            try:
                transport.write(encode_frame({"type": "shutdown"}))
                await asyncio.wait_for(self.spawned.wait_exit(), grace_s)
            except (TimeoutError, RuntimeError, OSError):
                pass
        self.kill()
        if transport is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), grace_s)
            except TimeoutError:
                transport.abort()

    def peak_rss_kb(self) -> int | None:
        """The instance's peak RSS (VmHWM), read from /proc at most once a second: it only
        grows, and the read costs a syscall trio per request otherwise."""
        now = time.monotonic()
        if now - self._rss_at >= 1.0 or self._rss is None:
            self._rss = self.spawned.peak_rss_kb() or self._rss
            self._rss_at = now
        return self._rss
