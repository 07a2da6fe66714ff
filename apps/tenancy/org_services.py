"""Writes for organizations, their members and user accounts.

Each function is one domain operation: it checks the actor's rights, changes rows inside
one transaction, records an audit event in that same transaction, and schedules side
effects only after commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from guardian.shortcuts import remove_perm

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import Conflict, Forbidden, already_exists
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment, Membership, Organization, ProjectGrant, Team
from apps.tenancy.project_services import grant_permissions_sync
from apps.tenancy.roles import Role

if TYPE_CHECKING:
    from django.contrib.auth.models import User as UserType

User = get_user_model()


# --- organizations -----------------------------------------------------------------------


@transaction.atomic
def org_create(*, actor: Actor, slug: str, name: str) -> Organization:
    if Organization.objects.filter(slug=slug).exists():
        raise already_exists("Organization", slug)
    org = Organization.objects.create(slug=slug, name=name)
    Membership.objects.create(user=signed_in(actor), org=org, role=Role.OWNER)
    audit_record(actor=actor, org=org, action="org.create", target=org, changes={"slug": slug, "name": name})
    return org


@transaction.atomic
def org_update(
    *, actor: Actor, org: Organization, name: str | None = None, quotas: dict[str, Any] | None = None
) -> Organization:
    """Rename the organization (owners). ``quotas``: quota values the caller tried to set,
    always refused: an organization's quotas are the platform's operators' to set (Django
    admin), or an owner could lift their own limits."""
    permissions.require_org_role(actor, org, Role.OWNER, "Changing organization settings")
    if quotas:
        names = sorted(quotas)
        message = "set by the platform's operators (Django admin), not by the organization"
        raise Forbidden(
            f"Organization quotas ({', '.join(names)}) are {message}; ask them to change one.",
            fields={key: [message] for key in names},
        )
    if name is not None:
        old = org.name
        org.name = name
        org.save(update_fields=["name"])
        audit_record(actor=actor, org=org, action="org.update", target=org, changes={"name": [old, name]})
    return org


@transaction.atomic
def org_delete(*, actor: Actor, org: Organization) -> None:
    permissions.require_org_role(actor, org, Role.OWNER, "Deleting an organization")
    audit_record(actor=actor, org=None, action="org.delete", target=org, changes={"slug": org.slug})
    groups = list(Group.objects.filter(team__org=org).values_list("pk", flat=True))
    org.delete()
    Group.objects.filter(pk__in=groups).delete()


# --- members ------------------------------------------------------------------------------


def _owner_count(org: Organization) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).count()


def _check_role_change_allowed(actor: Actor, org: Organization, target_role: str | None, new_role: str | None) -> None:
    actor_role = permissions.require_org_role(actor, org, Role.ADMIN, "Managing members")
    touches_owner = Role.OWNER in (target_role, new_role)
    if touches_owner and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can grant, change or remove the owner role.")


@transaction.atomic
def member_change_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    org = membership.org
    _check_role_change_allowed(actor, org, membership.role, role)
    # Lock the org's owner rows so two owners demoting each other cannot leave none.
    list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER))
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(org) <= 1:
        raise Conflict("An organization must keep at least one owner.", code="last_owner")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        org=org,
        action="member.role_change",
        target=membership.user,
        target_type="user",
        changes={"role": [old, role]},
    )
    return membership


@transaction.atomic
def member_remove(*, actor: Actor, membership: Membership) -> None:
    """Remove a member (or let a member leave) and everything their membership held:
    team memberships, project grants and guardian permissions inside this org."""
    org = membership.org
    if actor.pk != membership.user_id:
        _check_role_change_allowed(actor, org, membership.role, None)
    list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER))
    if membership.role == Role.OWNER and _owner_count(org) <= 1:
        raise Conflict("An organization must keep at least one owner.", code="last_owner")
    user = membership.user
    for team in Team.objects.filter(org=org, group__user=user):
        team.group.user_set.remove(user)
    for grant in ProjectGrant.objects.filter(project__org=org, user=user).select_related("project"):
        grant_permissions_sync(grant.project, user=user, role=None)
        grant.delete()
    for env in Environment.objects.filter(project__org=org):
        remove_perm(f"tenancy.{roles.DEPLOY_ENVIRONMENT}", user, env)
    membership.delete()
    audit_record(
        actor=actor, org=org, action="member.remove", target=user, target_type="user", changes={"role": membership.role}
    )


def membership_ensure(*, user: UserType, org: Organization, role: str) -> Membership:
    """Internal (seeding, invitation accept): make ``user`` a member with ``role``."""
    membership, created = Membership.objects.get_or_create(user=user, org=org, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def user_create(*, username: str, email: str, password: str) -> UserType:
    try:
        return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:
        raise already_exists("User", username)
