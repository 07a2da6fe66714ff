"""The function gateway: `/fn/{org}/{project}/{environment}/{function}/{path}`.

A fast path in front of Django in the ASGI app (no middleware, no URL resolver, no query):
resolve the route in the engine's in-memory table, check the token when the binding asks
for one, pick a version by weight, forward the request to an instance, answer.

- `http` functions get the request as-is (WSGI/ASGI, mounted at the function's URL prefix:
  SCRIPT_NAME / root_path is the prefix, the path is what follows it).
- `event` functions get an API-Gateway-proxy-style event (method, path, headers, query,
  body, isBase64Encoded; the fields Lambda and SCF handlers read); a returned dict with
  ``statusCode`` is the response, anything else becomes a JSON 200.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from django.conf import settings

from apps.engine.engine import CallSite, Outcome, new_request_id
from apps.engine.gateway_auth import TokenCache
from apps.engine.routing import NotServed, Route, RouteVersion

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX = "/fn/"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "application/x-www-form")
# Connection-level headers the gateway owns (hop-by-hop or recomputed).
_DROP_RESPONSE_HEADERS = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.serve(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        await self.app(scope, receive, send)

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

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _incoming_request_id(headers) or new_request_id()
        started_at = datetime.now(UTC)
        parts = scope["path"][len(PREFIX) :].split("/", 4)
        if len(parts) < 4 or not all(parts[:4]):
            await _send_error(send, 404, "not_found", "No function is deployed at this URL.", request_id)
            return
        org, project, environment, function = parts[:4]
        rest = parts[4] if len(parts) == 5 else ""
        host = await self.host()
        route: Route | None = host.engine.routes.get((org, project, environment, function))
        if route is None:
            await _send_error(send, 404, "not_found", "No function is deployed at this URL.", request_id)
            return
        if route.auth_mode == "token":
            verdict = await self.tokens.check(_header(headers, b"authorization"), route.project_id)
            if verdict.status != 200:
                code = {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}[verdict.status]
                await _send_error(send, verdict.status, code, verdict.message, request_id)
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
        root_path = PREFIX + "/".join(parts[:4])
        frame = (
            _http_frame(scope, headers, body, request_id, root_path, rest)
            if rv.spec.kind == "http"
            else {
                "type": "invoke",
                "id": request_id,
                "event": _proxy_event(scope, headers, body, request_id, rest, route),
            }
        )
        site = CallSite(route.function_id, route.environment_id, route.binding_id, "http")
        outcome: Outcome = await host.call(host.engine.invoke(rv, frame, site=site, started_at=started_at))
        await self._respond(send, outcome, rv, request_id)

    async def _respond(self, send: Send, outcome: Outcome, rv: RouteVersion, request_id: str) -> None:
        extra = [(b"x-request-id", request_id.encode()), (b"x-stratus-version", str(rv.number).encode())]
        if outcome.cold_start:
            extra.append((b"x-stratus-cold-start", b"1"))
        if outcome.status != "ok" or outcome.reply is None:
            error = outcome.error or {}
            status = _STATUS_FOR.get(outcome.status, 502)
            message = str(error.get("message") or "The function failed.")
            if outcome.status == "error":
                message = f"{error.get('type', 'Error')}: {message}"
            await _send_error(send, status, _CODE_FOR.get(outcome.status, "function_error"), message, request_id, extra)
            return
        try:
            status, response_headers, body = _response_from(outcome.reply, rv.spec.kind)
        except ValueError as exc:
            await _send_error(send, 502, "bad_function_response", str(exc), request_id, extra)
            return
        if len(body) > self.max_body:
            message = f"Response body exceeds the {_mb(self.max_body)} limit ({len(body)} > {self.max_body} bytes)."
            await _send_error(send, 502, "response_too_large", message, request_id, extra)
            return
        response_headers = [h for h in response_headers if h[0].lower() not in _DROP_RESPONSE_HEADERS]
        response_headers = [h for h in response_headers if h[0].lower() not in (b"x-request-id", b"x-stratus-version")]
        response_headers += extra
        response_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


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


def _http_frame(
    scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes, request_id: str, root_path: str, rest: str
) -> dict[str, Any]:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    raw = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
    # The part after the function prefix, in its original (percent-encoded) form.
    encoded_rest = raw.split("/", 6)[6] if raw.count("/") >= 6 else rest
    return {
        "type": "http",
        "id": request_id,
        "method": scope["method"],
        "path": "/" + encoded_rest,
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers if k.lower() != b"authorization"]
        + ([["x-request-id", request_id]] if _header(headers, b"x-request-id") is None else []),
        "body_b64": base64.b64encode(body).decode("ascii"),
        "scheme": scope.get("scheme", "http"),
        "root_path": root_path,
    }


def _is_text(content_type: str | None) -> bool:
    return content_type is None or content_type.startswith(_TEXT_TYPES) or content_type == ""


def _proxy_event(
    scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes, request_id: str, rest: str, route: Route
) -> dict[str, Any]:
    """An API Gateway (REST, proxy integration) event; SCF's API Gateway trigger reads the same
    keys plus ``queryString`` and ``headerParameters``."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in headers:
        name = key.decode("latin-1").lower()
        if name == "authorization":
            continue  # the token authenticated the caller to Stratus; it is not the function's
        text = value.decode("latin-1")
        single[name] = text
        multi.setdefault(name, []).append(text)
    query = scope.get("query_string", b"").decode("latin-1")
    multi_query = {k: v for k, v in parse_qs(query, keep_blank_values=True).items()}
    single_query = {k: v[-1] for k, v in multi_query.items()}
    binary = bool(body) and not _is_text(single.get("content-type"))
    if binary:
        body_text: str | None = base64.b64encode(body).decode("ascii")
    else:
        try:
            body_text = body.decode("utf-8") if body else None
        except UnicodeDecodeError:
            body_text, binary = base64.b64encode(body).decode("ascii"), True
    path = "/" + unquote(rest)
    org, project, environment, function = route.key
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": scope["method"],
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "queryString": single_query,
        "headerParameters": {},
        "pathParameters": {"proxy": unquote(rest)} if rest else None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "stage": environment,
            "httpMethod": scope["method"],
            "path": scope["path"],
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": (scope.get("client") or ("", 0))[0]},
            "stratus": {"org": org, "project": project, "environment": environment, "function": function},
        },
        "body": body_text,
        "isBase64Encoded": binary,
    }


# --- response side --------------------------------------------------------------------------


def _response_from(reply: dict[str, Any], kind: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    if reply.get("type") == "http_response":
        headers = [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in reply.get("headers", [])]
        return int(reply.get("status", 200)), headers, base64.b64decode(reply.get("body_b64", "") or "")
    result = reply.get("result")
    if isinstance(result, dict) and "statusCode" in result:
        return _proxy_response(result)
    body = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
    return 200, [(b"content-type", b"application/json")], body


def _proxy_response(result: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        raise ValueError(f"statusCode must be an integer, got {result['statusCode']!r}") from None
    if not 100 <= status <= 599:
        raise ValueError(f"statusCode must be between 100 and 599, got {status}")
    headers: list[tuple[bytes, bytes]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name).lower().encode("latin-1"), str(value).encode("latin-1")))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name).lower().encode("latin-1"), str(value).encode("latin-1")))
    body = result.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        if result.get("isBase64Encoded"):
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("body is marked isBase64Encoded but is not valid base64") from None
        else:
            data = body.encode("utf-8")
    else:
        # Lambda requires a string body; SCF and most users expect an object to become JSON.
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"application/json"))
    return status, headers, data


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "fields": {}, "request_id": request_id}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or [(b"x-request-id", request_id.encode())]),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
