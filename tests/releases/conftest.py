"""Releases fixtures: a function with three versions, version 1 serving dev and prod."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.functions import services, version_services
from apps.functions.deploy_services import deploy
from apps.functions.models import Binding, Function, TrafficChange
from apps.monitoring.models import Invocation
from apps.releases.models import Release
from apps.tenancy.models import Environment
from tests.engine.conftest import engine, sandbox_dir, served  # noqa: F401  (the served console with the engine)


@pytest.fixture
def fn(world: Any) -> Function:
    function = services.function_create(
        actor=world.alice,
        project=world.web,
        name="checkout",
        runtime="python3.11",
        handler="main.handler",
        max_instances=4,
        instance_concurrency=2,
    )
    for i in (1, 2, 3):
        version_services.version_create(
            actor=world.alice, function=function, files={"main.py": f"V = {i}\n".encode()}, source="files"
        )
    for name in ("dev", "prod"):
        env = Environment.objects.get(project=world.web, name=name)
        deploy(actor=world.alice, function=function, environment=env, version=function.versions.get(number=1))
    return function


def env(world: Any, name: str = "dev") -> Environment:
    return Environment.objects.get(project=world.web, name=name)


def binding(fn: Function, name: str = "dev") -> Binding:
    return Binding.objects.get(function=fn, environment__name=name)


def start(client: Any, fn: Function, plan: Any, version: int = 2, environment: str = "dev") -> Any:
    return client.post(
        f"/api/v1/functions/{fn.pk}/releases/",
        {"environment": environment, "version": version, "plan": plan},
        format="json",
    )


def act(client: Any, release_id: int, action: str) -> Any:
    return client.post(f"/api/v1/releases/{release_id}/{action}", format="json")


def timeline(fn: Function, name: str = "dev") -> list[tuple[str, list[dict[str, Any]]]]:
    """(reason, to_traffic) of the binding's changes, oldest first, without the warm counts."""
    rows = TrafficChange.objects.filter(binding=binding(fn, name)).order_by("id")
    return [(c.reason, [{k: v for k, v in e.items() if k != "warm"} for e in c.to_traffic]) for c in rows]


def split(stable: int, canary: int, percent: int) -> list[dict[str, Any]]:
    return [
        {"version": stable, "weight": 100 - percent, "tag": "stable"},
        {"version": canary, "weight": percent, "tag": "canary"},
    ]


def without_warm(traffic: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "warm"} for e in traffic]


def invocations(
    release: Release,
    version: int,
    *,
    ok: int = 0,
    error: int = 0,
    throttled: int = 0,
    timeout: int = 0,
    crashed: int = 0,
    duration_ms: float = 10.0,
    at: datetime | None = None,
) -> None:
    """Insert Invocation rows as the engine's sink would for requests to the binding."""
    b = release.binding
    at = at or timezone.now()
    rows = []
    for status, count in (
        ("ok", ok),
        ("error", error),
        ("throttled", throttled),
        ("timeout", timeout),
        ("crashed", crashed),
    ):
        for i in range(count):
            rows.append(
                Invocation(
                    request_id=f"r-{version}-{status}-{i}-{at.timestamp()}",
                    function_id=b.function_id,
                    environment_id=b.environment_id,
                    binding_id=b.pk,
                    version=version,
                    trigger="http",
                    started_at=at,
                    duration_ms=duration_ms,
                    status=status,
                )
            )
    Invocation.objects.bulk_create(rows)


def age_step(release: Release, seconds: float) -> Release:
    """Move the release's current step ``seconds`` into the past (as if time had passed)."""
    release.refresh_from_db()
    delta = timedelta(seconds=seconds)
    Release.objects.filter(pk=release.pk).update(
        step_started_at=release.step_started_at - delta,
        next_check_at=release.next_check_at - delta if release.next_check_at else None,
    )
    release.refresh_from_db()
    return release
