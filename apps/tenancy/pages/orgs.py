"""An organization's overview and its members: invite by email with a role, change a role,
remove a member (or leave). The last owner cannot be removed or demoted: the service refuses
and its message is shown."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError, Forbidden
from apps.core.page_utils import or_404, refused
from apps.tenancy import invitation_services, org_services, permissions, selectors
from apps.tenancy.api import serializers as s
from apps.tenancy.models import Invitation, Organization
from apps.tenancy.pages.common import domain_errors, is_org_manager, org_context, org_or_404, org_reason, parse
from apps.tenancy.roles import Role

ROLE_CHOICES = [(r.value, r.label) for r in (Role.VIEWER, Role.DEVELOPER, Role.ADMIN, Role.OWNER)]


@login_required
@require_GET
def org_page(request: HttpRequest, org: str) -> HttpResponse:
    obj = org_or_404(request, org)
    projects = list(selectors.project_list(user=request.user, org=obj))
    permissions.prefetch_project_permissions(request.user, projects)
    rows = [{"project": p, "role": permissions.project_role(request.user, p)} for p in projects]
    counts = {
        "members": obj.memberships.count(),
        "teams": obj.teams.count(),
    }
    if is_org_manager(request, obj):
        counts["invitations"] = obj.invitations.filter(status=Invitation.Status.PENDING).count()
    return render(request, "tenancy/org.html", org_context(request, obj, "overview", projects=rows, counts=counts))


def _members_context(request: HttpRequest, org: Organization, **extra: Any) -> dict[str, Any]:
    context = org_context(request, org, "members", **extra)
    is_owner, is_manager = context["is_owner"], context["is_manager"]
    rows = []
    for membership in selectors.member_list(org=org):
        touches_owner = membership.role == Role.OWNER
        if not is_manager:
            reason = org_reason("Changing roles and removing members")  # said once above the table
        elif touches_owner and not is_owner:
            reason = "Only an owner can change or remove an owner"
        else:
            reason = ""
        rows.append(
            {
                "m": membership,
                "is_me": membership.user_id == request.user.pk,
                "can_change": not reason,
                "reason": reason,
            }
        )
    context.update(
        members=rows,
        # An admin may give every role but owner; an owner every role.
        role_choices=ROLE_CHOICES if is_owner else ROLE_CHOICES[:-1],
        invite_reason="" if is_manager else org_reason("Inviting members"),
    )
    context.setdefault("invite", {"values": {"role": Role.DEVELOPER}, "errors": {}})
    return context


@login_required
@require_GET
def members_page(request: HttpRequest, org: str) -> HttpResponse:
    obj = org_or_404(request, org)
    return render(request, "tenancy/members.html", _members_context(request, obj))


@login_required
@require_POST
def member_invite(request: HttpRequest, org: str) -> HttpResponse:
    """Invite by email: the same serializer and service as POST /api/v1/orgs/<org>/invitations/.
    A refusal or a bad field re-renders the members page with the form still filled in."""
    obj = org_or_404(request, org)
    back = f"/orgs/{obj.slug}/members/"
    values = {"email": request.POST.get("email", ""), "role": request.POST.get("role", "")}
    data, errors = parse(s.InvitationCreateSerializer, values)
    if not errors:
        try:
            invitation, _token = invitation_services.invitation_create(actor=request.user, org=obj, **data)
        except Forbidden as exc:  # a role that may not: said on the page, as any refusal
            return refused(request, exc, back)
        except DomainError as exc:
            errors = domain_errors(exc)
        else:
            messages.success(
                request,
                f"Invitation sent to {invitation.email} as {invitation.role}; it expires in "
                f"{(invitation.expires_at - invitation.created_at).days} days.",
            )
            return redirect(f"/orgs/{obj.slug}/members/")
    context = _members_context(request, obj, invite={"values": values, "errors": errors, "open": True})
    return render(request, "tenancy/members.html", context, status=400)


@login_required
@require_POST
def member_role(request: HttpRequest, org: str, username: str) -> HttpResponse:
    obj = org_or_404(request, org)
    membership = or_404(selectors.member_get, org=obj, username=username)
    back = f"/orgs/{obj.slug}/members/"
    data, errors = parse(s.RoleSerializer, {"role": request.POST.get("role", "")})
    if errors:
        messages.error(request, f"Role: {' '.join(errors.get('role', errors.get('general', [])))}")
        return redirect(back)
    old = membership.role
    try:
        org_services.member_change_role(actor=request.user, membership=membership, role=data["role"])
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"{username} is now {data['role']} (was {old}).")
    return redirect(back)


@login_required
@require_POST
def member_remove(request: HttpRequest, org: str, username: str) -> HttpResponse:
    obj = org_or_404(request, org)
    membership = or_404(selectors.member_get, org=obj, username=username)
    leaving = membership.user_id == request.user.pk
    try:
        org_services.member_remove(actor=request.user, membership=membership)
    except DomainError as exc:
        return refused(request, exc, f"/orgs/{obj.slug}/members/")
    if leaving:
        messages.success(request, f"You left {obj.name}.")
        return redirect("home")
    messages.success(request, f"{username} was removed from {obj.name}.")
    return redirect(f"/orgs/{obj.slug}/members/")


urlpatterns: list[URLPattern] = [
    path("orgs/<str:org>/", org_page, name="org"),
    path("orgs/<str:org>/members/", members_page, name="org-members"),
    path("orgs/<str:org>/members/invite", member_invite, name="org-member-invite"),
    path("orgs/<str:org>/members/<str:username>/role", member_role, name="org-member-role"),
    path("orgs/<str:org>/members/<str:username>/remove", member_remove, name="org-member-remove"),
]
