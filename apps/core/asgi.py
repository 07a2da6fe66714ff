"""ASGI-level guards in front of Django (console/asgi.py), for what Django's own handler
gets wrong under ASGI:

- ``RequestGuard`` (HTTP):
  - A body sent without Content-Length (``Transfer-Encoding: chunked``) is read here, capped
    like any other (413 in the error envelope past the limit that applies to the path, see
    ``apps.core.middleware.request_body_limit``), and handed on with a Content-Length. Django's
    ASGI handler would spool it whole with no limit at all, and DRF reads a request without
    Content-Length as having no body (valid JSON answered "field required").
  - A path whose percent-escapes are not UTF-8 (``%FF``) answers 400: the server decodes it
    with replacement characters, and a draft file stored under that name is not the name the
    client sent.
- ``unknown_websocket``: the last websocket route. A path no consumer serves is refused at
  the handshake (404, or 403 where the server cannot send a status), instead of the router
  raising (a 500 and an error in the log).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from apps.core.errors import envelope

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[..., Awaitable[None]]

_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")  # as RequestIdMiddleware


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value)
    return None


def _request_id(scope: Scope) -> bytes:
    incoming = _header(scope, b"x-request-id") or b""
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex.encode()


def path_is_utf8(scope: Scope) -> bool:
    """Whether the request path, percent-decoded, is UTF-8 (True when the server gives no
    raw path to tell)."""
    raw = scope.get("raw_path")
    if not raw:
        return True
    try:
        unquote_to_bytes(bytes(raw)).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def send_json_error(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(envelope(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", _request_id(scope)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Wraps Django's ASGI handler for HTTP (see the module docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not path_is_utf8(scope):
            message = "The request path is not valid UTF-8: paths and file names must be UTF-8 (percent-escaped)."
            await send_json_error(scope, send, 400, "invalid_path", message)
            return
        if _header(scope, b"content-length") is not None:
            await self.app(scope, receive, send)
            return
        await self._without_length(scope, receive, send)

    async def _without_length(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (up to the path's limit), then pass the request on as if it had
        come with a Content-Length."""
        from apps.core.middleware import request_body_limit

        content_type = (_header(scope, b"content-type") or b"").decode("latin-1")
        limit = request_body_limit(scope["path"], content_type, chunked=True)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json_error(
                    scope, send, 413, "request_too_large", f"Request body exceeds the limit of {limit} bytes."
                )
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect, as the server sends it

        await self.app({**scope, "headers": headers}, replay, send)


async def unknown_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a websocket handshake on a path no consumer serves: 404 with the error envelope
    where the server supports a denial response, else a close before accept (403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = json.dumps(envelope("not_found", "No websocket is served at this path.")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", _request_id(scope)),
        ]
        await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def websocket_token(scope: Scope) -> str:
    """The API token a websocket handshake carries, ``?token=`` or ``Authorization: Bearer``;
    empty when it carries none."""
    from urllib.parse import parse_qs

    query = parse_qs(bytes(scope.get("query_string") or b"").decode("latin-1"))
    token = (query.get("token") or [""])[0].strip()
    if token:
        return token
    authorization = (_header(scope, b"authorization") or b"").decode("latin-1").strip()
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def websocket_ticket(scope: Scope) -> str:
    """The single-use ticket a websocket handshake carries (``?ticket=``, e.g. the live log
    tail's: apps/monitoring/tickets.py); empty when none. Like a token, no ambient credential."""
    from urllib.parse import parse_qs

    query = parse_qs(bytes(scope.get("query_string") or b"").decode("latin-1"))
    return (query.get("ticket") or [""])[0].strip()


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a websocket handshake (403), touching nothing else. Channels' own denier is a
    consumer: it takes a channel on the channel layer, and as uvicorn never tells a refused
    socket's app that it is gone, that consumer waited on Redis forever, one per refusal."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


class WebsocketOriginGuard:
    """The Origin check for websockets, for the sockets that need it (console/asgi.py).

    A browser sends its cookies with any websocket handshake, whichever page opens it, so a
    socket that would act on the session must come from an allowed origin (cross-site websocket
    hijacking): ``origin_checked`` (Channels' AllowedHostsOriginValidator's rule) decides those. A
    socket that authenticates with a token (``?token=``, ``Authorization: Bearer`` or a ``?ticket=``) uses no
    ambient credential: whoever opens it already holds the token. It goes through without an
    Origin (command-line clients, the VS Code extension send none), and with its cookies removed,
    so that only the token can ever authenticate it.
    """

    def __init__(self, app: App, origin_checked: Any) -> None:
        self.app = app
        self.origin_checked = origin_checked  # an OriginValidator: its valid_origin() rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "websocket" and (websocket_token(scope) or websocket_ticket(scope)):
            headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"cookie"]
            await self.app({**scope, "headers": headers}, receive, send)
            return
        origin = _header(scope, b"origin")
        try:
            parsed = urlparse(origin.decode("latin-1")) if origin is not None else None
        except UnicodeDecodeError:
            parsed = None
        if self.origin_checked.valid_origin(parsed):
            await self.app(scope, receive, send)
        else:
            await refuse_websocket(scope, receive, send)
