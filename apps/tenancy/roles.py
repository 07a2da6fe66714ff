"""Roles and the permission sets they carry.

An org membership has one role. Org owners and admins hold their role on every project of
the org; developers and viewers see only projects granted to them (directly or through a
team). A project grant gives a user or a team one role on one project, mirrored into
django-guardian object permissions on that project.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DEVELOPER = "developer", "Developer"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


PROJECT_ROLE_CHOICES = [(r.value, r.label) for r in (Role.VIEWER, Role.DEVELOPER, Role.ADMIN)]

RANK = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3, Role.OWNER: 4}


def rank(role: str | None) -> int:
    return RANK.get(role, 0) if role else 0  # type: ignore[call-overload]


def higher(a: str | None, b: str | None) -> str | None:
    return a if rank(a) >= rank(b) else b


# Project permission codenames (see Project.Meta.permissions).
VIEW_PROJECT = "view_project"
EDIT_CODE = "edit_code"
DEPLOY_UNPROTECTED = "deploy_unprotected"
DEPLOY_PROTECTED = "deploy_protected"
CHANGE_PROJECT = "change_project"
MANAGE_ACCESS = "manage_access"
DELETE_PROJECT = "delete_project"

# Environment permission: deploy into this one environment (granted per user or team on a
# protected environment, so a release manager can ship to prod without being a project admin).
DEPLOY_ENVIRONMENT = "deploy_environment"

_VIEWER = frozenset({VIEW_PROJECT})
_DEVELOPER = _VIEWER | {EDIT_CODE, DEPLOY_UNPROTECTED}
_ADMIN = _DEVELOPER | {DEPLOY_PROTECTED, CHANGE_PROJECT, MANAGE_ACCESS, DELETE_PROJECT}

PROJECT_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: _VIEWER,
    Role.DEVELOPER: _DEVELOPER,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _ADMIN,
}
ALL_PROJECT_PERMISSIONS = _ADMIN


def project_permissions_for(role: str | None) -> frozenset[str]:
    return PROJECT_PERMISSIONS.get(role, frozenset()) if role else frozenset()
