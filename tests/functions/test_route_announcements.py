"""The one announcement that a binding's routes changed (apps/functions/routes.py): every write
that changes what a binding serves makes it once, after commit, naming the binding; removing an
environment's bindings (a preview whose branch is gone) goes through the backends and the same
announcement. The engine's side is in tests/engine/test_engine_listens.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.functions import deploy_services, services, version_services
from apps.functions.models import Binding
from apps.functions.routes import routes_changed
from apps.tenancy.models import Environment


@pytest.fixture
def announced() -> Iterator[list[tuple[int, ...]]]:
    heard: list[tuple[int, ...]] = []
    routes_changed.subscribe(heard.append)
    yield heard
    routes_changed.unsubscribe(heard.append)


@pytest.fixture
def fn(world: Any) -> Any:
    function = services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    version_services.version_create(actor=world.alice, function=function, files={"main.py": b"V = 1\n"}, source="files")
    return function


def test_a_deploy_announces_its_binding_after_commit(
    world: Any, fn: Any, announced: list[tuple[int, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    dev = Environment.objects.get(project=world.web, name="dev")

    with django_capture_on_commit_callbacks() as callbacks:
        binding = deploy_services.deploy(actor=world.alice, function=fn, environment=dev, version=fn.versions.get())
    assert announced == []  # nothing before the commit

    for callback in callbacks:
        if callback.__qualname__.startswith("Announcement."):
            callback()
    assert announced == [(binding.pk,)]


def test_removing_an_environments_bindings_tells_the_backends_then_announces_them_after_commit(
    world: Any,
    fn: Any,
    announced: list[tuple[int, ...]],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    preview = Environment.objects.create(project=world.web, name="preview-feature-x")
    binding = deploy_services.deploy(actor=world.alice, function=fn, environment=preview, version=fn.versions.get())
    removed: list[tuple[str, str, int]] = []
    real_get_backend = deploy_services.get_backend

    class Recording:
        """The real backend, with a note of every removal."""

        def __init__(self, name: str) -> None:
            self.real = real_get_backend(name)
            self.name = name

        def remove(self, target: Any) -> None:
            removed.append((self.name, target.environment, target.binding_id))
            self.real.remove(target)

    monkeypatch.setattr(deploy_services, "get_backend", Recording)

    with django_capture_on_commit_callbacks(execute=True):
        ids = deploy_services.environment_bindings_remove(environment=preview)
        assert announced == []

    assert ids == [binding.pk]
    assert removed == [("local", "preview-feature-x", binding.pk)]
    assert announced == [(binding.pk,)]
    assert Binding.objects.filter(pk=binding.pk).exists()  # the rows go with the environment


def test_an_environment_without_bindings_announces_nothing(
    world: Any, announced: list[tuple[int, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    empty = Environment.objects.create(project=world.web, name="preview-empty")

    with django_capture_on_commit_callbacks(execute=True):
        assert deploy_services.environment_bindings_remove(environment=empty) == []

    assert announced == []
