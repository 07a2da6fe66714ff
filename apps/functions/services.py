"""Writes for functions. Rights: viewers read, developers (edit_code) write."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import Conflict
from apps.functions.knobs import CONFIG_FIELDS
from apps.functions.models import Function
from apps.functions.routes import function_deleted
from apps.functions.validation import validate_function_config
from apps.tenancy import permissions, quotas, roles
from apps.tenancy.models import Project


def _config_of(function: Function) -> dict[str, Any]:
    return {field: getattr(function, field) for field in CONFIG_FIELDS}


@transaction.atomic
def function_create(*, actor: Actor, project: Project, name: str, **config: Any) -> Function:
    permissions.require_project_permission(actor, project, roles.EDIT_CODE, "Creating a function")
    if Function.objects.filter(project=project, name=name).exists():
        raise Conflict(f"Function '{name}' already exists in project '{project}'.", code="already_exists")
    function = Function(project=project, name=name, created_by=signed_in(actor), **config)
    validate_function_config(_config_of(function))
    # Counting takes the org's row lock: two creates racing for the last slot queue here.
    org = quotas.check_function_create(org_id=project.org_id, name=name)
    quotas.check_function_config(org=org, name=name, config=_config_of(function))
    function.save()
    audit_record(
        actor=actor,
        org=project.org,
        action="function.create",
        target=function,
        changes={"name": name, **{k: v for k, v in _config_of(function).items() if k != "env"}},
    )
    return function


@transaction.atomic
def function_update(*, actor: Actor, function: Function, **changes: Any) -> Function:
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Changing a function")
    # Lock the row: two editors changing different knobs must not undo each other.
    function = Function.objects.select_for_update().select_related("project__org").get(pk=function.pk)
    before = _config_of(function)
    after = {**before, **{k: v for k, v in changes.items() if k in CONFIG_FIELDS}}
    validate_function_config(after)
    quotas.check_function_config(org=function.project.org, name=function.name, config=after, before=before)
    diff = {k: [before[k], after[k]] for k in CONFIG_FIELDS if before[k] != after[k]}
    if diff:
        for field, value in after.items():
            setattr(function, field, value)
        function.save()
        # Variable values can be sensitive configuration: the audit names changed keys only.
        if "env" in diff:
            old_env, new_env = before["env"], after["env"]
            diff["env"] = sorted(k for k in old_env.keys() | new_env.keys() if old_env.get(k) != new_env.get(k))
        audit_record(actor=actor, org=function.project.org, action="function.update", target=function, changes=diff)
    return function


@transaction.atomic
def function_delete(*, actor: Actor, function: Function) -> None:
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Deleting a function")
    audit_record(actor=actor, org=function.project.org, action="function.delete", target=function)
    function_deleted.after_commit(function.pk)
    function.delete()
