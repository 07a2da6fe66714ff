"""What tenancy announces to the engine (apps/tenancy/announcements.py), after commit: revoked
tokens (every process's gateway forgets them) and an environment whose egress allow-list changed
(the engine reloads its routes and firewall). Tenancy never imports the engine; the engine's
side is in tests/engine/test_engine_listens.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.tenancy import environment_services, token_services
from apps.tenancy.announcements import environment_changed, tokens_revoked
from apps.tenancy.models import Environment


@pytest.fixture
def revoked() -> Iterator[list[list[str]]]:
    heard: list[list[str]] = []
    tokens_revoked.subscribe(heard.append)
    yield heard
    tokens_revoked.unsubscribe(heard.append)


@pytest.fixture
def changed() -> Iterator[list[int]]:
    heard: list[int] = []
    environment_changed.subscribe(heard.append)
    yield heard
    environment_changed.unsubscribe(heard.append)


def test_revoking_a_token_announces_it_and_its_children_after_commit(
    world: Any, revoked: list[list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    parent, _ = token_services.token_create(user=world.alice, name="ci", scopes=["read"])
    child, _ = token_services.token_create(user=world.alice, name="ci-child", scopes=["read"], actor_token=parent)

    with django_capture_on_commit_callbacks() as callbacks:
        token_services.token_revoke(actor=world.alice, token=parent)
    assert revoked == []  # not before the commit

    for callback in callbacks:
        callback()
    assert revoked == [[parent.token_hash, child.token_hash]]


def test_changing_the_egress_allow_list_announces_the_environment_after_commit(
    world: Any, changed: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    dev = Environment.objects.get(project=world.web, name="dev")

    with django_capture_on_commit_callbacks() as callbacks:
        environment_services.environment_update(actor=world.alice, environment=dev, egress_allow=["10.1.2.0/24"])
    assert changed == []

    for callback in callbacks:
        callback()
    assert changed == [dev.pk]

    with django_capture_on_commit_callbacks(execute=True):  # the same list again: nothing changed
        environment_services.environment_update(actor=world.alice, environment=dev, egress_allow=["10.1.2.0/24"])
    assert changed == [dev.pk]
