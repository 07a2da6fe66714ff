"""Reads of releases, scoped to the caller through the projects they may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.functions.models import Function
from apps.releases.models import Release
from apps.tenancy import permissions

RELEASE_RELATED = (
    "binding__function__project__org",
    "binding__environment__project__org",
    "version",
    "stable_version",
    "requested_by",
    "approved_by",
)


def active_release(*, binding: Any) -> Release | None:
    """The binding's release that is awaiting approval, running or paused, if any."""
    return Release.objects.filter(binding=binding, state__in=Release.ACTIVE_STATES).first()


def release_list(*, function: Function, environment: str | None = None) -> QuerySet[Release]:
    releases = Release.objects.filter(binding__function=function).select_related(*RELEASE_RELATED)
    if environment:
        releases = releases.filter(binding__environment__name=environment)
    return releases.order_by("-created_at", "-id")


def release_get(*, user: Actor, release_id: int | str) -> Release:
    """A release of a function the caller may see; NotFound otherwise (another org's
    release answers exactly as a release that does not exist)."""
    try:
        pk = int(release_id)
    except (TypeError, ValueError):
        raise NotFound("Release not found.") from None
    release = (
        Release.objects.filter(pk=pk, binding__function__project__in=permissions.visible_projects(user))
        .select_related(*RELEASE_RELATED)
        .first()
    )
    if release is None:
        raise NotFound("Release not found.")
    return release
