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
from tests.prerequisites import missing


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

    address = _redis_address()
    client = redis.Redis.from_url(address)
    settings.REDIS_URL = address
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(host.routes_channel())
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


def _redis_address() -> str:
    import redis

    address = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"
    client = redis.Redis.from_url(address)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - whatever keeps us from it
        missing(f"needs a Redis server ({address}): {exc}")
    finally:
        client.close()
    return address


def test_two_installations_on_one_redis_do_not_hear_each_others_route_changes(settings: Any) -> None:
    """Pub/sub ignores the database number: installation B (database 1) listening while
    installation A (database 0, the same Redis) deploys reloads nothing; a change of B's does."""
    import asyncio
    from urllib.parse import urlsplit, urlunsplit

    address = _redis_address()
    a_url = urlunsplit(urlsplit(address)._replace(path="/0"))
    b_url = urlunsplit(urlsplit(address)._replace(path="/1"))
    b_prefix = f"stratus:test-b-{os.getpid()}:"
    a_prefix = f"stratus:test-a-{os.getpid()}:"

    class Engine:
        def __init__(self) -> None:
            self.reloads = 0
            self.changed = asyncio.Event()

        async def reload_routes(self) -> None:
            self.reloads += 1
            self.changed.set()

    async def scenario() -> tuple[int, int]:
        engine = Engine()
        settings.REDIS_URL, settings.STRATUS_REDIS_PREFIX = b_url, b_prefix
        listener = asyncio.create_task(host.listen_for_route_changes(engine))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(engine.changed.wait(), 10)  # subscribed: its catch-up reload
            engine.changed.clear()
            await asyncio.sleep(0.2)
            settings.REDIS_URL, settings.STRATUS_REDIS_PREFIX = a_url, a_prefix
            await asyncio.to_thread(routes_changed.announce, (7,))  # installation A
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(engine.changed.wait(), 1.5)
            after_a = engine.reloads
            settings.REDIS_URL, settings.STRATUS_REDIS_PREFIX = b_url, b_prefix
            await asyncio.to_thread(routes_changed.announce, (8,))  # installation B
            await asyncio.wait_for(engine.changed.wait(), 10)
            return after_a, engine.reloads
        finally:
            listener.cancel()

    after_a, after_b = asyncio.run(scenario())
    assert (after_a, after_b) == (1, 2)


def test_the_namespace_covers_every_redis_name_of_an_installation(tmp_path: Any) -> None:
    """Derived from REDIS_URL's database number unless STRATUS_INSTANCE names it: the route and
    token channels, the channel layer's keys and the broker's keys all carry it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json; from django.conf import settings as s; from apps.engine import host; "
        "print(json.dumps([s.STRATUS_INSTANCE, host.routes_channel(), host.tokens_channel(), "
        "s.CHANNEL_LAYERS['default']['CONFIG']['prefix'], s.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix'], "
        "s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]]))"
    )

    def names(**env: str) -> list[Any]:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "DB_"))}
        full.pop("DATABASE_URL", None)
        full |= {"STRATUS_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "console.settings", **env}
        result = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=Path(__file__).resolve().parents[2],
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout.strip().splitlines()[-1]))

    db3 = names(REDIS_URL="redis://127.0.0.1:6379/3?socket_timeout=5")
    assert db3[:5] == ["db3", "stratus:db3:routes", "stratus:db3:tokens", "stratus:db3:asgi", "stratus:db3:"]
    assert db3[5]["address"] == "redis://127.0.0.1:6379/3" and db3[5]["socket_timeout"] >= 10
    named = names(REDIS_URL="redis://127.0.0.1:6379/3", STRATUS_INSTANCE="shop-prod")
    assert named[:5] == [
        "shop-prod",
        "stratus:shop-prod:routes",
        "stratus:shop-prod:tokens",
        "stratus:shop-prod:asgi",
        "stratus:shop-prod:",
    ]
