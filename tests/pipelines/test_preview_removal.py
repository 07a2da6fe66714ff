"""A branch deleted: its preview environment goes, and the gateways hear at once that the
bindings it served are gone (through functions' environment_bindings_remove and the one route
announcement, apps/functions/routes.py: pipelines never speak to the engine)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.functions import deploy_services, services, version_services
from apps.functions.models import Binding
from apps.functions.routes import routes_changed
from apps.pipelines import run_services
from apps.tenancy.models import Environment
from tests.pipelines.conftest import make_repository


@pytest.fixture
def announced() -> Iterator[list[tuple[int, ...]]]:
    heard: list[tuple[int, ...]] = []
    routes_changed.subscribe(heard.append)
    yield heard
    routes_changed.unsubscribe(heard.append)


def test_deleting_a_branch_removes_its_preview_bindings_and_announces_them_after_commit(
    world: Any, announced: list[tuple[int, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    repo = make_repository(world.web, "/nonexistent/origin.git")
    preview = Environment.objects.create(project=world.web, name=run_services.preview_environment_name("feature/x"))
    bindings = []
    for name in ("api", "worker"):
        fn = services.function_create(
            actor=world.alice, project=world.web, name=name, runtime="python3.11", handler="main.handler"
        )
        version, _ = version_services.version_create(
            actor=world.alice, function=fn, files={"main.py": b"V = 1\n"}, source="files"
        )
        bindings.append(deploy_services.deploy(actor=world.alice, function=fn, environment=preview, version=version))

    with django_capture_on_commit_callbacks() as callbacks:
        run_services.preview_delete(repository=repo, branch="feature/x")
    assert announced == []  # not before the commit

    for callback in callbacks:
        callback()
    assert announced == [tuple(sorted(b.pk for b in bindings))]
    assert not Environment.objects.filter(pk=preview.pk).exists()
    assert not Binding.objects.filter(pk__in=[b.pk for b in bindings]).exists()
