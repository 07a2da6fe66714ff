"""Serving one HTTP request through an in-process WSGI environ or ASGI ``http`` scope."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes


@dataclass
class HttpRequest:
    """One request as the http frame carries it.

    ``path`` is what follows the function's mount prefix, percent-encoded as received;
    ``root_path`` is the mount prefix (decoded, "" on a function's own host); ``raw_path`` is the
    whole request target's path as received (prefix included, no query), when the sender gave
    it (frames from before it existed: rebuilt from the other two).
    """

    method: str
    path: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes
    scheme: str = "http"
    root_path: str = ""
    raw_path: str = ""

    def target_path(self) -> str:
        """The request target's path as received (percent-encoded, mount prefix included)."""
        return self.raw_path or quote(self.root_path, safe="/:@!$&'()*+,;=~") + self.path


@dataclass
class HttpResponse:
    status: int = 500
    headers: list[list[str]] = field(default_factory=list)
    body: bytes = b""


class AppError(Exception):
    """The app broke the protocol (e.g. returned without starting a response)."""


def is_asgi(app: Any) -> bool:
    if inspect.iscoroutinefunction(app) or asyncio.iscoroutinefunction(app):
        return True
    if inspect.isfunction(app) or inspect.ismethod(app) or inspect.isclass(app):
        return False
    call = getattr(app, "__call__", None)  # noqa: B004
    return call is not None and (inspect.iscoroutinefunction(call) or asyncio.iscoroutinefunction(call))


def _host_port(request: HttpRequest) -> tuple[str, str]:
    host = next((v for k, v in request.headers if k.lower() == "host"), "localhost")
    name, _, port = host.rpartition(":") if ":" in host and not host.endswith("]") else (host, "", "")
    return name, port or ("443" if request.scheme == "https" else "80")


def serve_wsgi(app: Callable[..., Any], request: HttpRequest) -> HttpResponse:
    server_name, server_port = _host_port(request)
    target = request.target_path() + (f"?{request.query_string}" if request.query_string else "")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.upper(),
        # As WSGI servers split a mounted app's URL (PEP 3333: native strings holding the
        # bytes as latin-1): SCRIPT_NAME the mount prefix, PATH_INFO the decoded rest.
        "SCRIPT_NAME": request.root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(request.path).decode("latin-1"),
        "QUERY_STRING": request.query_string,
        # The undecoded request target, as gunicorn (RAW_URI) and uWSGI (REQUEST_URI) give it.
        "RAW_URI": target,
        "REQUEST_URI": target,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key == "CONTENT_LENGTH":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    if request.body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(request.body))

    response = HttpResponse()
    started = False
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        nonlocal started
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        response.status = int(status.split(" ", 1)[0])
        response.headers = [[str(k), str(v)] for k, v in headers]
        started = True
        return chunks.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            if chunk:
                chunks.append(bytes(chunk))
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise AppError("the WSGI app returned without calling start_response")
    response.body = b"".join(chunks)
    return response


_ASGI = {"version": "3.0", "spec_version": "2.3"}


class Lifespan:
    """Runs the ASGI lifespan protocol (startup once per instance, shutdown at exit) if supported."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.state: dict[str, Any] = {}
        self.supported = False
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._shutdown_done: asyncio.Future[None] | None = None

    def startup(self, timeout: float = 30.0) -> None:
        """Raises RuntimeError on ``lifespan.startup.failed``; an app that rejects lifespan is fine."""
        self.loop.run_until_complete(asyncio.wait_for(self._startup(), timeout))

    async def _startup(self) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queue = queue
        started: asyncio.Future[str | None] = self.loop.create_future()
        self._shutdown_done = self.loop.create_future()
        shutdown_done = self._shutdown_done

        async def receive() -> dict[str, Any]:
            return await queue.get()

        async def send(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif kind == "lifespan.startup.failed" and not started.done():
                started.set_result(str(message.get("message", "")) or "lifespan startup failed")
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and not shutdown_done.done():
                shutdown_done.set_result(None)

        async def run() -> None:
            try:
                await self.app({"type": "lifespan", "asgi": _ASGI, "state": self.state}, receive, send)
            except Exception:  # noqa: S110 - the app does not support lifespan (or broke it): serve without it
                pass
            finally:
                if not started.done():
                    started.set_result("unsupported")
                if not shutdown_done.done():
                    shutdown_done.set_result(None)

        await queue.put({"type": "lifespan.startup"})
        self._task = self.loop.create_task(run())
        outcome = await started
        if outcome == "unsupported":
            return
        if outcome is not None:
            raise RuntimeError(outcome)
        self.supported = True

    def shutdown(self, timeout: float = 5.0) -> None:
        if not self.supported or self._queue is None or self._shutdown_done is None:
            return
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.wait_for(asyncio.shield(self._shutdown_done), timeout))


async def serve_asgi(app: Any, request: HttpRequest, state: dict[str, Any]) -> HttpResponse:
    # The asgiref spec (as uvicorn and Hypercorn give it): ``path`` is the whole decoded path,
    # mount prefix included, and ``root_path`` the prefix; apps route on path minus root_path
    # and build URLs (url_for, reverse, slash redirects) that keep the prefix. ``raw_path`` is
    # the request target's path as received.
    rest = unquote_to_bytes(request.path).decode("utf-8", errors="replace")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": request.method.upper(),
        "scheme": request.scheme,
        "path": request.root_path + rest,
        "raw_path": request.target_path().encode("latin-1", errors="replace"),
        "query_string": request.query_string.encode("latin-1", errors="replace"),
        "root_path": request.root_path,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers],
        "client": ("127.0.0.1", 0),
        "server": None,
        "state": dict(state),
    }
    response = HttpResponse()
    chunks: list[bytes] = []
    started = False
    finished = asyncio.Event()
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal started
        kind = message.get("type")
        if kind == "http.response.start":
            if started:
                raise AppError("http.response.start sent twice")
            started = True
            response.status = int(message["status"])
            response.headers = [
                [bytes(k).decode("latin-1"), bytes(v).decode("latin-1")] for k, v in message.get("headers", [])
            ]
        elif kind == "http.response.body":
            if not started:
                raise AppError("http.response.body sent before http.response.start")
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    if not started:
        raise AppError("the ASGI app returned without sending http.response.start")
    response.body = b"".join(chunks)
    return response
