from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.functions import services as function_services
from apps.functions.models import Function
from apps.tenancy.models import Environment
from apps.triggers import services
from apps.triggers.models import Trigger
from tests.engine.conftest import engine, sandbox_dir, served  # noqa: F401  (real engine fixtures)


def plain_function(world: Any, name: str = "nightly") -> Function:
    return function_services.function_create(
        actor=world.alice, project=world.web, name=name, runtime="python3.11", handler="main.handler"
    )


def make_trigger(world: Any, function: Function, *, at: datetime | None = None, **fields: Any) -> Trigger:
    """A trigger through the service; with ``at``, its first occurrence is moved to the first
    at or after that fake-clock time (as if it had been created then)."""
    fields.setdefault("name", "t")
    fields.setdefault("expression", "* * * * *")
    env = Environment.objects.get(project=function.project, name="dev")
    trigger = services.trigger_create(actor=world.alice, function=function, environment=env, fields=fields)
    if at is not None:
        from datetime import timedelta

        Trigger.objects.filter(pk=trigger.pk).update(created_at=at, start_at=None)
        trigger.refresh_from_db()
        first = services.next_fire_compute(trigger, after=at - timedelta(microseconds=1))
        Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=first)
        trigger.refresh_from_db()
    return trigger
