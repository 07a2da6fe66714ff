"""Fixtures for alerts: a function of alpha's `web` project, invocation records written at
chosen times (the fake clock is the ``now`` every service takes), rules made through the
service as bob (a developer on `web`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.alerts import services
from apps.alerts.models import AlertRule
from apps.functions import services as function_services
from apps.monitoring.models import Invocation
from apps.tenancy.models import Environment

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
_seq = itertools.count(1)


@pytest.fixture
def fn(world: Any) -> Any:
    return function_services.function_create(
        actor=world.alice, project=world.web, name="api", runtime="python3.11", handler="main.handler"
    )


@pytest.fixture
def prod(world: Any) -> Environment:
    return Environment.objects.get(project=world.web, name="prod")


@pytest.fixture
def record(fn: Any, prod: Environment) -> Callable[..., None]:
    """record(at, ok=3, error=1, duration_ms=10.0): that many invocations started at ``at``."""

    def make(at: datetime, *, ok: int = 0, error: int = 0, duration_ms: float = 10.0, **extra: Any) -> None:
        rows = []
        for status, count in (("ok", ok), ("error", error)):
            for _ in range(count):
                n = next(_seq)
                rows.append(
                    Invocation(
                        request_id=f"r{n}",
                        function=fn,
                        environment=prod,
                        version=1,
                        trigger="http",
                        started_at=at,
                        duration_ms=duration_ms,
                        status=status,
                        **extra,
                    )
                )
        Invocation.objects.bulk_create(rows)

    return make


@pytest.fixture
def make_rule(world: Any, fn: Any, prod: Environment) -> Callable[..., AlertRule]:
    def make(**fields: Any) -> AlertRule:
        base = {
            "name": "errors high",
            "metric": "error_rate",
            "comparison": ">",
            "threshold": 0.1,
            "window_s": 300,
            "min_invocations": 5,
            "for_s": 60,
            "notify_email": False,
        }
        rule, _ = services.alert_rule_create(actor=world.bob, function=fn, environment=prod, fields=base | fields)
        return rule

    return make


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
