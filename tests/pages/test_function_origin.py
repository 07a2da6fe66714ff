"""Issue 11, in a real browser: a visitor signed in to the console opens another org's public
function. The function echoes the Cookie header it got into its page, and its inline script
asks the console's API for the visitor's projects, with credentials. Whichever host the
function is opened on, it sees no console cookie and its script gets nothing.

Also: the console's own pages run under their strict Content-Security-Policy without a
single violation (recorded by a `securitypolicyviolation` listener Playwright installs
before any page script runs), and look right (screenshots).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from apps.functions import services as function_services
from apps.functions import version_services
from apps.functions.deploy_services import binding_apply_revision, binding_url, deploy
from apps.pipelines.models import Run
from apps.tenancy import project_services
from apps.tenancy.models import Environment
from tests.conftest import build_world, serving_console
from tests.engine.conftest import engine, sandbox_dir, wait_routed  # noqa: F401  (a real engine)
from tests.pipelines.conftest import make_repository

pytestmark = [pytest.mark.browser]

# Alice's project: its slug must never show up in the attacker's page.
VICTIM_SLUG = "payroll-7f3a"

# org `other`'s function: an event function answering HTML.
EVIL = r'''
import html

PAGE = """<!doctype html><html><head><title>evil</title></head><body>
<p>cookie seen: <code id="cookie">%s</code></p>
<pre id="same">script did not run</pre>
<pre id="console">script did not run</pre>
<script>
async function grab(id, target) {
  const out = document.getElementById(id);
  try {
    const answer = await fetch(target, {credentials: "include"});
    out.textContent = "status " + answer.status + ": " + (await answer.text());
  } catch (error) {
    out.textContent = "failed: " + error;
  }
}
Promise.all([grab("same", "/api/v1/projects/"), grab("console", "__CONSOLE__/api/v1/projects/")])
  .then(() => { document.body.dataset.done = "1"; });
</script></body></html>"""


def handler(event, context):
    # header names are as API Gateway gives them ("Cookie"): a portable handler reads them in any case
    cookie = next((v for k, v in (event["headers"] or {}).items() if k.lower() == "cookie"), None) or "none"
    return {
        "statusCode": 200,
        "headers": {"content-type": "text/html; charset=utf-8"},
        "multiValueHeaders": {"set-cookie": ["stratus_session=planted; Path=/", "stratus_csrftoken=planted; Path=/"]},
        "body": PAGE % html.escape(cookie),
    }
'''

# Records every CSP violation of a page, before the page's own scripts run.
RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def console(engine: Any, settings: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The console on 127.0.0.1:<port>, functions on localhost:<port>; alice (org alpha) has a
    project; org other's charlie has deployed a public function."""
    world = build_world()
    victim = project_services.project_create(actor=world.alice, org=world.alpha, slug=VICTIM_SLUG, name="Payroll")
    repository = make_repository(victim, "https://git.example.com/alpha/payroll.git")
    run = Run.objects.create(
        project=victim, repository=repository, number=1, branch="main", commit_sha="a" * 40, trigger="push"
    )
    with serving_console() as address:
        port = address.rsplit(":", 1)[1]
        settings.PUBLIC_URL = f"http://127.0.0.1:{port}"
        settings.STRATUS_FUNCTIONS_URL = f"http://localhost:{port}"
        function = function_services.function_create(
            actor=world.charlie,
            project=world.outsider_project,
            name="evil",
            runtime="python3.11",
            handler="main.handler",
        )
        version, _ = version_services.version_create(
            actor=world.charlie,
            function=function,
            files={"main.py": EVIL.replace("__CONSOLE__", settings.PUBLIC_URL).encode()},
            source="files",
        )
        environment = Environment.objects.get(project=world.outsider_project, name="dev")
        binding = deploy(
            actor=world.charlie, function=function, environment=environment, version=version, auth_mode="public"
        )
        applied = binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
        assert applied is not None and applied.status == "ready", applied and applied.status_message
        wait_routed(engine, function)
        yield {"base": settings.PUBLIC_URL, "function_url": binding_url(binding), "victim": victim, "run": run}


def screenshot_dir(tmp_path: Path) -> Path:
    """STRATUS_SCREENSHOT_DIR keeps the screenshots for a person to look at."""
    path = Path(os.environ.get("STRATUS_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_a_signed_in_visitor_opening_another_orgs_function_hands_it_nothing(browser, console, tmp_path):
    base, function_url = console["base"], console["function_url"]
    context = browser.new_context()
    page = context.new_page()
    try:
        # Given alice, signed in to the console
        sign_in(page, base, "alice")
        session = {c["name"]: c["value"] for c in context.cookies(base)}
        assert {"stratus_session", "stratus_csrftoken"} <= session.keys()
        # ... and a browser that also holds her session for the functions host, as a
        # misconfiguration sharing cookies between the hosts would, next to a cookie of its own
        context.add_cookies(
            [
                {"name": "stratus_session", "value": session["stratus_session"], "domain": "localhost", "path": "/"},
                {"name": "fn_pref", "value": "dark", "domain": "localhost", "path": "/"},
            ]
        )

        # When she opens org other's function at its URL (the functions host)
        assert function_url.startswith(base.replace("127.0.0.1", "localhost") + "/fn/other/secret-project/dev/evil/")
        page.goto(function_url)
        page.wait_for_selector("body[data-done='1']")
        page.screenshot(path=str(screenshot_dir(tmp_path) / "function-on-functions-host.png"), full_page=True)

        # Then the function saw its own cookie only, and its script got no project list: the
        # functions host has no API, and the console's answers no other origin's script.
        assert page.inner_text("#cookie") == "fn_pref=dark"
        same = page.inner_text("#same")
        assert same.startswith("status 404: ") and "This host serves functions only" in same, same
        assert page.inner_text("#console") == "failed: TypeError: Failed to fetch"
        assert VICTIM_SLUG not in page.content()

        # When she opens the same path on the console's host
        page.goto(base + urlsplit(function_url).path)
        assert page.url.startswith(base + "/fn/other/")
        page.wait_for_selector("#cookie")
        page.screenshot(path=str(screenshot_dir(tmp_path) / "function-on-console-host.png"), full_page=True)

        # Then the function got no cookie at all, and its page is sandboxed: no script runs.
        assert page.inner_text("#cookie") == "none"
        assert (page.inner_text("#same"), page.inner_text("#console")) == ("script did not run", "script did not run")
        assert VICTIM_SLUG not in page.content()

        # And neither answer changed her console cookies: she is still signed in, same session.
        after = {c["name"]: c["value"] for c in context.cookies(base)}
        assert (after["stratus_session"], after["stratus_csrftoken"]) == (
            session["stratus_session"],
            session["stratus_csrftoken"],
        )
        page.goto(base + "/")
        assert page.get_by_test_id("username").inner_text() == "alice"
        assert page.get_by_test_id(f"project-{VICTIM_SLUG}").count() == 1
    finally:
        context.close()


def test_with_a_host_per_function_the_function_is_an_origin_of_its_own(browser, console, settings, tmp_path):
    # Chromium resolves every *.localhost name to loopback, as a wildcard DNS name would.
    base = console["base"]
    port = base.rsplit(":", 1)[1]
    settings.STRATUS_FUNCTIONS_URL = f"http://{{function}}.{{env}}.{{project}}.{{org}}.fn.localhost:{port}"
    own_url = f"http://evil.dev.secret-project.other.fn.localhost:{port}/"
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, base, "alice")
        page.goto(own_url)
        page.wait_for_selector("body[data-done='1']")
        page.screenshot(path=str(screenshot_dir(tmp_path) / "function-on-its-own-host.png"), full_page=True)

        # Its page sees only what it set for itself; the console's API is unreachable: the
        # host's /api/v1/projects/ is the function's own path (its page again), and the
        # console answers no other origin's script.
        assert page.inner_text("#cookie") == "none"
        assert page.inner_text("#same").startswith("status 200: <!doctype html>")
        assert page.inner_text("#console") == "failed: TypeError: Failed to fetch"
        assert VICTIM_SLUG not in page.content()
        # The cookies it set belong to its host alone: not the console's, not another function's.
        cookies = {(c["domain"], c["name"]) for c in context.cookies()}
        assert ("evil.dev.secret-project.other.fn.localhost", "stratus_session") in cookies
        assert not {c for c in context.cookies(f"http://other.dev.web.alpha.fn.localhost:{port}/")}
        assert {c["value"] for c in context.cookies(base) if c["name"] == "stratus_session"} != {"planted"}
    finally:
        context.close()


def test_the_consoles_pages_run_under_their_csp_without_a_violation(browser, console, tmp_path):
    base, victim, run = console["base"], console["victim"], console["run"]
    shots = screenshot_dir(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_CSP)
    page = context.new_page()

    def violations() -> list[str]:
        return page.evaluate("window.__csp")

    try:
        page.goto(base + "/login/")
        assert violations() == []
        sign_in(page, base, "alice")

        # Home: the organizations, and where functions are served from
        assert page.get_by_test_id("functions-origin").inner_text() == (
            f"Functions are served from {base.replace('127.0.0.1', 'localhost')} at "
            "/fn/<org>/<project>/<environment>/<function>/, an origin of their own: your console session never "
            "reaches them."
        )
        assert page.evaluate("typeof window.htmx") == "object"
        assert page.evaluate("document.querySelectorAll('style').length") == 0  # htmx added none
        page.screenshot(path=str(shots / "home.png"), full_page=True)
        assert violations() == []

        # The pipeline page and a run page, live over its websocket (connect-src 'self')
        page.goto(f"{base}/projects/{victim.pk}/pipeline/")
        page.get_by_test_id("run-1").wait_for()
        page.screenshot(path=str(shots / "pipeline.png"), full_page=True)
        assert violations() == []
        page.goto(f"{base}/runs/{run.pk}/")
        page.get_by_test_id("live").filter(has_text="live").wait_for()
        assert violations() == []

        # The API docs: Swagger UI from the console's static files, started by a static script
        page.goto(base + "/api/v1/docs/")
        page.locator(".swagger-ui .info .title").filter(has_text="Stratus API").wait_for()
        page.locator(".opblock").first.wait_for()
        page.screenshot(path=str(shots / "api-docs.png"))
        assert violations() == []

        # The admin's login page (Django's own templates)
        page.goto(base + "/admin/login/")
        page.locator("#login-form").wait_for()
        assert violations() == []
    finally:
        context.close()
