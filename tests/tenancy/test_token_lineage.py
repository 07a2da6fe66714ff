"""A token minted by a token (POST /api/v1/tokens/ with Bearer auth) is its child: it never
holds scopes its parent lacks (403), never outlives it (400: an expiry is required and may
not be later than the parent's; refused rather than shortened), and is revoked with it,
children's children included. (How /fn/ hears of a revocation: tests/engine/test_token_revocation.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.errors import Forbidden
from apps.tenancy import token_services
from apps.tenancy.models import ApiToken

pytestmark = pytest.mark.django_db


def bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def mint(client: APIClient, **body):
    body.setdefault("name", "child")
    body.setdefault("scopes", ["read"])
    return client.post("/api/v1/tokens/", body, format="json")


@pytest.fixture
def parent(world) -> tuple[ApiToken, str]:
    """alice's token with read, invoke and admin (admin: it may mint), expiring in an hour."""
    return token_services.token_create(
        user=world.alice,
        name="parent",
        scopes=["read", "invoke", "admin"],
        expires_at=timezone.now() + timedelta(hours=1),
    )


def test_a_child_of_an_expiring_token_needs_an_expiry_no_later_than_its_parents(world, parent):
    token, plaintext = parent
    client = bearer(plaintext)
    limit = token.expires_at.isoformat()
    refusal = {
        "code": "token_outlives_parent",
        "message": f"A token created by a token cannot outlive it: the token making this request expires at {limit}, "
        "so expires_at must be given and be no later than that.",
        "fields": {"expires_at": [f"Must be at or before {limit}."]},
    }

    forever = mint(client)
    later = mint(client, expires_at=(token.expires_at + timedelta(seconds=1)).isoformat())

    for response in (forever, later):
        assert response.status_code == 400, response.content
        assert response.json() == {"error": refusal}
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["parent"]

    same = mint(client, name="same", expires_at=limit)
    sooner = mint(client, name="sooner", expires_at=(token.expires_at - timedelta(minutes=5)).isoformat())
    for response in (same, sooner):
        assert response.status_code == 201, response.content
        assert response.json()["parent"] == token.pk
    assert ApiToken.objects.get(name="same").expires_at == token.expires_at


def test_a_child_cannot_hold_scopes_its_parent_lacks(world, parent):
    token, plaintext = parent
    expires_at = token.expires_at.isoformat()

    wider = mint(bearer(plaintext), scopes=["read", "write", "deploy"], expires_at=expires_at)

    assert wider.status_code == 403, wider.content
    assert wider.json() == {
        "error": {
            "code": "permission_denied",
            "message": "A token cannot create a token with scopes it does not have itself (deploy, write).",
            "fields": {"scopes": ["Not held by the token making this request: deploy, write."]},
        }
    }
    assert ApiToken.objects.count() == 1
    narrower = mint(bearer(plaintext), scopes=["invoke"], expires_at=expires_at)
    assert narrower.status_code == 201, narrower.content
    assert narrower.json()["scopes"] == ["invoke"]


def test_a_deploy_token_may_mint_an_invoke_token_because_deploy_holds_invoke(world):
    _, plaintext = token_services.token_create(user=world.alice, name="ci", scopes=["deploy", "admin"])
    response = mint(bearer(plaintext), scopes=["invoke"])
    assert response.status_code == 201, response.content
    assert response.json()["expires_at"] is None  # the parent never expires: neither need the child


def test_revoking_a_token_revokes_its_children_and_theirs(world, parent, client_for):
    token, plaintext = parent
    expires_at = token.expires_at.isoformat()
    child = mint(bearer(plaintext), name="child", scopes=["read", "admin"], expires_at=expires_at).json()
    grandchild = mint(bearer(child["token"]), name="grandchild", scopes=["read"], expires_at=expires_at).json()
    _, sibling = token_services.token_create(user=world.alice, name="unrelated", scopes=["read"])
    assert grandchild["parent"] == child["id"]
    for plain in (plaintext, child["token"], grandchild["token"], sibling):
        assert bearer(plain).get("/api/v1/me/").status_code == 200

    revoked = client_for(world.alice).delete(f"/api/v1/tokens/{token.pk}/")

    assert revoked.status_code == 200, revoked.content
    for plain in (plaintext, child["token"], grandchild["token"]):
        refused = bearer(plain).get("/api/v1/me/")
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "This token has been revoked."
    assert bearer(sibling).get("/api/v1/me/").status_code == 200
    events = AuditEvent.objects.filter(action="token.revoke").order_by("id")
    assert [(e.target_id, e.changes) for e in events] == [
        (str(token.pk), {}),
        (str(child["id"]), {"with_parent": token.pk}),
        (str(grandchild["id"]), {"with_parent": child["id"]}),
    ]


def test_revoking_a_child_leaves_its_parent_working(world, parent):
    token, plaintext = parent
    child = mint(bearer(plaintext), scopes=["read", "admin"], expires_at=token.expires_at.isoformat()).json()

    assert bearer(child["token"]).delete(f"/api/v1/tokens/{child['id']}/").status_code == 200

    assert bearer(child["token"]).get("/api/v1/me/").status_code == 401
    assert bearer(plaintext).get("/api/v1/me/").status_code == 200


def test_a_revoked_parent_cannot_mint_even_if_its_request_was_already_authenticated(world, parent):
    # The service re-reads the parent under a row lock: a revocation that committed after the
    # request authenticated still wins (the race a lock closes on PostgreSQL).
    token, _ = parent
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())

    with pytest.raises(Forbidden) as refused:
        token_services.token_create(user=world.alice, name="late", scopes=["read"], actor_token=token)

    assert refused.value.message == "The token making this request has been revoked or has expired."
    assert not ApiToken.objects.filter(name="late").exists()
