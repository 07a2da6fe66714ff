"""The function gateway: `/fn/{org}/{project}/{environment}/{function}/{path}`.

A fast path in front of Django in the ASGI app (no middleware, no URL resolver, no query):
resolve the route in the engine's in-memory table, check the token when the binding asks
for one, pick a version by weight, forward the request to an instance, answer.

- `http` functions get the request as-is (WSGI/ASGI, mounted at the function's URL prefix:
  SCRIPT_NAME / root_path is the prefix, the path is what follows it).
- `event` functions get the event of their ``event_format`` (API Gateway REST or HTTP API,
  SCF's API Gateway trigger), shaped by ``runtime/stratus_bootstrap/events.py``, the module the
  Knative runtime serves with too; their answer becomes the response by that format's rules.
  A function with path templates (``routes``) answers 404 for a path none matches.

Request ids: every invocation gets a fresh id (the handler's ``context.aws_request_id``, the
monitoring records' and log lines' ``request_id``), answered in ``X-Stratus-Invocation-Id``. A
caller's ``X-Request-Id`` is the trace id: echoed in ``X-Request-Id`` and the error envelope,
passed to ``http`` functions, never the invocation id (two calls with one trace id are two
invocations). Without one, the invocation id is the trace id.

Tenant code has an origin of its own (STRATUS_FUNCTIONS_URL), told apart by the request's
Host: a function answering on the console's origin could read a signed-in visitor's session
cookie or set one for the console.

- On the functions host only /fn/ answers; the console (pages, API, admin, websockets,
  webhooks) answers 404 there, so nobody signs in to the console on it.
- On any other host (the console's) /fn/ still answers, for API clients and old URLs, but
  the function gets no Cookie header, may not set one (Set-Cookie, Clear-Site-Data are
  dropped), and its answer is sandboxed (``Content-Security-Policy: sandbox``: an opaque
  origin, whose scripts cannot call the console's API with its cookies).
- On every host the console's own cookies (session, CSRF, language, messages) are removed
  before a function sees the request, in case a misconfiguration lets the browser send them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed

from apps.core import event_shapes
from apps.core.checks import origin_problems
from apps.core.origins import functions_origin, host_key
from apps.engine.engine import CallSite, Outcome, new_request_id
from apps.engine.gateway_auth import NO_FUNCTION, NO_PROJECT, TokenCache
from apps.engine.routing import NotServed, Route, RouteVersion

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("stratus.gateway")

PREFIX = "/fn/"
# A function's answer on the console's host: the page gets an opaque origin (no access to the
# console's cookies, storage or API) and is not sniffed into HTML or script.
_SANDBOX_HEADERS = [(b"content-security-policy", b"sandbox"), (b"x-content-type-options", b"nosniff")]
# What a function may not send on the console's host: cookies for the console's origin, or
# an order to wipe them.
_CONSOLE_HOST_DROP = {b"set-cookie", b"clear-site-data"}
# What a browser may not load from /fn/ on the console's host (Sec-Fetch-Dest): the console's
# strict CSP allows scripts, styles and workers from 'self', and tenant code must not become
# one of them should a console page ever be tricked into loading it.
_EMBEDDED_DESTINATIONS = {
    "script",
    "style",
    "worker",
    "sharedworker",
    "serviceworker",
    "audioworklet",
    "paintworklet",
    "xslt",
    "object",
    "embed",
}
# The cookie the messages framework stores messages in (CookieStorage.cookie_name).
_MESSAGES_COOKIE = "messages"
_ORIGIN_SETTINGS = {
    "STRATUS_FUNCTIONS_URL",
    "PUBLIC_URL",
    "SESSION_COOKIE_NAME",
    "CSRF_COOKIE_NAME",
    "LANGUAGE_COOKIE_NAME",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Connection-level headers the gateway owns (hop-by-hop or recomputed).
_DROP_RESPONSE_HEADERS = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
# The gateway's own answer headers: a function's are replaced, not doubled.
_OWN_HEADERS = {"x-request-id", "x-stratus-invocation-id", "x-stratus-version"}
_STATUS_FOR = {"throttled": 429, "timeout": 504, "crashed": 502, "error": 502, "unavailable": 503}
_CODE_FOR = {
    "throttled": "throttled",
    "timeout": "timeout",
    "crashed": "function_crashed",
    "error": "function_error",
    "unavailable": "engine_unavailable",
}


class BodyTooLarge(Exception):
    pass


def _mb(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MB"


class Gateway:
    """ASGI middleware: serves /fn/ itself, passes everything else to ``app``."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.max_body = int(settings.STRATUS_GATEWAY_MAX_BODY_BYTES)
        self.tokens = TokenCache()
        self.configure_origins()
        setting_changed.connect(self._setting_changed)  # tests override the origins

    def configure_origins(self) -> None:
        """Precompute what the hot path compares: the functions host as the Host header spells
        it (lowercase, no port: browsers keep cookies per host name, whatever the port), and
        the console's cookie names."""
        origin = functions_origin()
        for check_id, message in origin_problems(
            console_url=settings.PUBLIC_URL,
            functions_url=origin.check_url,
            production=settings.PRODUCTION,
        ):
            log.warning(message, extra={"check": check_id})
        console = host_key(urlsplit(settings.PUBLIC_URL).hostname or "")
        # On the console's own host the console must keep working: /fn/ is then only ever
        # served the console-host way (cookieless, sandboxed); the system check says why.
        self.functions_host: bytes | None = origin.host if origin.host and origin.host != console else None
        # A host per function: its whole path space is the function's (no /fn/ prefix).
        self.per_function = origin if origin.per_function and self.functions_host is not None else None
        self.console_cookies = frozenset(
            name.encode("latin-1")
            for name in (
                settings.SESSION_COOKIE_NAME,
                settings.CSRF_COOKIE_NAME,
                settings.LANGUAGE_COOKIE_NAME,
                _MESSAGES_COOKIE,
            )
            if name
        )
        self.refusal = (
            f"No function is deployed at this host ({origin.url}/ names one); "
            if origin.per_function
            else "This host serves functions only (/fn/<org>/<project>/<environment>/<function>/); "
        ) + f"the console is at {settings.PUBLIC_URL}/."
        self.embedded_refusal = (
            "On the console's host a function is not loaded as a script, style sheet or worker; "
            f"functions are served from {settings.STRATUS_FUNCTIONS_URL}/fn/."
        )

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in _ORIGIN_SETTINGS:
            self.configure_origins()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan(receive, send)
            return
        if self.per_function is not None:
            host = _request_host(scope["headers"])
            if self.per_function.owns(host):
                key = self.per_function.route_of(host)
                if kind == "http" and key is not None:
                    await self.serve(scope, receive, send, console_host=False, key=key)
                else:  # the functions' own domain, or a name no function has
                    await self.refuse(scope, receive, send)
                return
        elif self.functions_host is not None and _request_host(scope["headers"]) == self.functions_host:
            if kind == "http" and scope["path"].startswith(PREFIX):
                await self.serve(scope, receive, send, console_host=False)
            else:
                await self.refuse(scope, receive, send)
            return
        if kind == "http" and scope["path"].startswith(PREFIX):
            await self.serve(scope, receive, _sandboxed(send), console_host=True)
            return
        await self.app(scope, receive, send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Anything but /fn/ on the functions host: 404, so that no console session ever
        exists on the origin tenant code runs on."""
        request_id = _incoming_request_id(scope["headers"]) or new_request_id()
        headers, body = _error_response(404, "not_found", self.refusal, request_id)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" in (scope.get("extensions") or {}):
                await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """With the server's lifespan on (`manage.py serve`), the engine runs on the server's
        own loop; without it, it starts on first use in a thread of its own."""
        from apps.engine.host import attach_host, detach_host

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await attach_host()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"the local engine failed: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await detach_host()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def host(self) -> Any:
        from apps.engine.host import current_host, get_host

        host = current_host()
        if host is None:  # first request of this process: start the engine off the loop
            host = await asyncio.to_thread(get_host)
        return host

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        console_host: bool,
        key: tuple[str, str, str, str] | None = None,
    ) -> None:
        """One function request: by ``/fn/<org>/<project>/<env>/<function>/`` path, or (``key``)
        on the function's own host, where the whole path is the function's."""
        # From here on the request is what the function (and the routing rules) see.
        headers = _strip_cookies(scope["headers"], None if console_host else self.console_cookies)
        received_at = time.time()
        invocation_id = new_request_id()
        request_id = _incoming_request_id(headers) or invocation_id  # the trace id
        if console_host and _header(headers, b"sec-fetch-dest") in _EMBEDDED_DESTINATIONS:
            await _send_error(send, 404, "not_found", self.embedded_refusal, request_id)
            return
        started_at = datetime.now(UTC)
        if key is not None:
            org, project, environment, function = key
            rest, prefix_segments = scope["path"][1:], 0
        else:
            parts = scope["path"][len(PREFIX) :].split("/", 4)
            if len(parts) < 4 or not all(parts[:4]):
                await _send_error(send, 404, "not_found", NO_FUNCTION, request_id)
                return
            org, project, environment, function = parts[:4]
            rest, prefix_segments = (parts[4] if len(parts) == 5 else ""), 5
        host = await self.host()
        route: Route | None = host.engine.routes.get((org, project, environment, function))
        if route is None or route.auth_mode == "token":
            # No function here, and a token-mode function the caller may not call, answer the
            # same bytes after the same work (a token is looked up either way): anonymous
            # callers and other organizations' tokens cannot tell which URLs have a function.
            authorization = _header(headers, b"authorization")
            verdict = await self.tokens.check(authorization, NO_PROJECT if route is None else route.project_id)
            if route is None or verdict.status != 200:
                status = 404 if route is None else verdict.status
                code = "not_found" if status == 404 else "permission_denied"
                await _send_error(send, status, code, NO_FUNCTION if status == 404 else verdict.message, request_id)
                return
        try:
            body = await _read_body(receive, headers, self.max_body)
        except BodyTooLarge:
            message = f"Request body exceeds the {_mb(self.max_body)} limit ({self.max_body} bytes)."
            await _send_error(send, 413, "request_too_large", message, request_id)
            return
        try:
            rv = route.select(
                _header(headers, b"x-stratus-version"),
                lambda name: _header(headers, name.encode("latin-1")),
                lambda name: _cookie(headers, name),
            )
        except NotServed as exc:
            await _send_error(send, 400, "version_not_served", str(exc), request_id)
            return
        root_path = PREFIX + "/".join((org, project, environment, function)) if prefix_segments else ""
        path = "/" + _encoded_rest(scope, rest, prefix_segments)
        str_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        query = scope.get("query_string", b"").decode("latin-1")
        invocation_type = _header(headers, b"x-stratus-invocation-type")
        if invocation_type is not None and invocation_type.lower() == "event":
            await self.accept_event(
                send,
                route,
                rv,
                request={
                    "method": scope["method"],
                    "path": path,
                    "query": query,
                    # The caller's credentials are not stored (http functions never see them).
                    "headers": [[k, v] for k, v in str_headers if k.lower() not in _NOT_STORED],
                    "body_b64": base64.b64encode(body).decode("ascii"),
                    "trace_id": request_id,
                    "scheme": scope.get("scheme", "http"),
                    "root_path": root_path,
                    "source_ip": (scope.get("client") or ("", 0))[0],
                    "port": _public_port(headers, scope.get("scheme", "http")),
                    "http_version": scope.get("http_version", "1.1"),
                    "received_at": received_at,
                },
                body_size=len(body),
                idempotency_key=_header(headers, b"idempotency-key"),
                request_id=request_id,
            )
            return
        if rv.spec.kind == "http":
            frame = event_shapes.http_frame(
                method=scope["method"],
                path=path,
                query=query,
                headers=str_headers,
                body=body,
                request_id=invocation_id,
                trace_id=request_id,
                scheme=scope.get("scheme", "http"),
                root_path=root_path,
            )
        else:
            match = event_shapes.match_route(rv.paths, path)
            if match is None:
                await _send_error(send, 404, "not_found", event_shapes.no_route_message(path), request_id)
                return
            shaped = event_shapes.Request(
                method=scope["method"],
                path=path,
                query=query,
                headers=str_headers,
                body=body,
                source_ip=(scope.get("client") or ("", 0))[0],
                scheme=scope.get("scheme", "http"),
                port=_public_port(headers, scope.get("scheme", "http")),
                http_version=scope.get("http_version", "1.1"),
                request_id=invocation_id,
                key=route.key,
                received_at=received_at,
            )
            frame = {
                "type": "invoke",
                "id": invocation_id,
                "event": event_shapes.build_event(rv.event_format, shaped, match),
            }
        site = CallSite(route.function_id, route.environment_id, route.binding_id, "http")
        try:
            outcome: Outcome = await host.call(host.engine.invoke(rv, frame, site=site, started_at=started_at))
        except Exception as exc:
            # The engine answers every failure as an Outcome; this is the net under a bug
            # there, so the caller still gets the envelope rather than the server's plain 500.
            log.exception(
                "the engine failed to serve a request", extra={"request_id": invocation_id, "trace_id": request_id}
            )
            outcome = Outcome(
                request_id=invocation_id,
                version=rv.number,
                status="unavailable",
                error={"type": "EngineError", "message": f"The function engine failed: {exc}", "stack": []},
            )
        await self._respond(send, outcome, rv, request_id)

    async def accept_event(
        self,
        send: Send,
        route: Route,
        rv: RouteVersion,
        *,
        request: dict[str, Any],
        body_size: int,
        idempotency_key: str | None,
        request_id: str,
    ) -> None:
        """``X-Stratus-Invocation-Type: Event``: store the request as an asynchronous event and
        answer 202 with its request id and status URL. The write runs on a small thread pool
        of the gateway's (the loop never waits on the database) and the 202 is sent only after
        its commit: an accepted event survives a restart."""
        from apps.core.errors import DomainError
        from apps.triggers import async_services

        if body_size > async_services.MAX_EVENT_BYTES:
            message = (
                f"An asynchronous event's body is at most 256 KB ({async_services.MAX_EVENT_BYTES} bytes); "
                f"this one is {body_size} bytes."
            )
            await _send_error(send, 413, "payload_too_large", message, request_id)
            return
        loop = asyncio.get_running_loop()
        try:
            event, created = await loop.run_in_executor(
                _accept_executor(),
                _accept_in_thread,
                route.function_id,
                route.environment_id,
                rv.number,
                request,
                idempotency_key,
            )
        except DomainError as exc:
            await _send_error(send, exc.status_code, exc.code, exc.message, request_id)
            return
        except Exception:
            log.exception("storing an asynchronous event failed", extra={"trace_id": request_id})
            await _send_error(send, 503, "unavailable", "The event could not be stored; retry.", request_id)
            return
        answer = async_services.accepted_body(event)
        body = json.dumps(answer).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"location", answer["status_url"].encode("latin-1")),
            (b"x-request-id", request_id.encode()),
            (b"x-stratus-invocation-id", event.request_id.encode()),
            (b"x-stratus-version", str(event.version).encode()),
        ]
        if not created:
            headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _respond(self, send: Send, outcome: Outcome, rv: RouteVersion, request_id: str) -> None:
        """The answer to one invocation; ``request_id`` is the trace id (X-Request-Id)."""
        extra = [
            (b"x-request-id", request_id.encode()),
            (b"x-stratus-invocation-id", outcome.request_id.encode()),
            (b"x-stratus-version", str(rv.number).encode()),
        ]
        if outcome.cold_start:
            extra.append((b"x-stratus-cold-start", b"1"))
        if outcome.status != "ok" or outcome.reply is None:
            error = outcome.error or {}
            status = _STATUS_FOR.get(outcome.status, 502)
            message = str(error.get("message") or "The function failed.")
            if outcome.status == "error":
                message = f"{error.get('type', 'Error')}: {message}"
            code = "quota_exceeded" if error.get("type") == "QuotaExceeded" else _CODE_FOR.get(outcome.status)
            await _send_error(send, status, code or "function_error", message, request_id, extra)
            return
        try:
            status, str_headers, body = event_shapes.response_from(outcome.reply, rv.event_format)
        except ValueError as exc:
            await _send_error(send, 502, "bad_function_response", str(exc), request_id, extra)
            return
        if len(body) > self.max_body:
            message = f"Response body exceeds the {_mb(self.max_body)} limit ({len(body)} > {self.max_body} bytes)."
            await _send_error(send, 502, "response_too_large", message, request_id, extra)
            return
        response_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in str_headers
            if name.lower().encode("latin-1") not in _DROP_RESPONSE_HEADERS and name.lower() not in _OWN_HEADERS
        ]
        response_headers += extra
        response_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


# --- asynchronous events ----------------------------------------------------------------------

# Request headers an accepted event does not keep: the caller's credentials.
_NOT_STORED = {"authorization", "cookie", "proxy-authorization"}
_accept_pool: ThreadPoolExecutor | None = None
_accept_pool_lock = threading.Lock()


def _accept_executor() -> ThreadPoolExecutor:
    """The threads that store accepted events: a few of their own, so a burst of events does
    not take the default executor's threads (the engine's start, token checks) from the loop."""
    global _accept_pool
    with _accept_pool_lock:
        if _accept_pool is None:
            _accept_pool = ThreadPoolExecutor(
                max_workers=int(getattr(settings, "STRATUS_GATEWAY_ACCEPT_THREADS", 4)),
                thread_name_prefix="stratus-gateway-accept",
            )
        return _accept_pool


def _accept_in_thread(
    function_id: int, environment_id: int, version: int, request: dict[str, Any], key: str | None
) -> Any:
    from django.db import close_old_connections

    from apps.triggers import async_services

    close_old_connections()
    try:
        return async_services.async_request_accept(
            function_id=function_id,
            environment_id=environment_id,
            version=version,
            request=request,
            idempotency_key=key,
        )
    finally:
        close_old_connections()


# --- origins ----------------------------------------------------------------------------------


def _request_host(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's host name, lowercase, without port or trailing dot (b"" when absent)."""
    for key, value in headers:
        if key == b"host":
            value = value.lower()
            if value.startswith(b"["):
                return value.partition(b"]")[0] + b"]"
            return value.partition(b":")[0].rstrip(b".")
    return b""


def _strip_cookies(headers: list[tuple[bytes, bytes]], names: frozenset[bytes] | None) -> list[tuple[bytes, bytes]]:
    """``headers`` without any Cookie header (``names`` None) or without the cookies named in
    ``names``; the same list when there is no cookie to remove."""
    if not any(key.lower() == b"cookie" for key, _ in headers):
        return headers
    kept: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        if key.lower() == b"cookie":
            if names is None:
                continue
            crumbs = [crumb.strip() for crumb in value.split(b";")]
            crumbs = [crumb for crumb in crumbs if crumb and crumb.partition(b"=")[0].strip() not in names]
            if not crumbs:
                continue
            value = b"; ".join(crumbs)
        kept.append((key, value))
    return kept


def _sandboxed(send: Send) -> Send:
    """``send`` for an answer on the console's host: no cookie for (or wiping) the console's
    origin, and the sandbox headers."""

    async def sandboxed_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message["headers"] if h[0].lower() not in _CONSOLE_HOST_DROP]
            message = {**message, "headers": headers + _SANDBOX_HEADERS}
        await send(message)

    return sandboxed_send


# --- request side ---------------------------------------------------------------------------


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            cookie_name, sep, cookie_value = part.strip().partition("=")
            if sep and cookie_name == name:
                return cookie_value.strip().strip('"')
    return None


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    value = _header(headers, b"x-request-id")
    return value if value and _REQUEST_ID.match(value) else None


async def _read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    declared = _header(headers, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _encoded_rest(scope: Scope, rest: str, prefix_segments: int) -> str:
    """The part of the path after the function prefix (/fn/<org>/<project>/<env>/<function>, or
    nothing on the function's own host), in its original (percent-encoded) form."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    raw = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
    n = prefix_segments + 1
    return raw.split("/", n)[n] if raw.count("/") >= n else rest


def _public_port(headers: list[tuple[bytes, bytes]], scheme: str) -> str:
    """The port the client addressed (the Host header's, else the scheme's): X-Forwarded-Port."""
    host = _header(headers, b"host") or ""
    if host.startswith("["):
        _, _, after = host.partition("]")
        port = after[1:] if after.startswith(":") else ""
    else:
        port = host.rpartition(":")[2] if ":" in host else ""
    return port if port.isdigit() else ("443" if scheme in ("https", "wss") else "80")


# --- response side --------------------------------------------------------------------------


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers, body = _error_response(status, code, message, request_id, extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_response(
    status: int, code: str, message: str, request_id: str, extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = event_shapes.error_body(code, message, request_id)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or [(b"x-request-id", request_id.encode())]),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return headers, body
