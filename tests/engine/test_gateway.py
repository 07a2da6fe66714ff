"""The gateway end to end: functions deployed through the services answer on a real socket,
served by real processes (Python through the zygote, Node as its own process)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from apps.monitoring.models import Invocation, LogLine
from apps.monitoring.sink import get_sink
from apps.tenancy import token_services
from tests.engine.conftest import deploy_latest, make_function, url, wait_routed
from tests.prerequisites import missing, needs_node

LAMBDA = """
import json

def handler(event, context):
    print(f"lambda says hi from {context.function_name} v{context.function_version}")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-custom": "yes"},
        "body": json.dumps({
            "method": event["httpMethod"],
            "path": event["path"],
            "query": event["queryStringParameters"],
            "body": event["body"],
            "b64": event["isBase64Encoded"],
            "request_id": context.aws_request_id,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 3000,
            "memory": context.memory_limit_in_mb,
        }),
    }
"""

SCF = """
def main_handler(event, context):
    print("scf request", context["request_id"])
    return {
        "isBase64Encoded": False,
        "statusCode": 201,
        "headers": {"Content-Type": "text/plain"},
        "body": "scf:" + event["queryString"].get("name", "") + ":" + context.get("function_name"),
    }
"""

PLAIN = """
def handler(event, context):
    return {"answer": 42, "path": event["path"]}
"""

ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    print("asgi got", scope["method"], scope["path"])
    text = f"{scope['method']} {scope['path']} root={scope['root_path']} q={scope['query_string'].decode()} body={body.decode()}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text.encode()})
"""

FLASK_APP = """
from flask import Flask, request, url_for

app = Flask(__name__)

@app.route("/hello/<name>", methods=["GET", "POST"])
def hello(name):
    print("flask hello", name)
    return {"hello": name, "method": request.method, "json": request.get_json(silent=True), "self": url_for("hello", name=name)}
"""

NODE = """
exports.handler = async (event, context) => {
  console.log("node says hi", context.awsRequestId);
  return { statusCode: 200, headers: { "content-type": "application/json" },
           body: JSON.stringify({ path: event.path, method: event.httpMethod, fn: context.functionName }) };
};
"""


def vendored_flask() -> dict[str, bytes]:
    """Flask and its dependencies copied from this venv into the function's zip (functions
    do not see the console's site-packages)."""
    import blinker
    import click
    import flask
    import itsdangerous
    import jinja2
    import markupsafe
    import werkzeug

    files: dict[str, bytes] = {}
    for module in (flask, werkzeug, jinja2, markupsafe, itsdangerous, click, blinker):
        root = Path(module.__file__).parent
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{root.name}/{path.relative_to(root)}"] = path.read_bytes()
    return files


def flushed_logs(request_id: str) -> list[LogLine]:
    get_sink().flush()
    return list(LogLine.objects.filter(request_id=request_id).order_by("id"))


def test_lambda_handler_answers_through_the_gateway_with_its_logs(world, engine, served):
    fn = make_function(world, "lam", {"main.py": LAMBDA}, timeout_s=3)
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    response = served.post(url(fn, path="orders/7?x=1"), content=b'{"a": 1}', headers={"x-request-id": "req-abc-1"})

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-abc-1"
    assert response.headers["x-stratus-version"] == "1"
    assert response.headers["x-custom"] == "yes"
    body = response.json()
    assert body == {
        "method": "POST",
        "path": "/orders/7",
        "query": {"x": "1"},
        "body": '{"a": 1}',
        "b64": False,
        # The caller's X-Request-Id is the trace id; the invocation has an id of its own.
        "request_id": response.headers["x-stratus-invocation-id"],
        "remaining_ok": True,
        "memory": 256,
    }
    assert body["request_id"] != "req-abc-1" and len(body["request_id"]) == 36
    lines = flushed_logs(body["request_id"])
    assert [(line.stream, line.text) for line in lines] == [("stdout", "lambda says hi from lam v1")]
    invocation = Invocation.objects.get(request_id=body["request_id"])
    assert (invocation.status, invocation.trigger, invocation.version, invocation.cold_start) == ("ok", "http", 1, True)
    assert invocation.init_duration_ms is not None and invocation.duration_ms >= 0

    # A second call is warm and gets a generated request id.
    again = served.get(url(fn, path="x"))
    assert again.status_code == 200
    assert "x-stratus-cold-start" not in again.headers
    assert len(again.headers["x-request-id"]) == 36


def test_scf_main_handler_and_plain_results(world, engine, served):
    scf = make_function(world, "scf", {"index.py": SCF}, handler="index.main_handler")
    plain = make_function(world, "plain", {"main.py": PLAIN})
    deploy_latest(world, scf)
    deploy_latest(world, plain)
    wait_routed(engine, scf)
    wait_routed(engine, plain)

    response = served.get(url(scf, path="?name=ada"))
    assert (response.status_code, response.text) == (201, "scf:ada:scf")
    assert response.headers["content-type"] == "text/plain"
    assert [line.text for line in flushed_logs(response.headers["x-request-id"])] == [
        f"scf request {response.headers['x-request-id']}"
    ]

    response = served.get(url(plain, path="a/b"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"answer": 42, "path": "/a/b"}


def test_asgi_and_flask_apps_get_requests_as_is(world, engine, served):
    asgi = make_function(world, "asgi", {"web.py": ASGI_APP}, kind="http", handler="web.app")
    flask_fn = make_function(world, "flask", {"app.py": FLASK_APP, **vendored_flask()}, kind="http", handler="app.app")
    deploy_latest(world, asgi)
    deploy_latest(world, flask_fn)
    wait_routed(engine, asgi)
    wait_routed(engine, flask_fn)

    response = served.request("PUT", url(asgi, path="items/x?y=2"), content=b"data")
    assert response.status_code == 200, response.text
    # The asgiref spec: path includes root_path (the function's mount prefix).
    assert response.text == "PUT /fn/alpha/web/dev/asgi/items/x root=/fn/alpha/web/dev/asgi q=y=2 body=data"
    assert [line.text for line in flushed_logs(response.headers["x-request-id"])] == [
        "asgi got PUT /fn/alpha/web/dev/asgi/items/x"
    ]

    response = served.post(url(flask_fn, path="hello/ada"), json={"k": "v"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "hello": "ada",
        "method": "POST",
        "json": {"k": "v"},
        "self": "/fn/alpha/web/dev/flask/hello/ada",
    }
    assert [line.text for line in flushed_logs(response.headers["x-request-id"])] == ["flask hello ada"]
    missing = served.get(url(flask_fn, path="nope"))
    assert missing.status_code == 404  # the app's own 404, not the gateway's
    assert "x-stratus-version" in missing.headers


@needs_node
def test_node_handler_answers_through_the_gateway(world, engine, served):
    fn = make_function(world, "nodefn", {"index.js": NODE}, runtime="node20", handler="index.handler")
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    response = served.get(url(fn, path="n/1"))

    assert response.status_code == 200, response.text
    assert response.json() == {"path": "/n/1", "method": "GET", "fn": "nodefn"}
    rid = response.headers["x-request-id"]
    assert [line.text for line in flushed_logs(rid)] == [f"node says hi {rid}"]


def test_token_mode_checks_the_bearer_token(world, engine, served):
    fn = make_function(world, "private", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    _, invoke_token = token_services.token_create(user=world.bob, name="inv", scopes=["invoke"])
    _, deploy_token = token_services.token_create(user=world.bob, name="dep", scopes=["deploy"])
    _, read_token = token_services.token_create(user=world.bob, name="ro", scopes=["read"])
    _, outsider = token_services.token_create(user=world.charlie, name="x", scopes=["invoke", "deploy"])

    def call(token: str | None) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return served.get(url(fn), headers=headers)

    # Without a valid token of someone who sees the project: the answer of a missing function
    # (tests/engine/test_gateway_oracle.py compares the bytes).
    missing = served.get("/fn/alpha/web/dev/nope/").json()["error"]
    for hidden in (call(None), call("stt_not-a-real-token"), call(outsider)):
        assert hidden.status_code == 404
        assert hidden.json()["error"]["message"] == missing["message"]
        assert "www-authenticate" not in hidden.headers
    # A token of the project's own member learns what is wrong with it.
    forbidden = call(read_token)
    assert forbidden.status_code == 403
    assert "'invoke'" in forbidden.json()["error"]["message"]
    assert call(invoke_token).status_code == 200
    assert call(deploy_token).status_code == 200


def test_unknown_routes_answer_404_without_touching_an_instance(world, engine, served):
    for path in ("/fn/", "/fn/alpha", "/fn/alpha/web/dev/", "/fn/other/secret-project/dev/x/", "/fn/alpha/web/dev/zz/"):
        response = served.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_body_limits_name_the_limit(world, engine, served, settings):
    echo = make_function(
        world,
        "big",
        {
            "main.py": "def handler(event, context):\n    return {'statusCode': 200, 'body': 'x' * int(event['queryStringParameters']['n'])}\n"
        },
        memory_mb=512,
    )
    deploy_latest(world, echo)
    wait_routed(engine, echo)
    limit = 6 * 1024 * 1024

    too_big = served.post(url(echo, path="?n=1"), content=b"a" * (limit + 1))
    assert too_big.status_code == 413
    assert "6 MB limit" in too_big.json()["error"]["message"]
    assert served.post(url(echo, path="?n=1"), content=b"a" * 1000).status_code == 200

    response = served.get(url(echo, path=f"?n={limit + 10}"))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "response_too_large"
    assert "6 MB limit" in response.json()["error"]["message"]
    assert served.get(url(echo, path=f"?n={limit - 100}")).status_code == 200


def test_binary_bodies_travel_base64(world, engine, served):
    fn = make_function(
        world,
        "bin",
        {
            "main.py": (
                "import base64\n"
                "def handler(event, context):\n"
                "    data = base64.b64decode(event['body']) if event['isBase64Encoded'] else event['body'].encode()\n"
                "    return {'statusCode': 200, 'isBase64Encoded': True, 'headers': {'content-type': 'application/octet-stream'},"
                " 'body': base64.b64encode(bytes(reversed(data))).decode()}\n"
            )
        },
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    payload = bytes(range(256))

    response = served.post(url(fn), content=payload, headers={"content-type": "application/octet-stream"})

    assert response.status_code == 200
    assert response.content == bytes(reversed(payload))


def test_concurrent_requests_scale_out_up_to_max_instances(world, engine, served):
    fn = make_function(
        world,
        "slow",
        {
            "main.py": "import os, time\ndef handler(event, context):\n    time.sleep(0.4)\n    return {'pid': os.getpid()}\n"
        },
        max_instances=3,
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    results: list[Any] = []

    def call() -> None:
        results.append(served.get(url(fn)))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in results] == [200, 200, 200]
    assert len({r.json()["pid"] for r in results}) == 3  # three instances, one request each


def test_event_body_json_round_trip_and_request_id_is_kept(world, engine, served):
    fn = make_function(world, "echo", {"main.py": "def handler(event, context):\n    return event\n"})
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    response = served.post(url(fn, path="p?a=1&a=2&b="), json={"x": 1}, headers={"x-request-id": "fixed-id"})

    event = response.json()
    assert event["httpMethod"] == "POST"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert json.loads(event["body"]) == {"x": 1}
    assert event["requestContext"]["requestId"] == response.headers["x-stratus-invocation-id"] != "fixed-id"
    assert event["requestContext"]["stage"] == "dev"
    assert event["headers"]["X-Request-Id"] == "fixed-id"
    assert "Authorization" not in event["headers"]


KINDS = {
    "lambda": ({"main.py": LAMBDA}, {"handler": "main.handler"}),
    "scf": ({"index.py": SCF}, {"handler": "index.main_handler"}),
    "flask": ({"app.py": FLASK_APP}, {"handler": "app.app", "kind": "http"}),
    "asgi": ({"web.py": ASGI_APP}, {"handler": "web.app", "kind": "http"}),
    "node": ({"index.js": NODE}, {"handler": "index.handler", "runtime": "node20"}),
}
PATHS = {"lambda": "k/1", "scf": "?name=x", "flask": "hello/api", "asgi": "a", "node": "n"}
INVOKE_EVENTS = {
    "lambda": {
        "httpMethod": "GET",
        "path": "/inv",
        "queryStringParameters": None,
        "body": None,
        "isBase64Encoded": False,
    },
    "scf": {"queryString": {"name": "inv"}},
    "flask": {"method": "GET", "path": "/hello/inv"},
    "asgi": {"method": "GET", "path": "/inv"},
    "node": {"path": "/inv", "httpMethod": "GET"},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_deployed_through_the_api_answers_on_the_gateway_and_the_invoke_api(
    world, engine, served, client_for, kind
):
    import io
    import zipfile

    if kind == "node" and shutil.which("node") is None:
        missing("node is not installed (Node.js 20; CI has it)")
    files, config = KINDS[kind]
    if kind == "flask":
        files = {**files, **vendored_flask()}
    api = client_for(world.bob)
    created = api.post(
        f"/api/v1/projects/{world.web.pk}/functions/",
        {"name": f"api-{kind}", "runtime": "python3.11", **config},
        format="json",
    )
    assert created.status_code == 201, created.json()
    fn_id = created.json()["id"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    buffer.seek(0)
    buffer.name = "code.zip"
    version = api.post(f"/api/v1/functions/{fn_id}/versions/", {"archive": buffer}, format="multipart")
    assert version.status_code == 201, version.json()
    deployed = api.post(
        f"/api/v1/functions/{fn_id}/deploy", {"environment": "dev", "version": 1, "auth_mode": "public"}, format="json"
    )
    assert deployed.status_code == 200, deployed.json()
    from apps.functions.models import Function

    fn = Function.objects.get(pk=fn_id)
    # The deploy announced itself: the gateway serves it (unpacking the version on first use,
    # since no worker runs the apply task in this test).
    wait_routed(engine, fn)

    response = served.get(url(fn, path=PATHS[kind]))
    assert response.status_code in (200, 201), response.text
    rid = response.headers["x-request-id"]
    # Exactly the line the function printed while serving this request, under its id.
    assert len(flushed_logs(rid)) == 1

    invoked = api.post(
        f"/api/v1/functions/{fn_id}/invoke", {"environment": "dev", "event": INVOKE_EVENTS[kind]}, format="json"
    )
    body = invoked.json()
    assert (invoked.status_code, body["status"]) == (200, "ok"), body
    assert len(body["logs"]) == 1, body["logs"]
    assert [line.text for line in flushed_logs(body["request_id"])] == [body["logs"][0]["text"]]
