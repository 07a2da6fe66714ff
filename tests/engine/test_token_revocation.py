"""A revoked token stops working on /fn/ at once, although the gateway caches verdicts: the
very next call fails (no sleep), in this process (told directly) and in another web process
(told over Redis, ``stratus:<instance>:tokens``). A token that expires stops at its expiry, whatever the
cache's TTL. The other process is real: ``uvicorn console.asgi:application`` in a subprocess,
a web process (STRATUS_ENGINE=remote) forwarding to a supervisor served from this process,
sharing this test's database and a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from apps.engine import host as host_module
from apps.engine.host import EngineHost, build_local_engine
from apps.engine.remote import SupervisorServer
from apps.tenancy import token_services
from apps.tenancy.models import ApiToken
from tests.engine.conftest import deploy_latest, free_port, make_function, url, wait_for, wait_routed
from tests.prerequisites import missing

PLAIN = "def handler(event, context):\n    return {'ok': True}\n"
ROOT = Path(__file__).resolve().parents[2]
# Long enough that a verdict served from the cache could never pass for a fresh lookup.
LONG_TTL_S = 300.0


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def gateway_tokens(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The served app's token cache, with a TTL far longer than any test."""
    from console.asgi import application

    monkeypatch.setattr(application.tokens, "ttl_s", LONG_TTL_S)
    application.tokens.clear()
    return application.tokens


def test_a_revoked_token_fails_on_the_very_next_call(world, engine, served, client_for, gateway_tokens):
    fn = make_function(world, "private", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    token, plaintext = token_services.token_create(user=world.bob, name="inv", scopes=["invoke"])
    assert served.get(url(fn), headers=bearer(plaintext)).status_code == 200
    assert served.get(url(fn), headers=bearer(plaintext)).status_code == 200  # now from the cache

    assert client_for(world.bob).delete(f"/api/v1/tokens/{token.pk}/").status_code == 200

    refused = served.get(url(fn), headers=bearer(plaintext))
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"


def test_revoking_a_parent_stops_its_children_on_the_very_next_call(world, engine, served, client_for, gateway_tokens):
    fn = make_function(world, "private", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    parent, parent_plain = token_services.token_create(user=world.bob, name="ci", scopes=["invoke", "admin"])
    minted = served.post(
        "/api/v1/tokens/", json={"name": "job", "scopes": ["invoke"]}, headers=bearer(parent_plain)
    ).json()
    assert minted["parent"] == parent.pk
    assert served.get(url(fn), headers=bearer(minted["token"])).status_code == 200

    assert client_for(world.bob).delete(f"/api/v1/tokens/{parent.pk}/").status_code == 200

    assert served.get(url(fn), headers=bearer(minted["token"])).status_code == 404
    assert served.get(url(fn), headers=bearer(parent_plain)).status_code == 404


def test_an_expiring_token_stops_at_its_expiry_not_at_the_caches(world, engine, served, gateway_tokens):
    fn = make_function(world, "private", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="token")
    wait_routed(engine, fn)
    expires_at = timezone.now() + timedelta(seconds=1.5)
    _, plaintext = token_services.token_create(user=world.bob, name="short", scopes=["invoke"], expires_at=expires_at)
    assert served.get(url(fn), headers=bearer(plaintext)).status_code == 200

    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)

    assert served.get(url(fn), headers=bearer(plaintext)).status_code == 404


# --- another web process, over Redis --------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    import redis

    address = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"
    try:
        redis.Redis.from_url(address).ping()
    except Exception as exc:  # noqa: BLE001 - whatever keeps us from it
        missing(f"needs a Redis server ({address}): {exc}")
    return address


def database_url() -> str:
    """The URL of the database this test runs on (the test database), for the other process."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def supervisor(settings: Any, sandbox_dir: Path, transactional_db: None, redis_url: str) -> Iterator[Path]:
    """This process serves the engine on a Unix socket (as `manage.py run_supervisor` does) and
    announces on Redis (settings.REDIS_URL, as every process of a Redis deployment)."""
    settings.STRATUS_SANDBOX_DIR = sandbox_dir
    settings.STRATUS_ROUTES_RESYNC_S = 0
    settings.REDIS_URL = redis_url
    host_module.stop_host()
    socket_path = Path(tempfile.mkdtemp(prefix="sup-", dir="/tmp")) / "supervisor.sock"
    supervisor_host = EngineHost(build_local_engine())
    supervisor_host.start()
    server = SupervisorServer(supervisor_host.engine, socket_path)  # type: ignore[arg-type]
    supervisor_host.call_sync(server.start())
    yield socket_path
    supervisor_host.call_sync(server.close())
    supervisor_host.stop()


@pytest.fixture
def other_web_process(settings: Any, supervisor: Path, redis_url: str) -> Iterator[httpx.Client]:
    with web_process(settings, supervisor, redis_url) as client:
        yield client


@contextmanager
def web_process(settings: Any, supervisor: Path, redis_url: str, resync_s: int = 0) -> Iterator[httpx.Client]:
    """Another web process of this installation (``uvicorn console.asgi:application``, remote
    engine: the supervisor served here), with its own route resync period (0: none)."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.test_settings",
        "STRATUS_DATA_DIR": str(settings.DATA_DIR),  # the same generated keys
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "STRATUS_INSTANCE": settings.STRATUS_INSTANCE,  # the same installation: its Redis namespace
        "STRATUS_ENGINE": "remote",
        "STRATUS_SUPERVISOR_SOCKET": str(supervisor),
        "STRATUS_ROUTES_RESYNC_S": str(resync_s),
        "STRATUS_GATEWAY_AUTH_CACHE_S": str(int(LONG_TTL_S)),
    }
    env.pop("STRATUS_TEST_DATABASE_NAME", None)
    command = [sys.executable, "-m", "uvicorn", "console.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--lifespan", "on", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"the other web process exited ({process.returncode}):\n{output}")
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=60, interval=0.1)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_a_revocation_reaches_another_web_process_at_once(world, supervisor, other_web_process):
    fn = make_function(world, "private", {"main.py": PLAIN})
    deploy_latest(world, fn, auth_mode="token")
    token, plaintext = token_services.token_create(user=world.bob, name="inv", scopes=["invoke"])
    parent, parent_plain = token_services.token_create(user=world.bob, name="ci", scopes=["invoke", "admin"])
    child = other_web_process.post(
        "/api/v1/tokens/", json={"name": "job", "scopes": ["invoke"]}, headers=bearer(parent_plain)
    ).json()

    def call(plain: str) -> tuple[int, str]:
        response = other_web_process.get(url(fn), headers=bearer(plain))
        return response.status_code, response.text

    wait_for(lambda: call(plaintext)[0] == 200, timeout=30)  # its routes are loaded
    assert call(plaintext)[0] == 200 and call(child["token"])[0] == 200  # its cache holds both now

    token_services.token_revoke(actor=world.bob, token=token)  # in this process
    status, text = call(plaintext)  # the very next call, in the other
    assert status == 404, text

    token_services.token_revoke(actor=world.bob, token=ApiToken.objects.get(pk=parent.pk))
    status, text = call(child["token"])
    assert status == 404, text
