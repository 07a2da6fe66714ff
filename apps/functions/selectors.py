"""Reads of functions, scoped to the caller through the projects they may see."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.functions.models import Binding, Function, TrafficChange
from apps.tenancy import permissions
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Project


def function_list(*, project: Project) -> QuerySet[Function]:
    return Function.objects.filter(project=project).select_related("project__org").order_by("name")


def function_get(*, user: Actor, function_id: int | str) -> Function:
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


def binding_get(*, function: Function, environment_name: str) -> Binding:
    """The function's binding in the named environment (the function is already scoped to
    the caller); 404 for an unknown environment or one the function is not deployed to."""
    environment = tenancy_selectors.environment_get(project=function.project, name=environment_name)
    binding = (
        Binding.objects.filter(function=function, environment=environment)
        .select_related("function", "environment__project__org")
        .first()
    )
    if binding is None:
        raise NotFound(f"Function '{function.name}' has no binding in '{environment.name}'.")
    return binding


def binding_history(*, binding: Binding) -> QuerySet[TrafficChange]:
    """The binding's timeline, newest first; one query per page."""
    return binding.changes.select_related("actor", "version").order_by("-created_at", "-id")


def function_history(*, function: Function, environment_name: str = "") -> QuerySet[TrafficChange]:
    """The timelines of all the function's bindings (or of the one in ``environment_name``),
    newest first: the rows of binding_history, with the binding's environment and release."""
    changes = TrafficChange.objects.filter(binding__function=function)
    if environment_name:
        changes = changes.filter(binding__environment__name=environment_name)
    return changes.select_related("actor", "version", "release", "binding__environment").order_by("-created_at", "-id")
