"""Writes for projects and project grants (a user's or a team's role on one project,
mirrored into django-guardian object permissions).

Each function is one domain operation: it checks the actor's rights, changes rows inside
one transaction, records an audit event in that same transaction, and schedules side
effects only after commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import DomainError, NotFound, already_exists
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment, Membership, Organization, Project, ProjectGrant, Team
from apps.tenancy.roles import Role

if TYPE_CHECKING:
    from django.contrib.auth.models import User

DEFAULT_ENVIRONMENTS = (("dev", False), ("staging", False), ("prod", True))


@transaction.atomic
def project_create(*, actor: Actor, org: Organization, slug: str, name: str, description: str = "") -> Project:
    """Create a project with dev, staging and prod (prod protected). Developers may create
    projects; a creator who does not manage the org becomes the project's admin."""
    actor_role = permissions.require_org_role(actor, org, Role.DEVELOPER, "Creating a project")
    if Project.objects.filter(org=org, slug=slug).exists():
        raise already_exists("Project", f"{org.slug}/{slug}")
    project = Project.objects.create(org=org, slug=slug, name=name, description=description)
    for env_name, protected in DEFAULT_ENVIRONMENTS:
        Environment.objects.create(project=project, name=env_name, protected=protected)
    if actor_role not in permissions.ORG_MANAGERS:
        creator = signed_in(actor)
        grant = ProjectGrant.objects.create(project=project, user=creator, role=Role.ADMIN)
        grant_permissions_sync(project, user=creator, role=grant.role)
        permissions.forget_cached_permissions(actor)
    audit_record(actor=actor, org=org, action="project.create", target=project, changes={"slug": slug, "name": name})
    return project


@transaction.atomic
def project_update(*, actor: Actor, project: Project, **changes: Any) -> Project:
    permissions.require_project_permission(actor, project, roles.CHANGE_PROJECT, "Changing project settings")
    diff = {}
    for field in ("name", "description"):
        if field in changes and changes[field] != getattr(project, field):
            diff[field] = [getattr(project, field), changes[field]]
            setattr(project, field, changes[field])
    if diff:
        project.save()
        audit_record(actor=actor, org=project.org, action="project.update", target=project, changes=diff)
    return project


@transaction.atomic
def project_delete(*, actor: Actor, project: Project) -> None:
    permissions.require_project_permission(actor, project, roles.DELETE_PROJECT, "Deleting a project")
    audit_record(actor=actor, org=project.org, action="project.delete", target=project)
    for env in project.environments.all():
        object_permissions_delete(env)
    object_permissions_delete(project)
    project.delete()


def object_permissions_delete(obj: models.Model) -> None:
    """Guardian keeps object permissions by (content type, object pk) without a foreign
    key, so they do not cascade: delete them with the object."""
    ct = ContentType.objects.get_for_model(obj)
    UserObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).delete()
    GroupObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).delete()


def grant_permissions_sync(
    project: Project, *, user: User | None = None, group: Group | None = None, role: str | None
) -> None:
    """Make the guardian permissions of one principal on one project equal to ``role``'s set."""
    principal = user if user is not None else group
    wanted = roles.project_permissions_for(role)
    for perm in roles.ALL_PROJECT_PERMISSIONS:
        if perm in wanted:
            assign_perm(f"tenancy.{perm}", principal, project)
        else:
            remove_perm(f"tenancy.{perm}", principal, project)


@transaction.atomic
def project_grant_set(
    *, actor: Actor, project: Project, role: str, user: User | None = None, team: Team | None = None
) -> ProjectGrant:
    permissions.require_project_permission(actor, project, roles.MANAGE_ACCESS, "Changing project roles")
    if (user is None) == (team is None):
        raise DomainError("Give exactly one of 'user' or 'team'.", fields={"user": ["Give a user or a team."]})
    if role == Role.OWNER:
        raise DomainError("Projects have no owner role; owners are an org role.", fields={"role": ["Not allowed."]})
    if user is not None and not Membership.objects.filter(org=project.org, user=user).exists():
        raise DomainError(
            f"User '{user.get_username()}' is not a member of organization '{project.org.slug}'.",
            code="not_a_member",
            fields={"user": ["Must be a member of the organization."]},
        )
    if team is not None and team.org_id != project.org_id:
        raise NotFound("Team not found.")
    lookup: dict[str, Any] = {"user": user} if user is not None else {"team": team}
    grant = ProjectGrant.objects.select_for_update().filter(project=project, **lookup).first()
    old = grant.role if grant else None
    if grant is None:
        grant = ProjectGrant.objects.create(project=project, role=role, **lookup)
    else:
        grant.role = role
        grant.save(update_fields=["role"])
    grant_permissions_sync(project, user=user, group=team.group if team else None, role=role)
    audit_record(
        actor=actor,
        org=project.org,
        action="project.grant_set",
        target=project,
        changes={"principal": _principal_repr(grant), "role": [old, role]},
    )
    return grant


@transaction.atomic
def project_grant_remove(*, actor: Actor, grant: ProjectGrant) -> None:
    project = grant.project
    permissions.require_project_permission(actor, project, roles.MANAGE_ACCESS, "Changing project roles")
    grant_permissions_sync(project, user=grant.user, group=grant.team.group if grant.team else None, role=None)
    audit_record(
        actor=actor,
        org=project.org,
        action="project.grant_remove",
        target=project,
        changes={"principal": _principal_repr(grant), "role": [grant.role, None]},
    )
    grant.delete()


def _principal_repr(grant: ProjectGrant) -> str:
    return f"user:{grant.user.get_username()}" if grant.user else f"team:{grant.team.slug}"  # type: ignore[union-attr]
