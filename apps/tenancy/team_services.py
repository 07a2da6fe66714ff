"""Writes for teams: groups of an organization's members that get roles on projects.

Each function is one domain operation: it checks the actor's rights, changes rows inside
one transaction, records an audit event in that same transaction, and schedules side
effects only after commit."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from django.contrib.auth.models import Group
from django.db import transaction

from apps.audit.services import audit_record
from apps.core.actors import Actor
from apps.core.errors import DomainError, NotFound, already_exists
from apps.tenancy import permissions
from apps.tenancy.models import Membership, Organization, Team
from apps.tenancy.roles import Role

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@transaction.atomic
def team_create(*, actor: Actor, org: Organization, slug: str, name: str) -> Team:
    permissions.require_org_role(actor, org, Role.ADMIN, "Creating a team")
    if Team.objects.filter(org=org, slug=slug).exists():
        raise already_exists("Team", slug)
    group = Group.objects.create(name=f"team:{org.pk}:{slug}:{secrets.token_hex(4)}")
    team = Team.objects.create(org=org, slug=slug, name=name, group=group)
    audit_record(actor=actor, org=org, action="team.create", target=team, changes={"slug": slug, "name": name})
    return team


@transaction.atomic
def team_update(*, actor: Actor, team: Team, name: str | None = None) -> Team:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Changing a team")
    if name is None:  # a PATCH without fields: nothing to change (it was a TypeError, a 500)
        return team
    old = team.name
    team.name = name
    team.save(update_fields=["name"])
    audit_record(actor=actor, org=team.org, action="team.update", target=team, changes={"name": [old, name]})
    return team


@transaction.atomic
def team_delete(*, actor: Actor, team: Team) -> None:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Deleting a team")
    audit_record(actor=actor, org=team.org, action="team.delete", target=team)
    group = team.group
    team.delete()  # cascades the team's project grants
    group.delete()  # cascades guardian group object permissions


@transaction.atomic
def team_member_add(*, actor: Actor, team: Team, user: User) -> None:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Changing team members")
    if not Membership.objects.filter(org=team.org, user=user).exists():
        raise DomainError(
            f"User '{user.get_username()}' is not a member of organization '{team.org.slug}'.",
            code="not_a_member",
            fields={"user": ["Must be a member of the organization."]},
        )
    team.group.user_set.add(user)
    audit_record(
        actor=actor, org=team.org, action="team.member_add", target=team, changes={"user": user.get_username()}
    )


@transaction.atomic
def team_member_remove(*, actor: Actor, team: Team, user: User) -> None:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Changing team members")
    if not team.group.user_set.filter(pk=user.pk).exists():
        raise NotFound(f"User '{user.get_username()}' is not in team '{team.slug}'.")
    team.group.user_set.remove(user)
    audit_record(
        actor=actor, org=team.org, action="team.member_remove", target=team, changes={"user": user.get_username()}
    )
