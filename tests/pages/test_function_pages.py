"""The function pages (apps/functions/pages/overview.py, versions.py, function_settings.py)
through Django's test client against the real database: what each page shows, that forms
go through the API's serializers and services (the API's messages next to the fields, the
form kept filled in), and tenancy: another org's user gets 404 on every page and action and
nothing changes; a viewer sees write controls disabled with the reason, and a forged POST is
refused with nothing changed, never a 500."""

from __future__ import annotations

import io
import re
import zipfile
from html import unescape
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.functions import services, version_services
from apps.functions.deploy_services import deploy
from apps.functions.models import Function, Version
from apps.tenancy.models import Environment
from tests.conftest import World

HELLO = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hello %s'}\n"


def zip_of(files: dict[str, str], name: str = "code.zip") -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    buf.seek(0)
    buf.name = name
    return buf


def client(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


def text(response: Any) -> str:
    """The page's text without tags, whitespace collapsed (what a reader sees)."""
    body = re.sub(r"<script.*?</script>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def field_error(response: Any, field: str) -> str:
    match = re.search(rf'<span class="field-error" id="{field}-error"[^>]*>(.*?)</span>', response.content.decode())
    assert match, f"no error next to {field}"
    return unescape(match.group(1))


@pytest.fixture
def hello(world: World) -> Function:
    """alpha/web's `hello` with v1 (serving dev) and v2."""
    function = services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    v1, _ = version_services.version_create(
        actor=world.alice, function=function, files={"main.py": (HELLO % "v1").encode()}, source="files", message="one"
    )
    version_services.version_create(
        actor=world.alice,
        function=function,
        files={"main.py": (HELLO % "v2").encode(), "README.md": b"# hi\n"},
        source="files",
        message="two",
    )
    dev = Environment.objects.get(project=world.web, name="dev")
    deploy(actor=world.alice, function=function, environment=dev, version=v1, auth_mode="public")
    return function


# --- what the pages show ---------------------------------------------------------------------


def test_the_project_overview_shows_each_function_per_environment_and_the_activity(world: World, hello: Function):
    page = client(world.bob).get(f"/projects/{world.web.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    row = re.search(r'<tr data-testid="function-hello">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = dict(re.findall(r'<td data-env="(\w+)">(.*?)</td>', row.group(1), re.S))
    assert set(cells) == {"dev", "staging", "prod"}
    assert "v1" in cells["dev"] and 'data-state="pending"' in cells["dev"]  # deployed, not yet applied
    assert "v" not in re.sub(r"<[^>]+>", "", cells["prod"]).replace("—", "").strip()
    assert "alice" in row.group(1) and "ago" in row.group(1)  # last deploy, and who
    assert "Python 3.11" in row.group(1) and "event" in row.group(1)
    summary = text(page)
    assert "alice created a version of hello v2" in summary
    assert "alice created function hello" in summary
    assert "nothing deployed" in summary  # staging and prod in the environments summary


def test_a_project_without_functions_says_what_to_do_next(world: World):
    page = client(world.bob).get(f"/projects/{world.web.pk}/")
    assert "No functions yet: create one, or connect a repository" in text(page)
    assert f'href="/projects/{world.web.pk}/functions/#create"' in page.content.decode()
    assert f'href="/projects/{world.web.pk}/pipeline/"' in page.content.decode()


def test_the_function_overview_shows_the_invoke_url_the_api_reports_and_the_traffic(world: World, hello: Function):
    bob = client(world.bob)
    page = bob.get(f"/functions/{hello.pk}/")
    assert page.status_code == 200
    api = APIClient()
    api.force_login(world.bob)
    url = api.get(f"/api/v1/functions/{hello.pk}/bindings/dev").json()["url"]
    html = page.content.decode()
    assert f'data-copy="{url}"' in html  # the copy button carries the API's URL
    assert re.search(r'data-testid="traffic-dev"[^>]*aria-label="Traffic: v1 100% stable"', html)
    assert "Public: anyone with the URL" in text(page)
    assert 'data-testid="env-card-prod"' in html and "Not deployed here yet: deploy v2" in text(page)
    assert f'href="/functions/{hello.pk}/environments/"' in html  # deploy and roll back live there


def test_the_versions_tab_lists_versions_with_source_author_sha_and_where_they_serve(world: World, hello: Function):
    page = client(world.bob).get(f"/functions/{hello.pk}/versions/")
    html = page.content.decode()
    v1 = re.search(r'<tr data-testid="version-1">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    version = Version.objects.get(function=hello, number=1)
    assert "one" in v1 and "alice" in v1 and "files" in v1
    assert version.artifact.sha256 in v1  # full value on hover / copy, shortened on screen
    assert "dev" in v1  # serves dev
    assert f'href="/api/v1/functions/{hello.pk}/versions/1/archive"' in v1
    assert client(world.bob).get(f"/api/v1/functions/{hello.pk}/versions/1/archive").status_code == 200


def test_a_version_shows_its_files_escaped_and_a_diff_reads_line_by_line(world: World, hello: Function):
    version_services.version_create(
        actor=world.bob,
        function=hello,
        files={"main.py": b"x = '<script>alert(1)</script>'\n"},
        source="files",
    )
    bob = client(world.bob)
    page = bob.get(f"/functions/{hello.pk}/versions/3/")
    html = page.content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert bob.get(f"/functions/{hello.pk}/versions/2/?file=README.md").status_code == 200
    assert bob.get(f"/functions/{hello.pk}/versions/2/?file=nope.py").status_code == 404
    assert bob.get(f"/functions/{hello.pk}/versions/9/").status_code == 404

    diff = bob.get(f"/functions/{hello.pk}/versions/diff?from=1&to=2")
    rows = re.findall(r'<tr class="(add|del)">.*?<td class="src">(.*?)</td></tr>', diff.content.decode(), re.S)
    lines = [(kind, re.sub(r"<[^>]+>", "", unescape(code))) for kind, code in rows]
    assert lines == [
        ("del", "-    return {'statusCode': 200, 'body': 'hello v1'}"),
        ("add", "+    return {'statusCode': 200, 'body': 'hello v2'}"),
    ]
    assert "added README.md" in text(diff)
    bad = bob.get(f"/functions/{hello.pk}/versions/diff?from=x&to=2")
    assert bad.status_code == 400 and "Give two version numbers: ?from=<n>&to=<m>." in text(bad)
    assert bob.get(f"/functions/{hello.pk}/versions/diff?from=1&to=7").status_code == 404


# --- forms: the API's serializer and service -------------------------------------------------


def test_creating_a_function_uses_the_apis_rules_and_keeps_the_form_on_error(world: World):
    bob = client(world.bob)
    form = {"name": "Not A Slug", "runtime": "python3.11", "handler": "main.handler", "kind": "event"}
    page = bob.post(f"/projects/{world.web.pk}/functions/", form)
    assert page.status_code == 400
    api = APIClient()
    api.force_login(world.bob)
    answer = api.post(f"/api/v1/projects/{world.web.pk}/functions/", form, format="json").json()
    assert field_error(page, "name") == " ".join(answer["error"]["fields"]["name"])
    assert 'value="Not A Slug"' in page.content.decode()  # the form stays filled in
    assert not Function.objects.exists()

    # A rule of the service (not the serializer): the handler's shape for the runtime.
    page = bob.post(f"/projects/{world.web.pk}/functions/", {**form, "name": "api", "handler": "main"})
    assert field_error(page, "handler") == "A Python handler is 'module.function', e.g. 'main.handler'."

    created = bob.post(f"/projects/{world.web.pk}/functions/", {**form, "name": "api", "memory_mb": "512"})
    function = Function.objects.get(project=world.web, name="api")
    assert created.status_code == 302 and created["Location"] == f"/functions/{function.pk}/versions/"
    assert (function.memory_mb, function.created_by) == (512, world.bob)
    assert AuditEvent.objects.filter(action="function.create", target_id=str(function.pk)).count() == 1

    again = bob.post(f"/projects/{world.web.pk}/functions/", {**form, "name": "api"})
    assert again.status_code == 409
    assert field_error(again, "name") == "Function 'api' already exists in project 'alpha/web'."


def test_uploading_a_zip_creates_a_version_and_a_bad_zip_is_refused_next_to_the_field(world: World, hello: Function):
    bob = client(world.bob)
    response = bob.post(
        f"/functions/{hello.pk}/versions/", {"archive": zip_of({"main.py": HELLO % "v3"}), "message": "three"}
    )
    assert response.status_code == 302
    v3 = Version.objects.get(function=hello, number=3)
    assert (v3.source, v3.message, v3.author) == ("upload", "three", world.bob)
    assert "Version 3 created from the upload (1 file)." in text(bob.get(response["Location"]))

    broken = io.BytesIO(b"this is not a zip")
    broken.name = "broken.zip"
    page = bob.post(f"/functions/{hello.pk}/versions/", {"archive": broken, "message": "keep me"})
    assert page.status_code == 400
    assert "zip" in field_error(page, "archive").lower()
    assert 'value="keep me"' in page.content.decode()
    missing = bob.post(f"/functions/{hello.pk}/versions/", {"message": "no file"})
    assert field_error(missing, "archive") == "No file was submitted."
    assert Version.objects.filter(function=hello).count() == 3


def test_settings_save_through_the_service_and_show_the_apis_messages(world: World, hello: Function):
    bob = client(world.bob)
    page = bob.get(f"/functions/{hello.pk}/settings/")
    assert 'name="memory_mb" value="256"' in page.content.decode()
    form = {
        "runtime": "python3.11",
        "handler": "main.handler",
        "kind": "event",
        "description": "says hello",
        "memory_mb": "512",
        "timeout_s": "10",
        "instance_concurrency": "4",
        "min_instances": "0",
        "max_instances": "3",
        "idle_timeout_s": "60",
        "ephemeral_storage_mb": "128",
        "env": "GREETING=hi\n",
    }
    assert bob.post(f"/functions/{hello.pk}/settings/", form).status_code == 302
    hello.refresh_from_db()
    assert (hello.memory_mb, hello.timeout_s, hello.max_instances, hello.env) == (512, 10, 3, {"GREETING": "hi"})

    bad = bob.post(f"/functions/{hello.pk}/settings/", {**form, "memory_mb": "99999", "min_instances": "5"})
    assert bad.status_code == 400
    assert field_error(bad, "memory_mb") == "Must be between 128 and 3072."
    assert 'value="99999"' in bad.content.decode()
    bad = bob.post(f"/functions/{hello.pk}/settings/", {**form, "min_instances": "5"})
    assert field_error(bad, "min_instances") == "Must not exceed max_instances."
    hello.refresh_from_db()
    assert (hello.memory_mb, hello.min_instances) == (512, 0)


def test_delete_needs_the_typed_name(world: World, hello: Function):
    bob = client(world.bob)
    wrong = bob.post(f"/functions/{hello.pk}/delete", {"confirm_name": "hell"}, follow=True)
    assert "Type the function's name (hello) to delete it. Nothing was deleted." in text(wrong)
    assert Function.objects.filter(pk=hello.pk).exists()
    done = bob.post(f"/functions/{hello.pk}/delete", {"confirm_name": "hello"}, follow=True)
    assert done.redirect_chain[-1][0] == f"/projects/{world.web.pk}/functions/"
    assert "Function hello deleted" in text(done)
    assert not Function.objects.filter(pk=hello.pk).exists()


# --- tenancy: outsiders and viewers ----------------------------------------------------------


def snapshot(function: Function) -> tuple[Any, ...]:
    function.refresh_from_db()
    return (
        Function.objects.count(),
        Version.objects.count(),
        function.memory_mb,
        function.handler,
        AuditEvent.objects.count(),
    )


def test_another_orgs_user_gets_404_on_every_page_and_action_and_nothing_changes(world: World, hello: Function):
    charlie = client(world.charlie)
    before = snapshot(hello)
    f, p = hello.pk, world.web.pk
    for path in (
        f"/projects/{p}/",
        f"/projects/{p}/functions/",
        f"/functions/{f}/",
        f"/functions/{f}/versions/",
        f"/functions/{f}/versions/1/",
        f"/functions/{f}/versions/1/?file=main.py",
        f"/functions/{f}/versions/diff?from=1&to=2",
        f"/functions/{f}/settings/",
    ):
        assert charlie.get(path).status_code == 404, path
    posts = {
        f"/projects/{p}/functions/": {"name": "evil", "runtime": "python3.11", "handler": "main.handler"},
        f"/functions/{f}/versions/": {"archive": zip_of({"main.py": "x"}), "message": "evil"},
        f"/functions/{f}/settings/": {"runtime": "python3.11", "handler": "evil.handler", "memory_mb": "1024"},
        f"/functions/{f}/delete": {"confirm_name": "hello"},
    }
    for path, data in posts.items():
        assert charlie.post(path, data).status_code == 404, path
    assert snapshot(hello) == before
    # Signed out: sent to sign in.
    response = Client().get(f"/functions/{f}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_viewer_sees_write_controls_disabled_with_the_reason_and_forged_posts_change_nothing(
    world: World, hello: Function
):
    carol = client(world.carol)
    f, p = hello.pk, world.web.pk
    functions = carol.get(f"/projects/{p}/functions/")
    assert 'data-testid="create-function-disabled"' in functions.content.decode()
    assert "Creating functions needs a developer role on this project" in text(functions)
    assert 'data-testid="create-function"' not in functions.content.decode()
    versions = carol.get(f"/functions/{f}/versions/")
    assert "Uploading a version needs a developer role on this project" in text(versions)
    assert 'enctype="multipart/form-data"' not in versions.content.decode()
    settings_page = carol.get(f"/functions/{f}/settings/")
    assert "Changing a function's settings needs a developer role on this project" in text(settings_page)
    assert "Deleting a function needs a developer role on this project" in text(settings_page)
    assert 'data-testid="delete-form"' not in settings_page.content.decode()
    assert "<fieldset disabled" in settings_page.content.decode()

    before = snapshot(hello)
    forged = carol.post(f"/projects/{p}/functions/", {"name": "x", "runtime": "python3.11", "handler": "main.handler"})
    assert forged.status_code == 403
    assert "Creating a function needs the 'edit_code' permission on project 'alpha/web'." in text(forged)
    forged = carol.post(f"/functions/{f}/versions/", {"archive": zip_of({"main.py": "x"})})
    assert forged.status_code == 403 and "Creating a version needs the 'edit_code' permission" in text(forged)
    form = {"runtime": "python3.11", "handler": "main.handler", "kind": "event", "memory_mb": "1024"}
    forged = carol.post(f"/functions/{f}/settings/", form)
    assert forged.status_code == 403 and "Changing a function needs the 'edit_code' permission" in text(forged)
    forged = carol.post(f"/functions/{f}/delete", {"confirm_name": "hello"}, follow=True)
    assert "Deleting a function needs the 'edit_code' permission" in text(forged)
    assert snapshot(hello) == before


def test_every_form_needs_the_csrf_token(world: World, hello: Function):
    bob = Client(enforce_csrf_checks=True)
    bob.force_login(world.bob)
    before = snapshot(hello)
    for path, data in {
        f"/projects/{world.web.pk}/functions/": {"name": "x", "runtime": "python3.11", "handler": "main.handler"},
        f"/functions/{hello.pk}/versions/": {"archive": zip_of({"main.py": "x"})},
        f"/functions/{hello.pk}/settings/": {"memory_mb": "1024"},
        f"/functions/{hello.pk}/delete": {"confirm_name": "hello"},
    }.items():
        assert bob.post(path, data).status_code == 403, path
    assert snapshot(hello) == before


def test_without_pygments_files_and_diffs_are_escaped_plain_text(monkeypatch: pytest.MonkeyPatch):
    from apps.functions.pages import highlight

    monkeypatch.setattr(highlight, "HAVE_PYGMENTS", False)
    highlight._lexer.cache_clear()
    try:
        assert highlight.highlighted_lines("a.py", "x = '<b>'\n\ny = 1\n") == ["x = &#x27;&lt;b&gt;&#x27;", "", "y = 1"]
        rows = highlight.diff_lines("a.py", "--- a\n+++ b\n@@ -1 +1 @@\n-<i>\n+<b>\n")
        assert [(r["kind"], r["old"], r["new"], str(r["code"])) for r in rows] == [
            ("hunk", None, None, "@@ -1 +1 @@"),
            ("del", 1, None, "&lt;i&gt;"),
            ("add", None, 1, "&lt;b&gt;"),
        ]
    finally:
        highlight._lexer.cache_clear()
