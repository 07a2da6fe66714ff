"""The event-shaping module on its own (runtime/stratus_bootstrap/events.py, imported the way the
console imports it): what the end-to-end tests cannot reach from a loopback client."""

from __future__ import annotations

import time

from apps.core import event_shapes as ev


def request(**overrides):
    base = dict(
        method="GET",
        path="/",
        query="",
        headers=[("host", "fn.example.net")],
        body=b"",
        source_ip="198.51.100.7",
        scheme="https",
        port="443",
        http_version="1.1",
        request_id="inv-1",
        key=("acme", "shop", "prod", "cart"),
        received_at=1_700_000_000.25,
    )
    return ev.Request(**{**base, **overrides})


def v1(req):
    match = ev.match_route((), req.path)
    return ev.build_event("apigw-v1", req, match)


def test_a_caller_x_forwarded_for_is_appended_to_as_a_proxy_would():
    event = v1(request(headers=[("x-forwarded-for", "203.0.113.1, 10.0.0.2"), ("X-Forwarded-Proto", "gopher")]))
    assert event["headers"]["X-Forwarded-For"] == "203.0.113.1, 10.0.0.2, 198.51.100.7"
    assert event["headers"]["X-Forwarded-Proto"] == "https"  # the connection's, not the caller's claim
    assert event["headers"]["X-Forwarded-Port"] == "443"
    assert event["requestContext"]["identity"]["sourceIp"] == "198.51.100.7"


def test_request_time_is_clf_in_english_utc():
    event = v1(request())
    assert event["requestContext"]["requestTime"] == "14/Nov/2023:22:13:20 +0000"
    assert event["requestContext"]["requestTimeEpoch"] == 1_700_000_000_250
    assert ev.events.clf_time(time.mktime((2024, 2, 3, 4, 5, 6, 0, 0, 0)) - time.timezone).startswith("03/Feb/2024")


def test_most_specific_template_wins_and_values_are_decoded():
    routes = ev.compile_routes(["/{proxy+}", "/article/{id}", "/article/new", "/article/{id}/{part+}"])
    assert ev.match_route(routes, "/article/new").template == "/article/new"
    assert ev.match_route(routes, "/article/n%20w").params == {"id": "n w"}
    deep = ev.match_route(routes, "/article/7/a/b")
    assert (deep.template, deep.params) == ("/article/{id}/{part+}", {"id": "7", "part": "a/b"})
    other = ev.match_route(routes, "/elsewhere/x")
    assert (other.template, other.params) == ("/{proxy+}", {"proxy": "elsewhere/x"})
    assert ev.match_route(ev.compile_routes(["/a"]), "/") is None
    assert ev.match_route(ev.compile_routes(["/"]), "/").params is None


def test_v2_without_optional_fields_leaves_them_out():
    event = ev.build_event("apigw-v2", request(), ev.match_route((), "/"))
    assert set(event) == {"version", "routeKey", "rawPath", "rawQueryString", "headers", "requestContext", "isBase64Encoded"}
    assert event["headers"] == {
        "host": "fn.example.net",
        "x-forwarded-for": "198.51.100.7",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
    }


def test_v2_response_cookies_must_be_a_list():
    reply = {"type": "result", "result": {"statusCode": 200, "cookies": "a=1"}}
    try:
        ev.response_from(reply, "apigw-v2")
    except ValueError as exc:
        assert str(exc) == "cookies must be a list of Set-Cookie values"
    else:
        raise AssertionError("a string of cookies was accepted")
    # v1 ignores `cookies` (not part of its response format).
    assert ev.response_from(reply, "apigw-v1") == (200, [], b"")
