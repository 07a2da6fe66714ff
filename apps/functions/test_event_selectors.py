"""Reads of test events. The function is already scoped to the caller (selectors.function_get);
these add the event's own rule: shared events are the project's, private ones their creator's."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.functions.models import Function, TestEvent


def test_event_list(*, user: Actor, function: Function) -> QuerySet[TestEvent]:
    """The function's shared events and the caller's private ones, by name; one query per page."""
    visible = Q(shared=True)
    if user.is_authenticated:
        visible |= Q(created_by=user)
    return (
        TestEvent.objects.filter(visible, function=function)
        .select_related("created_by", "function")
        .order_by("name", "id")
    )


def test_event_get(*, user: Actor, function: Function, test_event_id: int | str) -> TestEvent:
    """One event the caller may see; someone else's private event is 404, as a missing one."""
    try:
        pk = int(test_event_id)
    except (TypeError, ValueError):
        raise NotFound("Test event not found.") from None
    test_event = test_event_list(user=user, function=function).filter(pk=pk).first()
    if test_event is None:
        raise NotFound("Test event not found.")
    return test_event
