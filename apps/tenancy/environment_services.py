"""Writes for environments: settings and protection, config variables, write-only
secrets, and who may deploy into one.

Each function is one domain operation: it checks the actor's rights, changes rows inside
one transaction, records an audit event in that same transaction, and schedules side
effects only after commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from apps.audit.services import audit_record
from apps.core import crypto
from apps.core.actors import Actor
from apps.core.errors import DomainError, Forbidden, NotFound, already_exists
from apps.core.isolation.egress import parse_egress_rules, protected_endpoints
from apps.tenancy import announcements, permissions, roles
from apps.tenancy.models import Environment, EnvironmentSecret, EnvironmentVariable, Membership, Project, Team
from apps.tenancy.project_services import object_permissions_delete

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _check_backend(execution_backend: str) -> None:
    """'' (the installation's default) or a registered backend this installation is configured
    for (a cluster for knative): refused now rather than at the first deploy's apply."""
    if execution_backend:
        from apps.functions.backends.registry import check_backend_choice

        check_backend_choice(execution_backend)


@transaction.atomic
def environment_create(
    *, actor: Actor, project: Project, name: str, protected: bool = False, execution_backend: str = ""
) -> Environment:
    permissions.require_project_permission(actor, project, roles.CHANGE_PROJECT, "Creating an environment")
    if Environment.objects.filter(project=project, name=name).exists():
        raise already_exists("Environment", name)
    _check_backend(execution_backend)
    env = Environment.objects.create(
        project=project, name=name, protected=protected, execution_backend=execution_backend
    )
    audit_record(
        actor=actor,
        org=project.org,
        action="environment.create",
        target=env,
        changes={
            "name": name,
            "protected": protected,
            **({"execution_backend": execution_backend} if execution_backend else {}),
        },
    )
    return env


@transaction.atomic
def environment_update(
    *,
    actor: Actor,
    environment: Environment,
    protected: bool | None = None,
    execution_backend: str | None = None,
    requires_release_approval: bool | None = None,
    pipeline_secrets: bool | None = None,
    egress_allow: list[str] | None = None,
) -> Environment:
    """Change protection, the execution backend, whether releases need a second person's
    approval, whether pipeline steps may use the environment's secrets, and which private
    addresses its functions and steps may reach (``egress_allow``). A new backend (checked:
    registered and configured, a cluster for knative) moves the environment's bindings: each
    is dropped by its old backend and re-applied on the new one after commit
    (``deploy_services.environment_bindings_move``). A new allow-list applies to instances
    and steps started afterwards."""
    permissions.require_project_permission(actor, environment.project, roles.CHANGE_PROJECT, "Changing an environment")
    if execution_backend is not None and execution_backend != environment.execution_backend:
        _check_backend(execution_backend)
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
            announcements.environment_changed.after_commit(environment.pk)
    if "execution_backend" in changes:
        from apps.functions.deploy_services import environment_bindings_move

        new_backend = execution_backend or settings.STRATUS_DEFAULT_BACKEND
        moved = environment_bindings_move(actor=actor, environment=environment, backend=new_backend)
        if moved:
            changes["bindings_moved"] = moved
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
def environment_delete(*, actor: Actor, environment: Environment) -> None:
    permissions.require_project_permission(actor, environment.project, roles.CHANGE_PROJECT, "Deleting an environment")
    audit_record(actor=actor, org=environment.project.org, action="environment.delete", target=environment)
    object_permissions_delete(environment)
    environment.delete()


def _require_configure(actor: Actor, environment: Environment) -> None:
    if not permissions.can_configure_environment(actor, environment):
        who = "an admin" if environment.protected else "a developer"
        raise Forbidden(f"Changing configuration of environment '{environment.name}' needs {who} role on the project.")


@transaction.atomic
def environment_var_set(*, actor: Actor, environment: Environment, name: str, value: str) -> EnvironmentVariable:
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
def environment_var_delete(*, actor: Actor, environment: Environment, name: str) -> None:
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
def environment_secret_set(*, actor: Actor, environment: Environment, name: str, value: str) -> EnvironmentSecret:
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
def environment_secret_delete(*, actor: Actor, environment: Environment, name: str) -> None:
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
    *, actor: Actor, environment: Environment, user: User | None = None, team: Team | None = None
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
    *, actor: Actor, environment: Environment, user: User | None = None, team: Team | None = None
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
