"""Reads of functions, scoped to the caller through the projects they may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.functions.models import Binding, Function
from apps.tenancy import permissions
from apps.tenancy.models import Project


def function_list(*, project: Project) -> QuerySet[Function]:
    return Function.objects.filter(project=project).select_related("project__org").order_by("name")


def function_get(*, user: Any, function_id: int | str) -> Function:
    try:
        pk = int(function_id)
    except (TypeError, ValueError):
        raise NotFound("Function not found.")
    function = (
        Function.objects.filter(pk=pk, project__in=permissions.visible_projects(user))
        .select_related("project__org")
        .first()
    )
    if function is None:
        raise NotFound("Function not found.")
    return function


def binding_list(*, function: Function) -> QuerySet[Binding]:
    return function.bindings.select_related("environment__project__org", "function").order_by("environment_id")
