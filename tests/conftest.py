"""Shared fixtures: one org with every role, and an outsider in another org.

alpha (org): alice owner, adam admin, bob developer (granted developer on `web`),
carol viewer (granted viewer on `web`), dora developer with no grant.
other (org): charlie owner, with project `secret-project`.
"""

from __future__ import annotations

# The data directory and test-only environment: console/test_settings.py.
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass  # noqa: E402
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from apps.tenancy import org_services, project_services, token_services
from apps.tenancy.models import Organization, Project
from apps.tenancy.roles import Role

User = get_user_model()
ALL_SCOPES = ["read", "write", "deploy", "admin"]


@dataclass
class World:
    alpha: Organization
    other: Organization
    web: Project
    outsider_project: Project
    alice: Any
    adam: Any
    bob: Any
    carol: Any
    dora: Any
    charlie: Any

    def user(self, name: str) -> Any:
        return getattr(self, name)


def make_user(username: str) -> Any:
    return User.objects.create_user(username=username, email=f"{username}@example.com", password=f"{username}-pw-123")


def build_world() -> World:
    alice, adam, bob, carol, dora, charlie = (
        make_user(n) for n in ("alice", "adam", "bob", "carol", "dora", "charlie")
    )
    alpha = org_services.org_create(actor=alice, slug="alpha", name="Alpha")
    other = org_services.org_create(actor=charlie, slug="other", name="Other")
    org_services.membership_ensure(user=adam, org=alpha, role=Role.ADMIN)
    org_services.membership_ensure(user=bob, org=alpha, role=Role.DEVELOPER)
    org_services.membership_ensure(user=carol, org=alpha, role=Role.VIEWER)
    org_services.membership_ensure(user=dora, org=alpha, role=Role.DEVELOPER)
    web = project_services.project_create(actor=alice, org=alpha, slug="web", name="Web")
    project_services.project_grant_set(actor=alice, project=web, role=Role.DEVELOPER, user=bob)
    project_services.project_grant_set(actor=alice, project=web, role=Role.VIEWER, user=carol)
    outsider_project = project_services.project_create(actor=charlie, org=other, slug="secret-project", name="Secret")
    return World(alpha, other, web, outsider_project, alice, adam, bob, carol, dora, charlie)


@pytest.fixture(autouse=True, scope="module")
def _fresh_channel_layer() -> Iterator[None]:
    """Each test module gets channel-layer instances of its own. A Redis layer remembers the
    event loop that receives on it; a module whose threads published from many loops at once
    (tests/pipelines/test_run_claim_races.py) left the shared instance counting a receive
    nobody finishes, and every later receive on another loop (a later module's served console
    or communicator) was refused: "Two event loops are trying to receive() on one channel
    layer at once!". In a process of the product one loop receives for its whole life."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # PBKDF2 at full strength costs ~0.3 s per user; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None) -> World:
    return build_world()


@pytest.fixture
def client_for():
    """client_for(user) → an APIClient signed in with a session (the browser's way);
    client_for(user, scopes=[...]) → one sending a Bearer token with those scopes."""

    def make(user: Any, scopes: list[str] | None = None, **token_kwargs: Any) -> APIClient:
        client = APIClient()
        if scopes is None:
            client.force_login(user)
        else:
            _, plaintext = token_services.token_create(user=user, name="test", scopes=scopes, **token_kwargs)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
            client.token = plaintext  # type: ignore[attr-defined]
        return client

    return make


@contextmanager
def serving_console() -> Iterator[str]:
    """The whole ASGI app (gateway, Django, websockets) served by uvicorn on a free port in a
    thread, lifespan off (the engine starts on first use); yields ``127.0.0.1:<port>``."""
    import uvicorn

    from console.asgi import application

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    from apps.engine.host import protect_console_port

    protect_console_port(port)  # as `manage.py serve` does: tenant code cannot reach it
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="websockets")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A TCP service on a loopback port (what a function or step might legitimately need, or
    must not reach): accepts and closes connections; yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    # tests/prerequisites.py: under CI a missing prerequisite fails the test, never skips it.
    from tests.prerequisites import fail_if_prerequisite_missing

    fail_if_prerequisite_missing(item)


# Groups no process of the test run has otherwise (the run's own has none): what a child that
# failed to drop its supplementary groups would show.
SUPPLEMENTARY_GIDS = (4242, 4343)


@pytest.fixture
def supplementary_groups() -> Iterator[tuple[int, ...]]:
    """This process (every thread: glibc's setgroups is process-wide) holds the supplementary
    groups SUPPLEMENTARY_GIDS for the test, so a child it starts that keeps its parent's groups
    shows them in /proc/<pid>/status. Ask for it before the fixtures that start the children
    (``engine``: the zygote). Root only."""
    import os

    from tests.prerequisites import missing

    if os.geteuid() != 0:
        missing("setting supplementary groups needs root (CI runs as root)")
    before = os.getgroups()
    os.setgroups(list(SUPPLEMENTARY_GIDS))
    try:
        yield SUPPLEMENTARY_GIDS
    finally:
        os.setgroups(before)


def process_ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid (real, effective, saved, fs) and Groups of a live process, from /proc."""
    fields: dict[str, list[int]] = {}
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115 - a short read of a procfs file
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(v) for v in value.split()]
    return fields
