"""Importing an existing project's functions from an AWS SAM template or a serverless.yml."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.core.actors import Actor
from apps.core.errors import DomainError
from apps.functions import services
from apps.functions.models import Function
from apps.functions.template_import import ImportedFunction, parse_template
from apps.tenancy import permissions, roles
from apps.tenancy.models import Project


@transaction.atomic
def project_import_template(*, actor: Actor, project: Project, template: str, dry_run: bool = False) -> dict[str, Any]:
    """Create (or update, by name) one function per function of ``template``.

    Idempotent: importing the same template twice leaves the same functions. All or nothing: a
    function the template describes that Stratus refuses (a bad handler, a limit) rolls the
    whole import back and its error names the function. What could not be carried over is in
    the answer by name (``unsupported``, per function and for the template); nothing is dropped
    silently. ``dry_run`` answers the same plan and changes nothing. The code is not part of
    the import: each function's ``code_uri`` says where it lives in the project.
    """
    permissions.require_project_permission(actor, project, roles.EDIT_CODE, "Importing functions")
    plan = parse_template(template)
    answer = plan.as_dict()
    answer["created"], answer["updated"] = [], []
    if dry_run:
        return answer
    existing = {f.name: f for f in Function.objects.filter(project=project, name__in=[f.name for f in plan.functions])}
    for imported in plan.functions:
        try:
            current = existing.get(imported.name)
            config = {**imported.config, **http_routing(imported)}
            if current is None:
                services.function_create(actor=actor, project=project, name=imported.name, **config)
                answer["created"].append(imported.name)
            else:
                services.function_update(actor=actor, function=current, **config)
                answer["updated"].append(imported.name)
        except DomainError as exc:
            fields = {f"functions.{imported.name}.{k}": v for k, v in (exc.fields or {}).items()}
            raise DomainError(
                f"Function {imported.name}: {exc.message}",
                code=exc.code,
                fields=fields or None,
                status_code=exc.status_code,
            ) from None
    return answer


# Paths a template uses for "every path": the function then has no templates (all paths are its).
_CATCH_ALL = {"", "*", "$default", "/{proxy+}"}


def http_routing(imported: ImportedFunction) -> dict[str, Any]:
    """The function settings the template's API events stand for: ``event_format`` (``apigw-v1`` |
    ``apigw-v2`` | ``scf``) and ``routes``, its paths as path templates (the same ``{name}`` /
    ``{name+}`` syntax; methods are not part of a Stratus route, so a path listed for several
    methods is one template). A catch-all path means no templates. Nothing when the function has
    no API event: an update then keeps what the function has."""
    config: dict[str, Any] = {}
    if imported.event_format:
        config["event_format"] = imported.event_format
    if imported.routes:
        paths = [str(route.get("path") or "") for route in imported.routes]
        config["routes"] = [] if any(p in _CATCH_ALL for p in paths) else list(dict.fromkeys(paths))
    return config
