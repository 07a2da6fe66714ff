"""Writes for invitations: create, revoke, resend, accept, and the signed link token.

Each function is one domain operation: it checks the actor's rights, changes rows inside
one transaction, records an audit event in that same transaction, and schedules side
effects only after commit."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import Conflict, Forbidden, Gone, NotFound
from apps.core.outbox import enqueue_after_commit
from apps.tenancy import permissions
from apps.tenancy.models import Invitation, Membership, Organization
from apps.tenancy.roles import Role

_INVITATION_SALT = "stratus.invitation"


def invitation_token(invitation: Invitation) -> str:
    """The link token: signed (id, nonce). Deterministic, so the email task can rebuild it
    from the id alone; revoking rotates the nonce and kills every copy."""
    # Signer, not signing.dumps: dumps adds a timestamp, so the emailed link would differ
    # from the one shown at creation. Expiry is the row's expires_at, not the signature's age.
    return signing.Signer(salt=_INVITATION_SALT).sign_object({"i": invitation.pk, "n": invitation.nonce}, compress=True)


def invitation_link(invitation: Invitation) -> str:
    return f"{settings.PUBLIC_URL}/invitations/accept?token={invitation_token(invitation)}"


@transaction.atomic
def invitation_create(*, actor: Actor, org: Organization, email: str, role: str) -> tuple[Invitation, str]:
    actor_role = permissions.require_org_role(actor, org, Role.ADMIN, "Inviting members")
    if role == Role.OWNER and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can invite an owner.")
    email = email.strip().lower()
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise Conflict(f"'{email}' is already a member of '{org.slug}'.", code="already_member")
    invitation = Invitation.objects.create(
        org=org,
        email=email,
        role=role,
        nonce=secrets.token_urlsafe(24),
        invited_by=signed_in(actor),
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS),
    )
    audit_record(
        actor=actor, org=org, action="invitation.create", target=invitation, changes={"email": email, "role": role}
    )
    from apps.tenancy.tasks import invitation_send_email

    enqueue_after_commit(invitation_send_email, invitation.pk)
    return invitation, invitation_token(invitation)


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: Invitation) -> Invitation:
    permissions.require_org_role(actor, invitation.org, Role.ADMIN, "Revoking invitations")
    if invitation.status != Invitation.Status.PENDING:
        raise Conflict(f"The invitation is already {invitation.status}.", code="invitation_not_pending")
    invitation.status = Invitation.Status.REVOKED
    invitation.nonce = secrets.token_urlsafe(24)
    invitation.save(update_fields=["status", "nonce"])
    audit_record(actor=actor, org=invitation.org, action="invitation.revoke", target=invitation)
    return invitation


def invitation_token_read(token: str) -> tuple[int, str]:
    """(invitation id, nonce) of a link token; NotFound when it is not one of ours. The nonce
    still has to match the row's (revoking rotates it)."""
    try:
        if token.count(":") == 2:  # payload:timestamp:signature, issued by signing.dumps before
            data = signing.loads(token, salt=_INVITATION_SALT)
        else:
            data = signing.Signer(salt=_INVITATION_SALT).unsign_object(token)
        return int(data["i"]), str(data["n"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise NotFound("This invitation link is not valid.", code="invitation_invalid") from None


@transaction.atomic
def invitation_resend(*, actor: Actor, invitation: Invitation) -> Invitation:
    """Send the invitation's email again, with the same link (the token is rebuilt from the
    row). Admins only, and only a pending invitation that has not expired: an expired one is
    revoked and sent anew, so its old link never comes back to life."""
    permissions.require_org_role(actor, invitation.org, Role.ADMIN, "Resending invitations")
    if invitation.status != Invitation.Status.PENDING:
        raise Conflict(f"The invitation is already {invitation.status}.", code="invitation_not_pending")
    if invitation.is_expired():
        raise Conflict("This invitation has expired; revoke it and invite again.", code="invitation_expired")
    audit_record(actor=actor, org=invitation.org, action="invitation.resend", target=invitation)
    from apps.tenancy.tasks import invitation_send_email

    enqueue_after_commit(invitation_send_email, invitation.pk)
    return invitation


@transaction.atomic
def invitation_accept(*, user: Actor, token: str) -> Membership:
    user = signed_in(user)
    invitation_id, nonce = invitation_token_read(token)
    # Lock the row: two accepts of the same link race to one membership.
    invitation = Invitation.objects.select_for_update().filter(pk=invitation_id).select_related("org").first()
    if invitation is None or not secrets.compare_digest(invitation.nonce, nonce):
        raise NotFound("This invitation link is not valid.", code="invitation_invalid")
    if invitation.status == Invitation.Status.ACCEPTED:
        raise Gone("This invitation has already been used.", code="invitation_used")
    if invitation.status == Invitation.Status.REVOKED:
        raise Gone("This invitation was revoked.", code="invitation_revoked")
    if invitation.is_expired():
        raise Gone("This invitation has expired; ask for a new one.", code="invitation_expired")
    if (user.email or "").strip().lower() != invitation.email:
        raise Forbidden("This invitation was sent to another email address.", code="invitation_email_mismatch")
    if Membership.objects.filter(org=invitation.org, user=user).exists():
        raise Conflict(f"You are already a member of '{invitation.org.slug}'.", code="already_member")
    membership = Membership.objects.create(user=user, org=invitation.org, role=invitation.role)
    invitation.status = Invitation.Status.ACCEPTED
    invitation.accepted_by = user
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_by", "accepted_at"])
    audit_record(
        actor=user, org=invitation.org, action="invitation.accept", target=invitation, changes={"role": invitation.role}
    )
    return membership
