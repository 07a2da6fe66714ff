from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Literal, overload

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core import context
from apps.core.errors import json_error

request_log = logging.getLogger("stratus.request")

# An incoming X-Request-Id is honoured when it looks like an id, so a caller can follow
# one request across systems; anything else is replaced (it ends up in log lines).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def client_ip(request: HttpRequest) -> str | None:
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR")


class RequestIdMiddleware:
    """Gives every request an id (X-Request-Id in and out) and logs one line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = context.set_current(context.RequestContext(request_id=request_id, source_ip=client_ip(request)))
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response["X-Request-Id"] = request_id
        user = getattr(request, "user", None)
        request_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": user.pk if user is not None and user.is_authenticated else None,
            },
        )
        return response


class ProbeMiddleware:
    """``GET /healthz`` and ``GET /readyz`` answer whatever the Host and scheme: a load
    balancer, kubelet or systemd probe reaches the process by its address over plain HTTP, not
    by the public name through TLS. They answer here, before SecurityMiddleware (the HTTPS
    redirect) and before anything reads ``request.get_host()`` (ALLOWED_HOSTS), so every other
    path keeps both. The probes reveal nothing a caller could use and change nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in ("/healthz", "/readyz") and request.method == "GET":
            from apps.core import health

            return health.healthz(request) if request.path_info == "/healthz" else health.readyz(request)
        return self.get_response(request)


@overload
def request_body_limit(path: str, content_type: str, *, chunked: Literal[True]) -> int: ...
@overload
def request_body_limit(path: str, content_type: str, *, chunked: bool = False) -> int | None: ...
def request_body_limit(path: str, content_type: str, *, chunked: bool = False) -> int | None:
    """The most bytes a request body may have: API bodies STRATUS_MAX_REQUEST_BYTES (code
    uploads, multipart, the upload limit), webhooks under /hooks/ STRATUS_WEBHOOK_MAX_BYTES.
    Elsewhere (console pages) None, Django's form limits apply; a body without a Content-Length
    (``chunked``) is read before Django (apps/core/asgi.py), so it gets the largest body any
    console page accepts (a code upload) as its bound."""
    if path.startswith("/api/"):
        if content_type.startswith("multipart/form-data"):
            # Code uploads; the archive reader enforces the exact limit while reading.
            return int(settings.STRATUS_MAX_UPLOAD_BYTES) + 64 * 1024
        return int(settings.STRATUS_MAX_REQUEST_BYTES)
    if path.startswith("/hooks/"):
        # Git host webhooks (GitHub sends up to 25 MB); the intake view reads the raw body
        # itself and enforces the same limit.
        return int(settings.STRATUS_WEBHOOK_MAX_BYTES)
    return int(settings.STRATUS_MAX_UPLOAD_BYTES) + 64 * 1024 if chunked else None


class BodySizeLimitMiddleware:
    """Refuses API bodies over STRATUS_MAX_REQUEST_BYTES (webhook bodies under /hooks/ over
    STRATUS_WEBHOOK_MAX_BYTES) with 413 before anything reads them.

    Bodies without a Content-Length (chunked) are read and capped before Django by
    apps.core.asgi.RequestGuard, which passes them on with a Content-Length that this checks.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = request_body_limit(request.path, request.META.get("CONTENT_TYPE", ""))
        if limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error(400, "malformed_request", "Content-Length is not a number.")
            if length > limit:
                return json_error(
                    413, "request_too_large", f"Request body of {length} bytes exceeds the limit of {limit} bytes."
                )
        return self.get_response(request)


# The console's own pages load scripts, styles, images, fonts, workers and connections
# (XHR, websockets) from its own origin only; no plugins, no <base> games, forms post only
# here, and no other site may frame them. No inline script, handler or style: templates use
# static files (htmx's indicator style is switched off in base.html's htmx-config).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "worker-src 'self'",  # the WebIDE's editor (Monaco) runs language workers
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Sends the console's strict Content-Security-Policy on every response that does not set
    its own. Functions never pass through here (the gateway answers /fn/ before Django)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response
