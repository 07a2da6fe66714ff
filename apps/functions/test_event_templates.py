"""Starting points for new test events: the events Stratus and its anchors send to functions.

The HTTP ones have exactly the keys the gateway gives an ``event`` function
(runtime/stratus_bootstrap/events.py, ``apigw-v1``: API Gateway REST proxy shape plus SCF's
``queryString`` and ``headerParameters``); tests/functions/test_test_events.py compares them
with a real event from the gateway so the two cannot drift apart. Static data: the same for
every caller. ``kind``: the function kind a template is for (``event`` functions get events,
``http`` functions a request object, as ``apps/engine/services.py`` ``_event_frame`` reads it).
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlencode

from apps.core import event_shapes

_REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def _proxy(method: str, path: str, query: dict[str, str], headers: dict[str, str], body: str | None) -> dict[str, Any]:
    """The gateway's own apigw-v1 event for such a request (runtime/stratus_bootstrap/events.py),
    at a fixed time and id, from a fixed client."""
    request = event_shapes.Request(
        method=method,
        path=path,
        query=urlencode(query),
        headers=list(headers.items()),
        body=(body or "").encode(),
        source_ip="203.0.113.7",
        scheme="https",
        port="443",
        http_version="1.1",
        request_id=_REQUEST_ID,
        key=("my-org", "my-project", "dev", "my-function"),
        received_at=1767225600.0,
    )
    return event_shapes.build_event("apigw-v1", request, event_shapes.catch_all(path))


TEMPLATES: list[dict[str, Any]] = [
    {
        "id": "http-get",
        "kind": "event",
        "name": "HTTP GET (API gateway proxy)",
        "description": "A GET through the Stratus gateway, as an event function receives it.",
        "body": _proxy(
            "GET",
            "/items",
            {"limit": "10"},
            {"accept": "application/json", "host": "functions.example", "user-agent": "curl/8.5.0"},
            None,
        ),
    },
    {
        "id": "http-post",
        "kind": "event",
        "name": "HTTP POST (API gateway proxy)",
        "description": "A POST with a JSON body through the Stratus gateway; the body arrives as a string.",
        "body": _proxy(
            "POST",
            "/items",
            {},
            {"content-type": "application/json", "host": "functions.example", "user-agent": "curl/8.5.0"},
            json.dumps({"name": "widget", "quantity": 2}),
        ),
    },
    {
        "id": "scf-api-gateway",
        "kind": "event",
        "name": "SCF API gateway",
        "description": "Tencent Cloud SCF's API gateway trigger event.",
        "body": {
            "requestContext": {
                "serviceId": "service-f94sy04v",
                "path": "/test/{path}",
                "httpMethod": "POST",
                "requestId": _REQUEST_ID,
                "identity": {"secretId": "abdcdxxxxxxxsdfs"},
                "sourceIp": "203.0.113.7",
                "stage": "release",
            },
            "headers": {"Accept-Language": "en-US,en", "Content-Type": "application/json", "Host": "service.example"},
            "body": json.dumps({"test": "body"}),
            "pathParameters": {"path": "value"},
            "queryStringParameters": {"foo": "bar"},
            "headerParameters": {"Refer": "10.0.2.14"},
            "stageVariables": {"stage": "release"},
            "path": "/test/value",
            "queryString": {"foo": "bar"},
            "httpMethod": "POST",
            "isBase64Encoded": False,
        },
    },
    {
        "id": "scheduled",
        "kind": "event",
        "name": "Scheduled event",
        "description": "A timer firing (the EventBridge scheduled-event shape).",
        "body": {
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "stratus.scheduler",
            "time": "2026-01-01T00:00:00Z",
            "resources": ["schedule/my-function/every-5-minutes"],
            "detail": {},
        },
    },
    {"id": "custom", "kind": "event", "name": "Custom JSON", "description": "An empty object to fill in.", "body": {}},
    {
        "id": "http-request",
        "kind": "http",
        "name": "HTTP request",
        "description": "For an http (WSGI/ASGI) function: the request the invoke API sends it.",
        "body": {
            "method": "GET",
            "path": "/hello",
            "query": "name=ada",
            "headers": {"accept": "application/json"},
            "body": "",
        },
    },
]


def template_list() -> list[dict[str, Any]]:
    """A copy each call: a caller editing one must not change the next caller's."""
    return copy.deepcopy(TEMPLATES)
