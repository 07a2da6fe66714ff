"""Versions: immutable numbered snapshots of a function (artifact + config)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO

from django.db import transaction
from django.db.models import Max

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import DomainError
from apps.functions.archives import ArchiveLimits, read_zip
from apps.functions.artifacts import artifact_store
from apps.functions.knobs import CONFIG_FIELDS
from apps.functions.models import Function, Version
from apps.tenancy import permissions, roles


def function_config_snapshot(function: Function) -> dict[str, Any]:
    return {field: getattr(function, field) for field in CONFIG_FIELDS if field != "description"}


@transaction.atomic
def version_create(
    *,
    actor: Actor,
    function: Function,
    files: Mapping[str, bytes],
    source: str,
    message: str = "",
    source_info: dict[str, Any] | None = None,
    reuse_identical: bool = False,
) -> tuple[Version, bool]:
    """Snapshot ``files`` and the function's current config as the next version.

    With ``reuse_identical`` (publishing a draft), content and config equal to the latest
    version return that version instead of a duplicate. Returns (version, created)."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Creating a version")
    if not files:
        raise DomainError("A version needs at least one file.", code="version_empty", fields={"files": ["Empty."]})
    # The function row lock serialises numbering: two publishes get 1 and 2, never 1 twice.
    function = Function.objects.select_for_update().select_related("project__org").get(pk=function.pk)
    artifact = artifact_store(files=files)
    config = function_config_snapshot(function)
    latest = function.versions.order_by("-number").first()
    if reuse_identical and latest is not None and latest.artifact_id == artifact.pk and latest.config == config:
        return latest, False
    number = (function.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = Version.objects.create(
        function=function,
        number=number,
        artifact=artifact,
        config=config,
        source=source,
        source_info=source_info or {},
        message=message,
        author=signed_in(actor),
    )
    audit_record(
        actor=actor,
        org=function.project.org,
        action="version.create",
        target=function,
        changes={"number": number, "sha256": artifact.sha256, "source": source, "files": len(files)},
    )
    return version, True


def version_create_from_zip(
    *, actor: Actor, function: Function, upload: BinaryIO, message: str = "", limits: ArchiveLimits | None = None
) -> tuple[Version, bool]:
    # Check the right before reading a 50 MB upload for someone who may not write.
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Creating a version")
    files = read_zip(upload, limits=limits) if limits else read_zip(upload)
    return version_create(actor=actor, function=function, files=files, source=Version.Source.UPLOAD, message=message)
