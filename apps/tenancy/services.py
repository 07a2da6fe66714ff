"""Writes for tenancy and access. Each function is one domain operation: it checks the
actor's rights, changes rows inside one transaction, records an audit event in that same
transaction, and schedules side effects (emails) only after commit."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from apps.audit.services import audit_record
from apps.core import crypto
from apps.core.errors import Conflict, DomainError, Forbidden, Gone, NotFound
from apps.core.isolation.egress import parse_egress_rules, protected_endpoints
from apps.tenancy import permissions, roles
from apps.tenancy.models import (
    ApiToken,
    Environment,
    EnvironmentSecret,
    EnvironmentVariable,
    Invitation,
    Membership,
    Organization,
    Project,
    ProjectGrant,
    Team,
)
from apps.tenancy.roles import Role

User = get_user_model()

DEFAULT_ENVIRONMENTS = (("dev", False), ("staging", False), ("prod", True))
TOKEN_PREFIX = "stt_"
_INVITATION_SALT = "stratus.invitation"


def _exists_error(what: str, value: str) -> Conflict:
    return Conflict(f"{what} '{value}' already exists.", code="already_exists")


# --- organizations -----------------------------------------------------------------------


@transaction.atomic
def org_create(*, actor: Any, slug: str, name: str) -> Organization:
    if Organization.objects.filter(slug=slug).exists():
        raise _exists_error("Organization", slug)
    org = Organization.objects.create(slug=slug, name=name)
    Membership.objects.create(user=actor, org=org, role=Role.OWNER)
    audit_record(actor=actor, org=org, action="org.create", target=org, changes={"slug": slug, "name": name})
    return org


@transaction.atomic
def org_update(
    *, actor: Any, org: Organization, name: str | None = None, quotas: dict[str, Any] | None = None
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
def org_delete(*, actor: Any, org: Organization) -> None:
    permissions.require_org_role(actor, org, Role.OWNER, "Deleting an organization")
    audit_record(actor=actor, org=None, action="org.delete", target=org, changes={"slug": org.slug})
    groups = list(Group.objects.filter(team__org=org).values_list("pk", flat=True))
    org.delete()
    Group.objects.filter(pk__in=groups).delete()


# --- members ------------------------------------------------------------------------------


def _owner_count(org: Organization) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).count()


def _check_role_change_allowed(actor: Any, org: Organization, target_role: str | None, new_role: str | None) -> None:
    actor_role = permissions.require_org_role(actor, org, Role.ADMIN, "Managing members")
    touches_owner = Role.OWNER in (target_role, new_role)
    if touches_owner and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can grant, change or remove the owner role.")


@transaction.atomic
def member_change_role(*, actor: Any, membership: Membership, role: str) -> Membership:
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
def member_remove(*, actor: Any, membership: Membership) -> None:
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
        _sync_grant_perms(grant.project, user=user, role=None)
        grant.delete()
    for env in Environment.objects.filter(project__org=org):
        remove_perm(f"tenancy.{roles.DEPLOY_ENVIRONMENT}", user, env)
    membership.delete()
    audit_record(
        actor=actor, org=org, action="member.remove", target=user, target_type="user", changes={"role": membership.role}
    )


def membership_ensure(*, user: Any, org: Organization, role: str) -> Membership:
    """Internal (seeding, invitation accept): make ``user`` a member with ``role``."""
    membership, created = Membership.objects.get_or_create(user=user, org=org, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


# --- teams --------------------------------------------------------------------------------


@transaction.atomic
def team_create(*, actor: Any, org: Organization, slug: str, name: str) -> Team:
    permissions.require_org_role(actor, org, Role.ADMIN, "Creating a team")
    if Team.objects.filter(org=org, slug=slug).exists():
        raise _exists_error("Team", slug)
    group = Group.objects.create(name=f"team:{org.pk}:{slug}:{secrets.token_hex(4)}")
    team = Team.objects.create(org=org, slug=slug, name=name, group=group)
    audit_record(actor=actor, org=org, action="team.create", target=team, changes={"slug": slug, "name": name})
    return team


@transaction.atomic
def team_update(*, actor: Any, team: Team, name: str | None = None) -> Team:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Changing a team")
    if name is None:  # a PATCH without fields: nothing to change (it was a TypeError, a 500)
        return team
    old = team.name
    team.name = name
    team.save(update_fields=["name"])
    audit_record(actor=actor, org=team.org, action="team.update", target=team, changes={"name": [old, name]})
    return team


@transaction.atomic
def team_delete(*, actor: Any, team: Team) -> None:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Deleting a team")
    audit_record(actor=actor, org=team.org, action="team.delete", target=team)
    group = team.group
    team.delete()  # cascades the team's project grants
    group.delete()  # cascades guardian group object permissions


@transaction.atomic
def team_member_add(*, actor: Any, team: Team, user: Any) -> None:
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
def team_member_remove(*, actor: Any, team: Team, user: Any) -> None:
    permissions.require_org_role(actor, team.org, Role.ADMIN, "Changing team members")
    if not team.group.user_set.filter(pk=user.pk).exists():
        raise NotFound(f"User '{user.get_username()}' is not in team '{team.slug}'.")
    team.group.user_set.remove(user)
    audit_record(
        actor=actor, org=team.org, action="team.member_remove", target=team, changes={"user": user.get_username()}
    )


# --- invitations ----------------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    """The link token: signed (id, nonce). Deterministic, so the email task can rebuild it
    from the id alone; revoking rotates the nonce and kills every copy."""
    # Signer, not signing.dumps: dumps adds a timestamp, so the emailed link would differ
    # from the one shown at creation. Expiry is the row's expires_at, not the signature's age.
    return signing.Signer(salt=_INVITATION_SALT).sign_object({"i": invitation.pk, "n": invitation.nonce}, compress=True)


def invitation_link(invitation: Invitation) -> str:
    return f"{settings.PUBLIC_URL}/invitations/accept?token={invitation_token(invitation)}"


@transaction.atomic
def invitation_create(*, actor: Any, org: Organization, email: str, role: str) -> tuple[Invitation, str]:
    actor_role = permissions.require_org_role(actor, org, Role.ADMIN, "Inviting members")
    if role == Role.OWNER and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can invite an owner.")
    email = email.strip().lower()
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise Conflict(f"'{email}' is already a member of '{org.slug}'.", code="already_member")
    invitation = Invitation.objects.create(
        org=org,
        email=email,
        role=role,
        nonce=secrets.token_urlsafe(24),
        invited_by=actor,
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS),
    )
    audit_record(
        actor=actor, org=org, action="invitation.create", target=invitation, changes={"email": email, "role": role}
    )
    from apps.tenancy.tasks import invitation_send_email

    transaction.on_commit(lambda: invitation_send_email.delay(invitation.pk))
    return invitation, invitation_token(invitation)


@transaction.atomic
def invitation_revoke(*, actor: Any, invitation: Invitation) -> Invitation:
    permissions.require_org_role(actor, invitation.org, Role.ADMIN, "Revoking invitations")
    if invitation.status != Invitation.Status.PENDING:
        raise Conflict(f"The invitation is already {invitation.status}.", code="invitation_not_pending")
    invitation.status = Invitation.Status.REVOKED
    invitation.nonce = secrets.token_urlsafe(24)
    invitation.save(update_fields=["status", "nonce"])
    audit_record(actor=actor, org=invitation.org, action="invitation.revoke", target=invitation)
    return invitation


def invitation_token_read(token: str) -> tuple[int, str]:
    """(invitation id, nonce) of a link token; NotFound when it is not one of ours. The nonce
    still has to match the row's (revoking rotates it)."""
    try:
        if token.count(":") == 2:  # payload:timestamp:signature, issued by signing.dumps before
            data = signing.loads(token, salt=_INVITATION_SALT)
        else:
            data = signing.Signer(salt=_INVITATION_SALT).unsign_object(token)
        return int(data["i"]), str(data["n"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise NotFound("This invitation link is not valid.", code="invitation_invalid") from None


@transaction.atomic
def invitation_resend(*, actor: Any, invitation: Invitation) -> Invitation:
    """Send the invitation's email again, with the same link (the token is rebuilt from the
    row). Admins only, and only a pending invitation that has not expired: an expired one is
    revoked and sent anew, so its old link never comes back to life."""
    permissions.require_org_role(actor, invitation.org, Role.ADMIN, "Resending invitations")
    if invitation.status != Invitation.Status.PENDING:
        raise Conflict(f"The invitation is already {invitation.status}.", code="invitation_not_pending")
    if invitation.is_expired():
        raise Conflict("This invitation has expired; revoke it and invite again.", code="invitation_expired")
    audit_record(actor=actor, org=invitation.org, action="invitation.resend", target=invitation)
    from apps.tenancy.tasks import invitation_send_email

    transaction.on_commit(lambda: invitation_send_email.delay(invitation.pk))
    return invitation


@transaction.atomic
def invitation_accept(*, user: Any, token: str) -> Membership:
    invitation_id, nonce = invitation_token_read(token)
    # Lock the row: two accepts of the same link race to one membership.
    invitation = Invitation.objects.select_for_update().filter(pk=invitation_id).select_related("org").first()
    if invitation is None or not secrets.compare_digest(invitation.nonce, nonce):
        raise NotFound("This invitation link is not valid.", code="invitation_invalid")
    if invitation.status == Invitation.Status.ACCEPTED:
        raise Gone("This invitation has already been used.", code="invitation_used")
    if invitation.status == Invitation.Status.REVOKED:
        raise Gone("This invitation was revoked.", code="invitation_revoked")
    if invitation.is_expired():
        raise Gone("This invitation has expired; ask for a new one.", code="invitation_expired")
    if (user.email or "").strip().lower() != invitation.email:
        raise Forbidden("This invitation was sent to another email address.", code="invitation_email_mismatch")
    if Membership.objects.filter(org=invitation.org, user=user).exists():
        raise Conflict(f"You are already a member of '{invitation.org.slug}'.", code="already_member")
    membership = Membership.objects.create(user=user, org=invitation.org, role=invitation.role)
    invitation.status = Invitation.Status.ACCEPTED
    invitation.accepted_by = user
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_by", "accepted_at"])
    audit_record(
        actor=user, org=invitation.org, action="invitation.accept", target=invitation, changes={"role": invitation.role}
    )
    return membership


# --- projects and grants -----------------------------------------------------------------------


@transaction.atomic
def project_create(*, actor: Any, org: Organization, slug: str, name: str, description: str = "") -> Project:
    """Create a project with dev, staging and prod (prod protected). Developers may create
    projects; a creator who does not manage the org becomes the project's admin."""
    actor_role = permissions.require_org_role(actor, org, Role.DEVELOPER, "Creating a project")
    if Project.objects.filter(org=org, slug=slug).exists():
        raise _exists_error("Project", f"{org.slug}/{slug}")
    project = Project.objects.create(org=org, slug=slug, name=name, description=description)
    for env_name, protected in DEFAULT_ENVIRONMENTS:
        Environment.objects.create(project=project, name=env_name, protected=protected)
    if actor_role not in permissions.ORG_MANAGERS:
        grant = ProjectGrant.objects.create(project=project, user=actor, role=Role.ADMIN)
        _sync_grant_perms(project, user=actor, role=grant.role)
        permissions.forget_cached_permissions(actor)
    audit_record(actor=actor, org=org, action="project.create", target=project, changes={"slug": slug, "name": name})
    return project


@transaction.atomic
def project_update(*, actor: Any, project: Project, **changes: Any) -> Project:
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
def project_delete(*, actor: Any, project: Project) -> None:
    permissions.require_project_permission(actor, project, roles.DELETE_PROJECT, "Deleting a project")
    audit_record(actor=actor, org=project.org, action="project.delete", target=project)
    for env in project.environments.all():
        _delete_object_permissions(env)
    _delete_object_permissions(project)
    project.delete()


def _delete_object_permissions(obj: Any) -> None:
    """Guardian keeps object permissions by (content type, object pk) without a foreign
    key, so they do not cascade: delete them with the object."""
    ct = ContentType.objects.get_for_model(obj)
    UserObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).delete()
    GroupObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).delete()


def _sync_grant_perms(project: Project, *, user: Any = None, group: Group | None = None, role: str | None) -> None:
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
    *, actor: Any, project: Project, role: str, user: Any = None, team: Team | None = None
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
    lookup = {"user": user} if user is not None else {"team": team}
    grant = ProjectGrant.objects.select_for_update().filter(project=project, **lookup).first()
    old = grant.role if grant else None
    if grant is None:
        grant = ProjectGrant.objects.create(project=project, role=role, **lookup)
    else:
        grant.role = role
        grant.save(update_fields=["role"])
    _sync_grant_perms(project, user=user, group=team.group if team else None, role=role)
    audit_record(
        actor=actor,
        org=project.org,
        action="project.grant_set",
        target=project,
        changes={"principal": _principal_repr(grant), "role": [old, role]},
    )
    return grant


@transaction.atomic
def project_grant_remove(*, actor: Any, grant: ProjectGrant) -> None:
    project = grant.project
    permissions.require_project_permission(actor, project, roles.MANAGE_ACCESS, "Changing project roles")
    _sync_grant_perms(project, user=grant.user, group=grant.team.group if grant.team else None, role=None)
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


# --- environments ------------------------------------------------------------------------------


@transaction.atomic
def environment_create(*, actor: Any, project: Project, name: str, protected: bool = False) -> Environment:
    permissions.require_project_permission(actor, project, roles.CHANGE_PROJECT, "Creating an environment")
    if Environment.objects.filter(project=project, name=name).exists():
        raise _exists_error("Environment", name)
    env = Environment.objects.create(project=project, name=name, protected=protected)
    audit_record(
        actor=actor,
        org=project.org,
        action="environment.create",
        target=env,
        changes={"name": name, "protected": protected},
    )
    return env


@transaction.atomic
def environment_update(
    *,
    actor: Any,
    environment: Environment,
    protected: bool | None = None,
    execution_backend: str | None = None,
    requires_release_approval: bool | None = None,
    pipeline_secrets: bool | None = None,
    egress_allow: list[str] | None = None,
) -> Environment:
    """Change protection, the execution backend, whether releases need a second person's
    approval, whether pipeline steps may use the environment's secrets, and which private
    addresses its functions and steps may reach (``egress_allow``). A new backend applies
    to bindings created afterwards; existing bindings keep the backend they were deployed
    on. A new allow-list applies to instances and steps started afterwards."""
    permissions.require_project_permission(actor, environment.project, roles.CHANGE_PROJECT, "Changing an environment")
    if execution_backend not in (None, "") and execution_backend not in settings.STRATUS_EXECUTION_BACKENDS:
        known = ", ".join(sorted(settings.STRATUS_EXECUTION_BACKENDS))
        raise DomainError(
            f"execution_backend: unknown backend '{execution_backend}'; known: {known} (or '' for the default).",
            fields={"execution_backend": [f"Use one of: {known}, or '' for the default."]},
        )
    changes: dict[str, Any] = {}
    if protected is not None and protected != environment.protected:
        changes["protected"] = [environment.protected, protected]
        environment.protected = protected
    if execution_backend is not None and execution_backend != environment.execution_backend:
        changes["execution_backend"] = [environment.execution_backend, execution_backend]
        environment.execution_backend = execution_backend
    if requires_release_approval is not None and requires_release_approval != environment.requires_release_approval:
        changes["requires_release_approval"] = [environment.requires_release_approval, requires_release_approval]
        environment.requires_release_approval = requires_release_approval
    if pipeline_secrets is not None and pipeline_secrets != environment.pipeline_secrets:
        changes["pipeline_secrets"] = [environment.pipeline_secrets, pipeline_secrets]
        environment.pipeline_secrets = pipeline_secrets
    if egress_allow is not None:
        try:
            rules = parse_egress_rules(egress_allow, protected_endpoints())
        except ValueError as exc:
            raise DomainError(f"egress_allow: {exc}", fields={"egress_allow": [str(exc)]}) from None
        normalized = [str(rule) for rule in rules]
        if normalized != environment.egress_allow:
            changes["egress_allow"] = [environment.egress_allow, normalized]
            environment.egress_allow = normalized
            # The engine reloads its routes (the allow-list is part of each instance's spec)
            # and updates the firewall now, rather than at its next periodic resync.
            from apps.engine.host import routes_changed

            transaction.on_commit(routes_changed)
    if changes:
        environment.save(
            update_fields=[
                "protected",
                "execution_backend",
                "requires_release_approval",
                "pipeline_secrets",
                "egress_allow",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor, org=environment.project.org, action="environment.update", target=environment, changes=changes
        )
    return environment


@transaction.atomic
def environment_delete(*, actor: Any, environment: Environment) -> None:
    permissions.require_project_permission(actor, environment.project, roles.CHANGE_PROJECT, "Deleting an environment")
    audit_record(actor=actor, org=environment.project.org, action="environment.delete", target=environment)
    _delete_object_permissions(environment)
    environment.delete()


def _require_configure(actor: Any, environment: Environment) -> None:
    if not permissions.can_configure_environment(actor, environment):
        who = "an admin" if environment.protected else "a developer"
        raise Forbidden(f"Changing configuration of environment '{environment.name}' needs {who} role on the project.")


@transaction.atomic
def environment_var_set(*, actor: Any, environment: Environment, name: str, value: str) -> EnvironmentVariable:
    _require_configure(actor, environment)
    var, created = EnvironmentVariable.objects.select_for_update().get_or_create(
        environment=environment, name=name, defaults={"value": value}
    )
    old = None if created else var.value
    if not created:
        var.value = value
        var.save(update_fields=["value", "updated_at"])
    audit_record(
        actor=actor,
        org=environment.project.org,
        action="environment.var_set",
        target=environment,
        changes={"name": name, "value": [old, value]},
    )
    return var


@transaction.atomic
def environment_var_delete(*, actor: Any, environment: Environment, name: str) -> None:
    _require_configure(actor, environment)
    deleted, _ = EnvironmentVariable.objects.filter(environment=environment, name=name).delete()
    if not deleted:
        raise NotFound(f"Variable '{name}' not found.")
    audit_record(
        actor=actor,
        org=environment.project.org,
        action="environment.var_delete",
        target=environment,
        changes={"name": name},
    )


@transaction.atomic
def environment_secret_set(*, actor: Any, environment: Environment, name: str, value: str) -> EnvironmentSecret:
    """Store a secret encrypted. The audit summary names it and never holds its value."""
    _require_configure(actor, environment)
    ciphertext = crypto.encrypt(value)
    secret, created = EnvironmentSecret.objects.select_for_update().get_or_create(
        environment=environment, name=name, defaults={"ciphertext": ciphertext}
    )
    if not created:
        secret.ciphertext = ciphertext
        secret.save(update_fields=["ciphertext", "updated_at"])
    audit_record(
        actor=actor,
        org=environment.project.org,
        action="environment.secret_set",
        target=environment,
        changes={"name": name, "created": created},
    )
    return secret


@transaction.atomic
def environment_secret_delete(*, actor: Any, environment: Environment, name: str) -> None:
    _require_configure(actor, environment)
    deleted, _ = EnvironmentSecret.objects.filter(environment=environment, name=name).delete()
    if not deleted:
        raise NotFound(f"Secret '{name}' not found.")
    audit_record(
        actor=actor,
        org=environment.project.org,
        action="environment.secret_delete",
        target=environment,
        changes={"name": name},
    )


def environment_secret_values(*, environment: Environment) -> dict[str, str]:
    """Decrypted secrets, for the deploy path only (never for API responses or logs)."""
    return {s.name: crypto.decrypt(s.ciphertext) for s in environment.secrets.all()}


@transaction.atomic
def secrets_rotate() -> int:
    """Re-encrypt every stored secret with the primary key (after prepending a new key)."""
    count = 0
    for secret in EnvironmentSecret.objects.select_for_update():
        secret.ciphertext = crypto.rotate(secret.ciphertext)
        secret.save(update_fields=["ciphertext"])
        count += 1
    audit_record(actor=None, action="secrets.rotate", target_type="secrets", changes={"count": count})
    return count


@transaction.atomic
def environment_deployer_add(
    *, actor: Any, environment: Environment, user: Any = None, team: Team | None = None
) -> None:
    """Grant the deploy right on one (usually protected) environment to a user or team."""
    project = environment.project
    permissions.require_project_permission(actor, project, roles.MANAGE_ACCESS, "Granting deploy rights")
    if (user is None) == (team is None):
        raise DomainError("Give exactly one of 'user' or 'team'.", fields={"user": ["Give a user or a team."]})
    if user is not None and not Membership.objects.filter(org=project.org, user=user).exists():
        raise DomainError(
            "The user is not a member of the organization.",
            code="not_a_member",
            fields={"user": ["Must be a member of the organization."]},
        )
    if team is not None and team.org_id != project.org_id:
        raise NotFound("Team not found.")
    principal = user if user is not None else team.group  # type: ignore[union-attr]
    assign_perm(f"tenancy.{roles.DEPLOY_ENVIRONMENT}", principal, environment)
    who = f"user:{user.get_username()}" if user is not None else f"team:{team.slug}"  # type: ignore[union-attr]
    audit_record(
        actor=actor, org=project.org, action="environment.deployer_add", target=environment, changes={"principal": who}
    )


@transaction.atomic
def environment_deployer_remove(
    *, actor: Any, environment: Environment, user: Any = None, team: Team | None = None
) -> None:
    project = environment.project
    permissions.require_project_permission(actor, project, roles.MANAGE_ACCESS, "Revoking deploy rights")
    principal = user if user is not None else team.group  # type: ignore[union-attr]
    remove_perm(f"tenancy.{roles.DEPLOY_ENVIRONMENT}", principal, environment)
    who = f"user:{user.get_username()}" if user is not None else f"team:{team.slug}"  # type: ignore[union-attr]
    audit_record(
        actor=actor,
        org=project.org,
        action="environment.deployer_remove",
        target=environment,
        changes={"principal": who},
    )


# --- API tokens -----------------------------------------------------------------------------


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _held_scopes(token: ApiToken) -> set[str]:
    # As apps.tenancy.authentication.held_scopes (which imports this module): deploy implies invoke.
    held = set(token.scopes)
    if ApiToken.Scope.DEPLOY in held:
        held.add(ApiToken.Scope.INVOKE)
    return held


@transaction.atomic
def token_create(
    *, user: Any, name: str, scopes: list[str], expires_at: datetime | None = None, actor_token: ApiToken | None = None
) -> tuple[ApiToken, str]:
    """Create a personal access token; returns it with the plaintext, shown only once.

    A token minted by a token (``actor_token``: the API with Bearer auth) is its child: it may
    hold only scopes its parent holds (403 otherwise, so a leaked read token cannot escalate
    itself), must expire no later than its parent (400 otherwise: a child of an expiring token
    needs an ``expires_at``, which is refused rather than silently shortened), and is revoked
    with it (token_revoke). The parent's row is locked while the child is made, so a revocation
    running at the same time either sees the child or is seen by this check."""
    if not scopes:
        raise DomainError("A token needs at least one scope.", fields={"scopes": ["Give at least one scope."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError("expires_at must be in the future.", fields={"expires_at": ["Must be in the future."]})
    parent = None
    if actor_token is not None:
        parent = ApiToken.objects.select_for_update().get(pk=actor_token.pk)
        if not parent.is_active():
            raise Forbidden("The token making this request has been revoked or has expired.")
        extra = sorted(set(scopes) - _held_scopes(parent))
        if extra:
            raise Forbidden(
                f"A token cannot create a token with scopes it does not have itself ({', '.join(extra)}).",
                fields={"scopes": [f"Not held by the token making this request: {', '.join(extra)}."]},
            )
        if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
            limit = parent.expires_at.isoformat()
            raise DomainError(
                f"A token created by a token cannot outlive it: the token making this request expires at {limit}, "
                "so expires_at must be given and be no later than that.",
                code="token_outlives_parent",
                fields={"expires_at": [f"Must be at or before {limit}."]},
            )
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = token_import(user=user, name=name, scopes=scopes, plaintext=plaintext, expires_at=expires_at, parent=parent)
    return token, plaintext


def token_import(
    *,
    user: Any,
    name: str,
    scopes: list[str],
    plaintext: str,
    expires_at: datetime | None = None,
    parent: ApiToken | None = None,
) -> ApiToken:
    """Store a token whose plaintext the caller made (token_create; seed_demo's derived tokens)."""
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=plaintext[:12],
        token_hash=token_hash(plaintext),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        parent=parent,
    )
    changes: dict[str, Any] = {"name": name, "scopes": token.scopes}
    if parent is not None:
        changes["parent"] = parent.pk
    audit_record(actor=user, action="token.create", target=token, changes=changes)
    return token


@transaction.atomic
def token_revoke(*, actor: Any, token: ApiToken) -> ApiToken:
    """Revoke ``token`` and every token minted from it, its children's children included.

    Rows are locked level by level before the next level is read, so a child being minted
    from any of them at the same time (token_create locks its parent) either commits first
    and is found here, or waits and then finds its parent revoked. After commit the function
    gateway of every process forgets them (apps.engine.host.tokens_changed): the very next
    call with any of them fails."""
    if token.user_id != actor.pk:
        raise NotFound("Token not found.")
    now = timezone.now()
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is None:
        locked.revoked_at = now
        locked.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="token.revoke", target=locked)
    # Every hash, also of tokens revoked before: announcing them again costs nothing.
    digests = [locked.token_hash]
    level = [locked.pk]
    while level:
        children = list(ApiToken.objects.select_for_update().filter(parent_id__in=level).order_by("pk"))
        for child in children:
            digests.append(child.token_hash)
            if child.revoked_at is None:
                child.revoked_at = now
                child.save(update_fields=["revoked_at"])
                audit_record(actor=actor, action="token.revoke", target=child, changes={"with_parent": child.parent_id})
        level = [child.pk for child in children]
    from apps.engine.host import tokens_changed

    transaction.on_commit(lambda: tokens_changed(digests))
    return locked


def token_touch(*, token: ApiToken) -> None:
    """Record use, at most once per TOKEN_LAST_USED_RESOLUTION_S, with a conditional update
    (no read-modify-write race, no write on most requests)."""
    now = timezone.now()
    threshold = now - timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_S)
    if token.last_used_at is not None and token.last_used_at > threshold:
        return
    from django.db.models import Q

    ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold), pk=token.pk).update(
        last_used_at=now
    )
    token.last_used_at = now


def user_create(*, username: str, email: str, password: str) -> Any:
    try:
        return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:
        raise _exists_error("User", username)
