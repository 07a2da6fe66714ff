"""Fixtures for the engine and gateway: a real console served by uvicorn on a free port,
the engine in-process with real function processes, functions deployed through services."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.functions import services, version_services
from apps.functions.deploy_services import binding_apply_revision, deploy
from apps.functions.models import Binding, Function
from apps.tenancy.models import Environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    # Instances may run as other uids (when the tests run as root): the sandbox must be
    # reachable by them, which pytest's 0700 tmp dirs are not.
    path = Path(tempfile.mkdtemp(prefix="stratus-sandbox-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def engine(settings: Any, sandbox_dir: Path, transactional_db: None) -> Iterator[Any]:
    """This process's engine host, started fresh for the test and stopped after it."""
    from apps.engine import host
    from apps.monitoring.sink import get_sink

    settings.STRATUS_SANDBOX_DIR = sandbox_dir
    settings.STRATUS_ROUTES_RESYNC_S = 0
    host.stop_host()
    engine_host = host.get_host()
    yield engine_host
    host.stop_host()
    get_sink().flush()


@pytest.fixture
def engine_on_uvloop(engine: Any) -> Iterator[Any]:
    """The engine restarted on a uvloop loop, as `manage.py serve` runs it (on uvicorn's
    loop): uvloop raises where asyncio stays quiet (a write on a closed transport, for one).
    Ask for it before ``served``."""
    import asyncio

    import uvloop

    from apps.engine import host

    host.stop_host()
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the engine thread's new loop
    try:
        engine_host = host.get_host()
    finally:
        asyncio.set_event_loop_policy(policy)
    assert type(engine_host.loop).__module__.startswith("uvloop")
    yield engine_host


class Served:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)


@pytest.fixture
def served(engine: Any) -> Iterator[Served]:
    """The whole ASGI app (gateway + Django) on a real socket."""
    from tests.conftest import serving_console

    with serving_console() as address:
        result = Served(f"http://{address}")
        yield result
        result.client.close()


def make_function(world: Any, name: str, files: dict[str, str | bytes], **config: Any) -> Function:
    config.setdefault("runtime", "python3.11")
    config.setdefault("handler", "main.handler")
    function = services.function_create(actor=world.alice, project=world.web, name=name, **config)
    version_services.version_create(
        actor=world.alice,
        function=function,
        files={path: content.encode() if isinstance(content, str) else content for path, content in files.items()},
        source="files",
    )
    return function


def deploy_latest(world: Any, function: Function, environment: str = "dev", auth_mode: str = "public") -> Binding:
    """Deploy the newest version and run the apply step as the worker would; the engine
    hears about it through routes_changed (after commit)."""
    env = Environment.objects.get(project=function.project, name=environment)
    version = function.versions.order_by("-number").first()
    assert version is not None
    binding = deploy(actor=world.alice, function=function, environment=env, version=version, auth_mode=auth_mode)
    applied = binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    assert applied is not None and applied.status == "ready", applied and applied.status_message
    return binding


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def wait_routed(engine_host: Any, function: Function, environment: str = "dev", version: int | None = None) -> None:
    key = (function.project.org.slug, function.project.slug, environment, function.name)

    def ready() -> bool:
        route = engine_host.engine.routes.get(key)
        return route is not None and (version is None or version in route.versions)

    wait_for(ready)


def wait_revision(engine_host: Any, function: Function, environment: str = "dev") -> None:
    """Until the engine serves the binding's current revision (the last traffic change)."""
    binding = Binding.objects.get(function=function, environment__name=environment)
    key = (function.project.org.slug, function.project.slug, environment, function.name)

    def current() -> bool:
        route = engine_host.engine.routes.get(key)
        return route is not None and route.revision >= binding.revision

    wait_for(current)


def url(function: Function, environment: str = "dev", path: str = "") -> str:
    return f"/fn/{function.project.org.slug}/{function.project.slug}/{environment}/{function.name}/{path}"


def running_as_root() -> bool:
    return os.geteuid() == 0
