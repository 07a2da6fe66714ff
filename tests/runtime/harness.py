"""Speaks the bootstrap frame protocol (runtime/stratus_bootstrap/protocol.py) to a real
bootstrap subprocess. Shared by the Python and Node bootstrap tests: they differ only in the
command that starts the bootstrap and the environment it needs."""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

TIMEOUT = 15.0


class BootstrapInstance:
    """Starts ``command`` on a socketpair (STRATUS_CONTROL_FD) and speaks the protocol to it."""

    def __init__(
        self,
        command: list[str],
        task_root: Path,
        handler: str,
        kind: str = "event",
        env: dict[str, str] | None = None,
        runtime_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.sock, child = socket.socketpair()
        self.sock.settimeout(TIMEOUT)
        proc_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **(runtime_env or {}),
            "STRATUS_CONTROL_FD": str(child.fileno()),
            "STRATUS_HANDLER": handler,
            "STRATUS_KIND": kind,
            "STRATUS_TASK_ROOT": str(task_root),
            "STRATUS_FUNCTION_NAME": "hello",
            "STRATUS_FUNCTION_VERSION": "3",
            "STRATUS_MEMORY_MB": "256",
            "STRATUS_TIMEOUT_S": "5",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            command,
            cwd=cwd or task_root,
            env=proc_env,
            pass_fds=[child.fileno()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        child.close()
        self.logs: list[dict[str, Any]] = []

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"bootstrap closed the channel; stderr: {self._stderr()}")
            buf += chunk
        return buf

    def read(self) -> dict[str, Any]:
        (length,) = struct.unpack(">I", self._recv_exact(4))
        return json.loads(self._recv_exact(length).decode("utf-8"))

    def read_reply(self) -> dict[str, Any]:
        """The next non-log frame; log frames are collected in self.logs."""
        while True:
            msg = self.read()
            if msg["type"] != "log":
                return msg
            self.logs.append(msg)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def ready(self) -> dict[str, Any]:
        msg = self.read_reply()
        assert msg["type"] == "ready", msg
        return msg

    def invoke(self, event: Any, request_id: str = "req-1", timeout_s: float = 5) -> dict[str, Any]:
        deadline_ms = time.time() * 1000 + timeout_s * 1000
        self.send({"type": "invoke", "id": request_id, "deadline_ms": deadline_ms, "event": event})
        reply = self.read_reply()
        assert reply["id"] == request_id, reply
        return reply

    def wait(self) -> int:
        return self.proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def invoke_over_pipe_pair(
    command: list[str], task_root: Path, event: Any, runtime_env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Run ``command`` with STRATUS_CONTROL_FD="<r>,<w>" (a pipe pair), invoke handler
    `index.handler` once with ``event``, close the channel; returns (ready frame, reply
    frame, exit code)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **(runtime_env or {}),
        "STRATUS_CONTROL_FD": f"{to_child_r},{from_child_w}",
        "STRATUS_HANDLER": "index.handler",
        "STRATUS_TASK_ROOT": str(task_root),
    }
    proc = subprocess.Popen(command, cwd=task_root, env=env, pass_fds=[to_child_r, from_child_w])
    os.close(to_child_r)
    os.close(from_child_w)
    reader = os.fdopen(from_child_r, "rb")
    writer = os.fdopen(to_child_w, "wb")
    try:
        sel = selectors.DefaultSelector()
        sel.register(reader, selectors.EVENT_READ)

        def read_frame() -> dict[str, Any]:
            assert sel.select(timeout=TIMEOUT), "no frame from the bootstrap in time"
            (length,) = struct.unpack(">I", reader.read(4))
            return json.loads(reader.read(length))

        ready = read_frame()
        body = json.dumps({"type": "invoke", "id": "p1", "deadline_ms": time.time() * 1000 + 5000, "event": event})
        writer.write(struct.pack(">I", len(body)) + body.encode())
        writer.flush()
        reply = read_frame()
        writer.close()
        return ready, reply, proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.close()
        if not writer.closed:
            writer.close()
