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
import select
import sys
import threading
from collections.abc import Callable

from stratus_bootstrap.protocol import MAX_LOG_LINE, Channel


class _Pump(threading.Thread):
    """Reads one pipe, sends a ``log`` frame per line. Everything that touches the pipe and
    ``buf`` happens under ``lock``, so ``drain()`` from the serving thread and this thread
    never interleave: when a drain under the lock finds the pipe empty, every byte written
    before it has been sent."""

    def __init__(self, read_fd: int, stream: str, channel: Channel, current_id: Callable[[], str | None]) -> None:
        super().__init__(name=f"stratus-{stream}", daemon=True)
        self.read_fd = read_fd
        self.stream = stream
        self.channel = channel
        self.current_id = current_id
        self.lock = threading.Lock()
        self.buf = b""
        self.eof = False
        os.set_blocking(read_fd, False)

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if text.endswith("\r"):
            text = text[:-1]
        with contextlib.suppress(OSError):
            self.channel.write({"type": "log", "id": self.current_id(), "stream": self.stream, "text": text})

    def drain(self, *, partial: bool) -> None:
        """Send every complete line the pipe holds now (and, with ``partial``, what follows
        the last newline too); at end of file, everything. Call with ``lock`` held."""
        while not self.eof:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                partial = True
                break
            self.buf += chunk
            while True:
                nl = self.buf.find(b"\n")
                if nl == -1:
                    break
                self._emit(self.buf[:nl])
                self.buf = self.buf[nl + 1 :]
            while len(self.buf) > MAX_LOG_LINE:  # split overlong lines
                self._emit(self.buf[:MAX_LOG_LINE])
                self.buf = self.buf[MAX_LOG_LINE:]
        if partial and self.buf:
            self._emit(self.buf)
            self.buf = b""

    def run(self) -> None:
        # Output written between requests (a background thread, a subprocess) goes out as it
        # comes; within a request the serving thread's sync() usually finds nothing to do.
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN)
        while not self.eof:
            poller.poll()
            with self.lock:
                self.drain(partial=False)


class LogCapture:
    """Redirects fds 1/2 and sys.stdout/sys.stderr into log frames."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.request_id: str | None = None
        self._pumps: list[_Pump] = []
        self.original_stderr = os.dup(2)
        os.set_inheritable(self.original_stderr, False)

    def start(self) -> None:
        for target_fd, stream in ((1, "stdout"), (2, "stderr")):
            read_fd, write_fd = os.pipe()
            os.set_inheritable(read_fd, False)
            os.set_inheritable(write_fd, False)
            os.dup2(write_fd, target_fd)  # fds 1/2 stay inheritable for the user's subprocesses
            os.close(write_fd)
            pump = _Pump(read_fd, stream, self.channel, lambda: self.request_id)
            pump.start()
            self._pumps.append(pump)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115

    def sync(self) -> None:
        """Flush Python buffers and send everything written so far to fds 1/2, before the
        reply: the serving thread drains the pipes itself under each pump's lock (no
        round trip through the pump threads; nothing at all when nothing was written)."""
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        for pump in self._pumps:
            with pump.lock:
                pump.drain(partial=True)
