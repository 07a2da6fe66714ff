"""/fn/ tells nobody which URLs have a function: without a valid token of someone who can see
the project (no token, a malformed header, an unknown or revoked token, another
organization's token, a member without access to the project), an existing token-mode
function answers the same bytes as a missing one, after the same work (one token lookup with
the same queries, or none). Public functions answer everyone; a token of the project's own
member learns what is wrong with it (403)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.engine import gateway_auth
from apps.tenancy import token_services
from tests.engine.conftest import deploy_latest, make_function, url, wait_routed

PLAIN = "def handler(event, context):\n    return {'ok': True}\n"
MISSING = "/fn/alpha/web/dev/nope/"
# Headers a server sets per answer, not per request: the rest must be byte-identical.
PER_ANSWER = {"date"}


def answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in PER_ANSWER]
    return response.status_code, headers, response.content


@pytest.fixture
def private(world: Any, engine: Any) -> Any:
    fn = make_function(world, "private", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    return fn


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(project id, queries) of every token lookup the gateway makes."""
    seen: list[tuple[int, int]] = []
    real = gateway_auth._verdict

    def counting(digest: str, project_id: int) -> Any:
        with CaptureQueriesContext(connection) as queries:
            result = real(digest, project_id)
        seen.append((project_id, len(queries.captured_queries)))
        return result

    monkeypatch.setattr(gateway_auth, "_verdict", counting)
    return seen


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def fresh_token(user: Any, scopes: list[str]) -> str:
    return token_services.token_create(user=user, name="t", scopes=scopes)[1]


def revoked_token(user: Any) -> str:
    token, plaintext = token_services.token_create(user=user, name="old", scopes=["invoke"])
    token_services.token_revoke(actor=user, token=token)
    return plaintext


def test_callers_without_access_get_the_missing_functions_bytes(world, private, served, lookups):
    callers: dict[str, Any] = {
        "anonymous": lambda: {},
        "malformed": lambda: {"authorization": "Basic YWxpY2U6cHc="},
        "unknown token": lambda: bearer("stt_" + "x" * 40),
        "revoked token": lambda: bearer(revoked_token(world.bob)),
        "another org's token": lambda: bearer(fresh_token(world.charlie, ["invoke", "deploy"])),
        "a member without the project": lambda: bearer(fresh_token(world.dora, ["invoke"])),
    }
    # Warm what a process caches once (content types): then every lookup does the same work.
    served.get(url(private), headers=bearer(fresh_token(world.charlie, ["invoke"])))
    lookups.clear()
    for name, headers_for in callers.items():
        # A token of each kind per URL, so neither answer comes from the other's cache entry.
        existing = served.get(url(private), headers={**headers_for(), "x-request-id": "same-request"})
        missing = served.get(MISSING, headers={**headers_for(), "x-request-id": "same-request"})

        assert existing.status_code == 404, name
        assert answer(existing) == answer(missing), name
        assert existing.json()["error"] == {
            "code": "not_found",
            "message": gateway_auth.NO_FUNCTION,
            "fields": {},
            "request_id": "same-request",
        }

    # The same work for both: no lookup without a token, else one each with the same queries.
    existing_queries = [n for project_id, n in lookups if project_id == private.project_id]
    missing_queries = [n for project_id, n in lookups if project_id == gateway_auth.NO_PROJECT]
    assert len(existing_queries) == len(missing_queries) == 4  # the four callers with a token
    assert existing_queries == missing_queries


def test_a_cached_verdict_is_reused_for_both_urls_alike(world, private, served, lookups):
    token = fresh_token(world.charlie, ["invoke"])
    for _ in range(3):
        assert served.get(url(private), headers=bearer(token)).status_code == 404
        assert served.get(MISSING, headers=bearer(token)).status_code == 404
    assert [project_id for project_id, _ in lookups] == [private.project_id, gateway_auth.NO_PROJECT]


def test_the_projects_own_members_learn_what_their_token_lacks(world, private, served):
    assert served.get(url(private), headers=bearer(fresh_token(world.bob, ["invoke"]))).status_code == 200
    assert served.get(url(private), headers=bearer(fresh_token(world.carol, ["deploy"]))).status_code == 200
    lacking = served.get(url(private), headers=bearer(fresh_token(world.bob, ["read"])))
    assert lacking.status_code == 403
    assert lacking.json()["error"]["code"] == "permission_denied"
    assert "'invoke'" in lacking.json()["error"]["message"]


def test_public_functions_answer_everyone(world, engine, served):
    fn = make_function(world, "open", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="public")
    wait_routed(engine, fn)
    for headers in ({}, bearer("stt_not-a-real-token"), bearer(fresh_token(world.charlie, ["read"]))):
        response = served.get(url(fn), headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True}
