"""Pending invitations of an organization (resend, revoke) and the page the emailed link
opens (``{PUBLIC_URL}/invitations/accept?token=...``): a signed-in invitee accepts; a visitor
without an account creates one (username and password) and accepts in one step; a visitor
with an account signs in and comes back. After accepting they land on the organization."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.errors import DomainError
from apps.core.page_utils import or_404, refused
from apps.tenancy import invitation_services, org_services, permissions, selectors
from apps.tenancy.models import Invitation, Organization
from apps.tenancy.pages.common import org_context, org_or_404, org_reason

User = get_user_model()


def _invitations_context(request: HttpRequest, org: Organization) -> dict[str, Any]:
    invitations = list(selectors.invitation_list(org=org))
    pending = [i for i in invitations if i.status == Invitation.Status.PENDING]
    for invitation in pending:
        invitation.base_url = f"/orgs/{org.slug}/invitations/{invitation.pk}"  # type: ignore[attr-defined]
    past = [i for i in invitations if i.status != Invitation.Status.PENDING][:50]
    return org_context(request, org, "invitations", pending=pending, past=past)


@login_required
@require_GET
def invitations_page(request: HttpRequest, org: str) -> HttpResponse:
    obj = org_or_404(request, org)
    if permissions.org_role(request.user, obj) not in permissions.ORG_MANAGERS:
        # As GET /api/v1/orgs/<org>/invitations/: members who do not manage the org are refused.
        context = org_context(request, obj, "invitations", refusal=org_reason("Seeing invitations"))
        return render(request, "tenancy/invitations.html", context, status=403)
    return render(request, "tenancy/invitations.html", _invitations_context(request, obj))


@login_required
@require_POST
def invitation_resend_action(request: HttpRequest, org: str, invitation_id: int) -> HttpResponse:
    obj = org_or_404(request, org)
    invitation = or_404(selectors.invitation_get, org=obj, invitation_id=invitation_id)
    back = f"/orgs/{obj.slug}/invitations/"
    try:
        invitation_services.invitation_resend(actor=request.user, invitation=invitation)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"Invitation sent again to {invitation.email}.")
    return redirect(back)


@login_required
@require_POST
def invitation_revoke_action(request: HttpRequest, org: str, invitation_id: int) -> HttpResponse:
    obj = org_or_404(request, org)
    invitation = or_404(selectors.invitation_get, org=obj, invitation_id=invitation_id)
    back = f"/orgs/{obj.slug}/invitations/"
    try:
        invitation_services.invitation_revoke(actor=request.user, invitation=invitation)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"Invitation of {invitation.email} revoked: its link no longer works.")
    return redirect(back)


# --- the link in the email -------------------------------------------------------------------


def _accept_context(request: HttpRequest, token: str, **extra: Any) -> dict[str, Any]:
    invitation = selectors.invitation_from_token(token=token)
    problem = ""
    if invitation is None:
        problem = "This invitation link is not valid."
    elif invitation.status == Invitation.Status.ACCEPTED:
        problem = "This invitation has already been used."
    elif invitation.status == Invitation.Status.REVOKED:
        problem = "This invitation was revoked."
    elif invitation.is_expired():
        problem = "This invitation has expired; ask for a new one."
    login_url = "/login/?" + urlencode({"next": "/invitations/accept?" + urlencode({"token": token})})
    return {
        "token": token,
        "invitation": invitation,
        "problem": problem,
        "login_url": login_url,
        "signup": {"values": {}, "errors": {}},
        **extra,
    }


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept_page(request: HttpRequest) -> HttpResponse:
    token = (request.POST.get("token") if request.method == "POST" else request.GET.get("token")) or ""
    if request.method == "GET":
        context = _accept_context(request, token)
        return render(request, "tenancy/invitation_accept.html", context, status=410 if context["problem"] else 200)
    if request.user.is_authenticated:
        return _accept_signed_in(request, token)
    return _accept_with_new_account(request, token)


def _accept_signed_in(request: HttpRequest, token: str) -> HttpResponse:
    try:
        membership = invitation_services.invitation_accept(user=request.user, token=token)
    except DomainError as exc:
        context = _accept_context(request, token, error=exc.message)
        return render(request, "tenancy/invitation_accept.html", context, status=exc.status_code)
    permissions.forget_cached_permissions(request.user)
    messages.success(request, f"Welcome to {membership.org.name}: you are {membership.role}.")
    return redirect(f"/orgs/{membership.org.slug}/")


def _accept_with_new_account(request: HttpRequest, token: str) -> HttpResponse:
    """Create the account and accept in one transaction: a refused acceptance (revoked,
    expired, used) leaves no account behind. The email is the invitation's, so the service's
    email check holds by construction."""
    invitation = selectors.invitation_from_token(token=token)
    values = {"username": request.POST.get("username", "").strip()}
    password, again = request.POST.get("password", ""), request.POST.get("password2", "")
    errors: dict[str, list[str]] = {}
    if invitation is None:
        context = _accept_context(request, token)
        return render(request, "tenancy/invitation_accept.html", context, status=404)
    if not values["username"]:
        errors["username"] = ["Choose a username."]
    elif len(values["username"]) > 150 or not all(c.isalnum() or c in "@.+-_" for c in values["username"]):
        errors["username"] = ["Use at most 150 letters, digits and @ . + - _ characters."]
    if password != again:
        errors["password2"] = ["The two passwords differ."]
    else:
        try:
            validate_password(password, User(username=values["username"], email=invitation.email))
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if not errors:
        try:
            with transaction.atomic():
                user = org_services.user_create(username=values["username"], email=invitation.email, password=password)
                membership = invitation_services.invitation_accept(user=user, token=token)
        except DomainError as exc:
            if exc.code == "already_exists":
                errors["username"] = [f"{exc.message} Sign in instead, or pick another name."]
            else:
                context = _accept_context(request, token, error=exc.message)
                return render(request, "tenancy/invitation_accept.html", context, status=exc.status_code)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to {membership.org.name}, {user.username}: you are {membership.role}.")
            return redirect(f"/orgs/{membership.org.slug}/")
    context = _accept_context(request, token, signup={"values": values, "errors": errors})
    return render(request, "tenancy/invitation_accept.html", context, status=400)


INV = "orgs/<str:org>/invitations/<int:invitation_id>"
urlpatterns: list[URLPattern] = [
    path("orgs/<str:org>/invitations/", invitations_page, name="org-invitations"),
    path(f"{INV}/resend", invitation_resend_action, name="org-invitation-resend"),
    path(f"{INV}/revoke", invitation_revoke_action, name="org-invitation-revoke"),
    path("invitations/accept", invitation_accept_page, name="invitation-accept-page"),
]
