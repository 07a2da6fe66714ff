"""Personal access tokens: shown once, stored as a SHA-256 only, Bearer auth, expiry,
revocation, last-used bookkeeping and scope validation."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.tenancy.models import ApiToken

pytestmark = pytest.mark.django_db

TOKEN_FIELDS = {
    "id",
    "name",
    "prefix",
    "scopes",
    "expires_at",
    "last_used_at",
    "created_at",
    "revoked_at",
    "expired",
    "revoked",
    "parent",
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The world's users get passwords; a fast hasher keeps setup from dominating (no test
    here checks a password)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def create_token(client: APIClient, **body) -> dict:
    body.setdefault("name", "ci")
    body.setdefault("scopes", ["read"])
    response = client.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def rows_containing(text: str) -> list[str]:
    """Every (model, field) of every row in the database whose value contains ``text``."""
    hits = []
    for model in apps.get_models():
        for row in model.objects.values():
            for field, value in row.items():
                raw = bytes(value) if isinstance(value, memoryview | bytes) else str(value).encode()
                if text.encode() in raw:
                    hits.append(f"{model._meta.label}.{field}")
    return hits


def test_create_returns_plaintext_once_and_stores_only_its_sha256(world, client_for):
    client = client_for(world.alice)
    body = create_token(client, name="ci", scopes=["write", "read", "read"])
    plaintext = body["token"]

    assert set(body) == TOKEN_FIELDS | {"token"}
    assert plaintext.startswith("stt_")
    assert len(plaintext) == len("stt_") + 40  # token_urlsafe(30) → 40 characters
    assert body["prefix"] == plaintext[:12]
    assert body["name"] == "ci"
    assert body["scopes"] == ["read", "write"]  # deduplicated and sorted
    assert body["expires_at"] is None
    assert body["last_used_at"] is None
    assert body["revoked_at"] is None
    assert body["expired"] is False
    assert body["revoked"] is False
    assert body["parent"] is None  # made in a browser session, not by a token

    token = ApiToken.objects.get(pk=body["id"])
    assert token.user == world.alice
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert rows_containing(plaintext) == []

    # Later reads never show it again.
    listing = client.get("/api/v1/tokens/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    [row] = listing.json()["results"]
    assert set(row) == TOKEN_FIELDS
    assert row["id"] == body["id"]
    assert plaintext not in listing.content.decode()

    detail = client.get(f"/api/v1/tokens/{body['id']}/")
    assert detail.status_code == 200
    assert set(detail.json()) == TOKEN_FIELDS
    assert plaintext not in detail.content.decode()

    event = AuditEvent.objects.get(action="token.create")
    assert event.actor == world.alice
    assert event.org is None
    assert event.changes == {"name": "ci", "scopes": ["read", "write"]}
    assert plaintext not in str(event.changes)


def test_bearer_token_authenticates_and_me_shows_its_scopes(world, client_for):
    plaintext = create_token(client_for(world.bob), scopes=["read", "deploy"])["token"]

    response = bearer(plaintext).get("/api/v1/me/")
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "bob"
    assert body["token_scopes"] == ["deploy", "read"]
    assert [o["slug"] for o in body["orgs"]] == ["alpha"]

    session = client_for(world.bob).get("/api/v1/me/")
    assert session.status_code == 200
    assert session.json()["token_scopes"] is None


def test_last_used_at_is_set_on_first_use_and_not_rewritten_every_request(world, client_for, settings):
    settings.TOKEN_LAST_USED_RESOLUTION_S = 60
    plaintext = create_token(client_for(world.alice))["token"]
    token = ApiToken.objects.get(token_hash=hashlib.sha256(plaintext.encode()).hexdigest())
    assert token.last_used_at is None
    client = bearer(plaintext)

    before = timezone.now()
    assert client.get("/api/v1/me/").status_code == 200
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    assert before <= first_use <= timezone.now()

    # Within the resolution window: no UPDATE of the token row, same timestamp.
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me/").status_code == 200
        assert client.get("/api/v1/orgs/").status_code == 200
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert writes == []
    token.refresh_from_db()
    assert token.last_used_at == first_use

    # Once the window has passed, the next use records the time again.
    old = timezone.now() - timedelta(seconds=120)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=old)
    assert client.get("/api/v1/me/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at > old + timedelta(seconds=119)


def assert_auth_failed(response, message: str) -> None:
    assert response.status_code == 401, response.content
    assert response.json() == {"error": {"code": "authentication_failed", "message": message, "fields": {}}}
    assert response["WWW-Authenticate"] == "Bearer"


def test_expired_token_is_refused(world, client_for):
    body = create_token(client_for(world.alice), expires_at=(timezone.now() + timedelta(hours=1)).isoformat())
    client = bearer(body["token"])
    assert client.get("/api/v1/me/").status_code == 200

    ApiToken.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_auth_failed(client.get("/api/v1/me/"), "This token has expired.")

    detail = client_for(world.alice).get(f"/api/v1/tokens/{body['id']}/")
    assert detail.json()["expired"] is True


def test_revoked_token_is_refused(world, client_for):
    session = client_for(world.alice)
    body = create_token(session, scopes=["read"])
    client = bearer(body["token"])
    assert client.get("/api/v1/me/").status_code == 200

    revoked = session.delete(f"/api/v1/tokens/{body['id']}/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    assert revoked.json()["revoked_at"] is not None
    assert AuditEvent.objects.filter(action="token.revoke", target_id=str(body["id"]), actor=world.alice).count() == 1

    assert_auth_failed(client.get("/api/v1/me/"), "This token has been revoked.")


def test_unknown_token_is_refused(world):
    assert_auth_failed(bearer("stt_not-a-real-token").get("/api/v1/me/"), "Invalid token.")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b"])
def test_malformed_bearer_header_is_refused(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_auth_failed(client.get("/api/v1/me/"), "Authorization header must be 'Bearer <token>'.")


def test_another_users_token_is_invisible(world, client_for):
    body = create_token(client_for(world.alice))
    other = client_for(world.bob)
    assert other.get(f"/api/v1/tokens/{body['id']}/").status_code == 404
    assert other.delete(f"/api/v1/tokens/{body['id']}/").status_code == 404
    assert ApiToken.objects.get(pk=body["id"]).revoked_at is None
    assert other.get("/api/v1/tokens/").json()["count"] == 0


def test_expires_at_in_the_past_is_refused(world, client_for):
    past = (timezone.now() - timedelta(minutes=5)).isoformat()
    response = client_for(world.alice).post(
        "/api/v1/tokens/", {"name": "old", "scopes": ["read"], "expires_at": past}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "expires_at must be in the future.",
            "fields": {"expires_at": ["Must be in the future."]},
        }
    }
    assert ApiToken.objects.count() == 0


def test_empty_scopes_are_refused(world, client_for):
    response = client_for(world.alice).post("/api/v1/tokens/", {"name": "none", "scopes": []}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["scopes"]
    assert error["fields"]["scopes"] == ["Ensure this field has at least 1 elements."]
    assert ApiToken.objects.count() == 0


def test_unknown_scope_is_refused(world, client_for):
    response = client_for(world.alice).post("/api/v1/tokens/", {"name": "x", "scopes": ["read", "root"]}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {"scopes": {"1": ['"root" is not a valid choice.']}}
    assert ApiToken.objects.count() == 0


def test_a_token_cannot_mint_scopes_it_lacks(world, client_for):
    client = client_for(world.alice, scopes=["read", "admin"])
    escalated = client.post("/api/v1/tokens/", {"name": "x", "scopes": ["write"]}, format="json")
    assert escalated.status_code == 403
    assert escalated.json()["error"]["code"] == "permission_denied"
    assert ApiToken.objects.count() == 1

    narrower = client.post("/api/v1/tokens/", {"name": "y", "scopes": ["read"]}, format="json")
    assert narrower.status_code == 201
    assert narrower.json()["scopes"] == ["read"]


def test_a_read_token_cannot_create_tokens(world, client_for):
    client = client_for(world.alice, scopes=["read"])
    response = client.post("/api/v1/tokens/", {"name": "x", "scopes": ["read"]}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "permission_denied",
            "message": "This token lacks the 'admin' scope this request needs.",
            "fields": {},
        }
    }
    assert ApiToken.objects.count() == 1
