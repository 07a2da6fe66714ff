"""The Code tab (issue 15, first slice): Monaco self-hosted under the console's CSP, the
draft's files, typing and saving with If-Match, the 409 diff with "Keep mine", and a viewer's
read-only editor. Browser tests drive Debian's chromium against one served console."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.functions import draft_services
from apps.functions import services as function_services
from apps.functions.models import DraftFile, Function
from tests.conftest import World, build_world, serving_console
from tests.engine.conftest import engine, sandbox_dir  # noqa: F401  (a real engine, for the run panel)

SHOTS = Path(os.environ.get("STRATUS_SCREENSHOT_DIR") or "/tmp/shots/code")


def make_function(world: World) -> Function:
    function = function_services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    draft_services.draft_file_write(
        actor=world.alice, function=function, path="main.py", content=b"def handler(event, context):\n    return 1\n"
    )
    return function


def draft_content(user: Any, function: Function, path: str) -> tuple[int, str]:
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/v1/functions/{function.pk}/draft/files/{path}")
    return response.status_code, response.json().get("content", "") if response.status_code == 200 else ""


# --- without a browser ----------------------------------------------------------------------------


def test_the_code_page_relaxes_style_src_only_for_itself_and_viewers_see_why_they_cannot_edit(world: World) -> None:
    function = make_function(world)
    alice, carol = Client(), Client()
    alice.force_login(world.alice)
    carol.force_login(world.carol)  # viewer
    page = alice.get(f"/functions/{function.pk}/code/")
    assert page.status_code == 200
    assert "style-src 'self' 'unsafe-inline'" in page["Content-Security-Policy"]
    assert "script-src 'self';" in page["Content-Security-Policy"]
    assert "worker-src 'self'" in page["Content-Security-Policy"]
    assert "style-src 'self';" in alice.get(f"/functions/{function.pk}/versions/")["Content-Security-Policy"]
    body = page.content.decode()
    assert "/vendor/monaco/" in body and "main.py" in body and 'data-can-edit="true"' in body
    charlie = Client()
    charlie.force_login(world.charlie)  # another org
    assert charlie.get(f"/functions/{function.pk}/code/").status_code == 404
    viewer = carol.get(f"/functions/{function.pk}/code/").content.decode()
    assert 'data-can-edit="false"' in viewer and "Editing the code needs a developer role" in viewer
    # The function page's tabs link here.
    assert f'href="/functions/{function.pk}/code/"' in alice.get(f"/functions/{function.pk}/").content.decode()


def embedded_draft(page: Any) -> dict[str, Any]:
    """The page's ide-draft JSON (what code.js opens before asking the API)."""
    body = page.content.decode()
    tag = '<script id="ide-draft" type="application/json">'
    start = body.index(tag) + len(tag)
    return dict(json.loads(body[start : body.index("</script>", start)]))


def test_the_page_carries_the_drafts_tree_and_first_file_as_the_api_answers_them(world: World) -> None:
    """The editor opens its first file from the page, without a round trip (bench/ide.py):
    the same answers as GET draft/ and GET draft/files/<path>, the file's ETag included; a
    file in a folder comes after a top-level one, and a big first file is left to the API."""
    function = make_function(world)
    draft_services.draft_file_write(actor=world.alice, function=function, path="lib/util.py", content=b"X = 1\n")
    alice = Client()
    alice.force_login(world.alice)
    api = APIClient()
    api.force_login(world.alice)

    state = embedded_draft(alice.get(f"/functions/{function.pk}/code/"))
    tree = api.get(f"/api/v1/functions/{function.pk}/draft/")
    file = api.get(f"/api/v1/functions/{function.pk}/draft/files/main.py")
    assert state["tree"] == tree.json()
    assert state["first"] == {"path": "main.py", "etag": file["ETag"].strip('"'), "data": file.json()}

    big = b"# " + b"x" * (300 * 1024) + b"\n"
    etag = DraftFile.objects.get(function=function, path="main.py").sha256
    draft_services.draft_file_write(actor=world.alice, function=function, path="main.py", content=big, if_match=etag)
    state = embedded_draft(alice.get(f"/functions/{function.pk}/code/"))
    assert state["first"] is None and [f["path"] for f in state["tree"]["files"]] == ["lib/util.py", "main.py"]


# --- in the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console_address() -> Iterator[str]:
    with serving_console() as address:
        yield address


@pytest.fixture
def live(transactional_db: None, settings: Any, console_address: str) -> dict[str, Any]:
    port = console_address.rsplit(":", 1)[1]
    settings.PUBLIC_URL = f"http://127.0.0.1:{port}"
    world = build_world()
    return {"base": settings.PUBLIC_URL, "world": world, "function": make_function(world)}


CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def open_code(browser: Any, base: str, username: str, function: Function, width: int = 1280) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("response", lambda r: r.status >= 400 and console.append(f"http {r.status}: {r.request.method} {r.url}"))
    page.add_init_script(CSP_WATCH)
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(f"{base}/functions/{function.pk}/code/")
    page.wait_for_selector("[data-testid=ide][data-ready=true]", timeout=15000)
    page.wait_for_selector("[data-testid=editor] .monaco-editor .view-lines")
    return page, console


def csp_violations(page: Any, console: list[str]) -> list[str]:
    return list(page.evaluate("window.__csp")) + [m for m in console if "Content Security Policy" in m]


def problems(console: list[str], expected: tuple[str, ...] = ()) -> list[str]:
    """Errors and warnings in the browser's console (a worker that fails to start, for one,
    makes Monaco warn and fall back to the main thread) and failed requests of the page, but
    those ``expected``. (The console's own "Failed to load resource" lines repeat the failed
    requests without their URL; the browser's /favicon.ico is one.)"""
    return [
        m
        for m in console
        if m.startswith(("error:", "warning:", "pageerror:", "http "))
        and "Failed to load resource" not in m
        and not m.startswith(expected)
    ]


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


@pytest.mark.browser
def test_alice_creates_a_file_types_a_handler_saves_with_ctrl_s_and_a_conflict_opens_the_diff(
    browser: Any, live: dict[str, Any]
) -> None:
    base, world, function = live["base"], live["world"], live["function"]
    page, console = open_code(browser, base, "alice", function)
    try:
        # main.py opened by itself, in a tab, as Python.
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='main.py']")
        assert page.evaluate("stratusIde.model('main.py').getLanguageId()") == "python"

        page.get_by_role("button", name="New file", exact=True).click()
        page.fill("[data-dialog=new] input[name=path]", "api/users.py")
        page.click("[data-dialog=new] button[type=submit]")
        page.wait_for_selector("[data-testid=file-tree] [data-path='api/users.py']")
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='api/users.py'][aria-selected=true]")
        assert draft_content(world.alice, function, "api/users.py") == (200, "")

        page.click("[data-testid=editor] .view-lines")
        page.keyboard.type("def handler(event, context):\n")
        page.keyboard.type('return {"users": []}')
        page.wait_for_selector("[data-testid=unsaved]")  # the tab marks unsaved changes
        page.keyboard.press("Control+s")
        page.wait_for_selector("[data-testid=ide-status]:has-text('Saved api/users.py.')")
        assert page.locator("[data-testid=unsaved]").count() == 0
        expected = 'def handler(event, context):\n    return {"users": []}'
        assert draft_content(world.alice, function, "api/users.py") == (200, expected)
        shot(page, "code-1280.png")

        # Someone else saves meanwhile (through the API); our next save is a 409 → the diff.
        client = APIClient()
        client.force_login(world.bob)
        theirs = client.put(
            f"/api/v1/functions/{function.pk}/draft/files/api/users.py",
            {"content": "THEIRS = 1\n"},
            format="json",
            HTTP_IF_MATCH="*",
        )
        assert theirs.status_code == 200, theirs.content
        page.keyboard.press("Control+End")
        page.keyboard.type("\n# mine")
        page.keyboard.press("Control+s")
        conflict = page.get_by_test_id("conflict")
        conflict.wait_for(state="visible")
        page.wait_for_selector("[data-testid=diff] .monaco-diff-editor")
        page.wait_for_selector("[data-testid=diff] .line-insert")  # the diff was computed (in a worker)
        assert "api/users.py was saved by someone else" in conflict.inner_text()
        shot(page, "code-conflict-1280.png")
        page.get_by_role("button", name="Keep mine", exact=True).click()
        page.wait_for_selector("[data-testid=ide-status]:has-text('Saved api/users.py.')")
        mine = expected + "\n    # mine"  # Monaco keeps the indent of the line above
        assert draft_content(world.alice, function, "api/users.py") == (200, mine)
        assert conflict.is_hidden()

        # Publish from the editor, with the way on to the environments tab.
        page.get_by_role("button", name="Publish version…", exact=True).click()
        page.fill("[data-dialog=publish] input[name=message]", "users endpoint")
        page.click("[data-dialog=publish] button[type=submit]")
        result = page.get_by_test_id("publish-result")
        result.wait_for(state="visible")
        assert "Published v1" in result.inner_text()
        assert result.get_by_role("link").get_attribute("href") == f"/functions/{function.pk}/environments/"
        assert function.versions.get(number=1).message == "users endpoint"

        # Rename the open file, then delete it: the tree and the draft follow.
        page.get_by_role("button", name="Rename", exact=True).click()
        page.fill("[data-dialog=rename] input[name=path]", "api/people.py")
        page.click("[data-dialog=rename] button[type=submit]")
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='api/people.py'][aria-selected=true]")
        assert page.locator("[data-testid=file-tree] [data-path='api/users.py']").count() == 0
        assert draft_content(world.alice, function, "api/people.py") == (200, mine)
        assert draft_content(world.alice, function, "api/users.py")[0] == 404
        page.get_by_role("button", name="Delete", exact=True).click()
        page.click("[data-dialog=delete] button[type=submit]")
        page.wait_for_selector("[data-testid=ide-status]:has-text('Deleted api/people.py.')")
        assert page.locator("[data-testid=file-tree] [data-path='api/people.py']").count() == 0
        assert page.locator("[data-testid=editor-tabs] [data-tab='api/people.py']").count() == 0
        assert draft_content(world.alice, function, "api/people.py")[0] == 404

        assert csp_violations(page, console) == []
        assert problems(console, expected=("http 409: PUT",)) == [], console
    finally:
        page.close()


@pytest.mark.browser
def test_a_viewer_gets_a_read_only_editor_with_the_reason(browser: Any, live: dict[str, Any]) -> None:
    base, world, function = live["base"], live["world"], live["function"]
    page, console = open_code(browser, base, "carol", function, width=390)
    try:
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='main.py']")
        reason = page.get_by_test_id("readonly-reason")
        assert reason.is_visible() and "Editing the code needs a developer role" in reason.inner_text()
        for name in ("New file", "New folder…", "Rename", "Delete", "Save", "Publish version…", "Upload zip…"):
            assert page.get_by_role("button", name=name, exact=True).is_disabled(), name
        assert page.get_by_role("link", name="Download").is_visible()  # a viewer may take the code away
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.type("oops")
        page.keyboard.press("Control+s")
        assert "oops" not in page.evaluate("stratusIde.model('main.py').getValue()")
        assert draft_content(world.alice, function, "main.py")[1] == "def handler(event, context):\n    return 1\n"
        shot(page, "code-viewer-390.png")
        assert csp_violations(page, console) == []
        assert problems(console) == [], console
    finally:
        page.close()


# --- the run panel (draft runs and test events) -----------------------------------------------

RUN_HANDLER = """import json
def handler(event, context):
    print('hello', event['name'])
    if event.get('fail'):
        raise ValueError('no ' + event['name'])
    return {'greeting': 'hi ' + event['name']}
"""


def replace_text(page: Any, editor: str, text: str) -> None:
    """Replace a Monaco editor's text as an edit (undoable, marks the tab unsaved). Not typed:
    Monaco's auto-indent and auto-closing would rewrite a pasted program; the first test
    types key by key."""
    page.click(f"[data-testid={editor}] .view-lines")
    page.evaluate(
        """([host, text]) => {
            const editor = monaco.editor.getEditors().find((e) => host.contains(e.getDomNode()));
            const model = editor.getModel();
            editor.executeEdits("test", [{ range: model.getFullModelRange(), text }]);
        }""",
        [page.query_selector(f"[data-testid={editor}]"), text],
    )


@pytest.mark.browser
def test_alice_runs_the_draft_with_a_stored_test_event_and_jumps_from_the_stack_to_the_line(
    browser: Any,
    live: dict[str, Any],
    engine: Any,  # noqa: F811
) -> None:
    base, world, function = live["base"], live["world"], live["function"]
    page, console = open_code(browser, base, "alice", function)
    try:
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='main.py']")
        replace_text(page, "editor", RUN_HANDLER)
        # prod is protected: the draft is not offered there.
        assert page.locator("[data-testid=run-target] option[value='draft:prod']").is_disabled()
        assert page.eval_on_selector("[data-testid=run-target]", "s => s.value") == "draft:dev"

        # A new event from the "Custom JSON" template, saved for the project.
        page.select_option("[data-testid=run-event]", "template:custom")
        replace_text(page, "event-editor", '{"name": "ada"}')
        page.get_by_role("button", name="Save as…", exact=True).click()
        page.fill("[data-dialog=event-save-as] input[name=name]", "ada")
        page.check("[data-dialog=event-save-as] input[name=shared]")
        page.click("[data-dialog=event-save-as] button[type=submit]")
        page.wait_for_selector("[data-testid=ide-status]:has-text('Saved the test event ada.')")
        stored = function.test_events.get()
        assert (stored.name, stored.body, stored.shared) == ("ada", {"name": "ada"}, True)

        # Ctrl+Enter in the code editor saves the open file, then runs the draft in dev.
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.press("Control+Enter")
        status = page.get_by_test_id("run-status")
        status.wait_for(timeout=20000)
        assert status.inner_text() == "ok"
        assert json.loads(page.get_by_test_id("run-answer").locator("pre").inner_text()) == {"greeting": "hi ada"}
        assert page.get_by_test_id("run-logs").inner_text().strip() == "hello ada"
        facts = page.get_by_test_id("run-facts").inner_text()
        assert "cold start" in facts and "Peak memory" in facts
        assert page.locator("[data-testid=unsaved]").count() == 0  # saved before it ran
        assert "print('hello', event['name'])" in draft_content(world.alice, function, "main.py")[1]
        assert function.versions.count() == 0  # nothing was published
        shot(page, "code-run-1280.png")

        # A failing run: the stack's main.py:5 opens the file at that line.
        page.evaluate("document.querySelector('[data-testid=run-result]').textContent = ''")
        replace_text(page, "event-editor", '{"name": "bob", "fail": true}')
        page.keyboard.press("Control+Enter")
        error = page.get_by_test_id("run-error")
        error.wait_for(timeout=20000)
        assert page.get_by_test_id("run-status").inner_text() == "error"
        assert "ValueError: no bob" in error.inner_text()
        frame = error.locator("[data-path='main.py'][data-line='5']")
        frame.click()
        assert page.evaluate("monaco.editor.getEditors()[0].getPosition().lineNumber") == 5
        assert page.get_by_role("button", name="Save event", exact=True).is_enabled()  # the stored event was edited
        shot(page, "code-run-error-1280.png")

        page.set_viewport_size({"width": 390, "height": 900})
        page.get_by_test_id("run-panel").scroll_into_view_if_needed()
        shot(page, "code-run-390.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        assert csp_violations(page, console) == []
        assert problems(console) == [], console
    finally:
        page.close()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def zip_payload(name: str, entries: dict[str, bytes]) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/zip", "buffer": make_zip(entries)}


LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # not UTF-8: a binary file
BIG = ("[\n" + "".join(f'  {{"id": {i}, "name": "item {i}"}},\n' for i in range(40_000)) + '  {"id": -1}\n]\n').encode()
UPLOAD = {
    "hello-main/main.py": b"from lib.util import greet\n\n\ndef handler(event, context):\n    return greet()\n",
    "hello-main/lib/util.py": b"def greet():\n    return 'hi'\n",
    "hello-main/assets/logo.png": LOGO,
    "hello-main/data/big.json": BIG,
}


def draft_files(function: Function) -> dict[str, bytes]:
    return {f.path: bytes(f.content) for f in DraftFile.objects.filter(function=function)}


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_alice_replaces_the_draft_with_a_zip_and_downloads_it(browser: Any, live: dict[str, Any], width: int) -> None:
    base, function = live["base"], live["function"]
    assert len(BIG) > 1024 * 1024
    page, console = open_code(browser, base, "alice", function, width=width)
    try:
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='main.py']")

        # A zip that breaks a rule: the dialog shows the API's message and the draft stays.
        page.get_by_role("button", name="Upload zip…", exact=True).click()
        upload = page.locator("[data-dialog=upload]")
        assert "replace all of the draft's files" in upload.inner_text().replace("\n", " ")
        upload.locator("input[type=file]").set_input_files(zip_payload("evil.zip", {"../evil.py": b"x"}))
        upload.get_by_role("button", name="Replace the draft", exact=True).click()
        error = upload.locator("[data-error]")
        error.wait_for(state="visible")
        assert "escapes the archive root (zip slip)" in error.inner_text()
        assert draft_files(function) == {"main.py": b"def handler(event, context):\n    return 1\n"}
        shot(page, f"code-upload-refused-{width}.png")

        # A good zip (GitHub's "Download ZIP" shape): the wrapping folder goes, the tree follows.
        upload.locator("input[type=file]").set_input_files(zip_payload("hello-main.zip", UPLOAD))
        upload.get_by_role("button", name="Replace the draft", exact=True).click()
        page.wait_for_selector(
            "[data-testid=ide-status]:has-text('Replaced the draft with the 4 files of hello-main.zip.')"
        )
        assert upload.is_hidden()
        assert draft_files(function) == {path.removeprefix("hello-main/"): c for path, c in UPLOAD.items()}
        tree = page.get_by_test_id("file-tree")
        assert sorted(tree.locator("[data-path]").evaluate_all("els => els.map(e => e.dataset.path)")) == [
            "assets/logo.png",
            "data/big.json",
            "lib/util.py",
            "main.py",
        ]
        # The top-level text file opens (not the binary one, not the big one first in path order).
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='main.py'][aria-selected=true]")
        assert page.locator("[data-testid=editor-tabs] [role=tab]").count() == 1
        shot(page, f"code-uploaded-{width}.png")

        # The binary file is a download, never a tab.
        logo = tree.locator("[data-path='assets/logo.png']")
        assert logo.get_attribute("href").endswith("/draft/files/assets/logo.png?raw=1")
        with page.expect_download() as logo_download:
            logo.click()
        assert Path(logo_download.value.path()).read_bytes() == LOGO
        assert page.locator("[data-testid=editor-tabs] [data-tab='assets/logo.png']").count() == 0

        # Folders fold and unfold.
        lib = tree.locator("details[data-folder='lib']")
        lib.locator("summary").click()
        assert tree.locator("[data-path='lib/util.py']").is_hidden()
        assert lib.get_attribute("open") is None
        shot(page, f"code-folded-{width}.png")
        lib.locator("summary").click()
        assert tree.locator("[data-path='lib/util.py']").is_visible()

        # Over 1 MB: open, read-only, and the note says why.
        tree.locator("[data-path='data/big.json']").click()
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='data/big.json'][aria-selected=true]")
        note = page.get_by_test_id("file-note")
        assert note.is_visible()
        assert "over 1 MB" in note.inner_text() and "edit it locally and upload" in note.inner_text()
        assert page.get_by_role("button", name="Save", exact=True).is_disabled()
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.type("oops")
        assert "oops" not in page.evaluate("window.stratusIde.model('data/big.json').getValue()")
        shot(page, f"code-big-file-{width}.png")
        page.locator("[data-testid=editor-tabs] [data-tab='main.py']").click()
        assert note.is_hidden()

        # Download: the draft as a zip.
        with page.expect_download() as draft_download:
            page.get_by_role("link", name="Download").click()
        assert draft_download.value.suggested_filename == "hello-draft.zip"
        with zipfile.ZipFile(draft_download.value.path()) as archive:
            assert {n: archive.read(n) for n in archive.namelist()} == draft_files(function)

        # New folder…: a folder comes with its first file (a package's __init__.py here).
        page.get_by_role("button", name="New folder…", exact=True).click()
        folder = page.locator("[data-dialog=new-folder]")
        assert folder.locator("input[name=file]").input_value() == "__init__.py"
        folder.locator("input[name=folder]").fill("handlers")
        shot(page, f"code-new-folder-dialog-{width}.png")
        folder.get_by_role("button", name="Create", exact=True).click()
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='handlers/__init__.py'][aria-selected=true]")
        assert tree.locator("details[data-folder='handlers'] [data-path='handlers/__init__.py']").is_visible()
        assert draft_files(function)["handlers/__init__.py"] == b""
        shot(page, f"code-new-folder-{width}.png")

        assert csp_violations(page, console) == []
        assert problems(console, expected=("http 400: PUT",)) == [], console
    finally:
        page.close()


MARKERS = """monaco.editor.getModelMarkers({owner: 'pyflakes'}).map((m) => ({
    line: m.startLineNumber, column: m.startColumn, end: m.endColumn,
    error: m.severity === monaco.MarkerSeverity.Error, code: m.code, message: m.message,
    path: m.resource.path}))"""


def wait_markers(page: Any, expected: list[dict[str, Any]], timeout: float = 10.0) -> None:
    """Wait until the pyflakes markers are ``expected`` (an answer to text typed halfway may
    come first). Polled with page.evaluate: page.wait_for_function evaluates its predicate in
    the page, which the CSP refuses."""
    deadline = time.monotonic() + timeout
    while (markers := page.evaluate(MARKERS)) != expected:
        assert time.monotonic() < deadline, markers
        page.wait_for_timeout(50)


@pytest.mark.browser
def test_python_problems_become_markers_while_typing_and_go_when_fixed(browser: Any, live: dict[str, Any]) -> None:
    base, function = live["base"], live["function"]
    page, console = open_code(browser, base, "bob", function)
    checks: list[str] = []
    page.on("request", lambda r: r.url.endswith("/draft/check") and checks.append(r.post_data or ""))
    try:
        # main.py is checked when it opens: clean.
        page.wait_for_selector("[data-testid=ide-problems]:has-text('No problems')")
        assert page.evaluate(MARKERS) == []

        # A syntax error on line 3: a squiggle and a marker where the colon belongs.
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.press("Control+End")
        opened = len(checks)
        page.keyboard.type("if True")
        missing_colon = {"line": 3, "column": 8, "end": 9, "error": True, "code": "syntax-error"}
        wait_markers(page, [missing_colon | {"message": "expected ':'", "path": "/main.py"}])
        page.wait_for_selector("[data-testid=editor] .squiggly-error")
        page.wait_for_selector("[data-testid=ide-problems]:has-text('1 error, 0 warnings')")
        # Seven keystrokes, one check: the requests wait for a pause in the typing.
        assert len(checks) - opened == 1, checks
        shot(page, "code-check-syntax-1280.png")

        # Fixed: the marker and the squiggle go.
        page.keyboard.type(":\npass")
        wait_markers(page, [])
        page.wait_for_selector("[data-testid=editor] .squiggly-error", state="detached")
        page.wait_for_selector("[data-testid=ide-problems]:has-text('No problems')")
        assert "if True:\n    pass" in page.evaluate("stratusIde.model('main.py').getValue()")

        # An undefined name: `return 1` becomes `return totl`.
        page.keyboard.press("Control+Home")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("End")
        page.keyboard.press("Backspace")
        page.keyboard.type("totl")
        typo = {"line": 2, "column": 12, "end": 16, "error": True, "code": "undefined-name"}
        wait_markers(page, [typo | {"message": "undefined name 'totl'", "path": "/main.py"}])
        page.wait_for_selector("[data-testid=editor] .squiggly-error")
        # The count's button goes to the problem.
        page.keyboard.press("Control+Home")
        page.get_by_test_id("ide-problems").click()
        position = page.evaluate("monaco.editor.getEditors()[0].getPosition()")
        assert (position["lineNumber"], position["column"]) == (2, 12)
        # The marker's hover, as a mouse over the squiggle shows it.
        page.evaluate("monaco.editor.getEditors()[0].trigger('test', 'editor.action.showHover', {})")
        page.wait_for_selector(".monaco-hover:has-text(\"undefined name 'totl'\")")
        page.wait_for_timeout(300)  # the hover fades in
        shot(page, "code-check-undefined-1280.png")
        # Nothing was saved: the check read the buffer.
        assert page.locator("[data-testid=unsaved]").count() == 1

        assert csp_violations(page, console) == []
        assert problems(console) == [], console
    finally:
        page.close()


SLOW_CHECKS = """() => {
  // Answers to checks of text holding SLOW_ANSWER arrive 1.5 s late (the server answers at once).
  const realFetch = window.fetch;
  window.fetch = async (url, init) => {
    const response = await realFetch(url, init);
    if (String(url).endsWith('/draft/check') && String((init || {}).body).includes('SLOW_ANSWER')) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
    return response;
  };
}"""


@pytest.mark.browser
def test_a_late_answer_to_older_text_does_not_replace_the_markers_of_newer_text(
    browser: Any, live: dict[str, Any]
) -> None:
    base, function = live["base"], live["function"]
    page, console = open_code(browser, base, "bob", function)
    page.evaluate(SLOW_CHECKS)
    try:
        page.wait_for_selector("[data-testid=ide-problems]:has-text('No problems')")
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.press("Control+End")
        page.keyboard.type("x = SLOW_ANSWER")  # undefined: its answer would mark it, late
        page.wait_for_timeout(500)  # the check of this text is sent
        page.keyboard.press("Shift+Home")
        page.keyboard.type("y = 1")  # then the text is fine, and that answer comes first
        page.wait_for_timeout(2500)  # both answers are in
        assert page.evaluate(MARKERS) == []
        assert page.get_by_test_id("ide-problems").inner_text() == "No problems"
        assert problems(console) == [], console
    finally:
        page.close()


SHIPPED = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'shipped from the IDE'}\n"


@pytest.mark.browser
def test_alice_publishes_deploys_from_the_editor_and_compares_the_draft_with_what_dev_serves(
    browser: Any,
    live: dict[str, Any],
    engine: Any,  # noqa: F811
    settings: Any,
) -> None:
    import httpx

    from apps.core import worker
    from apps.tenancy import token_services

    # The deploy is applied by a worker, as in the embedded default; stopped after, or it would
    # take later tests' tasks.
    started_here = not worker.is_running()
    worker.start()
    base, world, function = live["base"], live["world"], live["function"]
    settings.STRATUS_FUNCTIONS_URL = base.replace("127.0.0.1", "localhost")  # functions on an origin of their own
    page, console = open_code(browser, base, "alice", function)
    try:
        page.wait_for_selector("[data-testid=editor-tabs] [data-tab='main.py']")
        replace_text(page, "editor", SHIPPED)
        page.keyboard.press("Control+s")
        page.wait_for_selector("[data-testid=ide-status]:has-text('Saved main.py.')")

        page.get_by_role("button", name="Publish version…", exact=True).click()
        page.fill("[data-dialog=publish] input[name=message]", "ship it")
        page.click("[data-dialog=publish] button[type=submit]")
        ship = page.get_by_test_id("ship")
        ship.wait_for(state="visible")
        assert "v1" in ship.inner_text()
        page.select_option("[data-testid=ship-environment]", "dev")
        release = page.get_by_test_id("ship-release").get_attribute("href")
        assert release == f"/functions/{function.pk}/releases/?version=1&environment=dev"
        page.get_by_role("button", name="Deploy", exact=True).click()
        page.wait_for_selector("[data-testid=ship-status]:has-text('v1 serves in dev')", timeout=30000)
        url = page.get_by_test_id("ship-status").get_by_role("link").get_attribute("href")
        _, token = token_services.token_create(user=world.alice, name="call", scopes=["invoke"])
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert (answer.status_code, answer.text, answer.headers["X-Stratus-Version"]) == (
            200,
            "shipped from the IDE",
            "1",
        )
        shot(page, "code-shipped-1280.png")

        # An unsaved edit, then Changes: the draft against what dev serves (v1).
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.press("Control+End")
        page.keyboard.type("# next")
        page.get_by_role("button", name="Changes", exact=True).click()
        changes = page.get_by_test_id("changes")
        changes.wait_for(state="visible")
        changed = page.get_by_test_id("changed-files")
        changed.locator("[data-path='main.py']").wait_for()
        options = page.eval_on_selector_all("[data-testid=changes-base] option", "os => os.map((o) => o.textContent)")
        assert options == ["what dev serves (v1)", "v1 · ship it"]
        assert "modified, unsaved" in changed.inner_text()
        page.wait_for_selector("[data-testid=changes-diff] .monaco-diff-editor .line-insert")
        shot(page, "code-changes-1280.png")
        page.get_by_role("button", name="Back to the editor", exact=True).click()
        assert changes.is_hidden() and page.get_by_test_id("editor").is_visible()

        page.goto(base + release)
        assert page.eval_on_selector("select[name=version]", "s => s.value") == "1"
        assert page.eval_on_selector("select[name=environment]", "s => s.value") == "dev"

        assert csp_violations(page, console) == []
        assert problems(console) == [], console
    finally:
        page.close()
        if started_here:
            worker.stop()


@pytest.mark.browser
def test_python_completions_and_hover_come_from_the_language_server(browser: Any, live: dict[str, Any]) -> None:
    base, function = live["base"], live["function"]
    page, console = open_code(browser, base, "bob", function)
    try:
        page.wait_for_selector("[data-testid=lsp-status]:has-text('Python: completions on')", timeout=20000)
        page.click("[data-testid=editor] .view-lines")
        page.keyboard.press("Control+Home")
        page.keyboard.type("import json\n")
        page.keyboard.press("Control+End")
        page.keyboard.type("\njson.du")
        page.keyboard.press("Control+Space")
        suggest = page.locator(".suggest-widget .monaco-list-row")
        suggest.first.wait_for(timeout=15000)
        assert {"dump", "dumps"} <= set(suggest.all_inner_texts()[0].split() + suggest.all_inner_texts()[-1].split())
        shot(page, "code-completion-1280.png")
        page.keyboard.press("Escape")
        # Hover over "json" on the first line: the module's documentation.
        point = page.evaluate(
            """() => {
                const editor = monaco.editor.getEditors()[0];
                const at = editor.getScrolledVisiblePosition({ lineNumber: 1, column: 9 });
                const box = editor.getDomNode().getBoundingClientRect();
                return { x: box.left + at.left + 2, y: box.top + at.top + at.height / 2 };
            }"""
        )
        page.mouse.move(point["x"], point["y"])
        page.wait_for_selector(".monaco-hover:has-text('JSON')", timeout=15000)
        shot(page, "code-hover-1280.png")
        assert csp_violations(page, console) == []
        assert problems(console) == [], console
    finally:
        page.close()
