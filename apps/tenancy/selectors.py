"""Reads, always scoped to the caller. Anything outside the caller's orgs is NotFound (404),
never Forbidden, so ids of other tenants' objects reveal nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import Prefetch, QuerySet
from guardian.models import GroupObjectPermission, UserObjectPermission

from apps.audit.models import AuditEvent
from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.tenancy import permissions
from apps.tenancy.invitation_services import invitation_token_read
from apps.tenancy.models import (
    ApiToken,
    Environment,
    Invitation,
    Membership,
    Organization,
    Project,
    ProjectGrant,
    Team,
)
from apps.tenancy.roles import DEPLOY_ENVIRONMENT

User = get_user_model()


def org_list(*, user: Actor) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user)


def org_get(*, user: Actor, slug: str) -> Organization:
    org = org_list(user=user).filter(slug=slug).first()
    if org is None:
        raise NotFound(f"Organization '{slug}' not found.")
    return org


def member_list(*, org: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(org=org).select_related("user").order_by("user__username")


def member_get(*, org: Organization, username: str) -> Membership:
    m = member_list(org=org).filter(user__username=username).first()
    if m is None:
        raise NotFound(f"Member '{username}' not found in '{org.slug}'.")
    return m


def org_user_get(*, org: Organization, username: str) -> Any:
    """A user by name, only if they belong to ``org`` (so names outside it stay hidden)."""
    return member_get(org=org, username=username).user


def team_list(*, org: Organization) -> QuerySet[Team]:
    return (
        Team.objects.filter(org=org)
        .select_related("group")
        .prefetch_related(Prefetch("group__user_set", queryset=User.objects.order_by("username")))
    )


def team_get(*, org: Organization, slug: str) -> Team:
    team = team_list(org=org).filter(slug=slug).first()
    if team is None:
        raise NotFound(f"Team '{slug}' not found in '{org.slug}'.")
    return team


def invitation_list(*, org: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(org=org).select_related("invited_by", "org")


def invitation_get(*, org: Organization, invitation_id: int) -> Invitation:
    inv = invitation_list(org=org).filter(pk=invitation_id).first()
    if inv is None:
        raise NotFound("Invitation not found.")
    return inv


def invitation_from_token(*, token: str) -> Invitation | None:
    """The invitation an emailed link names (to greet the visitor: which org, role, email),
    or None for a link that is not valid. invitation_accept checks everything again."""
    try:
        invitation_id, nonce = invitation_token_read(token)
    except NotFound:
        return None
    invitation = Invitation.objects.select_related("org", "invited_by").filter(pk=invitation_id).first()
    if invitation is None or not secrets.compare_digest(invitation.nonce, nonce):
        return None
    return invitation


def project_list(*, user: Actor, org: Organization | None = None) -> QuerySet[Project]:
    qs = (
        permissions.visible_projects(user)
        .select_related("org")
        .prefetch_related(Prefetch("environments", queryset=Environment.objects.order_by("id")))
    )
    if org is not None:
        qs = qs.filter(org=org)
    return qs.order_by("org__slug", "slug")


def project_get(*, user: Actor, project_id: int | str) -> Project:
    try:
        pk = int(project_id)
    except (TypeError, ValueError):
        raise NotFound("Project not found.")
    project = permissions.visible_projects(user).select_related("org").filter(pk=pk).first()
    if project is None:
        raise NotFound("Project not found.")
    return project


def grant_list(*, project: Project) -> QuerySet[ProjectGrant]:
    return ProjectGrant.objects.filter(project=project).select_related("user", "team")


def grant_get(*, project: Project, grant_id: int) -> ProjectGrant:
    grant = grant_list(project=project).filter(pk=grant_id).first()
    if grant is None:
        raise NotFound("Grant not found.")
    return grant


def environment_list(*, project: Project) -> QuerySet[Environment]:
    return Environment.objects.filter(project=project).select_related("project__org").order_by("id")


def environment_get(*, project: Project, name: str) -> Environment:
    env = environment_list(project=project).filter(name=name).first()
    if env is None:
        raise NotFound(f"Environment '{name}' not found in project '{project}'.")
    return env


def environment_deployers(*, environments: Iterable[Environment]) -> dict[int, dict[str, list[str]]]:
    """{environment id: {"users": [...], "teams": [...]}}: who holds the deploy right on each
    environment (the guardian object permission environment_deployer_add grants), names
    sorted; two queries for any number of environments."""
    environments = list(environments)
    out: dict[int, dict[str, list[str]]] = {e.pk: {"users": [], "teams": []} for e in environments}
    if not environments:
        return out
    ct = ContentType.objects.get_for_model(Environment)
    held = {"content_type": ct, "object_pk__in": [str(pk) for pk in out], "permission__codename": DEPLOY_ENVIRONMENT}
    for pk, username in UserObjectPermission.objects.filter(**held).values_list("object_pk", "user__username"):
        out[int(pk)]["users"].append(username)
    teams = GroupObjectPermission.objects.filter(**held, group__team__isnull=False)
    for pk, slug in teams.values_list("object_pk", "group__team__slug"):
        out[int(pk)]["teams"].append(slug)
    for names in out.values():
        names["users"].sort()
        names["teams"].sort()
    return out


def deployer_list(*, environment: Environment) -> dict[str, list[str]]:
    """{"users": [...], "teams": [...]} granted the deploy right on ``environment``."""
    return environment_deployers(environments=[environment])[environment.pk]


def token_list(*, user: Actor) -> QuerySet[ApiToken]:
    if not user.is_authenticated:
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user)


def token_get(*, user: Actor, token_id: int) -> ApiToken:
    token = token_list(user=user).filter(pk=token_id).first()
    if token is None:
        raise NotFound("Token not found.")
    return token


def audit_event_list(*, user: Actor, filters: dict[str, str]) -> QuerySet[AuditEvent]:
    """Events of orgs the caller manages (admin/owner), plus the caller's own events that
    belong to no org (their tokens)."""
    from django.db.models import Q

    if not user.is_authenticated:
        return AuditEvent.objects.none()
    managed = Membership.objects.filter(user=user, role__in=permissions.ORG_MANAGERS).values("org_id")
    qs = AuditEvent.objects.filter(Q(org_id__in=managed) | Q(org__isnull=True, actor=user)).select_related("org")
    if filters.get("org"):
        qs = qs.filter(org__slug=filters["org"])
    for key in ("action", "target_type", "target_id"):
        if filters.get(key):
            qs = qs.filter(**{key: filters[key]})
    if filters.get("actor"):
        qs = qs.filter(actor_repr=filters["actor"])
    if filters.get("since"):
        qs = qs.filter(created_at__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(created_at__lt=filters["until"])
    return qs
