from celery import shared_task
from django.core.mail import send_mail

from apps.tenancy.invitation_services import invitation_link
from apps.tenancy.models import Invitation


@shared_task
def invitation_send_email(invitation_id: int) -> None:
    """Send the invitation link. Safe to run twice: a second email carries the same link,
    and nothing is sent for an invitation that is no longer pending."""
    invitation = Invitation.objects.select_related("org", "invited_by").filter(pk=invitation_id).first()
    if invitation is None or invitation.status != Invitation.Status.PENDING:
        return
    inviter = invitation.invited_by.get_username() if invitation.invited_by else "Someone"
    send_mail(
        subject=f"{inviter} invited you to {invitation.org.name} on Stratus",
        message=(
            f"{inviter} invited you to join the organization '{invitation.org.name}' as {invitation.role}.\n\n"
            f"Accept: {invitation_link(invitation)}\n\nThe link expires at {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )
