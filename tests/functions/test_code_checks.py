"""The WebIDE's Python check through the API (POST /functions/{id}/draft/check): pyflakes'
findings as editor diagnostics, who may ask, and what hostile input gets (a bound, one
diagnostic, never a 500, never a long wait)."""

from __future__ import annotations

import threading
import time

import pytest
from rest_framework.test import APIClient

from apps.functions import code_checks, draft_services, services
from apps.functions.models import Function

MAIN = "def handler(event, context):\n    return {'ok': True}\n"


@pytest.fixture
def fn(world) -> Function:
    function = services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    draft_services.draft_file_write(actor=world.alice, function=function, path="main.py", content=MAIN.encode())
    return function


def check_url(fn: Function) -> str:
    return f"/api/v1/functions/{fn.pk}/draft/check"


def check(client, fn, path="main.py", content=None):
    body = {"path": path} if content is None else {"path": path, "content": content}
    return client.post(check_url(fn), body, format="json")


def diagnostics(response) -> list[dict]:
    assert response.status_code == 200, response.json()
    return response.json()["diagnostics"]


def only(response) -> dict:
    found = diagnostics(response)
    assert len(found) == 1, found
    return found[0]


# --- what the check finds ---------------------------------------------------------------------


def test_a_syntax_error_is_an_error_at_its_line_and_column(world, client_for, fn):
    response = check(
        client_for(world.bob), fn, content="def handler(event, context):\n    if event\n        return 1\n"
    )

    assert response.json()["path"] == "main.py"
    assert only(response) == {
        "line": 2,
        "column": 13,  # just after `if event`, where the colon belongs
        "end_line": 2,
        "end_column": 14,
        "severity": "error",
        "code": "syntax-error",
        "message": "expected ':'",
        "source": "pyflakes",
    }


def test_an_undefined_name_is_an_error_underlining_the_name_in_characters_not_bytes(world, client_for, fn):
    bob = client_for(world.bob)

    typo = only(check(bob, fn, content='def handler(event, context):\n    return {"n": totl}\n'))
    accented = only(check(bob, fn, content='s = "é€"; print(nope)\r\n'))

    assert typo == {
        "line": 2,
        "column": 18,  # `    return {"n": ` is 17 characters
        "end_line": 2,
        "end_column": 22,
        "severity": "error",
        "code": "undefined-name",
        "message": "undefined name 'totl'",
        "source": "pyflakes",
    }
    # ast counts UTF-8 bytes (é is 2, € is 3); the editor counts characters.
    assert (accented["line"], accented["column"], accented["end_column"]) == (1, 17, 21)


def test_unused_imports_and_variables_are_warnings(world, client_for, fn):
    source = "import os, sys\nfrom json import loads\n\ndef f():\n    unused = 1\n    return sys\n"

    found = diagnostics(check(client_for(world.bob), fn, content=source))

    assert [(d["severity"], d["code"], d["line"], d["column"], d["end_column"], d["message"]) for d in found] == [
        ("warning", "unused-import", 1, 8, 10, "'os' imported but unused"),
        ("warning", "unused-import", 2, 18, 23, "'json.loads' imported but unused"),
        ("warning", "unused-variable", 5, 5, 11, "local variable 'unused' is assigned to but never used"),
    ]


def test_clean_code_and_files_that_are_not_python_have_no_diagnostics(world, client_for, fn):
    bob = client_for(world.bob)

    assert diagnostics(check(bob, fn, content=MAIN)) == []
    assert diagnostics(check(bob, fn, path="README.md", content="x = (\n")) == []
    assert diagnostics(check(bob, fn, path="static/app.js", content="import os\n")) == []
    assert check(bob, fn, path="stubs/api.pyi", content="import os\n").json()["diagnostics"][0]["code"] == (
        "unused-import"
    )


def test_without_content_the_saved_draft_file_is_checked(world, client_for, fn):
    bob = client_for(world.bob)
    draft_services.draft_file_write(actor=world.bob, function=fn, path="lib/util.py", content=b"import os\n")

    saved = only(check(bob, fn, path="lib/util.py"))
    missing = check(bob, fn, path="lib/ghost.py")
    outside = check(bob, fn, path="../etc/passwd.py", content="x = 1\n")

    assert (saved["code"], saved["line"]) == ("unused-import", 1)
    assert diagnostics(check(bob, fn)) == []  # main.py as saved
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert outside.status_code == 400, outside.json()


# --- who may ask ------------------------------------------------------------------------------


def test_viewers_and_read_tokens_may_check_other_orgs_get_404(world, client_for, fn):
    carol = client_for(world.carol)  # viewer of the project
    read_token = client_for(world.carol, scopes=["read"])
    charlie = client_for(world.charlie)  # owner of another org
    charlie_token = client_for(world.charlie, scopes=["read", "write", "deploy", "admin"])

    assert only(check(carol, fn, content="x = y\n"))["code"] == "undefined-name"
    assert only(check(read_token, fn, content="x = y\n"))["code"] == "undefined-name"
    for outsider in (charlie, charlie_token):
        response = check(outsider, fn, content="x = y\n")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert check(APIClient(), fn, content="x = 1\n").status_code in (401, 403)


# --- hostile input --------------------------------------------------------------------------------


def test_more_than_a_megabyte_is_413_naming_the_limit(world, client_for, fn):
    limit = code_checks.LIMITS.max_source_bytes
    bob = client_for(world.bob)

    at_limit = check(bob, fn, path="notes.txt", content="x" * limit)
    over = check(bob, fn, content="#" * (limit + 1))
    over_in_bytes = check(bob, fn, content="é" * (limit // 2 + 1))  # fewer characters, more bytes

    assert at_limit.status_code == 200
    for response in (over, over_in_bytes):
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "check_too_large"
        assert f"at most {limit} bytes" in error["message"]


PATHOLOGICAL = {
    "100000 open parentheses": ("(" * 100_000, "syntax-error"),
    "nested lists 100000 deep": ("[" * 100_000 + "]" * 100_000, "syntax-error"),
    "nested lists at the parser's limit": ("x = " + "[" * 199 + "]" * 199 + "\ny = z\n", "undefined-name"),
    "100000 unary minus": ("x = " + "-" * 100_000 + "1", "too-complex"),  # the parser's MemoryError
    "50000 lambdas": ("lambda: " * 50_000 + "1", "too-complex"),
    "900 additions": ("x = " + "+".join(["1"] * 900), "too-complex"),  # RecursionError in pyflakes
    "200000 attributes": ("a" + ".b" * 200_000, "too-complex"),  # RecursionError building the AST
    "150 nested calls": ("print(" * 150 + ")" * 150, None),
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_nesting_answers_quickly_with_a_diagnostic_not_a_500(world, client_for, fn, name):
    source, code = PATHOLOGICAL[name]

    started = time.monotonic()
    response = check(client_for(world.bob), fn, content=source)
    elapsed = time.monotonic() - started

    found = diagnostics(response)
    if code is None:
        assert found == []
    else:
        assert len(found) == 1, found
        assert found[0]["code"] == code and found[0]["severity"] == "error"
    # Far below the deadline (measured: 40-150 ms, most of it starting the child).
    assert elapsed < 2.0, f"{name}: {elapsed:.2f} s"


@pytest.fixture
def limits(monkeypatch):
    def set_limits(**changes):
        monkeypatch.setattr(code_checks, "LIMITS", code_checks.CheckLimits(**changes))

    return set_limits


def test_a_check_past_its_deadline_is_stopped_and_answers_one_warning(world, client_for, fn, limits):
    limits(timeout_seconds=0.3)
    source = "x = 1\n" * 150_000  # ~1 s of parsing on a small host: legal, just long

    started = time.monotonic()
    found = only(check(client_for(world.bob), fn, content=source))
    elapsed = time.monotonic() - started

    assert (found["code"], found["severity"]) == ("check-timeout", "warning")
    assert "stops after 0.3 s" in found["message"]
    assert elapsed < 1.5, elapsed


def test_a_check_past_its_memory_limit_answers_one_diagnostic(world, client_for, fn, limits):
    limits(memory_bytes=200 * 1024 * 1024)
    source = "x = 1\n" * 100_000  # ~250 MB of AST

    found = only(check(client_for(world.bob), fn, content=source))

    assert found["code"] in ("too-complex", "check-failed"), found


def test_past_500_problems_the_rest_are_counted_in_one_warning(world, client_for, fn):
    source = "".join(f"import m{i}\n" for i in range(520))

    found = diagnostics(check(client_for(world.bob), fn, content=source))

    assert len(found) == 501
    assert found[-1]["code"] == "too-many-problems" and found[-1]["message"] == "20 more problems not shown."


def test_with_every_slot_taken_the_check_answers_503(world, client_for, fn, limits, monkeypatch):
    limits(wait_seconds=0.05)
    monkeypatch.setattr(code_checks, "_slots", threading.BoundedSemaphore(1))
    code_checks._slots.acquire()  # another check is running

    response = check(client_for(world.bob), fn, content="x = 1\n")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "check_busy"
