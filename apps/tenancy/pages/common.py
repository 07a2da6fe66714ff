"""What the tenancy pages share: reading the org or project through the caller-scoped
selectors (another org's object is a 404), validating a form with the API's serializer, and
the reasons shown beside a control the viewer's role cannot use."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework import serializers

from apps.core.errors import DomainError
from apps.core.page_utils import domain_field_errors, field_errors, or_404
from apps.tenancy import permissions, selectors
from apps.tenancy.models import Organization, Project
from apps.tenancy.roles import Role

PAGE_SIZE = 50

# Visible reasons beside disabled controls (console-design.md: disabled action with a reason).
NEEDS_ORG_ADMIN = "{what} needs an owner or admin role"
NEEDS_PROJECT_ADMIN = "{what} needs an admin role on the project"


def org_reason(what: str) -> str:
    return NEEDS_ORG_ADMIN.format(what=what)


def project_reason(what: str) -> str:
    return NEEDS_PROJECT_ADMIN.format(what=what)


def org_or_404(request: HttpRequest, slug: str) -> Organization:
    return or_404(selectors.org_get, user=request.user, slug=slug)


def project_or_404(request: HttpRequest, project_id: int) -> Project:
    return or_404(selectors.project_get, user=request.user, project_id=project_id)


def is_org_manager(request: HttpRequest, org: Organization) -> bool:
    return permissions.org_role(request.user, org) in permissions.ORG_MANAGERS


def org_context(request: HttpRequest, org: Organization, section: str, **extra: Any) -> dict[str, Any]:
    """What tenancy/org_base.html needs: the org (the switcher marks it), the viewer's role,
    and which sections they may open."""
    role = permissions.org_role(request.user, org)
    return {
        "org": org,
        "section": section,
        "my_role": role,
        "is_manager": role in permissions.ORG_MANAGERS,
        "is_owner": role == Role.OWNER,
        **extra,
    }


def parse(
    serializer_class: type[serializers.Serializer], data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Validate ``data`` with the API's serializer: (validated data, {}) or ({}, field errors)
    with the API's own messages."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data), {}
    return {}, _templated(field_errors(serializer.errors))


def domain_errors(exc: DomainError) -> dict[str, list[str]]:
    """A service refusal as field errors (its fields, else its message under "general")."""
    return _templated(domain_field_errors(exc))


def _templated(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    # Templates cannot read a key starting with an underscore: errors of no one field are "general".
    if "__all__" in errors:
        errors["general"] = errors.pop("__all__")
    return errors
