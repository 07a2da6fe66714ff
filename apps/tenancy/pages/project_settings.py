"""A project's settings (/projects/<id>/settings/): name and description, who holds which
role on it (project grants to users or teams: add, change, remove), and the danger zone:
delete the project after typing its slug."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError, NotFound
from apps.core.page_utils import or_404, refused
from apps.tenancy import permissions, project_services, roles, selectors
from apps.tenancy.api import serializers as s
from apps.tenancy.models import Project, Team
from apps.tenancy.pages.common import domain_errors, parse, project_or_404, project_reason
from apps.tenancy.roles import PROJECT_ROLE_CHOICES, Role


def _context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    perms = permissions.project_permissions(request.user, project)
    can_manage = roles.MANAGE_ACCESS in perms
    can_change = roles.CHANGE_PROJECT in perms
    can_delete = roles.DELETE_PROJECT in perms
    grants = list(selectors.grant_list(project=project).order_by("team__slug", "user__username"))
    granted_users = {g.user_id for g in grants if g.user_id}
    granted_teams = {g.team_id for g in grants if g.team_id}
    # Who can still be granted: members without a grant (owners and admins of the org hold
    # their role on every project already) and teams without one.
    members = list(selectors.member_list(org=project.org))
    candidates = [
        (f"user:{m.user.username}", f"{m.user.username} ({m.role} in the org)")
        for m in members
        if m.user_id not in granted_users and m.role not in permissions.ORG_MANAGERS
    ] + [
        (f"team:{t.slug}", f"team {t.name}")
        for t in Team.objects.filter(org=project.org).order_by("slug")
        if t.pk not in granted_teams
    ]
    for grant in grants:
        grant.principal = f"user:{grant.user.username}" if grant.user else f"team:{grant.team.slug}"  # type: ignore[union-attr, attr-defined]
    context = {
        "project": project,
        "org": project.org,
        "section": "settings",
        "grants": grants,
        "org_managers": [m for m in members if m.role in permissions.ORG_MANAGERS],
        "candidates": candidates,
        "role_choices": PROJECT_ROLE_CHOICES,
        "can_manage": can_manage,
        "manage_reason": "" if can_manage else project_reason("Changing who has which role"),
        "can_change": can_change,
        "change_reason": "" if can_change else project_reason("Changing the project's name and description"),
        "can_delete": can_delete,
        "delete_reason": "" if can_delete else project_reason("Deleting the project"),
        **extra,
    }
    context.setdefault("grant_form", {"values": {"role": Role.DEVELOPER}, "errors": {}})
    context.setdefault("general", {"values": {"name": project.name, "description": project.description}, "errors": {}})
    context.setdefault("delete", {"values": {}, "errors": {}})
    return context


@login_required
@require_GET
def settings_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    return render(request, "tenancy/project_settings.html", _context(request, project))


def _back(project: Project) -> str:
    return f"/projects/{project.pk}/settings/"


@login_required
@require_POST
def project_general(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    values = {"name": request.POST.get("name", "").strip(), "description": request.POST.get("description", "")}
    data, errors = parse(s.ProjectUpdateSerializer, values)
    if not errors:
        try:
            project_services.project_update(actor=request.user, project=project, **data)
        except DomainError as exc:
            if not exc.fields:
                return refused(request, exc, _back(project))
            errors = domain_errors(exc)
        else:
            messages.success(request, "Project saved.")
            return redirect(_back(project))
    context = _context(request, project, general={"values": values, "errors": errors})
    return render(request, "tenancy/project_settings.html", context, status=400)


@login_required
@require_POST
def grant_add(request: HttpRequest, project_id: int) -> HttpResponse:
    """Grant a user or a team a role (POST /api/v1/projects/<id>/grants/). The principal comes
    as ``user:<name>`` or ``team:<slug>``; a name outside the org reads as not found."""
    project = project_or_404(request, project_id)
    values = {"principal": request.POST.get("principal", ""), "role": request.POST.get("role", "")}
    kind, _, name = values["principal"].partition(":")
    body = {kind: name, "role": values["role"]} if kind in ("user", "team") and name else {"role": values["role"]}
    data, errors = parse(s.GrantCreateSerializer, body)
    if "general" in errors:  # "Give exactly one of 'user' or 'team'." belongs to the principal field
        errors["principal"] = errors.pop("general")
    if not errors:
        try:
            if data.get("user"):
                user, team = selectors.org_user_get(org=project.org, username=data["user"]), None
            else:
                user, team = None, selectors.team_get(org=project.org, slug=data["team"])
            grant = project_services.project_grant_set(
                actor=request.user, project=project, role=data["role"], user=user, team=team
            )
        except NotFound as exc:
            errors = {"principal": [exc.message]}
        except DomainError as exc:
            if not exc.fields:
                return refused(request, exc, _back(project))
            errors = domain_errors(exc)
            if "user" in errors:
                errors["principal"] = errors.pop("user")
        else:
            who = grant.user.username if grant.user else f"team {grant.team.slug}"  # type: ignore[union-attr]
            messages.success(request, f"{who} is now {grant.role} on {project.name}.")
            return redirect(_back(project))
    context = _context(request, project, grant_form={"values": values, "errors": errors})
    return render(request, "tenancy/project_settings.html", context, status=400)


@login_required
@require_POST
def grant_role(request: HttpRequest, project_id: int, grant_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    grant = or_404(selectors.grant_get, project=project, grant_id=grant_id)
    data, errors = parse(s.GrantUpdateSerializer, {"role": request.POST.get("role", "")})
    if errors:
        messages.error(request, "Role: " + " ".join(m for ms in errors.values() for m in ms))
        return redirect(_back(project))
    try:
        project_services.project_grant_set(
            actor=request.user, project=project, role=data["role"], user=grant.user, team=grant.team
        )
    except DomainError as exc:
        return refused(request, exc, _back(project))
    who = grant.user.username if grant.user else f"team {grant.team.slug}"  # type: ignore[union-attr]
    messages.success(request, f"{who} is now {data['role']} on {project.name} (was {grant.role}).")
    return redirect(_back(project))


@login_required
@require_POST
def grant_remove(request: HttpRequest, project_id: int, grant_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    grant = or_404(selectors.grant_get, project=project, grant_id=grant_id)
    try:
        project_services.project_grant_remove(actor=request.user, grant=grant)
    except DomainError as exc:
        return refused(request, exc, _back(project))
    who = grant.user.username if grant.user else f"team {grant.team.slug}"  # type: ignore[union-attr]
    messages.success(request, f"{who} no longer has a role of its own on {project.name}.")
    return redirect(_back(project))


@login_required
@require_POST
def project_delete(request: HttpRequest, project_id: int) -> HttpResponse:
    """Delete after the slug was typed: a mismatch is an error beside the field, and the
    service still checks the right (a forged POST with the right slug is refused)."""
    project = project_or_404(request, project_id)
    typed = request.POST.get("confirm", "").strip()
    if typed != project.slug:
        errors = {"confirm": [f"Type {project.slug} to confirm."]}
        context = _context(request, project, delete={"values": {"confirm": typed}, "errors": errors})
        return render(request, "tenancy/project_settings.html", context, status=400)
    org, name = project.org, project.name
    try:
        project_services.project_delete(actor=request.user, project=project)
    except DomainError as exc:
        return refused(request, exc, _back(project))
    messages.success(request, f"Project {name} deleted, with its environments, functions and grants.")
    return redirect(f"/orgs/{org.slug}/")


P = "projects/<int:project_id>/settings"
urlpatterns: list[URLPattern] = [
    path(f"{P}/", settings_page, name="project-settings"),
    path(f"{P}/general", project_general, name="project-settings-general"),
    path(f"{P}/grants/add", grant_add, name="project-grant-add"),
    path(f"{P}/grants/<int:grant_id>/role", grant_role, name="project-grant-role"),
    path(f"{P}/grants/<int:grant_id>/remove", grant_remove, name="project-grant-remove"),
    path(f"{P}/delete", project_delete, name="project-delete-page"),
]
