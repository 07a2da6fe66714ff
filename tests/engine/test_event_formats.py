"""Event formats (issue 17): a handler per format, deployed through the API and called through
the real gateway (uvicorn on a socket, real function processes), with the event fields
asserted against the shapes the home platforms document:

- apigw-v1: https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
- apigw-v2: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
- scf: https://www.tencentcloud.com/document/product/583/31439 (API Gateway trigger, integration request)
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import httpx
import pytest

from apps.functions.deploy_services import binding_apply_revision
from apps.functions.models import Binding, Function
from apps.monitoring.models import Invocation, LogLine
from apps.monitoring.sink import get_sink
from apps.tenancy import token_services
from tests.engine.conftest import url, wait_routed

CLF = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

V1 = """
import base64, json

def handler(event, context):
    print("v1", context.aws_request_id)
    if event["path"] == "/bin":
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(b"\\x89PNG\\x00\\xff" + base64.b64decode(event["body"])).decode(),
                "isBase64Encoded": True}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2; Path=/"], "X-Many": ["x", "y"]},
        "body": json.dumps({"event": event, "request_id": context.aws_request_id}),
    }
"""

V2 = """
import json

def handler(event, context):
    path = event["rawPath"]
    if path == "/plain":
        return {"hello": "world"}
    if path == "/text":
        return "just text"
    return {
        "statusCode": 201,
        "cookies": ["session=abc; HttpOnly", "theme=dark"],
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"event": event, "request_id": context.aws_request_id}),
    }
"""

SCF = """
import json

def main_handler(event, context):
    return {
        "isBase64Encoded": False,
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"event": event, "request_id": context["request_id"]}),
    }
"""


@pytest.fixture
def api(world: Any, served: Any) -> httpx.Client:
    """Alice's API client over the served console's socket (a Bearer token)."""
    _, token = token_services.token_create(user=world.alice, name="conformance", scopes=["read", "write", "deploy"])
    client = httpx.Client(base_url=served.base_url + "/api/v1", headers={"authorization": f"Bearer {token}"})
    yield client
    client.close()


def deploy_through_api(api: httpx.Client, world: Any, engine: Any, name: str, files: dict[str, str], **config: Any):
    """Create the function, publish a version and deploy it to dev, all through /api/v1/; the
    binding is applied as the worker would (the tests run none)."""
    created = api.post(
        f"/projects/{world.web.pk}/functions/",
        json={"name": name, "runtime": "python3.11", "handler": "main.handler", **config},
    )
    assert created.status_code == 201, created.text
    for key, value in config.items():
        assert created.json()[key] == value
    fid = created.json()["id"]
    version = api.post(f"/functions/{fid}/versions/", json={"files": files})
    assert version.status_code == 201, version.text
    assert version.json()["config"]["event_format"] == config.get("event_format", "apigw-v1")
    deployed = api.post(f"/functions/{fid}/deploy", json={"environment": "dev", "version": 1, "auth_mode": "public"})
    assert deployed.status_code in (200, 201, 202), deployed.text
    binding = Binding.objects.get(function_id=fid, environment__name="dev")
    if binding.applied_revision != binding.revision:
        binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    function = Function.objects.get(pk=fid)
    wait_routed(engine, function)
    return function


def test_apigw_v1_event_fields_multi_values_and_routes(world, engine, served, api):
    fn = deploy_through_api(
        api, world, engine, "restapi", {"main.py": V1}, routes=["/article/{id}", "/files/{path+}", "/bin"]
    )
    port = served.base_url.rsplit(":", 1)[1]
    before = time.time()

    response = served.request(
        "POST",
        url(fn, path="article/42?tag=a&tag=b&empty="),
        content=b'{"title": "hi"}',
        headers=[
            ("Content-Type", "application/json"),
            ("X-Multi", "first"),
            ("X-Multi", "second"),
            ("User-Agent", "conformance/1"),
            ("X-Request-Id", "trace-v1"),
            ("Authorization", "Bearer not-for-the-function"),
        ],
    )

    assert response.status_code == 200, response.text
    # Multi-value response headers: each value its own header line.
    assert response.headers.get_list("set-cookie") == []  # the console's host drops them (issue 11)
    assert response.headers.get_list("x-many") == ["x", "y"]
    data = response.json()
    event = data["event"]
    invocation_id = response.headers["x-stratus-invocation-id"]
    assert UUID.match(invocation_id) and data["request_id"] == invocation_id
    assert response.headers["x-request-id"] == "trace-v1"
    assert event["resource"] == "/article/{id}"
    assert event["path"] == "/article/42"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"id": "42"}
    assert event["stageVariables"] is None
    assert event["body"] == '{"title": "hi"}' and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"tag": "b", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "empty": [""]}
    # Header names in the client's (canonical) case; the last value in headers, all in multiValueHeaders.
    assert event["headers"]["X-Multi"] == "second"
    assert event["multiValueHeaders"]["X-Multi"] == ["first", "second"]
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["headers"]["User-Agent"] == "conformance/1"
    assert event["headers"]["X-Request-Id"] == "trace-v1"
    assert "Authorization" not in event["headers"] and "authorization" not in event["headers"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["headers"]["X-Forwarded-Port"] == port
    assert event["multiValueHeaders"]["X-Forwarded-For"] == ["127.0.0.1"]
    ctx = event["requestContext"]
    assert ctx["requestId"] == invocation_id
    assert CLF.match(ctx["requestTime"]), ctx["requestTime"]
    assert before * 1000 - 1000 <= ctx["requestTimeEpoch"] <= time.time() * 1000
    assert ctx["path"] == "/article/42"  # the public path: no /fn/<org>/... prefix
    assert ctx["resourcePath"] == "/article/{id}"
    assert ctx["httpMethod"] == "POST"
    assert ctx["protocol"] == "HTTP/1.1"
    assert ctx["stage"] == "dev"
    assert ctx["domainName"] == f"127.0.0.1:{port}"
    assert re.fullmatch(r"[0-9a-f]{10}", ctx["apiId"])
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "conformance/1"
    assert "/fn/" not in json.dumps(event)

    # A greedy template takes the rest of the path, decoded.
    greedy = served.get(url(fn, path="files/a/b%20c.txt")).json()["event"]
    assert (greedy["resource"], greedy["pathParameters"]) == ("/files/{path+}", {"path": "a/b c.txt"})
    assert greedy["path"] == "/files/a/b c.txt"
    assert greedy["queryStringParameters"] is None and greedy["multiValueQueryStringParameters"] is None
    # A path no template matches: 404 in the envelope, the function is not called.
    missing = served.get(url(fn, path="nothing/here"), headers={"x-request-id": "trace-404"})
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "code": "not_found",
            "message": "No route of this function matches /nothing/here.",
            "fields": {},
            "request_id": "trace-404",
        }
    }
    assert served.get(url(fn, path="article/1/extra")).status_code == 404
    assert served.get(url(fn, path="files/")).status_code == 404  # {path+} needs a segment

    # Binary bodies travel base64 both ways.
    raw = bytes(range(256))
    binary = served.post(url(fn, path="bin"), content=raw, headers={"content-type": "application/octet-stream"})
    assert binary.status_code == 200
    assert binary.headers["content-type"] == "image/png"
    assert binary.content == b"\x89PNG\x00\xff" + raw


def test_apigw_v1_cookies_on_the_functions_host(world, engine, served, api):
    """Set-Cookie from multiValueHeaders reach the client on the functions' own host; the Cookie
    header reaches the handler."""
    fn = deploy_through_api(api, world, engine, "cookies", {"main.py": V1})
    on_fn_host = served.base_url.replace("127.0.0.1", "localhost")

    response = httpx.get(on_fn_host + url(fn, path="c"), headers={"cookie": "pref=dark; lang=en"})

    assert response.status_code == 200, response.text
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    event = response.json()["event"]
    assert event["headers"]["Cookie"] == "pref=dark; lang=en"
    assert event["resource"] == "/{proxy+}" and event["pathParameters"] == {"proxy": "c"}
    assert event["requestContext"]["domainName"] == on_fn_host.removeprefix("http://")


def test_apigw_v2_event_fields_and_response_rules(world, engine, served, api):
    fn = deploy_through_api(api, world, engine, "httpapi", {"main.py": V2}, event_format="apigw-v2")
    on_fn_host = served.base_url.replace("127.0.0.1", "localhost")

    response = httpx.request(
        "PUT",
        on_fn_host + url(fn, path="items/7?a=1&a=2&b=x%20y"),
        content=b"payload",
        headers=[
            ("Content-Type", "text/plain"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("Cookie", "c1=v1; c2=v2"),
            ("User-Agent", "conformance/2"),
        ],
    )

    assert response.status_code == 201, response.text
    # 2.0's response: each entry of `cookies` becomes a Set-Cookie header.
    assert response.headers.get_list("set-cookie") == ["session=abc; HttpOnly", "theme=dark"]
    data = response.json()
    event = data["event"]
    assert data["request_id"] == response.headers["x-stratus-invocation-id"] == response.headers["x-request-id"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/items/7"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-multi"] == "one,two"  # lower-case names, repeated values joined
    assert event["headers"]["content-type"] == "text/plain"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert "multiValueHeaders" not in event and "multiValueQueryStringParameters" not in event
    assert event["body"] == "payload" and event["isBase64Encoded"] is False
    assert "pathParameters" not in event
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "PUT",
        "path": "/items/7",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "conformance/2",
    }
    assert ctx["requestId"] == data["request_id"]
    assert ctx["routeKey"] == "$default" and ctx["stage"] == "dev"
    assert CLF.match(ctx["time"]) and abs(ctx["timeEpoch"] - time.time() * 1000) < 60_000
    assert "/fn/" not in json.dumps(event)

    # Without statusCode: an object becomes a JSON 200, a string the body as it is.
    plain = served.get(url(fn, path="plain"))
    assert (plain.status_code, plain.headers["content-type"], plain.json()) == (
        200,
        "application/json",
        {"hello": "world"},
    )
    text = served.get(url(fn, path="text"))
    assert (text.status_code, text.text) == (200, "just text")


def test_apigw_v2_route_key_and_path_parameters(world, engine, served, api):
    fn = deploy_through_api(
        api, world, engine, "routed2", {"main.py": V2}, event_format="apigw-v2", routes=["/items/{id}"]
    )
    event = served.get(url(fn, path="items/9")).json()["event"]
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "ANY /items/{id}"
    assert event["pathParameters"] == {"id": "9"}
    assert "cookies" not in event and "queryStringParameters" not in event and "body" not in event
    assert served.get(url(fn, path="other")).status_code == 404


def test_scf_api_gateway_trigger_event(world, engine, served, api):
    fn = deploy_through_api(
        api,
        world,
        engine,
        "scfapi",
        {"index.py": SCF},
        handler="index.main_handler",
        event_format="scf",
        routes=["/test/{path}"],
    )

    response = served.post(
        url(fn, path="test/value?foo=bar&bob=alice"),
        content=b'{"test":"body"}',
        headers={"Content-Type": "application/json", "Accept-Language": "en-US"},
    )

    assert response.status_code == 200, response.text
    data = response.json()
    event = data["event"]
    assert data["request_id"] == response.headers["x-stratus-invocation-id"]
    ctx = event["requestContext"]
    assert set(ctx) == {"serviceId", "path", "httpMethod", "requestId", "identity", "sourceIp", "stage"}
    assert re.fullmatch(r"service-[0-9a-f]{8}", ctx["serviceId"])
    assert ctx["path"] == "/test/{path}"  # the API's path template
    assert (ctx["httpMethod"], ctx["requestId"], ctx["sourceIp"], ctx["stage"]) == (
        "POST",
        data["request_id"],
        "127.0.0.1",
        "dev",
    )
    assert event["path"] == "/test/value"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"path": "value"}
    assert event["queryStringParameters"] == event["queryString"] == {"foo": "bar", "bob": "alice"}
    assert event["headerParameters"] == {}
    assert event["stageVariables"] == {"stage": "dev"}
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["headers"]["Accept-Language"] == "en-US"
    assert event["body"] == '{"test":"body"}' and event["isBase64Encoded"] is False


def test_each_invocation_has_its_own_id_and_the_caller_id_is_the_trace(world, engine, served, api):
    fn = deploy_through_api(api, world, engine, "ids", {"main.py": V1})

    first = served.get(url(fn, path="x"), headers={"x-request-id": "same-trace"})
    second = served.get(url(fn, path="x"), headers={"x-request-id": "same-trace"})

    assert first.headers["x-request-id"] == second.headers["x-request-id"] == "same-trace"
    ids = [r.headers["x-stratus-invocation-id"] for r in (first, second)]
    assert ids[0] != ids[1] and all(UUID.match(i) for i in ids)
    assert [r.json()["request_id"] for r in (first, second)] == ids
    get_sink().flush()
    assert sorted(Invocation.objects.filter(function=fn).values_list("request_id", flat=True)) == sorted(ids)
    assert not Invocation.objects.filter(request_id="same-trace").exists()
    # Log lines belong to the invocation that printed them.
    for invocation_id in ids:
        lines = list(LogLine.objects.filter(request_id=invocation_id).values_list("text", flat=True))
        assert lines == [f"v1 {invocation_id}"]


def test_api_refuses_unknown_formats_and_bad_templates(world, api, transactional_db):
    base = {"runtime": "python3.11", "handler": "main.handler"}
    bad_format = api.post(f"/projects/{world.web.pk}/functions/", json={"name": "f1", **base, "event_format": "v3"})
    assert bad_format.status_code == 400
    assert "event_format" in bad_format.json()["error"]["fields"]
    bad_routes = api.post(
        f"/projects/{world.web.pk}/functions/",
        json={"name": "f2", **base, "routes": ["/a/{rest+}/b", "nope", "/x/{id}/{id}"]},
    )
    assert bad_routes.status_code == 400
    assert bad_routes.json()["error"]["fields"]["routes"] == [
        "'/a/{rest+}/b': a greedy parameter {rest+} must be the last segment.",
        "'nope': must start with '/'.",
        "'/x/{id}/{id}': parameter 'id' is used twice.",
    ]
    assert not Function.objects.filter(name__in=["f1", "f2"]).exists()


def test_binary_request_body_is_base64_in_every_format(world, engine, served, api):
    echo = "def handler(event, context):\n    return {'body': event['body'], 'b64': event['isBase64Encoded']}\n"
    raw = b"\x00\x01\xfe\xff"
    for fmt in ("apigw-v1", "apigw-v2", "scf"):
        fn = deploy_through_api(api, world, engine, f"bin-{fmt}", {"main.py": echo}, event_format=fmt)
        answer = served.post(url(fn), content=raw, headers={"content-type": "application/octet-stream"}).json()
        assert answer == {"body": base64.b64encode(raw).decode(), "b64": True}, fmt
