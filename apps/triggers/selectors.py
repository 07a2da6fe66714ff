"""Reads of triggers and their fires, scoped to the caller through the projects they see."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.functions.models import Function
from apps.tenancy import permissions
from apps.triggers.models import Trigger, TriggerFire

RELATED = ("function__project__org", "environment")


def trigger_list(*, function: Function) -> QuerySet[Trigger]:
    return Trigger.objects.filter(function=function).select_related(*RELATED).order_by("name", "id")


def trigger_get(*, user: Actor, trigger_id: int | str) -> Trigger:
    """A trigger of a project the user may see; 404 otherwise (as for one that does not exist)."""
    try:
        pk = int(trigger_id)
    except (TypeError, ValueError):
        raise NotFound("Trigger not found.")
    trigger = (
        Trigger.objects.filter(pk=pk, function__project__in=permissions.visible_projects(user))
        .select_related(*RELATED)
        .first()
    )
    if trigger is None:
        raise NotFound("Trigger not found.")
    return trigger


def fire_list(*, trigger: Trigger) -> QuerySet[TriggerFire]:
    return TriggerFire.objects.filter(trigger=trigger).order_by("-created_at", "-id")


def recent_fires(*, function: Function, limit: int = 20) -> list[TriggerFire]:
    """The function's last ``limit`` fires over all its triggers, newest first (one query)."""
    return list(
        TriggerFire.objects.filter(trigger__function=function)
        .select_related("trigger__environment")
        .order_by("-created_at", "-id")[:limit]
    )
