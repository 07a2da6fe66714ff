"""An organization's teams: create, rename, delete, add and remove members. Teams get roles
on projects (project settings) and deploy rights on environments."""

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
from apps.tenancy import selectors, team_services
from apps.tenancy.api import serializers as s
from apps.tenancy.models import Organization
from apps.tenancy.pages.common import domain_errors, org_context, org_or_404, org_reason, parse


def _teams_context(request: HttpRequest, org: Organization, **extra: Any) -> dict[str, Any]:
    context = org_context(request, org, "teams", **extra)
    members = [m.user.username for m in selectors.member_list(org=org)]
    rename = extra.get("rename", {})
    teams = []
    for team in selectors.team_list(org=org):
        in_team = [u.username for u in team.group.user_set.all()]
        teams.append(
            {
                "team": team,
                "members": in_team,
                "addable": [m for m in members if m not in in_team],
                "rename": rename.get(team.slug),  # a failed rename: its value and errors
            }
        )
    context.update(
        teams=teams,
        reason="" if context["is_manager"] else org_reason("Managing teams"),
    )
    context.setdefault("create", {"values": {}, "errors": {}})
    return context


@login_required
@require_GET
def teams_page(request: HttpRequest, org: str) -> HttpResponse:
    return render(request, "tenancy/teams.html", _teams_context(request, org_or_404(request, org)))


@login_required
@require_POST
def team_create(request: HttpRequest, org: str) -> HttpResponse:
    obj = org_or_404(request, org)
    back = f"/orgs/{obj.slug}/teams/"
    values = {"slug": request.POST.get("slug", "").strip(), "name": request.POST.get("name", "").strip()}
    data, errors = parse(s.TeamCreateSerializer, values)
    if not errors:
        try:
            team = team_services.team_create(actor=request.user, org=obj, **data)
        except Forbidden as exc:  # a role that may not: said on the page, as any refusal
            return refused(request, exc, back)
        except DomainError as exc:
            errors = domain_errors(exc)
        else:
            messages.success(request, f"Team {team.name} created.")
            return redirect(f"/orgs/{obj.slug}/teams/#team-{team.slug}")
    context = _teams_context(request, obj, create={"values": values, "errors": errors})
    return render(request, "tenancy/teams.html", context, status=400)


@login_required
@require_POST
def team_rename(request: HttpRequest, org: str, team: str) -> HttpResponse:
    obj = org_or_404(request, org)
    found = or_404(selectors.team_get, org=obj, slug=team)
    back = f"/orgs/{obj.slug}/teams/#team-{found.slug}"
    values = {"name": request.POST.get("name", "").strip()}
    data, errors = parse(s.OrgUpdateSerializer, values)  # the API's PATCH of a team uses it too
    if not errors and not data.get("name"):
        errors = {"name": ["This field may not be blank."]}
    if not errors:
        try:
            team_services.team_update(actor=request.user, team=found, **data)
        except Forbidden as exc:  # a role that may not: said on the page, as any refusal
            return refused(request, exc, back)
        except DomainError as exc:
            errors = domain_errors(exc)
        else:
            messages.success(request, f"Team {found.slug} renamed to {data['name']}.")
            return redirect(f"/orgs/{obj.slug}/teams/#team-{found.slug}")
    context = _teams_context(request, obj, rename={found.slug: {"values": values, "errors": errors}})
    return render(request, "tenancy/teams.html", context, status=400)


@login_required
@require_POST
def team_delete(request: HttpRequest, org: str, team: str) -> HttpResponse:
    obj = org_or_404(request, org)
    found = or_404(selectors.team_get, org=obj, slug=team)
    try:
        team_services.team_delete(actor=request.user, team=found)
    except DomainError as exc:
        return refused(request, exc, f"/orgs/{obj.slug}/teams/")
    messages.success(request, f"Team {found.name} deleted; its project grants and deploy rights went with it.")
    return redirect(f"/orgs/{obj.slug}/teams/")


@login_required
@require_POST
def team_member_add(request: HttpRequest, org: str, team: str) -> HttpResponse:
    obj = org_or_404(request, org)
    found = or_404(selectors.team_get, org=obj, slug=team)
    back = f"/orgs/{obj.slug}/teams/#team-{found.slug}"
    data, errors = parse(s.UsernameSerializer, {"user": request.POST.get("user", "")})
    if errors:
        messages.error(request, " ".join(m for ms in errors.values() for m in ms))
        return redirect(back)
    try:
        # A name outside the org reads as "not found", as in the API.
        user = selectors.org_user_get(org=obj, username=data["user"])
        team_services.team_member_add(actor=request.user, team=found, user=user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, f"{data['user']} added to {found.name}.")
    return redirect(back)


@login_required
@require_POST
def team_member_remove(request: HttpRequest, org: str, team: str, username: str) -> HttpResponse:
    obj = org_or_404(request, org)
    found = or_404(selectors.team_get, org=obj, slug=team)
    back = f"/orgs/{obj.slug}/teams/#team-{found.slug}"
    user = or_404(selectors.org_user_get, org=obj, username=username)
    try:
        team_services.team_member_remove(actor=request.user, team=found, user=user)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"{username} removed from {found.name}.")
    return redirect(back)


urlpatterns: list[URLPattern] = [
    path("orgs/<str:org>/teams/", teams_page, name="org-teams"),
    path("orgs/<str:org>/teams/new", team_create, name="org-team-create"),
    path("orgs/<str:org>/teams/<str:team>/rename", team_rename, name="org-team-rename"),
    path("orgs/<str:org>/teams/<str:team>/delete", team_delete, name="org-team-delete"),
    path("orgs/<str:org>/teams/<str:team>/members/add", team_member_add, name="org-team-member-add"),
    path(
        "orgs/<str:org>/teams/<str:team>/members/<str:username>/remove",
        team_member_remove,
        name="org-team-member-remove",
    ),
]
