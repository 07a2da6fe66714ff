"""A project's environments (/projects/<id>/environments/): per environment its variables
(edited in place), its secrets (write-only: set, rotate, delete; a value is never rendered
nor sent back), protection and release approval, the execution backend, and the users and
teams granted the deploy right on it. Every action is the API's service with the API's
serializer; a refusal is a message on the page, a bad field an error beside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError, NotFound
from apps.core.page_utils import or_404, refused
from apps.tenancy import environment_services, permissions, roles, selectors
from apps.tenancy.api import serializers as s
from apps.tenancy.models import Environment, EnvironmentSecret, Project, Team
from apps.tenancy.pages.common import domain_errors, parse, project_or_404, project_reason


def _env_url(project: Project, env: Environment) -> str:
    return f"/projects/{project.pk}/environments/{env.name}"


def _context(request: HttpRequest, project: Project, failed: dict[str, Any] | None = None) -> dict[str, Any]:
    """``failed``: {"env": name, "form": which, "values": ..., "errors": ...} of an action
    that was refused, so its form shows the values and the errors beside the fields."""
    user = request.user
    environments = list(
        selectors.environment_list(project=project).prefetch_related(
            "variables",
            # Never the ciphertext: the page has no use for it.
            Prefetch("secrets", queryset=EnvironmentSecret.objects.only("name", "environment_id", "updated_at")),
        )
    )
    deployers = selectors.environment_deployers(environments=environments)
    perms = permissions.project_permissions(user, project)
    can_change = roles.CHANGE_PROJECT in perms
    can_grant = roles.MANAGE_ACCESS in perms
    # Org owners and admins deploy everywhere already: not offered.
    members = [
        m.user.username for m in selectors.member_list(org=project.org) if m.role not in permissions.ORG_MANAGERS
    ]
    teams = list(Team.objects.filter(org=project.org).order_by("slug").values_list("slug", "name"))
    cards = []
    for env in environments:
        configure = permissions.can_configure_environment(user, env)
        who = "an admin" if env.protected else "a developer"
        d = deployers[env.pk]
        cards.append(
            {
                "env": env,
                "url": _env_url(project, env),
                "variables": list(env.variables.all()),
                "secrets": list(env.secrets.all()),
                "deployers": d,
                "grantable": [(f"user:{u}", u) for u in members if u not in d["users"]]
                + [(f"team:{slug}", f"team {name}") for slug, name in teams if slug not in d["teams"]],
                "can_configure": configure,
                "configure_reason": ""
                if configure
                else f"Changing variables and secrets of {env.name} needs {who} role on the project",
                "failed": failed if failed and failed.get("env") == env.name else None,
            }
        )
    return {
        "project": project,
        "org": project.org,
        "section": "environments",
        "cards": cards,
        "can_change": can_change,
        "change_reason": "" if can_change else project_reason("Changing protection and backends"),
        "can_grant": can_grant,
        "grant_reason": "" if can_grant else project_reason("Granting deploy rights"),
        "backends": sorted(settings.STRATUS_EXECUTION_BACKENDS),
        "default_backend": settings.STRATUS_DEFAULT_BACKEND,
    }


@login_required
@require_GET
def environments_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    return render(request, "tenancy/environments.html", _context(request, project))


def _environment(request: HttpRequest, project_id: int, env: str) -> tuple[Project, Environment]:
    project = project_or_404(request, project_id)
    return project, or_404(selectors.environment_get, project=project, name=env)


def _failed(
    request: HttpRequest,
    project: Project,
    env: Environment,
    form: str,
    values: dict[str, Any],
    errors: dict[str, list[str]],
) -> HttpResponse:
    failed = {"env": env.name, "form": form, "values": values, "errors": errors}
    return render(request, "tenancy/environments.html", _context(request, project, failed), status=400)


def _back(project: Project, env: Environment) -> str:
    return f"/projects/{project.pk}/environments/#env-{env.name}"


@login_required
@require_POST
def environment_settings(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    """Protection, release approval and backend, as PATCH /api/v1/projects/<id>/environments/<env>/."""
    project, environment = _environment(request, project_id, env)
    values = {
        "protected": request.POST.get("protected") == "on",
        "requires_release_approval": request.POST.get("requires_release_approval") == "on",
        "execution_backend": request.POST.get("execution_backend", ""),
    }
    data, errors = parse(s.EnvironmentUpdateSerializer, values)
    if not errors:
        try:
            environment_services.environment_update(actor=request.user, environment=environment, **data)
        except DomainError as exc:
            if exc.fields:
                return _failed(request, project, environment, "settings", values, domain_errors(exc))
            return refused(request, exc, _back(project, environment))
        messages.success(request, f"{environment.name}: settings saved.")
        return redirect(_back(project, environment))
    return _failed(request, project, environment, "settings", values, errors)


def _name_value(request: HttpRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Validate a variable's or secret's name and value as the API's PUT does."""
    values = {"name": request.POST.get("name", "").strip(), "value": request.POST.get("value", "")}
    errors: dict[str, list[str]] = {}
    try:
        s.validate_var_name(values["name"])
    except s.serializers.ValidationError as exc:
        errors["name"] = [str(m) for m in exc.detail["name"]]  # type: ignore[call-overload]
    _, value_errors = parse(s.ValueSerializer, {"value": values["value"]})
    errors.update(value_errors)
    return values, errors


@login_required
@require_POST
def variable_set(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    project, environment = _environment(request, project_id, env)
    values, errors = _name_value(request)
    form = "var-" + values["name"] if request.POST.get("existing") else "var-new"
    if not errors:
        try:
            environment_services.environment_var_set(actor=request.user, environment=environment, **values)
        except DomainError as exc:
            if exc.fields:
                return _failed(request, project, environment, form, values, domain_errors(exc))
            return refused(request, exc, _back(project, environment))
        messages.success(request, f"{environment.name}: variable {values['name']} saved.")
        return redirect(_back(project, environment))
    return _failed(request, project, environment, form, values, errors)


def _delete_named(
    request: HttpRequest, project_id: int, env: str, delete: Callable[..., None], noun: str
) -> HttpResponse:
    """Delete a variable or a secret by name. A name that is not there is a message on the
    page (the environment is visible), not a 404."""
    project, environment = _environment(request, project_id, env)
    name = request.POST.get("name", "")
    try:
        delete(actor=request.user, environment=environment, name=name)
    except NotFound as exc:
        messages.error(request, exc.message)
        return redirect(_back(project, environment))
    except DomainError as exc:
        return refused(request, exc, _back(project, environment))
    messages.success(request, f"{environment.name}: {noun} {name} deleted.")
    return redirect(_back(project, environment))


@login_required
@require_POST
def variable_delete(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    return _delete_named(request, project_id, env, environment_services.environment_var_delete, "variable")


@login_required
@require_POST
def secret_set(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    """Set or rotate a secret. The value is never put back into the page, not even into the
    form of a failed attempt."""
    project, environment = _environment(request, project_id, env)
    values, errors = _name_value(request)
    form = "secret-" + values["name"] if request.POST.get("existing") else "secret-new"
    shown = {"name": values["name"]}  # never the value
    if not errors:
        try:
            environment_services.environment_secret_set(actor=request.user, environment=environment, **values)
        except DomainError as exc:
            if exc.fields:
                return _failed(request, project, environment, form, shown, domain_errors(exc))
            return refused(request, exc, _back(project, environment))
        verb = "rotated" if request.POST.get("existing") else "set"
        messages.success(request, f"{environment.name}: secret {values['name']} {verb}.")
        return redirect(_back(project, environment))
    return _failed(request, project, environment, form, shown, errors)


@login_required
@require_POST
def secret_delete(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    return _delete_named(request, project_id, env, environment_services.environment_secret_delete, "secret")


def _principal(project: Project, value: str) -> tuple[Any, Team | None]:
    kind, _, name = value.partition(":")
    if kind == "user" and name:
        return selectors.org_user_get(org=project.org, username=name), None
    if kind == "team" and name:
        return None, selectors.team_get(org=project.org, slug=name)
    raise DomainError("Pick a member or a team.", fields={"principal": ["Pick a member or a team."]})


@login_required
@require_POST
def deployer_add(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    project, environment = _environment(request, project_id, env)
    value = request.POST.get("principal", "")
    back = _back(project, environment)
    try:
        user, team = _principal(project, value)
        environment_services.environment_deployer_add(actor=request.user, environment=environment, user=user, team=team)
    except NotFound as exc:  # a name outside the org: as unknown as a name nobody has
        messages.error(request, exc.message)
        return redirect(back)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"{environment.name}: {value} may deploy here now.")
    return redirect(back)


@login_required
@require_POST
def deployer_remove(request: HttpRequest, project_id: int, env: str) -> HttpResponse:
    project, environment = _environment(request, project_id, env)
    value = request.POST.get("principal", "")
    back = _back(project, environment)
    try:
        user, team = _principal(project, value)
        environment_services.environment_deployer_remove(
            actor=request.user, environment=environment, user=user, team=team
        )
    except NotFound as exc:
        messages.error(request, exc.message)
        return redirect(back)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"{environment.name}: {value} no longer has the deploy right here.")
    return redirect(back)


E = "projects/<int:project_id>/environments/<str:env>"
urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/environments/", environments_page, name="project-environments"),
    path(f"{E}/settings", environment_settings, name="environment-settings-page"),
    path(f"{E}/vars/set", variable_set, name="environment-var-set"),
    path(f"{E}/vars/delete", variable_delete, name="environment-var-delete"),
    path(f"{E}/secrets/set", secret_set, name="environment-secret-set"),
    path(f"{E}/secrets/delete", secret_delete, name="environment-secret-delete"),
    path(f"{E}/deployers/add", deployer_add, name="environment-deployer-add"),
    path(f"{E}/deployers/remove", deployer_remove, name="environment-deployer-remove"),
]
