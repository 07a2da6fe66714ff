"""The runtime image's entrypoint (Knative): fetch the version, load it once, serve HTTP on $PORT.

``python -m stratus_bootstrap.serve_http`` (runtime/Dockerfile's ENTRYPOINT). Standard library
only, like the rest of the bootstrap; it imports nothing of the console. In order:

1. **Fetch**: ``STRATUS_ARTIFACT_URL`` (the console's signed URL, from the binding's artifacts
   Secret) is downloaded and refused unless its sha256 is ``STRATUS_ARTIFACT_SHA256``, then
   unpacked into ``STRATUS_TASK_DIR`` (``fetch_artifact.py``: the console's zip-slip and size
   rules). A failure is one log line naming the rule and exit status 1: the container never
   listens, so Knative reports the revision as failed instead of routing to it.
2. **Load once**: the handler runs in one bootstrap child (``python -m stratus_bootstrap``: the
   local engine's own handler-calling code, ``loop.py``; for a ``node*`` ``STRATUS_RUNTIME``,
   ``node ../node/bootstrap.js``, the local engine's Node bootstrap), reached over a socket pair
   with the frame protocol (``protocol.py``), exactly as the local engine's supervisor reaches it. An
   import error at start is logged and exits 1, like a failed fetch.
3. **Serve** on ``$PORT`` (Knative's queue-proxy forwards there). Requests are answered as the
   local gateway answers them on a function's own host (apps/engine/gateway.py), with the same
   module (``events.py``): an ``event`` function gets the event of its ``STRATUS_EVENT_FORMAT``
   (``apigw-v1``, ``apigw-v2``, ``scf``) and, with ``STRATUS_ROUTES`` (a JSON list of path
   templates), 404 for a path none matches; an ``http`` function the request as WSGI/ASGI (the
   ``http`` frame); the reply is shaped by the format's rules (``response_from``). Each
   invocation gets a fresh id; a caller's X-Request-Id is the trace id (echoed, in the
   envelope and the log lines). Failures answer the same envelope
   ``{"error": {"code", "message", "fields", "request_id"}}`` and status: 413
   ``request_too_large`` past ``STRATUS_MAX_BODY_BYTES``, 502 ``function_error``, 504
   ``timeout`` past ``STRATUS_TIMEOUT_S`` (the child is killed and a fresh one loads the
   handler for the next request, whose answer carries ``x-stratus-cold-start: 1``), 502
   ``function_crashed``, 502 ``response_too_large`` / ``bad_function_response``.
   ``GET /_stratus/healthz`` answers 200 while a child is loaded (Knative's readiness probe;
   the path is reserved on Knative).
4. **Logs** go to stdout, one JSON object a line (what a cluster's log collector reads):
   ``{"ts", "level", "stream", "request_id", "trace_id", "message"}``, one per line a function
   prints, with the ids of the invocation in flight (``null`` outside one), ``level`` ``info`` for stdout and
   ``error`` for stderr; a failed request adds a ``system`` line ``[ERROR] <type>: <message>``
   as the local engine records it; the runtime's own lines have stream ``runtime``.

SIGTERM (Knative scaling down) stops accepting, lets requests in flight finish, then asks the
child to shut down (ASGI lifespan shutdown) and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stratus_bootstrap import events

HEALTH_PATH = "/_stratus/healthz"
# runtime/node/bootstrap.js, beside this package in the repository and in the image (/opt/stratus).
NODE_BOOTSTRAP = Path(__file__).resolve().parent.parent / "node" / "bootstrap.js"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # the gateway's STRATUS_GATEWAY_MAX_BODY_BYTES default
INIT_TIMEOUT_S = 10.0  # the local pool's init_timeout_s
# What one request may log (the local engine's FrameLimits).
LOG_LINES_PER_REQUEST = 10_000
LOG_BYTES_PER_REQUEST = 1024 * 1024
_HEADER = struct.Struct(">I")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DROP_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


# --- logs -----------------------------------------------------------------------------------

_log_lock = threading.Lock()


def log_line(
    stream: str,
    message: str,
    request_id: str | None = None,
    level: str | None = None,
    *,
    trace_id: str | None = None,
) -> None:
    """One JSON line on stdout (the container's log): ``request_id`` the invocation's id,
    ``trace_id`` the caller's X-Request-Id (the invocation id when it sent none)."""
    if level is None:
        level = "error" if stream in ("stderr", "system") else "info"
    record = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "stream": stream,
        "request_id": request_id,
        "trace_id": trace_id,
        "message": message,
    }
    data = json.dumps(record, ensure_ascii=False) + "\n"
    with _log_lock:
        sys.stdout.write(data)
        sys.stdout.flush()


# --- event and response shapes: events.py, the module the console's gateway shapes them with --

error_body = events.error_body


def _mb(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MB"


# --- the child: one bootstrap process, the handler loaded once ------------------------------


def child_argv(environ: dict[str, str]) -> list[str]:
    """The handler-calling process for ``STRATUS_RUNTIME``: ``python -m stratus_bootstrap`` for
    Python, ``node --max-old-space-size=<memory> node/bootstrap.js`` for Node (the local
    engine's argv, apps/engine/sandbox/node.py). Both speak the same frame protocol on
    ``STRATUS_CONTROL_FD``, so everything else here is the same for both."""
    if environ.get("STRATUS_RUNTIME", "").startswith("node"):
        try:
            memory_mb = int(float(environ.get("STRATUS_MEMORY_MB", "") or 128))
        except ValueError:
            memory_mb = 128
        node = shutil.which("node") or "node"
        return [node, f"--max-old-space-size={memory_mb}", str(NODE_BOOTSTRAP)]
    return [sys.executable, "-m", "stratus_bootstrap"]


def runtime_problem(environ: dict[str, str]) -> str | None:
    """Why this image cannot run the function's runtime, or None: checked before the fetch so a
    misbuilt image fails with one clear line rather than a spawn traceback."""
    runtime = environ.get("STRATUS_RUNTIME", "")
    if runtime.startswith("node"):
        if shutil.which("node") is None:
            return f"runtime {runtime} needs node on PATH, and this image has none"
        if not NODE_BOOTSTRAP.is_file():
            return f"runtime {runtime} needs the Node bootstrap at {NODE_BOOTSTRAP}, and it is missing"
    elif runtime and not runtime.startswith("python"):
        return f"runtime {runtime!r} is not one this image runs (python*, node*)"
    return None


class ChildDied(Exception):
    pass


class Child:
    """One ``python -m stratus_bootstrap`` process and the frames it sends (a reader thread)."""

    def __init__(self, env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair()
        self.sock = ours
        child_env = {**env, "STRATUS_CONTROL_FD": str(theirs.fileno())}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, or node and our bootstrap
            child_argv(env), env=child_env, pass_fds=(theirs.fileno(),)
        )
        theirs.close()
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.request_id: str | None = None
        self.trace_id: str | None = None
        self.log_lines = 0
        self.log_bytes = 0
        self.refused: str | None = None
        self._reader = threading.Thread(target=self._read, name="stratus-child-reader", daemon=True)
        self._reader.start()

    def _read_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _read(self) -> None:
        try:
            while True:
                header = self._read_exact(_HEADER.size)
                if header is None:
                    break
                (length,) = _HEADER.unpack(header)
                if length > 64 * 1024 * 1024:
                    self.refuse("Runtime.ResponseTooLarge", f"The function sent a frame of {length:,} bytes")
                    break
                body = self._read_exact(length)
                if body is None:
                    break
                try:
                    message = json.loads(body)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    self.refuse("Runtime.ProtocolError", "The function sent a frame that is not a JSON object")
                    break
                if message.get("type") == "log":
                    self._on_log(message)
                else:
                    self.replies.put(message)
        except OSError:
            pass
        self.replies.put(None)

    def _on_log(self, message: dict[str, Any]) -> None:
        text = str(message.get("text", ""))
        request_id = message.get("id")
        request_id = str(request_id) if request_id is not None else None
        if request_id is not None and request_id == self.request_id:
            self.log_lines += 1
            self.log_bytes += len(text.encode("utf-8", "surrogatepass"))
            if self.log_lines > LOG_LINES_PER_REQUEST:
                self.refuse(
                    "Runtime.LogLimitExceeded",
                    f"The function wrote more than {LOG_LINES_PER_REQUEST:,} log lines in one request "
                    "(the limit per request)",
                )
                return
            if self.log_bytes > LOG_BYTES_PER_REQUEST:
                self.refuse(
                    "Runtime.LogLimitExceeded",
                    f"The function wrote more than {LOG_BYTES_PER_REQUEST:,} bytes of log lines in one "
                    "request (the limit per request)",
                )
                return
        trace_id = self.trace_id if request_id is not None and request_id == self.request_id else None
        log_line(str(message.get("stream", "stdout")), text, request_id, trace_id=trace_id)

    def refuse(self, error_type: str, message: str) -> None:
        if self.refused is None:
            self.refused = f"{error_type}\0{message}: the instance was stopped."
            self.kill()

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        try:
            message = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            self.kill()
            return {
                "type": "init_error",
                "error": {"type": "InitTimeout", "message": f"Init did not finish within {timeout_s:g} s", "stack": []},
            }
        if message is None:
            return {
                "type": "init_error",
                "error": {
                    "type": "Runtime.ExitError",
                    "message": f"Runtime exited during init: {self.reason()}",
                    "stack": [],
                },
            }
        return message

    def request(self, frame: dict[str, Any], timeout_s: float, trace_id: str | None = None) -> dict[str, Any]:
        """The reply frame; TimeoutError past ``timeout_s`` (the child is then killed), ChildDied
        if it exits first."""
        self.request_id = str(frame["id"])
        self.trace_id = trace_id
        self.log_lines = self.log_bytes = 0
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            self.sock.sendall(_HEADER.pack(len(data)) + data)
        except OSError:
            raise ChildDied(self.reason()) from None
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    message = self.replies.get(timeout=remaining)
                except queue.Empty:
                    raise TimeoutError from None
                if message is None:
                    raise ChildDied(self.reason())
                if str(message.get("id")) == self.request_id:
                    return message
        except TimeoutError:
            self.kill()
            raise
        finally:
            self.request_id = None

    def alive(self) -> bool:
        return self.process.poll() is None and self.refused is None

    def reason(self) -> str:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the instance closed its channel"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}"
        return f"exited with status {code}"

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        data = json.dumps({"type": "shutdown"}).encode()
        with contextlib.suppress(OSError):
            self.sock.sendall(_HEADER.pack(len(data)) + data)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self.sock.close()


# --- the server -----------------------------------------------------------------------------


class Runtime:
    """What the HTTP handler needs: configuration and the one child (requests take turns on it,
    as the local engine pipelines them on one instance, served in order)."""

    def __init__(self, environ: dict[str, str], task_dir: Path) -> None:
        def number(key: str, default: float) -> float:
            try:
                return float(environ.get(key, "") or default)
            except ValueError:
                return default

        self.kind = environ.get("STRATUS_KIND", "") or "event"
        # The event shape and path templates of the version (the manifest sets them from its
        # config; validated by the console).
        self.event_format = environ.get("STRATUS_EVENT_FORMAT", "") or events.DEFAULT_FORMAT
        try:
            templates = json.loads(environ.get("STRATUS_ROUTES", "") or "[]")
        except ValueError:
            templates = []
        self.paths = events.compile_routes(templates if not events.route_problems(templates) else [])
        self.timeout_s = number("STRATUS_TIMEOUT_S", 3)
        self.max_body = int(number("STRATUS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
        self.version = environ.get("STRATUS_FUNCTION_VERSION", "") or "$LATEST"
        self.key = (
            environ.get("STRATUS_ORG", ""),
            environ.get("STRATUS_PROJECT", ""),
            environ.get("STRATUS_ENVIRONMENT", ""),
            environ.get("STRATUS_FUNCTION_NAME", "") or "function",
        )
        # The child's environment: the function's variables and the bootstrap's STRATUS_* ones,
        # never the signed artifact URL.
        self.child_env = {k: v for k, v in environ.items() if k not in ("STRATUS_ARTIFACT_URL", "PORT")}
        self.child_env["STRATUS_TASK_ROOT"] = str(task_dir)
        self.lock = threading.Lock()
        self.child: Child | None = None
        # Open connections and whether each is inside a request: on SIGTERM the idle ones are
        # closed, the busy ones answer (with Connection: close) and then close.
        self.connections: dict[BaseHTTPRequestHandler, bool] = {}
        self.connections_lock = threading.Lock()
        self.stopping = False

    def close_idle_connections(self) -> None:
        self.stopping = True
        with self.connections_lock:
            idle = [handler for handler, busy in self.connections.items() if not busy]
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)

    def start_child(self) -> dict[str, Any]:
        """Start a child and wait until its handler is loaded: its ready or init_error frame."""
        child = Child(self.child_env)
        message = child.wait_ready(INIT_TIMEOUT_S)
        if message.get("type") == "ready":
            self.child = child
        else:
            child.kill()
        return message

    def ready(self) -> bool:
        child = self.child
        return child is not None and child.alive()

    def invoke(self, frame: dict[str, Any], trace_id: str | None = None) -> tuple[str, dict[str, Any], bool]:
        """(status, reply or error, cold): status ok | error | timeout | crashed, as the engine's Outcome."""
        with self.lock:
            cold = False
            if not self.ready():
                if self.child is not None:
                    self.child.kill()
                    self.child = None
                cold = True
                message = self.start_child()
                if message.get("type") != "ready":
                    error = dict(message.get("error") or {})
                    return "error", {**error, "type": error.get("type") or "InitError"}, cold
            child = self.child
            assert child is not None
            frame = {**frame, "deadline_ms": time.time() * 1000 + self.timeout_s * 1000}
            try:
                reply = child.request(frame, self.timeout_s, trace_id)
            except TimeoutError:
                self.child = None
                return (
                    "timeout",
                    {
                        "type": "TimeoutError",
                        "message": f"Task timed out after {self.timeout_s:.2f} seconds",
                        "stack": [],
                    },
                    cold,
                )
            except ChildDied as exc:
                self.child = None
                if child.refused:
                    kind, _, text = child.refused.partition("\0")
                    return "crashed", {"type": kind, "message": text, "stack": []}, cold
                return (
                    "crashed",
                    {"type": "Runtime.ExitError", "message": f"Runtime exited before answering: {exc}", "stack": []},
                    cold,
                )
            if child.refused:  # a limit broken while the reply was on its way
                self.child = None
                kind, _, text = child.refused.partition("\0")
                return "crashed", {"type": kind, "message": text, "stack": []}, cold
            if reply.get("type") == "error":
                return "error", reply.get("error") or {}, cold
            return "ok", reply, cold


def client_of(peer: str, headers: Any) -> tuple[str, str]:
    """(source ip, scheme) of the client. Knative's queue-proxy, in the pod (a loopback peer),
    forwards every request with X-Forwarded-For ending in the client and X-Forwarded-Proto:
    trusted from it alone, as uvicorn trusts its local proxy (forwarded_allow_ips 127.0.0.1)."""
    if peer in ("127.0.0.1", "::1"):
        hops = [hop.strip() for hop in (headers.get("x-forwarded-for") or "").split(",") if hop.strip()]
        proto = (headers.get("x-forwarded-proto") or "").strip().lower()
        return (hops[-1] if hops else peer), (proto if proto in ("http", "https") else "http")
    return peer, "http"


def public_port(host: str, scheme: str) -> str:
    """The port the client addressed (the Host header's, else the scheme's): X-Forwarded-Port."""
    if host.startswith("["):
        _, _, after = host.partition("]")
        port = after[1:] if after.startswith(":") else ""
    else:
        port = host.rpartition(":")[2] if ":" in host else ""
    return port if port.isdigit() else ("443" if scheme == "https" else "80")


_STATUS_FOR = {"timeout": 504, "crashed": 502, "error": 502}
_CODE_FOR = {"timeout": "timeout", "crashed": "function_crashed", "error": "function_error"}


def make_handler(runtime: Runtime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self) -> str:
            return "stratus-runtime"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - access logs off
            pass

        def setup(self) -> None:
            super().setup()
            with runtime.connections_lock:
                runtime.connections[self] = False

        def finish(self) -> None:
            with runtime.connections_lock:
                runtime.connections.pop(self, None)
            super().finish()

        def parse_request(self) -> bool:
            with runtime.connections_lock:
                runtime.connections[self] = True  # a request line arrived: busy until answered
            return super().parse_request()

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            if runtime.stopping:
                self.close_connection = True
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            if self.close_connection:
                self.send_header("connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, request_id: str, extra: list[tuple[str, str]]) -> None:
            headers = [("content-type", "application/json"), *extra]
            self._send(status, headers, error_body(code, message, request_id))

        def _read_body(self) -> bytes | None:
            """The body, or None past the limit."""
            limit = runtime.max_body
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                chunks: list[bytes] = []
                size = 0
                while True:
                    line = self.rfile.readline(1024)
                    length = int(line.split(b";")[0].strip() or b"0", 16)
                    if length == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    size += length
                    if size > limit:
                        self.close_connection = True  # the rest of the body is not read
                        return None
                    chunks.append(self.rfile.read(length))
                    self.rfile.readline(1024)
            declared = self.headers.get("content-length") or "0"
            length = int(declared) if declared.isdigit() else 0
            if length > limit:
                if length <= 4 * limit:  # read and dropped: the client gets its answer, the connection stays
                    remaining = length
                    while remaining > 0 and (chunk := self.rfile.read(min(remaining, 64 * 1024))):
                        remaining -= len(chunk)
                else:
                    self.close_connection = True  # the rest of the body is not read
                return None
            return self.rfile.read(length) if length else b""

        def _serve(self) -> None:
            raw_path, _, query = self.path.partition("?")
            if raw_path == HEALTH_PATH:
                ok = runtime.ready()
                self._send(200 if ok else 503, [("content-type", "text/plain")], b"ok" if ok else b"not ready")
                return
            received_at = time.time()
            headers = list(self.headers.items())
            # A fresh id per invocation (context.aws_request_id, the log lines' request_id); the
            # caller's X-Request-Id is the trace id (echoed, in the envelope and the log lines).
            invocation_id = str(uuid.uuid4())
            incoming = self.headers.get("x-request-id")
            request_id = incoming if incoming and _REQUEST_ID.match(incoming) else invocation_id
            body = self._read_body()
            if body is None:
                message = f"Request body exceeds the {_mb(runtime.max_body)} limit ({runtime.max_body} bytes)."
                self._error(413, "request_too_large", message, request_id, [("x-request-id", request_id)])
                return
            source_ip, scheme = client_of(self.client_address[0], self.headers)
            if runtime.kind == "http":
                frame = events.http_frame(
                    method=self.command,
                    path=raw_path,
                    query=query,
                    headers=headers,
                    body=body,
                    request_id=invocation_id,
                    trace_id=request_id,
                    scheme=scheme,
                    root_path="",
                )
            else:
                match = events.match_route(runtime.paths, raw_path)
                if match is None:
                    message = events.no_route_message(raw_path)
                    self._error(404, "not_found", message, request_id, [("x-request-id", request_id)])
                    return
                shaped = events.Request(
                    method=self.command,
                    path=raw_path,
                    query=query,
                    headers=headers,
                    body=body,
                    source_ip=source_ip,
                    scheme=scheme,
                    port=public_port(self.headers.get("host") or "", scheme),
                    http_version=self.request_version.removeprefix("HTTP/"),
                    request_id=invocation_id,
                    key=runtime.key,
                    received_at=received_at,
                )
                event = events.build_event(runtime.event_format, shaped, match)
                frame = {"type": "invoke", "id": invocation_id, "event": event}
            status, reply, cold = runtime.invoke(frame, request_id)
            extra = [
                ("x-request-id", request_id),
                ("x-stratus-invocation-id", invocation_id),
                ("x-stratus-version", runtime.version),
            ]
            if cold:
                extra.append(("x-stratus-cold-start", "1"))
            if status != "ok":
                message = str(reply.get("message") or "The function failed.")
                if status == "error":
                    message = f"{reply.get('type', 'Error')}: {message}"
                log_line(
                    "system", f"[ERROR] {reply.get('type')}: {reply.get('message')}", invocation_id, trace_id=request_id
                )
                self._error(
                    _STATUS_FOR.get(status, 502), _CODE_FOR.get(status, "function_error"), message, request_id, extra
                )
                return
            try:
                code, response_headers, data = events.response_from(reply, runtime.event_format)
            except ValueError as exc:
                self._error(502, "bad_function_response", str(exc), request_id, extra)
                return
            if len(data) > runtime.max_body:
                message = (
                    f"Response body exceeds the {_mb(runtime.max_body)} limit ({len(data)} > {runtime.max_body} bytes)."
                )
                self._error(502, "response_too_large", message, request_id, extra)
                return
            drop = _DROP_RESPONSE_HEADERS | {"x-request-id", "x-stratus-invocation-id", "x-stratus-version"}
            response_headers = [(k, v) for k, v in response_headers if k.lower() not in drop]
            self._send(code, response_headers + extra, data)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:  # the client went away, or SIGTERM closed an idle connection
                self.close_connection = True
            finally:
                with runtime.connections_lock:
                    if self in runtime.connections:
                        runtime.connections[self] = False
                if runtime.stopping:
                    self.close_connection = True

    for method in _METHODS:
        setattr(Handler, f"do_{method}", Handler._serve)
    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = False  # in-flight requests finish on shutdown
    block_on_close = True
    allow_reuse_address = True


def fetch(environ: dict[str, str], task_dir: Path) -> bool:
    import fetch_artifact  # runtime/fetch_artifact.py, /opt/stratus in the image

    url = environ.get("STRATUS_ARTIFACT_URL", "")
    sha256 = environ.get("STRATUS_ARTIFACT_SHA256", "")
    if not url or not sha256:
        log_line("runtime", "STRATUS_ARTIFACT_URL and STRATUS_ARTIFACT_SHA256 must be set; not starting", level="error")
        return False
    try:
        files = fetch_artifact.fetch(url, sha256, task_dir)
    except fetch_artifact.FetchError as exc:
        log_line("runtime", f"{exc}; not starting", level="error")
        return False
    log_line("runtime", f"artifact {sha256[:12]} unpacked to {task_dir} ({len(files)} files)")
    return True


def main() -> int:
    environ = dict(os.environ)
    task_dir = Path(environ.get("STRATUS_TASK_DIR", "") or "/var/task")
    try:
        port = int(environ.get("PORT", "") or DEFAULT_PORT)
    except ValueError:
        log_line("runtime", f"PORT must be a number, got {environ.get('PORT')!r}", level="error")
        return 2
    problem = runtime_problem(environ)
    if problem is not None:
        log_line("runtime", f"{problem}; not starting", level="error")
        return 1
    if not fetch(environ, task_dir):
        return 1
    runtime = Runtime(environ, task_dir)
    started = time.perf_counter()
    message = runtime.start_child()
    if message.get("type") != "ready":
        error = message.get("error") or {}
        log_line(
            "runtime", f"the handler could not be loaded: {error.get('type')}: {error.get('message')}", level="error"
        )
        for line in "".join(error.get("stack") or []).splitlines():
            log_line("runtime", line, level="error")
        return 1
    server = Server(("0.0.0.0", port), make_handler(runtime))  # noqa: S104 - the pod's port, for queue-proxy
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log_line(
        "runtime",
        f"serving {runtime.kind} function {runtime.key[3]} v{runtime.version} on port {port} "
        f"(handler loaded in {(time.perf_counter() - started) * 1000:.0f} ms)",
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except Exception:
        log_line("runtime", "fatal error\n" + traceback.format_exc(), level="error")
        return 3
    finally:
        runtime.close_idle_connections()
        server.server_close()  # waits for the request threads: those in a request answer first
        with runtime.lock:
            if runtime.child is not None:
                runtime.child.shutdown()
    log_line("runtime", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
