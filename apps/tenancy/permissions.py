"""Who may do what. Every check used by services and selectors lives here.

Two layers:
- org role (Membership.role): owners and admins act on every project of their org;
- project grants, mirrored as django-guardian object permissions on the Project (user
  permissions for direct grants, group permissions for team grants).
A user who is not a member of a project's org holds nothing on it, whatever rows exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_objects_for_user

from apps.core.errors import Forbidden
from apps.tenancy import roles
from apps.tenancy.models import Environment, Membership, Organization, Project
from apps.tenancy.roles import Role

ORG_MANAGERS = (Role.ADMIN, Role.OWNER)


def org_role(user: Any, org: Organization) -> str | None:
    if not user.is_authenticated:
        return None
    cache = _cache(user, "_stratus_org_roles")
    if org.pk not in cache:  # keyed by org id, so prefetch_project_permissions can fill it
        cache[org.pk] = Membership.objects.filter(user=user, org=org).values_list("role", flat=True).first()
    return cache[org.pk]


def project_permissions(user: Any, project: Project) -> frozenset[str]:
    """The project permission codenames ``user`` holds on ``project``."""
    role = org_role(user, project.org)
    if role is None:
        return frozenset()
    if role in ORG_MANAGERS:
        return roles.ALL_PROJECT_PERMISSIONS
    # Guardian's checker unions the user's own and their groups' (teams') permissions.
    return frozenset(_checker(user).get_perms(project)) & roles.ALL_PROJECT_PERMISSIONS


def project_role(user: Any, project: Project) -> str | None:
    """The effective role shown in the API: the highest of org role (for admins/owners),
    direct grant and team grants."""
    role = org_role(user, project.org)
    if role is None:
        return None
    if role in ORG_MANAGERS:
        return role
    perms = project_permissions(user, project)
    for candidate in (Role.ADMIN, Role.DEVELOPER, Role.VIEWER):
        if roles.project_permissions_for(candidate) <= perms:
            return str(candidate)
    return None


def can_deploy(user: Any, environment: Environment) -> bool:
    perms = project_permissions(user, environment.project)
    if roles.VIEW_PROJECT not in perms:
        return False
    if not environment.protected:
        return roles.DEPLOY_UNPROTECTED in perms
    return roles.DEPLOY_PROTECTED in perms or _checker(user).has_perm(roles.DEPLOY_ENVIRONMENT, environment)


def can_configure_environment(user: Any, environment: Environment) -> bool:
    """Variables and secrets: developers on unprotected environments, admins on protected."""
    perms = project_permissions(user, environment.project)
    needed = roles.CHANGE_PROJECT if environment.protected else roles.DEPLOY_UNPROTECTED
    return needed in perms


# --- raising helpers used by services --------------------------------------------------------


def require_org_role(user: Any, org: Organization, minimum: str, action: str) -> str:
    role = org_role(user, org)
    if roles.rank(role) < roles.rank(minimum):
        raise Forbidden(f"{action} needs the {minimum} role (or higher) in organization '{org.slug}'.")
    assert role is not None
    return role


def require_project_permission(user: Any, project: Project, perm: str, action: str) -> None:
    if perm not in project_permissions(user, project):
        raise Forbidden(f"{action} needs the '{perm}' permission on project '{project}'.")


def require_deploy(user: Any, environment: Environment) -> None:
    if not can_deploy(user, environment):
        kind = "protected" if environment.protected else "unprotected"
        raise Forbidden(f"Deploying to {kind} environment '{environment.name}' needs the deploy right on it.")


# --- querysets -------------------------------------------------------------------------------


def member_org_ids(user: Any) -> QuerySet[Membership, Any]:
    return Membership.objects.filter(user=user).values("org_id")


def visible_projects(user: Any) -> QuerySet[Project]:
    """Every project the user may see: all projects of orgs they manage, plus those granted
    to them or their teams, and only inside orgs they still belong to."""
    if not user.is_authenticated:
        return Project.objects.none()
    managed = Membership.objects.filter(user=user, role__in=ORG_MANAGERS).values("org_id")
    granted = get_objects_for_user(
        user, "tenancy.view_project", klass=Project, with_superuser=False, accept_global_perms=False
    ).values("pk")
    return Project.objects.filter(Q(org_id__in=managed) | Q(pk__in=granted), org_id__in=member_org_ids(user))


def _cache(user: Any, attr: str) -> dict[Any, Any]:
    cache = getattr(user, attr, None)
    if cache is None:
        cache = {}
        setattr(user, attr, cache)
    return cache


def _checker(user: Any) -> ObjectPermissionChecker:
    checker = getattr(user, "_stratus_perm_checker", None)
    if checker is None:
        checker = ObjectPermissionChecker(user)
        user._stratus_perm_checker = checker
    return checker


def prefetch_project_permissions(user: Any, projects: list[Project]) -> None:
    """Load org roles and guardian permissions for a page of projects in two queries."""
    if not user.is_authenticated or not projects:
        return
    cache = _cache(user, "_stratus_org_roles")
    for org_id, role in Membership.objects.filter(user=user, org_id__in={p.org_id for p in projects}).values_list(
        "org_id", "role"
    ):
        cache[org_id] = role
    for p in projects:
        cache.setdefault(p.org_id, None)
    _checker(user).prefetch_perms(projects)  # type: ignore[arg-type]  # any iterable of objects works


def forget_cached_permissions(user: Any) -> None:
    """Drop per-request caches after a write that changes this user's own rights."""
    for attr in _CACHES:
        if hasattr(user, attr):
            delattr(user, attr)


_CACHES = ("_stratus_org_roles", "_stratus_perm_checker")


# --- a role held in memory -------------------------------------------------------------------
# Stratus acts on its own too: a pipeline creates functions and versions and deploys, as the
# built-in user ``stratus:pipeline``, which is a member of no org. What it may do is decided
# per task by code and must never reach the database (a membership or a grant would show
# in the org, and outlive the task). So it holds a role in the two caches every check above
# reads: the services' own checks see it, unchanged, and nothing else of the user's changes.


class _HeldRole:
    """In place of guardian's checker: ``role``'s permissions on one project, and nothing on
    any other object (no per-environment deploy grant either: a protected environment needs
    a person who holds one)."""

    def __init__(self, project_id: int, role: str) -> None:
        self.project_id = project_id
        self.perms = sorted(roles.project_permissions_for(role))

    def get_perms(self, obj: Any) -> list[str]:
        return list(self.perms) if isinstance(obj, Project) and obj.pk == self.project_id else []

    def has_perm(self, perm: str, obj: Any) -> bool:
        return False

    def prefetch_perms(self, objects: Any) -> bool:
        return True


def hold_project_role(user: Any, project: Project, role: str) -> None:
    """From now on this user object, in memory only, holds ``role`` (viewer, developer or
    admin) on ``project`` and nothing on the org's other projects. In the org it counts as an
    ordinary member (developer; viewer for the viewer role), never a manager: a manager's
    role reaches every project of the org. Other orgs: what its memberships say (Stratus's
    own users have none)."""
    if role not in (Role.VIEWER, Role.DEVELOPER, Role.ADMIN):
        raise ValueError(f"a project role is viewer, developer or admin, not {role!r}")
    member = Role.VIEWER if role == Role.VIEWER else Role.DEVELOPER
    user._stratus_org_roles = {project.org_id: member}
    user._stratus_perm_checker = _HeldRole(project.pk, role)


@contextlib.contextmanager
def acting_as(user: Any, project: Project, role: str) -> Iterator[Any]:
    """Within the block ``user`` acts with ``role`` on ``project`` (``hold_project_role``);
    after it, it holds what it held before. For the one call that needs more than the actor
    holds, e.g. the pipeline (a developer) creating a branch's preview environment, which
    takes a project admin."""
    saved = {attr: getattr(user, attr) for attr in _CACHES if hasattr(user, attr)}
    hold_project_role(user, project, role)
    try:
        yield user
    finally:
        forget_cached_permissions(user)
        for attr, value in saved.items():
            setattr(user, attr, value)
