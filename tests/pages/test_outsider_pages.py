"""Every console page and form action, walked from the URLconf, seen by an outsider.

The API's outsider walk (tests/tenancy/test_outsider_routes.py) covers /api/v1/; this one
walks every other route with path parameters (the console's pages and their POST actions),
so a page added tomorrow is covered the day it is added. charlie (org `other`) is signed in
with a session and sends GET and POST with path parameters pointing at alpha's real objects,
and again at objects that exist nowhere. The rules:

- each answers 404 (405 for a method the view does not take), exactly as for objects that
  do not exist (no existence oracle), never a redirect into alpha or a 500;
- no answer names alpha's objects unless charlie sent the name himself;
- afterwards every row of the tenancy, audit, auth, guardian, functions, monitoring,
  releases and pipelines tables is unchanged.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest
from django.test import Client
from django.urls import get_resolver, resolve
from django.urls.resolvers import RoutePattern

from tests.tenancy.test_outsider_routes import (  # noqa: F401 - `alpha` is a fixture
    GENERIC_BODY,
    PATH_VALUES,
    Alpha,
    _walk,
    alpha,
    assert_db_unchanged,
    db_snapshot,
    leaked_identifiers,
)

# Routes that are not console pages of a tenant's objects: the API (its own walk), Django's
# admin (staff only), git host webhooks (signed, no session) and artifact downloads (a signed
# URL for the execution backend, refused without its signature whoever asks; tested in
# tests/functions/test_knative_backend.py).
NOT_PAGES = ("api/", "admin/", "hooks/", "static/", "artifacts/")
# Extra path parameters of pages (the API's are in PATH_VALUES).
PAGE_VALUES: dict[str, tuple[Any, Any]] = {
    # run actions (cancel, retry, approve, reject) and release actions (promote, pause, ...)
    "action": (
        lambda a: ["cancel", "retry", "approve", "reject", "promote", "promote-all", "pause", "resume", "abort", "run", "delete"],
        "ghost-action",
    ),
    "sha256": (lambda a: ["0" * 64], "f" * 64),
}
# A form body with every field name the pages' forms use, plausible values.
FORM_BODY = {
    **{k: str(v) for k, v in GENERIC_BODY.items()},
    "email": "charlie@example.com",
    "environment": "dev",
    "version": "1",
    "target": "prod",
    "source": "dev",
    "username": "charlie",
    "confirm": "x",
    "branch": "main",
    "url": "https://git.example/charlie.git",
    "scopes": "read",
    "memory_mb": "256",
}


def page_routes() -> list[tuple[str, Any]]:
    routes = []
    for full, pattern, callback in _walk(get_resolver()):
        if full.startswith(NOT_PAGES) or "<" not in full:
            continue
        assert isinstance(pattern, RoutePattern), f"{full} is not a path() route; extend {__name__} to fill it."
        routes.append((full, callback))
    return routes


ROUTES = page_routes()


def params_of(pattern: str) -> list[str]:
    import re

    return [m.group(2) for m in re.finditer(r"<(?:([^>:]+):)?([^>]+)>", pattern)]


def fill(pattern: str, values: dict[str, Any]) -> str:
    import re

    return "/" + re.sub(r"<(?:[^>:]+:)?([^>]+)>", lambda m: str(values[m.group(1)]), pattern)


def test_the_walk_finds_the_console_pages() -> None:
    patterns = {p for p, _ in ROUTES}
    for known in (
        "projects/<int:project_id>/pipeline/",
        "runs/<int:run_id>/",
        "functions/<int:function_id>/",
        "functions/<int:function_id>/logs/",
        "functions/<int:function_id>/metrics/",
    ):
        assert known in patterns


@pytest.mark.parametrize("pattern", [p for p, _ in ROUTES])
def test_outsider_gets_404_on_every_page_and_action_of_another_org(pattern: str, alpha: Alpha) -> None:  # noqa: F811
    values_of = {**PATH_VALUES, **PAGE_VALUES}
    names = params_of(pattern)
    missing = [n for n in names if n not in values_of]
    if missing:
        pytest.fail(f"Page route /{pattern} has path parameter(s) {missing} with no value: add them to PAGE_VALUES.")
    real_sets = [dict(zip(names, combo)) for combo in product(*(values_of[n][0](alpha) for n in names))]
    ghost = {n: values_of[n][1] for n in names}
    client = Client()
    client.force_login(alpha.world.charlie)
    before = db_snapshot(alpha.world.charlie)

    problems = []
    for values, method in product(real_sets, ("GET", "POST")):
        path = fill(pattern, values)
        assert resolve(path).route == pattern, path
        send = client.get if method == "GET" else lambda p: client.post(p, FORM_BODY)
        response = send(path)
        ghost_response = send(fill(pattern, ghost))
        label = f"{method} {path}"
        if response.status_code not in (404, 405):
            problems.append(f"{label}: expected 404 (or 405), got {response.status_code}")
        elif response.status_code != ghost_response.status_code:
            problems.append(f"{label}: {response.status_code} but {ghost_response.status_code} for missing objects")
        leaks = leaked_identifiers(response.content.decode(errors="replace"), [path, *map(str, FORM_BODY.values())])
        if leaks:
            problems.append(f"{label}: the answer names alpha's {leaks}")

    assert not problems, "\n".join(problems)
    assert_db_unchanged(before, db_snapshot(alpha.world.charlie))
