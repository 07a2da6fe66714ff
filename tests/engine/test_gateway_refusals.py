"""What the gateway keeps from functions and callers, over a real socket: the caller's token
never reaches a function (event, WSGI or ASGI), a body streamed in without Content-Length is
cut at the limit, and a cached token verdict expires after the cache's TTL. Each of these
passed every test before (mutation testing, issue 21): each test here fails when the line it
pins is broken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from apps.tenancy import project_services, token_services
from apps.tenancy.models import ProjectGrant
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_routed

EVENT_ECHO = "def handler(event, context):\n    return event\n"

WSGI_HEADERS = """
import json

def app(environ, start_response):
    headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(headers).encode()]
"""

ASGI_HEADERS = """
import json

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(headers).encode()})
"""

SECRET = "Bearer stt_the-callers-own-credential"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def invoke_token(world: Any) -> str:
    return token_services.token_create(user=world.bob, name="inv", scopes=["invoke"])[1]


@pytest.mark.parametrize("auth_mode", ["token", "public"])
def test_an_event_function_never_receives_the_callers_authorization(world, engine, served, auth_mode):
    fn = make_function(world, f"echo-{auth_mode}", {"main.py": EVENT_ECHO})
    deploy_latest(world, fn, auth_mode=auth_mode)
    wait_routed(engine, fn)
    # token mode: the token that let the call through; public: whatever the caller sent
    headers = bearer(invoke_token(world)) if auth_mode == "token" else {"authorization": SECRET}

    response = served.post(url(fn, path="p"), json={"x": 1}, headers={**headers, "x-visible": "yes"})

    assert response.status_code == 200, response.text
    event = response.json()
    # v1 events carry Title-Case header names, as API Gateway does ("X-Visible"): read them
    # case-insensitively; Authorization must be absent under any spelling
    visible = [v for k, v in event["headers"].items() if k.lower() == "x-visible"]
    assert visible == ["yes"]  # the other headers do arrive
    assert [k for k in event["headers"] if k.lower() == "authorization"] == []
    assert [k for k in event["multiValueHeaders"] if k.lower() == "authorization"] == []
    assert "stt_" not in json.dumps(event)


@pytest.mark.parametrize("app", ["wsgi", "asgi"])
def test_wsgi_and_asgi_functions_never_receive_the_callers_authorization(world, engine, served, app):
    source = WSGI_HEADERS if app == "wsgi" else ASGI_HEADERS
    fn = make_function(world, f"headers-{app}", {"web.py": source}, handler="web.app", kind="http")
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    token = invoke_token(world)

    response = served.get(url(fn, path="h"), headers={**bearer(token), "x-visible": "yes"})

    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["x-visible"] == "yes"
    assert "authorization" not in seen
    assert token not in response.text


@pytest.fixture
def small_body_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """The served gateway's request body limit, made small (the real one is 6 MB)."""
    from console.asgi import application

    monkeypatch.setattr(application, "max_body", 4096)
    return 4096


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    """A body as a generator: httpx sends it chunked, with no Content-Length to refuse early."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"a" * piece


def test_a_streamed_body_without_content_length_is_cut_at_the_limit(world, engine, served, small_body_limit):
    fn = make_function(
        world, "sink", {"main.py": "def handler(event, context):\n    return {'n': len(event['body'] or '')}\n"}
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    within = served.post(url(fn), content=chunks(small_body_limit))
    too_big = served.post(url(fn), content=chunks(small_body_limit + 1))

    assert within.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in too_big.request.headers
    assert within.status_code == 200 and within.json() == {"n": small_body_limit}
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["error"]["code"] == "request_too_large"


@pytest.fixture
def short_token_cache(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The served app's token cache with a one-second TTL."""
    from console.asgi import application

    monkeypatch.setattr(application.tokens, "ttl_s", 1.0)
    application.tokens.clear()
    return application.tokens


def test_a_cached_verdict_expires_after_the_ttl(world, engine, served, short_token_cache):
    # Given bob's token, allowed and cached
    fn = make_function(world, "private", {"main.py": EVENT_ECHO})
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    token = invoke_token(world)
    assert served.get(url(fn), headers=bearer(token)).status_code == 200

    # When bob loses the project (a change that no revocation announces: only the TTL ends it)
    grant = ProjectGrant.objects.get(project=world.web, user=world.bob)
    project_services.project_grant_remove(actor=world.alice, grant=grant)

    # Then once the entry is older than the TTL, the token gets the answer of a missing function
    wait_for(lambda: served.get(url(fn), headers=bearer(token)).status_code == 404, timeout=15, interval=0.1)
