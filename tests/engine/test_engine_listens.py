"""The engine hears the control plane through announcements it subscribes to at start
(apps/engine/apps.py): route changes (apps/functions/routes.py), token revocations and
environment changes (apps/tenancy/announcements.py). Nothing below the engine imports it
(tests/core/test_import_boundaries.py); these check that the news still arrives."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

from apps.engine import gateway_auth, host
from apps.functions.routes import routes_changed
from apps.tenancy.announcements import environment_changed, tokens_revoked


def test_the_engine_subscribed_at_start() -> None:
    assert host.routes_changed in routes_changed.listeners
    assert host.environment_changed in environment_changed.listeners
    assert host.tokens_changed in tokens_revoked.listeners


@pytest.fixture
def reloads(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[str]:
    """This process's engine host, standing in for a started one: it counts reload requests."""
    settings.REDIS_URL = ""
    requested: list[str] = []
    fake = SimpleNamespace(engine=SimpleNamespace(request_reload=lambda: requested.append("reload")))
    monkeypatch.setattr(host, "_host", fake)
    return requested


def test_a_route_change_reloads_this_processs_engine(reloads: list[str]) -> None:
    routes_changed.announce((4, 5))
    assert reloads == ["reload"]


def test_an_environment_change_reloads_this_processs_engine(reloads: list[str]) -> None:
    environment_changed.announce(9)
    assert reloads == ["reload"]


def test_a_token_revocation_empties_this_processs_gateway_caches(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.REDIS_URL = ""
    forgotten: list[list[str]] = []
    monkeypatch.setattr(gateway_auth, "forget_tokens", lambda digests: forgotten.append(list(digests)))

    tokens_revoked.announce(["bb", "aa", "bb"])

    assert forgotten == [["aa", "bb"]]


def test_a_route_change_is_published_on_redis_for_the_other_processes(settings: Any) -> None:
    import redis

    address = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"
    client = redis.Redis.from_url(address)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - whatever keeps us from it
        pytest.skip(f"needs a Redis server ({address}): {exc}")
    settings.REDIS_URL = address
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(host.ROUTES_CHANNEL)
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"

        routes_changed.announce((4, 5))

        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
        assert message is not None and (message["type"], message["data"]) == ("message", b"4,5")
    finally:
        pubsub.close()
        client.close()
