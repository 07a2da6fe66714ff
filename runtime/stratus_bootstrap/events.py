"""The events an ``event`` function receives and how its answer becomes an HTTP response.

One module for both serving paths: the console's gateway (apps/engine/gateway.py, through
apps/engine/events.py) and the Knative runtime's entrypoint (serve_http.py) shape requests and
answers here, so a function answers the same on either backend. Standard library only, like
the rest of the bootstrap: the runtime image has nothing of the console.

A function's ``event_format`` picks the shape (``FORMATS``):

- ``apigw-v1``: API Gateway REST API, Lambda proxy integration (payload format 1.0), the
  default. https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
  ("Input format of a Lambda function for proxy integration", "Output format ...").
- ``apigw-v2``: API Gateway HTTP API / Lambda Function URL, payload format 2.0.
  https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
  ("Payload format differences", "Lambda function response format").
- ``scf``: Tencent SCF's API Gateway trigger (integration request / integration response).
  https://www.tencentcloud.com/document/product/583/12513 (API Gateway Trigger) and
  https://www.tencentcloud.com/document/product/583/31439 (Trigger Event Message Structure Summary).

The path a function sees is the path after its URL (``/fn/<org>/<project>/<env>/<function>``
or nothing on its own host): the platform-internal prefix never appears where the home
platform shows the public path. Header names arrive lower-cased from the console's ASGI server
(uvicorn) and as Go's net/http spells them from Knative's queue-proxy, so the REST and SCF
shapes spell them in the canonical HTTP/1.1 case (``Content-Type``, ``X-Forwarded-For``): the
case every HTTP/1.1 client library and browser sends, and the same bytes on both backends.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

APIGW_V1 = "apigw-v1"
APIGW_V2 = "apigw-v2"
SCF = "scf"
FORMATS = (APIGW_V1, APIGW_V2, SCF)
DEFAULT_FORMAT = APIGW_V1
# Path templates: at most this many per function, each at most this long (a route table, not a
# program): the gateway matches every request against them.
MAX_ROUTES = 50
MAX_ROUTE_LENGTH = 200

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "application/x-www-form")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# A template segment: a literal, {name} (one segment) or {name+} (the rest of the path, greedy;
# last only), names as API Gateway allows them.
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()*,;=:@%-]+$")


@dataclass(frozen=True)
class Request:
    """One HTTP request as both serving paths know it."""

    method: str
    path: str  # after the function's URL, as received (percent-encoded), starting with "/"
    query: str  # the raw query string, without "?"
    headers: Sequence[tuple[str, str]]  # in the order received; names in any case
    body: bytes
    source_ip: str  # the connection's peer (the client, or the last proxy)
    scheme: str  # http | https, as the client reached the server
    port: str  # the server's port, as the client addressed it
    http_version: str  # "1.1", "2"
    request_id: str  # the invocation id (context.aws_request_id), fresh per invocation
    key: tuple[str, str, str, str]  # org, project, environment, function
    received_at: float  # epoch seconds


# --- routes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    template: str
    segments: tuple[tuple[str, str], ...]  # (kind, text): kind literal | param | greedy
    rank: tuple[int, ...]  # more literal segments first, then single parameters, greedy last


@dataclass(frozen=True)
class Match:
    template: str
    params: dict[str, str] | None  # None: no parameters (the event's pathParameters is null)
    routed: bool  # matched a template of the function (not the default catch-all)


def route_problems(templates: Any) -> list[str]:
    """Why ``templates`` is not a route list, one message per broken rule (empty: fine)."""
    if not isinstance(templates, list):
        return ['Must be a list of path templates, e.g. ["/article/{id}", "/{proxy+}"].']
    problems: list[str] = []
    if len(templates) > MAX_ROUTES:
        problems.append(f"At most {MAX_ROUTES} routes; got {len(templates)}.")
    seen: set[str] = set()
    for template in templates:
        if not isinstance(template, str):
            problems.append(f"{template!r}: a route is a string such as '/article/{{id}}'.")
            continue
        if len(template) > MAX_ROUTE_LENGTH:
            problems.append(f"'{template[:40]}...': at most {MAX_ROUTE_LENGTH} characters.")
            continue
        if not template.startswith("/"):
            problems.append(f"'{template}': must start with '/'.")
            continue
        if template in seen:
            problems.append(f"'{template}': listed twice.")
        seen.add(template)
        names: set[str] = set()
        parts = template[1:].split("/") if template != "/" else []
        for i, part in enumerate(parts):
            param = _PARAM.match(part)
            if param:
                if param.group(2) and i != len(parts) - 1:
                    problems.append(f"'{template}': a greedy parameter {{{param.group(1)}+}} must be the last segment.")
                if param.group(1) in names:
                    problems.append(f"'{template}': parameter '{param.group(1)}' is used twice.")
                names.add(param.group(1))
            elif not part:
                problems.append(f"'{template}': empty segment (a '//' or a trailing '/').")
            elif not _LITERAL.match(part):
                problems.append(
                    f"'{template}': segment '{part}' is neither a literal nor a parameter "
                    "({name} or a last {name+})."
                )
    return problems


def compile_routes(templates: Iterable[str]) -> tuple[Route, ...]:
    """Validated templates (``route_problems``) as the matcher uses them, most specific first."""
    routes = []
    for template in templates:
        segments: list[tuple[str, str]] = []
        for part in template[1:].split("/") if template != "/" else []:
            param = _PARAM.match(part)
            if param is None:
                segments.append(("literal", part))
            else:
                segments.append(("greedy" if param.group(2) else "param", param.group(1)))
        weight = {"literal": 2, "param": 1, "greedy": 0}
        routes.append(Route(template, tuple(segments), tuple(weight[kind] for kind, _ in segments)))
    # API Gateway picks the most specific route: literal segments beat parameters, which beat
    # a greedy {proxy+} (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html).
    return tuple(sorted(routes, key=lambda r: (r.rank, len(r.segments)), reverse=True))


def match_route(routes: Sequence[Route], path: str) -> Match | None:
    """The route ``path`` (as received, percent-encoded) falls under, with its parameters
    (decoded); None when the function has routes and none matches. Without routes every path
    is the function's, under the catch-all ``/{proxy+}`` (today's shape)."""
    if not routes:
        return catch_all(path)
    parts = path[1:].split("/") if path != "/" else []
    for route in routes:
        params = _match_segments(route.segments, parts)
        if params is not None:
            return Match(route.template, params or None, routed=True)
    return None


def catch_all(path: str) -> Match:
    """The match of a function without routes: every path, as ``/{proxy+}``."""
    rest = path[1:]
    return Match("/{proxy+}", {"proxy": unquote(rest)} if rest else None, routed=False)


def _match_segments(segments: tuple[tuple[str, str], ...], parts: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, (kind, text) in enumerate(segments):
        if kind == "greedy":
            rest = parts[i:]
            if not rest or not rest[0]:
                return None  # {proxy+} needs at least one segment
            params[text] = unquote("/".join(rest))
            return params
        if i >= len(parts) or not parts[i]:
            return None
        if kind == "literal":
            if unquote(parts[i]) != unquote(text):
                return None
        else:
            params[text] = unquote(parts[i])
    return params if len(parts) == len(segments) else None


# --- request side ----------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """A header name as HTTP/1.1 clients spell it: the first letter and each letter after a
    '-' upper-case, the rest lower (Go's CanonicalMIMEHeaderKey, what queue-proxy delivers)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def is_text(content_type: str | None) -> bool:
    return content_type is None or content_type == "" or content_type.startswith(_TEXT_TYPES)


def _body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """(body as the event carries it, isBase64Encoded): text as text, anything else base64."""
    if not body:
        return None, False
    if not is_text(content_type):
        return base64.b64encode(body).decode("ascii"), True
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def _client_headers(req: Request) -> list[tuple[str, str]]:
    """The request's headers as a proxy in front of the function passes them on: the caller's
    ``Authorization`` (a Stratus token: it authenticated the caller to the platform, it is not
    the function's) removed, and X-Forwarded-For / -Proto / -Port added from the connection
    (a caller's X-Forwarded-For is appended to, as each proxy does). Names in canonical case."""
    out: list[tuple[str, str]] = []
    forwarded_for: str | None = None
    for name, value in req.headers:
        lower = name.lower()
        if lower in ("authorization", "x-forwarded-proto", "x-forwarded-port"):
            continue
        if lower == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        out.append((canonical_name(name), value))
    if req.source_ip:
        hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
        # uvicorn (proxy_headers, a trusted proxy in front) has already taken the client from the
        # header's last hop: that hop is then the peer, not one more proxy to add.
        if not hops or hops[-1] != req.source_ip:
            hops.append(req.source_ip)
        forwarded_for = ", ".join(hops)
    if forwarded_for:
        out.append(("X-Forwarded-For", forwarded_for))
    out.append(("X-Forwarded-Proto", req.scheme))
    out.append(("X-Forwarded-Port", str(req.port)))
    return out


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found


def clf_time(epoch_s: float) -> str:
    """API Gateway's requestTime: "09/Apr/2015:12:34:56 +0000" (English month, UTC, any locale)."""
    t = time.gmtime(epoch_s)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


@functools.lru_cache(maxsize=4096)  # a handful of functions per process: hashed once each
def api_id(key: tuple[str, str, str, str]) -> str:
    """A stable id of the function's API (apiId, SCF's serviceId): ten characters, as API
    Gateway's, the same on every backend and environment of the function."""
    org, project, _, function = key
    return hashlib.sha256(f"{org}/{project}/{function}".encode()).hexdigest()[:10]


def build_event(event_format: str, req: Request, match: Match) -> dict[str, Any]:
    if event_format == APIGW_V2:
        return _v2_event(req, match)
    if event_format == SCF:
        return _scf_event(req, match)
    return _v1_event(req, match)


def _common(req: Request) -> tuple[list[tuple[str, str]], str, str | None, bool, str]:
    headers = _client_headers(req)
    path = unquote(req.path)
    body, binary = _body(req.body, _header(headers, "content-type"))
    host = _header(headers, "host") or ""
    return headers, path, body, binary, host


def _v1_event(req: Request, match: Match) -> dict[str, Any]:
    """Payload format 1.0: ``headers`` / ``queryStringParameters`` hold the last value of each
    name, ``multiValueHeaders`` / ``multiValueQueryStringParameters`` all of them; null when
    there are none (the documented example's nulls)."""
    headers, path, body, binary, host = _common(req)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(req.query, keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    single_query = {k: v[-1] for k, v in multi_query.items()}
    org, project, environment, function = req.key
    epoch_ms = int(req.received_at * 1000)
    return {
        "resource": match.template,
        "path": path,
        "httpMethod": req.method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        # SCF's names for the query and the API's header parameters: handlers written for SCF
        # ran on this shape before event_format existed, and keep running.
        "queryString": single_query,
        "headerParameters": {},
        "pathParameters": match.params,
        "stageVariables": None,
        "requestContext": {
            "accountId": org,
            "apiId": api_id(req.key),
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "extendedRequestId": req.request_id,
            "httpMethod": req.method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "sourceIp": req.source_ip,
                "user": None,
                "userAgent": _header(headers, "user-agent"),
                "userArn": None,
            },
            "path": path,
            "protocol": f"HTTP/{req.http_version}",
            "requestId": req.request_id,
            "requestTime": clf_time(req.received_at),
            "requestTimeEpoch": epoch_ms,
            "resourceId": api_id((org, project, "", match.template)),
            "resourcePath": match.template,
            "stage": environment,
            "stratus": {"org": org, "project": project, "environment": environment, "function": function},
        },
        "body": body,
        "isBase64Encoded": binary,
    }


def _v2_event(req: Request, match: Match) -> dict[str, Any]:
    """Payload format 2.0: header names lower-case, repeated headers and query parameters
    joined with commas, Cookie headers moved to ``cookies``; fields with nothing to say
    (cookies, queryStringParameters, pathParameters, body) are left out, as API Gateway does."""
    headers, path, body, binary, host = _common(req)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies += [crumb.strip() for crumb in value.split(";") if crumb.strip()]
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(req.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    org, project, environment, function = req.key
    route_key = f"ANY {match.template}" if match.routed else "$default"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.path,
        "rawQueryString": req.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": org,
        "apiId": api_id(req.key),
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": req.method,
            "path": path,
            "protocol": f"HTTP/{req.http_version}",
            "sourceIp": req.source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": req.request_id,
        "routeKey": route_key,
        "stage": environment,
        "time": clf_time(req.received_at),
        "timeEpoch": int(req.received_at * 1000),
        "stratus": {"org": org, "project": project, "environment": environment, "function": function},
    }
    if body is not None:
        event["body"] = body
    if match.routed and match.params:
        event["pathParameters"] = match.params
    event["isBase64Encoded"] = binary
    return event


def _scf_event(req: Request, match: Match) -> dict[str, Any]:
    """SCF's API Gateway trigger, integration request: ``requestContext.path`` is the API's path
    template, ``path`` the request's; ``queryString`` and ``queryStringParameters`` the query
    (repeated names: the last value), ``headerParameters`` the API's declared header
    parameters (none here), ``stageVariables`` the stage."""
    headers, path, body, binary, _ = _common(req)
    joined: dict[str, str] = {}
    for name, value in headers:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    query = dict(parse_qsl(req.query, keep_blank_values=True))
    _, _, environment, _ = req.key
    return {
        "requestContext": {
            "serviceId": f"service-{api_id(req.key)[:8]}",
            "path": match.template,
            "httpMethod": req.method,
            "requestId": req.request_id,
            "identity": {},
            "sourceIp": req.source_ip,
            "stage": environment,
        },
        "headers": joined,
        "body": body if body is not None else "",
        "pathParameters": match.params or {},
        "queryStringParameters": query,
        "headerParameters": {},
        "stageVariables": {"stage": environment},
        "path": path,
        "queryString": query,
        "httpMethod": req.method,
        "isBase64Encoded": binary,
    }


def http_frame(
    *,
    method: str,
    path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    request_id: str,
    trace_id: str,
    scheme: str,
    root_path: str,
) -> dict[str, Any]:
    """The ``http`` frame (WSGI/ASGI functions): the request as received, mounted at
    ``root_path``; the caller's Authorization removed; X-Request-Id carries the trace id."""
    has_id = any(name.lower() == "x-request-id" for name, _ in headers)
    return {
        "type": "http",
        "id": request_id,
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [[name.lower(), value] for name, value in headers if name.lower() != "authorization"]
        + ([] if has_id else [["x-request-id", trace_id]]),
        "body_b64": base64.b64encode(body).decode("ascii"),
        "scheme": scheme,
        "root_path": root_path,
        # The request target as received, mount prefix included (the ASGI scope's raw_path):
        # ``path`` is still percent-encoded and the prefix's segments are plain slugs. Older
        # bootstraps ignore it; newer ones rebuild it from root_path + path when it is missing.
        "raw_path": root_path + path,
    }


# --- response side ---------------------------------------------------------------------------


def response_from(
    reply: dict[str, Any], event_format: str = DEFAULT_FORMAT
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of a reply frame; ValueError names what is wrong with it."""
    if reply.get("type") == "http_response":
        headers = [(str(k), str(v)) for k, v in reply.get("headers", [])]
        return int(reply.get("status", 200)), headers, base64.b64decode(reply.get("body_b64", "") or "")
    result = reply.get("result")
    if isinstance(result, dict) and "statusCode" in result:
        return _proxy_response(result, event_format)
    if event_format == APIGW_V2 and isinstance(result, str):
        # 2.0 without statusCode: "API Gateway infers the response format": a string is the body
        # as it is, with content-type application/json (the documented example).
        return 200, [("content-type", "application/json")], result.encode("utf-8")
    body = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
    return 200, [("content-type", "application/json")], body


def _proxy_response(result: dict[str, Any], event_format: str) -> tuple[int, list[tuple[str, str]], bytes]:
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        raise ValueError(f"statusCode must be an integer, got {result['statusCode']!r}") from None
    if not 100 <= status <= 599:
        raise ValueError(f"statusCode must be between 100 and 599, got {status}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name).lower(), str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name).lower(), str(value)))
    if event_format == APIGW_V2:
        cookies = result.get("cookies") or []
        if not isinstance(cookies, list):
            raise ValueError("cookies must be a list of Set-Cookie values")
        # 2.0: "each cookie becomes a set-cookie header" in the response.
        headers += [("set-cookie", str(cookie)) for cookie in cookies]
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
        if not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
    return status, headers, data


def error_body(code: str, message: str, request_id: str) -> bytes:
    """The error envelope both serving paths answer with."""
    return json.dumps({"error": {"code": code, "message": message, "fields": {}, "request_id": request_id}}).encode()


def no_route_message(path: str) -> str:
    return f"No route of this function matches {path}."
