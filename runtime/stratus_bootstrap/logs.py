"""Capture of everything user code writes to stdout/stderr as ``log`` frames.

File descriptors 1 and 2 are replaced (``os.dup2``) by the write ends of two pipes; a thread per
pipe splits what arrives into lines and sends one ``log`` frame per line, tagged with the request
in flight. ``sys.stdout``/``sys.stderr`` are rebound to line-buffered writers on fds 1/2, so Python
prints and C-level writes keep their relative order. ``sync()`` flushes and waits until everything
written so far has been sent, so a request's log frames precede its response.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable

from stratus_bootstrap.protocol import MAX_LOG_LINE, Channel


class _Pump(threading.Thread):
    def __init__(
        self, read_fd: int, stream: str, channel: Channel, marker: bytes, current_id: Callable[[], str | None]
    ) -> None:
        super().__init__(name=f"stratus-{stream}", daemon=True)
        self.read_fd = read_fd
        self.stream = stream
        self.channel = channel
        self.marker = marker
        self.current_id = current_id
        self.synced = 0
        self.cond = threading.Condition()

    def wait_synced(self, target: int, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.synced >= target, timeout=timeout)

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if text.endswith("\r"):
            text = text[:-1]
        with contextlib.suppress(OSError):
            self.channel.write({"type": "log", "id": self.current_id(), "stream": self.stream, "text": text})

    def run(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                if buf:
                    self._emit(buf)
                return
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                mk = buf.find(self.marker)
                if mk != -1 and (nl == -1 or mk < nl):
                    if mk:
                        self._emit(buf[:mk])
                    buf = buf[mk + len(self.marker) :]
                    with self.cond:
                        self.synced += 1
                        self.cond.notify_all()
                elif nl != -1:
                    self._emit(buf[:nl])
                    buf = buf[nl + 1 :]
                else:
                    # Keep a possible partial marker; split overlong lines.
                    while len(buf) > MAX_LOG_LINE + len(self.marker):
                        self._emit(buf[:MAX_LOG_LINE])
                        buf = buf[MAX_LOG_LINE:]
                    break


class LogCapture:
    """Redirects fds 1/2 and sys.stdout/sys.stderr into log frames."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.request_id: str | None = None
        self.marker = b"\x00\x1bSTRATUS-SYNC-" + os.urandom(8).hex().encode() + b"\x00"
        self._pumps: list[tuple[_Pump, int]] = []
        self._requested = 0
        self.original_stderr = os.dup(2)
        os.set_inheritable(self.original_stderr, False)

    def start(self) -> None:
        for target_fd, stream in ((1, "stdout"), (2, "stderr")):
            read_fd, write_fd = os.pipe()
            os.set_inheritable(read_fd, False)
            os.set_inheritable(write_fd, False)
            os.dup2(write_fd, target_fd)  # fds 1/2 stay inheritable for the user's subprocesses
            pump = _Pump(read_fd, stream, self.channel, self.marker, lambda: self.request_id)
            pump.start()
            self._pumps.append((pump, write_fd))
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115

    def sync(self, timeout: float = 2.0) -> None:
        """Flush Python buffers and wait until the pumps have sent everything written so far."""
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        if not self._pumps:
            return
        self._requested += 1
        target = self._requested
        for _, write_fd in self._pumps:
            try:
                os.write(write_fd, self.marker)
            except OSError:
                return
        for pump, _ in self._pumps:
            pump.wait_synced(target, timeout)
