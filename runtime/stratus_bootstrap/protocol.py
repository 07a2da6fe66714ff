"""The Stratus control protocol between a supervisor and a runtime bootstrap (Python, Node, ...).

Transport
---------
Frames travel on a dedicated control channel, never on stdout/stderr:

* ``STRATUS_CONTROL_FD=<n>``: fd ``n`` is an inherited stream socket (one end of a
  ``socketpair(AF_UNIX, SOCK_STREAM)``); the bootstrap reads requests from it and writes
  responses to the same fd.
* ``STRATUS_CONTROL_FD=<r>,<w>``: a pipe pair; requests are read from fd ``r`` and responses
  written to fd ``w``.

The bootstrap marks the control fd(s) close-on-exec so processes started by user code do not
inherit them.

Framing
-------
Each frame is a 4-byte big-endian unsigned length ``N`` followed by exactly ``N`` bytes of
UTF-8 encoded JSON (one JSON object per frame). A bootstrap refuses frames larger than
``MAX_FRAME_BYTES`` (64 MiB). End of file on the read side means "shut down": the bootstrap
exits with status 0.

The supervisor does not count on the bootstrap for what comes back (user code runs in the same
process and can write frames itself): it refuses a frame whose length prefix exceeds what a
reply may take (the response body limit base64-encoded, plus 1 MiB) or, for a frame starting
``{"type":"log"``, what a ``MAX_LOG_LINE`` line may take, before reading its body; it allows
per request at most 10,000 log lines and 1 MiB of log text; and it kills an instance that
breaks a limit (apps/engine/instance.py, ``FrameLimits``). Encoders should keep ``type`` the
first key.

Messages, bootstrap -> supervisor, at start
-------------------------------------------
* ``{"type": "ready", "init_ms": <float>}`` once the handler is imported (``init_ms`` is the
  time spent importing the handler module, plus the ASGI lifespan startup for ``http`` apps).
* ``{"type": "init_error", "error": {"type": str, "message": str, "stack": [str, ...]}}`` if
  importing the handler fails (missing module or attribute, syntax error, exception raised at
  import, ASGI ``lifespan.startup.failed``); the bootstrap then exits with status 1.

Messages, supervisor -> bootstrap
---------------------------------
* ``{"type": "invoke", "id": "<request id>", "deadline_ms": <epoch ms>, "event": <json>}``
  for ``STRATUS_KIND=event``.
* ``{"type": "http", "id": "<request id>", "deadline_ms": <epoch ms>, "method": "GET",
  "path": "/a/b", "query_string": "x=1", "headers": [[name, value], ...], "body_b64": "..."}``
  for ``STRATUS_KIND=http``. ``path`` is the request path after the function's mount prefix as
  sent by the client (percent-encoded form); optional keys: ``"scheme"`` (default ``"http"``),
  ``"root_path"`` (the mount prefix, decoded; default ``""``) and ``"raw_path"`` (the whole
  request target's path as received, prefix included, no query; default: rebuilt from
  ``root_path`` and ``path``). The ASGI scope's ``path`` is ``root_path`` + decoded ``path`` and
  its ``raw_path`` is ``raw_path`` (the asgiref spec); WSGI gets ``SCRIPT_NAME`` = ``root_path``
  and ``PATH_INFO`` = decoded ``path``.
* ``{"type": "shutdown"}``: run shutdown hooks (ASGI lifespan) and exit 0.

Requests are served one at a time, in order; the supervisor sends the next one after it has
read the response to the previous one.

Messages, bootstrap -> supervisor, per request
----------------------------------------------
* ``{"type": "result", "id": ..., "result": <json>, "duration_ms": <float>}``
* ``{"type": "error", "id": ..., "error": {"type": str, "message": str, "stack": [str, ...]},
  "duration_ms": <float>}`` when the handler raises (the instance stays up and serves the next
  request), when an ``http`` app fails before answering, or with type ``"ResultNotSerializable"``
  when the result cannot be encoded as JSON.
* ``{"type": "http_response", "id": ..., "status": <int>, "headers": [[name, value], ...],
  "body_b64": "...", "duration_ms": <float>}`` for ``http`` requests.
* ``{"type": "log", "id": <request id or null>, "stream": "stdout" | "stderr", "text": "..."}``
  one frame per line written by user code (Python ``print``/``sys.stderr`` as well as C-level
  writes to fds 1 and 2), without the trailing newline, tagged with the id of the request in
  flight (``null`` outside a request, e.g. at import). Lines longer than ``MAX_LOG_LINE`` bytes
  are split. All log frames of a request are written before its response frame.

Configuration (environment, removed from ``os.environ`` before user code is imported)
-------------------------------------------------------------------------------------
``STRATUS_CONTROL_FD``, ``STRATUS_HANDLER`` (``"module.attr"``, or ``"module:attr"``),
``STRATUS_KIND`` (``event`` | ``http``), ``STRATUS_TASK_ROOT`` (default ``/var/task``),
``STRATUS_FUNCTION_NAME``, ``STRATUS_FUNCTION_VERSION``, ``STRATUS_MEMORY_MB``,
``STRATUS_TIMEOUT_S``. Every ``STRATUS_*`` variable is removed; the Lambda-compatible
``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_LAMBDA_FUNCTION_VERSION`` and
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` are set instead.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from typing import Any

MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_LOG_LINE = 16 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def _read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes; None on EOF before the first byte."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"unexpected end of file after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _HEADER.pack(len(body)) + body


class Channel:
    """Reads and writes frames on the control fd(s); writes are serialised by a lock."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._lock = threading.Lock()

    @classmethod
    def from_env_value(cls, value: str) -> Channel:
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 1:
            fd = int(parts[0])
            return cls(fd, fd)
        if len(parts) == 2:
            return cls(int(parts[0]), int(parts[1]))
        raise ValueError(f"STRATUS_CONTROL_FD must be '<fd>' or '<read fd>,<write fd>', got {value!r}")

    def read(self) -> dict[str, Any] | None:
        """The next message, or None on end of file."""
        header = _read_exact(self.read_fd, _HEADER.size)
        if header is None:
            return None
        (length,) = _HEADER.unpack(header)
        if length > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
        body = _read_exact(self.read_fd, length) if length else b""
        if body is None:
            raise ProtocolError("unexpected end of file in a frame body")
        message = json.loads(body.decode("utf-8"))
        if not isinstance(message, dict):
            raise ProtocolError("a frame must hold a JSON object")
        return message

    def write(self, message: dict[str, Any]) -> None:
        self.write_raw(encode_frame(message))

    def write_raw(self, frame: bytes) -> None:
        view = memoryview(frame)
        with self._lock:
            while view:
                written = os.write(self.write_fd, view)
                view = view[written:]
