"""Tenant code has an origin of its own (issue 11): functions answer on STRATUS_FUNCTIONS_URL's
host, which serves nothing of the console; on the console's host /fn/ still answers, but
without cookies and sandboxed. A real console on a real socket, real function processes:
127.0.0.1:<port> is the console's host, localhost:<port> the functions host (the embedded
default, http://localhost:<PORT>).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets

from apps.core.checks import check_function_origin, origin_problems
from apps.core.middleware import CONTENT_SECURITY_POLICY
from tests.engine.conftest import deploy_latest, make_function, url, wait_routed

# Echoes the Cookie header it got; tries to set cookies, among them one named like the
# console's session, and to wipe the visitor's cookies.
EVENT_ECHO = """
import json

def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "clear-site-data": '"cookies"'},
        "multiValueHeaders": {"set-cookie": ["fn_pref=dark; Path=/", "stratus_session=planted; Path=/"]},
        "body": json.dumps({"cookie": event["headers"].get("Cookie")}),
    }
"""

# The same as a WSGI app (an `http` function gets the request as-is).
WSGI_ECHO = """
import json

def app(environ, start_response):
    start_response("200 OK", [("content-type", "application/json"), ("set-cookie", "stratus_session=planted; Path=/")])
    return [json.dumps({"cookie": environ.get("HTTP_COOKIE")}).encode()]
"""

CONSOLE_COOKIES = "stratus_session=s3ss10n; stratus_csrftoken=csrf123; django_language=fr; messages=m"


def on_functions_host(served: Any, path: str) -> str:
    return served.base_url.replace("127.0.0.1", "localhost") + path


def signed_in(served: Any, username: str) -> httpx.Client:
    """A client signed in through the console's login form (real session and CSRF cookies)."""
    client = httpx.Client(base_url=served.base_url, timeout=30)
    client.get("/login/")
    answer = client.post(
        "/login/",
        data={
            "username": username,
            "password": f"{username}-pw-123",
            "csrfmiddlewaretoken": client.cookies["stratus_csrftoken"],
        },
    )
    assert answer.status_code == 302 and answer.headers["location"] == "/", answer.text
    assert {"stratus_session", "stratus_csrftoken"} <= set(client.cookies.keys())
    return client


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_a_binding_url_is_on_the_functions_origin(world, engine, served, client_for, settings):
    assert settings.STRATUS_FUNCTIONS_URL == "http://localhost:8000"  # the embedded default
    fn = make_function(world, "where", {"main.py": EVENT_ECHO})
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    bindings = client_for(world.alice).get(f"/api/v1/functions/{fn.pk}/bindings/").json()["results"]

    assert [b["url"] for b in bindings] == ["http://localhost:8000/fn/alpha/web/dev/where/"]


@pytest.mark.parametrize("kind", ["event", "wsgi"])
def test_on_the_functions_host_a_function_gets_its_own_cookies_and_never_the_consoles(world, engine, served, kind):
    fn = (
        make_function(world, "echo", {"main.py": EVENT_ECHO})
        if kind == "event"
        else make_function(world, "echo", {"web.py": WSGI_ECHO}, kind="http", handler="web.app")
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    # A browser misconfigured into sending the console's cookies along with the function's own
    # (a tenant's own Django app keeps its "sessionid" and "csrftoken": the console's are named apart).
    response = served.get(
        on_functions_host(served, url(fn, path="x")),
        headers={"cookie": f"fn_pref=dark; {CONSOLE_COOKIES}; sessionid=app; csrftoken=appcsrf; theme=x"},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"cookie": "fn_pref=dark; sessionid=app; csrftoken=appcsrf; theme=x"}
    # The functions host is the function's origin: its cookies are its own business.
    assert "stratus_session=planted; Path=/" in set_cookies(response)
    assert "content-security-policy" not in response.headers

    only_console = served.get(on_functions_host(served, url(fn)), headers={"cookie": CONSOLE_COOKIES})
    assert only_console.json() == {"cookie": None}


@pytest.mark.parametrize("kind", ["event", "wsgi"])
def test_on_the_consoles_host_a_function_gets_no_cookie_sets_none_and_is_sandboxed(world, engine, served, kind):
    fn = (
        make_function(world, "echo", {"main.py": EVENT_ECHO})
        if kind == "event"
        else make_function(world, "echo", {"web.py": WSGI_ECHO}, kind="http", handler="web.app")
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    browser = signed_in(served, "alice")  # holds the console's real session and CSRF cookies
    browser.cookies.set("fn_pref", "dark", domain="127.0.0.1")

    response = browser.get(url(fn, path="x"))

    sent = response.request.headers["cookie"]
    assert "stratus_session=" in sent and "stratus_csrftoken=" in sent and "fn_pref=dark" in sent, sent
    assert response.status_code == 200, response.text
    assert response.json() == {"cookie": None}
    assert set_cookies(response) == []
    assert "clear-site-data" not in response.headers
    assert response.headers.get_list("content-security-policy") == ["sandbox"]
    assert response.headers["x-content-type-options"] == "nosniff"
    # and the visitor is still signed in to the console with the same session
    assert browser.get("/").status_code == 200
    browser.close()


def test_on_the_consoles_host_a_function_is_not_loaded_as_a_script(world, engine, served):
    fn = make_function(world, "echo", {"main.py": EVENT_ECHO})
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    # The console's CSP allows scripts from 'self': tenant code must not become one of them.
    as_script = served.get(url(fn), headers={"sec-fetch-dest": "script"})
    as_page = served.get(url(fn), headers={"sec-fetch-dest": "document"})
    as_script_on_its_host = served.get(on_functions_host(served, url(fn)), headers={"sec-fetch-dest": "script"})

    assert as_script.status_code == 404
    assert as_script.json()["error"]["message"] == (
        "On the console's host a function is not loaded as a script, style sheet or worker; "
        "functions are served from http://localhost:8000/fn/."
    )
    assert (as_page.status_code, as_script_on_its_host.status_code) == (200, 200)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/"),
        ("GET", "/login/"),
        ("POST", "/login/"),
        ("GET", "/api/v1/projects/"),
        ("GET", "/admin/"),
        ("GET", "/static/stratus.css"),
        ("POST", "/hooks/github/abc/"),
        ("GET", "/readyz"),
    ],
)
def test_the_functions_host_serves_nothing_of_the_console(world, engine, served, client_for, method, path):
    token = client_for(world.alice, scopes=["read"]).token

    response = served.request(
        method, on_functions_host(served, path), headers={"authorization": f"Bearer {token}", "x-request-id": "r-1"}
    )

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "This host serves functions only (/fn/<org>/<project>/<environment>/<function>/); "
            "the console is at http://127.0.0.1:8000/.",
            "fields": {},
            "request_id": "r-1",
        }
    }
    assert "set-cookie" not in response.headers


def test_the_functions_host_refuses_the_consoles_websockets(world, engine, served):
    port = served.base_url.rsplit(":", 1)[1]

    async def handshake(host: str) -> int:
        try:
            async with websockets.connect(f"ws://{host}:{port}/ws/runs/1/", open_timeout=10) as socket:
                await socket.close()
                return 101
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(handshake("localhost")) == 404
    # On the console's host the same handshake reaches Channels (which refuses an anonymous
    # caller itself): the 404 above is the gateway's.
    assert asyncio.run(handshake("127.0.0.1")) != 404


def test_the_consoles_pages_and_api_carry_the_strict_csp(world, engine, served, client_for):
    token = client_for(world.alice, scopes=["read"]).token
    login = served.get("/login/")
    api = served.get("/api/v1/projects/", headers={"authorization": f"Bearer {token}"})
    docs = served.get("/api/v1/docs/")

    for response in (login, api, docs):
        assert response.status_code == 200, response.text
        assert response.headers.get_list("content-security-policy") == [CONTENT_SECURITY_POLICY]
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    # The API docs load Swagger UI from the console's static files, not a CDN.
    assert "cdn." not in docs.text and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert served.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_the_functions_origin_follows_the_setting(world, engine, served, settings):
    fn = make_function(world, "echo", {"main.py": EVENT_ECHO})
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    # Functions moved to another host: localhost is now just another name for the console's
    settings.STRATUS_FUNCTIONS_URL = "https://fn.example.net"
    moved = served.get(on_functions_host(served, url(fn)), headers={"cookie": "fn_pref=dark"})
    assert moved.json() == {"cookie": None}
    assert moved.headers["content-security-policy"] == "sandbox"
    assert served.get(on_functions_host(served, "/login/")).status_code == 200

    # Misconfigured onto the console's own host: the console keeps working there, and /fn/
    # is served the console-host way only.
    settings.STRATUS_FUNCTIONS_URL = "http://127.0.0.1:8000"
    assert served.get("/login/").status_code == 200
    same = served.get(url(fn), headers={"cookie": "fn_pref=dark"})
    assert (same.json(), same.headers["content-security-policy"]) == ({"cookie": None}, "sandbox")


@pytest.mark.parametrize(
    "console,functions,ids",
    [
        ("http://127.0.0.1:8000", "http://localhost:8000", []),
        ("https://console.example.com", "https://fn.example.net", []),
        ("https://console.example.com", "https://console.example.com", ["stratus.W001"]),
        ("http://127.0.0.1:8000", "http://127.0.0.1:9000", ["stratus.W001"]),  # cookies ignore ports
        ("https://example.com", "https://fn.example.com", ["stratus.W002"]),
        ("https://console.example.com", "https://fn.example.com", ["stratus.W002"]),
        ("https://console.example.co.uk", "https://fn.other.co.uk", []),
        ("https://console.example.com", "http://localhost:8000", ["stratus.W003"]),
    ],
)
def test_origin_problems(console, functions, ids):
    problems = origin_problems(console_url=console, functions_url=functions, production=True)

    assert [check_id for check_id, _ in problems] == ids


def test_the_deploy_check_warns_about_a_shared_origin(settings):
    settings.PUBLIC_URL = "https://console.example.com"
    settings.STRATUS_FUNCTIONS_URL = "https://fn.example.com"

    warnings = check_function_origin()

    assert [(w.id, w.level) for w in warnings] == [("stratus.W002", 30)]
    assert warnings[0].msg.startswith(
        "STRATUS_FUNCTIONS_URL (fn.example.com) and the console (console.example.com) share the domain example.com"
    )


def test_the_gateway_warns_at_start_about_a_shared_origin(settings, caplog):
    from apps.engine.gateway import Gateway

    settings.STRATUS_FUNCTIONS_URL = "http://127.0.0.1:9000"
    caplog.clear()  # what the running gateway said when the setting changed

    with caplog.at_level("WARNING", logger="stratus.gateway"):
        Gateway(lambda *args: None)

    assert [(r.getMessage()[:61], r.check) for r in caplog.records] == [
        ("STRATUS_FUNCTIONS_URL (http://127.0.0.1:9000) is on the conso", "stratus.W001")
    ]


# --- a host per function ----------------------------------------------------------------------

PATH_ECHO = """
import json

def app(environ, start_response):
    start_response("200 OK", [("content-type", "application/json"), ("set-cookie", "own=1; Path=/")])
    return [json.dumps({"script_name": environ["SCRIPT_NAME"], "path": environ["PATH_INFO"],
                        "query": environ["QUERY_STRING"], "cookie": environ.get("HTTP_COOKIE")}).encode()]
"""


def test_a_host_per_function_gives_each_function_an_origin_of_its_own(world, engine, served, settings, client_for):
    port = served.base_url.rsplit(":", 1)[1]
    settings.STRATUS_FUNCTIONS_URL = f"http://{{function}}.{{env}}.{{project}}.{{org}}.fn.localhost:{port}"
    fn = make_function(world, "echo", {"web.py": PATH_ECHO}, kind="http", handler="web.app")
    other = make_function(world, "other", {"web.py": PATH_ECHO}, kind="http", handler="web.app")
    deploy_latest(world, fn)
    deploy_latest(world, other)
    wait_routed(engine, fn)
    wait_routed(engine, other)

    bindings = client_for(world.alice).get(f"/api/v1/functions/{fn.pk}/bindings/").json()["results"]
    assert [b["url"] for b in bindings] == [f"http://echo.dev.web.alpha.fn.localhost:{port}/"]

    def on(host: str, path: str, **headers: str) -> httpx.Response:
        return served.get(path, headers={"host": f"{host}:{port}", **headers})

    # The whole path space of the host is the function's, even paths the console has.
    answer = on("echo.dev.web.alpha.fn.localhost", "/api/v1/projects/?a=1", cookie=f"own=1; {CONSOLE_COOKIES}")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"script_name": "", "path": "/api/v1/projects/", "query": "a=1", "cookie": "own=1"}
    assert "own=1; Path=/" in set_cookies(answer)
    assert "content-security-policy" not in answer.headers
    assert on("other.dev.web.alpha.fn.localhost", "/").json()["path"] == "/"

    # The functions' own domain and names no function has serve nothing, the console included.
    for host, path in (("fn.localhost", "/"), ("fn.localhost", "/api/v1/projects/"), ("gone.dev.web.alpha.fn.localhost", "/")):
        refused = on(host, path)
        assert refused.status_code == 404, (host, path, refused.text)
        assert refused.json()["error"]["code"] == "not_found"
    # The console keeps its host, and /fn/ there stays sandboxed and cookieless.
    assert served.get("/login/").status_code == 200
    sandboxed = served.get(url(fn, path="x"), headers={"cookie": "own=1"})
    assert sandboxed.json()["cookie"] is None
    assert sandboxed.headers.get_list("content-security-policy") == ["sandbox"]


def test_a_host_per_function_must_name_every_part_as_a_whole_label():
    from apps.core.origins import parse_functions_url

    origin = parse_functions_url("https://{function}.{env}.{project}.{org}.fn.example.net")
    assert origin.route_of(b"hello.prod.shop.acme.fn.example.net") == ("acme", "shop", "prod", "hello")
    assert origin.route_of(b"fn.example.net") is None and origin.owns(b"fn.example.net")
    assert origin.url_for(org="acme", project="shop", env="prod", function="hello") == (
        "https://hello.prod.shop.acme.fn.example.net/"
    )
    for bad in (
        "https://{function}.{env}.{org}.fn.example.net",  # {project} missing
        "https://x{function}.{env}.{project}.{org}.fn.example.net",  # not a whole label
        "https://{function}.{env}.{project}.{org}",  # no domain of the functions' own
        "https://fn.example.net/prefix",  # a path
    ):
        with pytest.raises(ValueError, match="STRATUS_FUNCTIONS_URL"):
            parse_functions_url(bad)
