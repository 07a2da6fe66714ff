"""Invitations: created by admins/owners, accepted once by the invited address, and emailed
by a Celery task that runs only after the creating transaction commits."""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.tenancy import invitation_services, org_services
from apps.tenancy.models import Invitation, Membership
from apps.tenancy.roles import Role
from tests.conftest import build_world, make_user

INVITATION_FIELDS = {
    "id",
    "email",
    "role",
    "status",
    "invited_by",
    "expires_at",
    "expired",
    "accepted_at",
    "created_at",
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The world's users get passwords; a fast hasher keeps setup from dominating (no test
    here checks a password)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def invite(client, email: str = "newbie@example.com", role: str = "developer", org: str = "alpha"):
    return client.post(f"/api/v1/orgs/{org}/invitations/", {"email": email, "role": role}, format="json")


def accept(client, token: str):
    return client.post("/api/v1/invitations/accept", {"token": token}, format="json")


def error(response) -> dict:
    return response.json()["error"]


@pytest.fixture
def created(world, client_for, settings):
    """An invitation of newbie@example.com as developer, created by alice through the API."""
    response = invite(client_for(world.alice))
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_owner_invites_and_the_token_is_shown_once(world, client_for, settings, created):
    assert set(created) == INVITATION_FIELDS | {"token", "accept_url"}
    assert created["email"] == "newbie@example.com"
    assert created["role"] == "developer"
    assert created["status"] == "pending"
    assert created["invited_by"] == "alice"
    assert created["expired"] is False
    assert created["accepted_at"] is None
    assert created["accept_url"] == f"{settings.PUBLIC_URL}/invitations/accept?token={created['token']}"

    invitation = Invitation.objects.get(pk=created["id"])
    assert invitation.org == world.alpha
    assert invitation.invited_by == world.alice
    assert invitation_services.invitation_token(invitation) == created["token"]
    expected_expiry = invitation.created_at + timedelta(days=settings.INVITATION_TTL_DAYS)
    assert abs((invitation.expires_at - expected_expiry).total_seconds()) < 5

    client = client_for(world.alice)
    listing = client.get("/api/v1/orgs/alpha/invitations/")
    assert listing.status_code == 200
    [row] = listing.json()["results"]
    assert set(row) == INVITATION_FIELDS
    assert created["token"] not in listing.content.decode()
    detail = client.get(f"/api/v1/orgs/alpha/invitations/{created['id']}/")
    assert detail.status_code == 200
    assert set(detail.json()) == INVITATION_FIELDS
    assert created["token"] not in detail.content.decode()

    event = AuditEvent.objects.get(action="invitation.create")
    assert event.actor == world.alice
    assert event.org == world.alpha
    assert event.target_id == str(created["id"])
    assert event.changes == {"email": "newbie@example.com", "role": "developer"}


@pytest.mark.django_db
def test_email_is_normalised(world, client_for):
    response = invite(client_for(world.alice), email="  NewBie@Example.COM ")
    assert response.status_code == 201
    assert response.json()["email"] == "newbie@example.com"


@pytest.mark.django_db
def test_new_user_accepts_and_becomes_a_member_with_the_role(world, client_for, created):
    newbie = make_user("newbie")
    response = accept(client_for(newbie), created["token"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["org"] == "alpha"
    assert body["role"] == "developer"
    assert body["user"] == {"id": newbie.pk, "username": "newbie", "email": "newbie@example.com"}

    membership = Membership.objects.get(org=world.alpha, user=newbie)
    assert membership.role == Role.DEVELOPER
    invitation = Invitation.objects.get(pk=created["id"])
    assert invitation.status == Invitation.Status.ACCEPTED
    assert invitation.accepted_by == newbie
    assert invitation.accepted_at is not None
    event = AuditEvent.objects.get(action="invitation.accept")
    assert event.actor == newbie
    assert event.org == world.alpha
    assert event.changes == {"role": "developer"}

    # The link works once.
    again = accept(client_for(newbie), created["token"])
    assert again.status_code == 410
    assert error(again)["code"] == "invitation_used"


@pytest.mark.django_db
def test_accepting_needs_a_signed_in_user(world, created):
    from rest_framework.test import APIClient

    response = accept(APIClient(), created["token"])
    assert response.status_code == 401
    assert error(response)["code"] == "not_authenticated"
    assert Invitation.objects.get(pk=created["id"]).status == Invitation.Status.PENDING


@pytest.mark.django_db
def test_expired_invitation_is_gone(world, client_for, created):
    Invitation.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    newbie = make_user("newbie")
    response = accept(client_for(newbie), created["token"])
    assert response.status_code == 410
    assert response.json() == {
        "error": {
            "code": "invitation_expired",
            "message": "This invitation has expired; ask for a new one.",
            "fields": {},
        }
    }
    assert not Membership.objects.filter(user=newbie).exists()


@pytest.mark.django_db
def test_revoked_invitation_link_no_longer_resolves(world, client_for, created):
    revoked = client_for(world.adam).delete(f"/api/v1/orgs/alpha/invitations/{created['id']}/")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    invitation = Invitation.objects.get(pk=created["id"])
    assert invitation.status == Invitation.Status.REVOKED
    assert AuditEvent.objects.filter(action="invitation.revoke", actor=world.adam, org=world.alpha).count() == 1

    # Revoking rotates the nonce: the old link no longer matches any invitation.
    newbie = make_user("newbie")
    response = accept(client_for(newbie), created["token"])
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "invitation_invalid", "message": "This invitation link is not valid.", "fields": {}}
    }
    assert not Membership.objects.filter(user=newbie).exists()

    # A second revoke is a conflict, not a silent success.
    again = client_for(world.adam).delete(f"/api/v1/orgs/alpha/invitations/{created['id']}/")
    assert again.status_code == 409
    assert error(again)["code"] == "invitation_not_pending"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: "x" + t,  # payload changed
        lambda t: t + ":AAAA",  # looks like the old timestamped format
        lambda t: "not-a-token",
        lambda t: "",
    ],
    ids=["signature", "payload", "extra-part", "garbage", "empty"],
)
def test_tampered_token_is_invalid(world, client_for, created, tamper):
    newbie = make_user("newbie")
    response = accept(client_for(newbie), tamper(created["token"]))
    if tamper(created["token"]) == "":
        assert response.status_code == 400
        assert error(response)["fields"] == {"token": ["This field may not be blank."]}
    else:
        assert response.status_code == 404
        assert error(response)["code"] == "invitation_invalid"
    assert not Membership.objects.filter(user=newbie).exists()
    assert Invitation.objects.get(pk=created["id"]).status == Invitation.Status.PENDING


@pytest.mark.django_db
def test_token_signed_for_another_nonce_is_invalid(world, client_for, created):
    invitation = Invitation.objects.get(pk=created["id"])
    invitation.nonce = "something-else"
    forged = invitation_services.invitation_token(invitation)
    response = accept(client_for(make_user("newbie")), forged)
    assert response.status_code == 404
    assert error(response)["code"] == "invitation_invalid"


@pytest.mark.django_db
def test_link_is_the_same_whenever_it_is_rebuilt(world, created):
    """The email task rebuilds the link from the id later: it must equal the one shown."""
    invitation = Invitation.objects.get(pk=created["id"])
    with mock.patch("django.core.signing.time.time", return_value=time.time() + 3600):
        assert invitation_services.invitation_token(invitation) == created["token"]
        assert invitation_services.invitation_link(invitation) == created["accept_url"]


@pytest.mark.django_db
def test_links_issued_in_the_timestamped_format_still_work(world, client_for, created):
    from django.core import signing

    invitation = Invitation.objects.get(pk=created["id"])
    legacy = signing.dumps({"i": invitation.pk, "n": invitation.nonce}, salt="stratus.invitation", compress=True)
    assert legacy != created["token"]
    response = accept(client_for(make_user("newbie")), legacy)
    assert response.status_code == 201
    assert response.json()["role"] == "developer"


@pytest.mark.django_db
def test_email_mismatch_is_forbidden(world, client_for, created):
    response = accept(client_for(make_user("someone")), created["token"])
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "invitation_email_mismatch",
            "message": "This invitation was sent to another email address.",
            "fields": {},
        }
    }
    assert Invitation.objects.get(pk=created["id"]).status == Invitation.Status.PENDING


@pytest.mark.django_db
def test_inviting_an_existing_member_conflicts(world, client_for):
    response = invite(client_for(world.alice), email="BOB@example.com")
    assert response.status_code == 409
    assert error(response)["code"] == "already_member"
    assert Invitation.objects.count() == 0


@pytest.mark.django_db
def test_accepting_when_already_a_member_conflicts(world, client_for, created):
    newbie = make_user("newbie")
    org_services.membership_ensure(user=newbie, org=world.alpha, role=Role.VIEWER)
    response = accept(client_for(newbie), created["token"])
    assert response.status_code == 409
    assert error(response)["code"] == "already_member"
    assert Membership.objects.get(org=world.alpha, user=newbie).role == Role.VIEWER
    assert Invitation.objects.get(pk=created["id"]).status == Invitation.Status.PENDING


@pytest.mark.django_db
def test_admin_cannot_invite_an_owner_but_an_owner_can(world, client_for):
    by_admin = invite(client_for(world.adam), email="boss@example.com", role="owner")
    assert by_admin.status_code == 403
    assert by_admin.json() == {
        "error": {"code": "permission_denied", "message": "Only an owner can invite an owner.", "fields": {}}
    }
    assert Invitation.objects.count() == 0

    assert invite(client_for(world.adam), email="helper@example.com", role="admin").status_code == 201

    by_owner = invite(client_for(world.alice), email="boss@example.com", role="owner")
    assert by_owner.status_code == 201
    boss = make_user("boss")
    accepted = accept(client_for(boss), by_owner.json()["token"])
    assert accepted.status_code == 201
    assert Membership.objects.get(org=world.alpha, user=boss).role == Role.OWNER


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["bob", "carol"])
def test_developers_and_viewers_cannot_invite_or_list(world, client_for, name):
    client = client_for(world.user(name))
    response = invite(client)
    assert response.status_code == 403
    assert error(response)["code"] == "permission_denied"
    listing = client.get("/api/v1/orgs/alpha/invitations/")
    assert listing.status_code == 403
    assert Invitation.objects.count() == 0


@pytest.mark.django_db
def test_outsider_cannot_invite_into_another_org(world, client_for):
    response = invite(client_for(world.charlie))
    assert response.status_code == 404
    assert Invitation.objects.count() == 0


@pytest.mark.django_db
def test_email_task_is_enqueued_only_on_commit(world, client_for, django_capture_on_commit_callbacks):
    from apps.tenancy.tasks import invitation_send_email

    with mock.patch.object(invitation_send_email, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = invite(client_for(world.alice))
            assert response.status_code == 201
            assert apply_async.call_count == 0  # nothing enqueued before the transaction commits
        assert len(callbacks) == 1
        callbacks[0]()
        apply_async.assert_called_once()
        assert apply_async.call_args.kwargs["args"] == (response.json()["id"],)

    # The task itself: one email carrying the link; nothing for a non-pending invitation.
    invitation_send_email(response.json()["id"])
    [message] = mail.outbox
    assert message.to == ["newbie@example.com"]
    assert message.subject == "alice invited you to Alpha on Stratus"
    assert response.json()["accept_url"] in message.body

    Invitation.objects.filter(pk=response.json()["id"]).update(status=Invitation.Status.REVOKED)
    invitation_send_email(response.json()["id"])
    invitation_send_email(987654)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_refused_invitation_enqueues_nothing(world, client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = invite(client_for(world.adam), role="owner")
    assert response.status_code == 403
    assert callbacks == []
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_worker_sends_the_invitation_email_after_commit(client_for, settings):
    """End to end: the API commits, on_commit enqueues on the configured broker (in-memory
    in the embedded default, Redis under REDIS_URL) and a worker thread sends the email."""
    from apps.core import worker
    from console.celery import app

    assert app.conf.broker_url == settings.CELERY_BROKER_URL, "an earlier test left the Celery app misconfigured"
    world = build_world()
    started_here = not worker.is_running()
    worker.start()
    try:
        response = invite(client_for(world.alice), email="late@example.com", role="viewer")
        assert response.status_code == 201
        accept_url = response.json()["accept_url"]

        deadline = time.monotonic() + 10
        sent = []
        while time.monotonic() < deadline:
            sent = [m for m in mail.outbox if accept_url in m.body]
            if sent:
                break
            time.sleep(0.05)
        assert len(sent) == 1, f"no invitation email within 10 s (outbox: {[m.subject for m in mail.outbox]})"
        [message] = sent
        assert message.to == ["late@example.com"]
        assert message.subject == "alice invited you to Alpha on Stratus"
        assert "join the organization 'Alpha' as viewer" in message.body
    finally:
        # Its periodic work (release sweeps, stale-run reaping) must not run beside later tests.
        if started_here:
            worker.stop()


@pytest.mark.django_db
def test_an_admin_resends_a_pending_invitation_with_the_same_link(
    world, client_for, created, django_capture_on_commit_callbacks
):
    from apps.tenancy.tasks import invitation_send_email

    # When an admin asks for a pending invitation to be sent again
    with (
        mock.patch.object(invitation_send_email, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client_for(world.adam).post(f"/api/v1/orgs/alpha/invitations/{created['id']}/resend")

    # Then its mail is queued after commit, the audit says who asked
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "pending"
    apply_async.assert_called_once()
    assert apply_async.call_args.kwargs["args"] == (created["id"],)
    assert AuditEvent.objects.filter(action="invitation.resend", actor=world.adam, org=world.alpha).count() == 1
    # and the mail carries the same link as the first one
    mail.outbox.clear()
    invitation_send_email(created["id"])
    [message] = mail.outbox
    assert message.to == ["newbie@example.com"]
    assert created["accept_url"] in message.body


@pytest.mark.django_db
def test_resending_is_refused_to_developers_and_for_a_revoked_invitation(world, client_for, created):
    refused = client_for(world.bob).post(f"/api/v1/orgs/alpha/invitations/{created['id']}/resend")
    assert refused.status_code == 403
    assert error(refused)["code"] == "permission_denied"

    client_for(world.alice).delete(f"/api/v1/orgs/alpha/invitations/{created['id']}/")
    again = client_for(world.alice).post(f"/api/v1/orgs/alpha/invitations/{created['id']}/resend")
    assert again.status_code == 409
    assert error(again) == {
        "code": "invitation_not_pending",
        "message": "The invitation is already revoked.",
        "fields": {},
    }
    assert not AuditEvent.objects.filter(action="invitation.resend").exists()
