"""POST /api/v1/functions/{id}/invoke: what the WebIDE test panel and VS Code show."""

from __future__ import annotations

from apps.functions.test_event_templates import template_list
from apps.tenancy import token_services
from apps.tenancy.models import Environment
from tests.engine.conftest import deploy_latest, make_function

HANDLER = """
import json

def handler(event, context):
    print("got", json.dumps(event))
    if event.get("fail"):
        raise ValueError("bad input: " + event["fail"])
    return {"echo": event, "request_id": context.aws_request_id}
"""


def invoke(client, fn, **body):
    return client.post(f"/api/v1/functions/{fn.pk}/invoke", body, format="json")


def test_invoke_returns_result_logs_and_timings(world, engine, client_for):
    fn = make_function(world, "tryme", {"main.py": HANDLER})
    deploy_latest(world, fn)
    bob = client_for(world.bob)

    first = invoke(bob, fn, environment="dev", event={"n": 1})
    second = invoke(bob, fn, environment="dev", event={"n": 2})

    assert first.status_code == 200, first.json()
    body = first.json()
    assert body["status"] == "ok"
    assert body["result"] == {"echo": {"n": 1}, "request_id": body["request_id"]}
    assert [(line["stream"], line["text"]) for line in body["logs"]] == [("stdout", 'got {"n": 1}')]
    assert body["cold_start"] is True and body["init_duration_ms"] is not None
    assert body["version"] == 1 and body["duration_ms"] >= 0
    assert second.json()["cold_start"] is False and second.json()["init_duration_ms"] is None


def test_invoke_reports_the_error_with_type_message_and_stack(world, engine, client_for):
    fn = make_function(world, "oops", {"main.py": HANDLER})
    deploy_latest(world, fn)

    body = invoke(client_for(world.bob), fn, environment="dev", event={"fail": "x"}).json()

    assert body["status"] == "error"
    assert body["result"] is None
    assert (body["error"]["type"], body["error"]["message"]) == ("ValueError", "bad input: x")
    assert any('main.py", line' in frame for frame in body["error"]["stack"])
    assert body["logs"][0]["text"] == 'got {"fail": "x"}'


def test_invoke_a_version_that_is_not_deployed(world, engine, client_for):
    fn = make_function(world, "v", {"main.py": "def handler(e, c):\n    return 'v1'\n"})
    client = client_for(world.bob)

    not_deployed = invoke(client, fn, environment="dev", event={})
    assert not_deployed.status_code == 409
    assert "not deployed to 'dev'" in not_deployed.json()["error"]["message"]

    ok = invoke(client, fn, environment="dev", event={}, version=1)
    assert (ok.status_code, ok.json()["result"]) == (200, "v1")
    missing = invoke(client, fn, environment="dev", event={}, version=9)
    assert missing.status_code == 404
    assert "Version 9" in missing.json()["error"]["message"]


def test_invoke_rights_and_scopes(world, engine, client_for):
    fn = make_function(world, "rights", {"main.py": "def handler(e, c):\n    return 1\n"})
    deploy_latest(world, fn)
    Environment.objects.filter(project=world.web, name="prod").update(protected=True)

    assert invoke(client_for(world.carol), fn, environment="dev", event={}).status_code == 403  # viewer
    assert invoke(client_for(world.charlie), fn, environment="dev", event={}).status_code == 404  # outsider
    assert invoke(client_for(world.bob), fn, environment="prod", event={}, version=1).status_code == 403
    assert invoke(client_for(world.alice), fn, environment="prod", event={}, version=1).status_code == 200
    assert invoke(client_for(world.bob, scopes=["read"]), fn, environment="dev", event={}).status_code == 403
    assert invoke(client_for(world.bob, scopes=["invoke"]), fn, environment="dev", event={}).status_code == 200
    assert invoke(client_for(world.bob, scopes=["deploy"]), fn, environment="dev", event={}).status_code == 200
    assert invoke(client_for(world.bob), fn, environment="nope", event={}).status_code == 404


def test_invoke_an_http_function_with_a_request_object(world, engine, client_for):
    app = (
        "def app(environ, start_response):\n"
        "    body = environ['wsgi.input'].read().decode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [f\"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['QUERY_STRING']} {body}\".encode()]\n"
    )
    fn = make_function(world, "wsgi", {"app.py": app}, kind="http", handler="app.app")
    deploy_latest(world, fn)

    body = invoke(
        client_for(world.bob),
        fn,
        environment="dev",
        event={"method": "post", "path": "/x", "query": "a=1", "body": "hi"},
    ).json()

    assert body["status"] == "ok", body
    assert body["result"]["statusCode"] == 200
    assert body["result"]["body"] == "POST /x a=1 hi"
    # The "HTTP request" test-event template is such a request object.
    template = next(t["body"] for t in template_list() if t["id"] == "http-request")
    from_template = invoke(client_for(world.bob), fn, environment="dev", event=template).json()
    assert (from_template["status"], from_template["result"]["body"]) == ("ok", "GET /hello name=ada "), from_template
    bad = invoke(client_for(world.bob), fn, environment="dev", event=[1, 2])
    assert bad.status_code == 400
    assert "request object" in bad.json()["error"]["message"]


def test_token_scope_invoke_is_listed(world):
    _, token = token_services.token_create(user=world.bob, name="i", scopes=["invoke"])
    assert token.startswith("stt_")
