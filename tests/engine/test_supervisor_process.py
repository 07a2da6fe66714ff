"""`manage.py run_supervisor` as a real process: one per data directory (a second one exits
naming the first and leaves its socket alone), a graceful SIGTERM (in-flight invocations
finish, new ones answer unavailable), and web readiness that reports the supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from apps.engine import host as host_module
from apps.engine.engine import CallSite
from apps.engine.remote import supervisor_ping
from console.test_settings import uid_block_for
from tests.engine.conftest import deploy_latest, make_function, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


class Supervisor:
    def __init__(self, data_dir: Path, socket_path: Path, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("STRATUS_TEST_DATABASE_NAME",)}
        env.update(
            DJANGO_SETTINGS_MODULE="console.settings",
            DATABASE_URL=_database_url(),
            STRATUS_DATA_DIR=str(data_dir),
            STRATUS_SUPERVISOR_SOCKET=str(socket_path),
            STRATUS_ROUTES_RESYNC_S="0",
            **extra_env,
        )
        # Another installation (its own data directory): uid ranges of its own.
        env.update(uid_block_for(str(data_dir)))
        self.socket_path = socket_path
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_supervisor"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_serving(self) -> int:
        def answered() -> Any:
            assert self.process.poll() is None, self.process.communicate()
            try:
                return supervisor_ping(self.socket_path)
            except (OSError, ValueError):
                return None

        return int(wait_for(answered, timeout=60, interval=0.1)["pid"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.communicate()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="stratus-sup-", dir="/tmp"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_a_second_supervisor_on_the_same_data_directory_exits_and_leaves_the_socket(data_dir, transactional_db):
    socket_path = data_dir / "run" / "supervisor.sock"
    first = Supervisor(data_dir, socket_path)
    try:
        assert first.wait_serving() == first.process.pid
        inode = socket_path.stat().st_ino

        second = Supervisor(data_dir, socket_path)
        out, err = second.process.communicate(timeout=60)
        assert second.process.returncode != 0
        assert f"pid {first.process.pid}" in err and "data directory" in err, (out, err)
        # The first one still serves on its own socket: not taken over, not removed.
        assert socket_path.stat().st_ino == inode
        assert supervisor_ping(socket_path)["pid"] == first.process.pid
    finally:
        first.stop()
    assert first.process.returncode == 0
    assert not socket_path.exists()
    # The lock went with its holder: the next supervisor starts.
    third = Supervisor(data_dir, socket_path)
    try:
        assert third.wait_serving() == third.process.pid
    finally:
        third.stop()


@pytest.fixture
def remote_web(settings: Any, sandbox_dir: Path, transactional_db: None) -> Iterator[tuple[Supervisor, Any]]:
    """A supervisor process on this test's data directory (where deploys unpack the code) and
    this process as a web process (STRATUS_ENGINE=remote) in front of it."""
    settings.STRATUS_SANDBOX_DIR = sandbox_dir
    settings.STRATUS_ROUTES_RESYNC_S = 0
    socket_path = Path(tempfile.mkdtemp(prefix="sup-", dir="/tmp")) / "supervisor.sock"
    supervisor = Supervisor(
        Path(django_settings.DATA_DIR),
        socket_path,
        STRATUS_SANDBOX_DIR=str(sandbox_dir),
        STRATUS_SHUTDOWN_GRACE_S="30",
    )
    settings.STRATUS_ENGINE = "remote"
    settings.STRATUS_SUPERVISOR_SOCKET = socket_path
    host_module.stop_host()
    try:
        supervisor.wait_serving()
        yield supervisor, host_module.get_host()
    finally:
        host_module.stop_host()
        supervisor.stop()


def _invoke(web: Any, fn: Any, event: dict[str, Any]) -> Any:
    route = next(r for r in web.engine.routes.values() if r.function_id == fn.pk)
    return web.submit(
        web.engine.invoke(
            route.pick(),
            {"type": "invoke", "id": f"r{time.monotonic_ns()}", "event": event},
            site=CallSite(fn.pk, route.environment_id, route.binding_id, "http"),
        )
    )


def test_sigterm_lets_in_flight_invocations_finish_and_refuses_new_ones(world, remote_web):
    supervisor, web = remote_web
    fn = make_function(
        world,
        "slow",
        {
            "main.py": "import time\ndef handler(e, c):\n    time.sleep(e.get('sleep', 0))\n    return {'slept': e.get('sleep', 0)}\n"
        },
        timeout_s=60,
    )
    deploy_latest(world, fn)
    wait_for(lambda: any(r.function_id == fn.pk for r in web.engine.routes.values()))
    assert _invoke(web, fn, {}).result(60).status == "ok"  # warm: the next one starts at once

    in_flight = _invoke(web, fn, {"sleep": 3})
    wait_for(lambda: supervisor_ping(supervisor.socket_path)["inflight"] == 1, timeout=20)
    supervisor.process.send_signal(signal.SIGTERM)

    def refusing() -> bool:
        try:
            supervisor_ping(supervisor.socket_path)
        except OSError:
            return True
        return False

    wait_for(refusing, timeout=10)
    # A new call on the web process's open connection: refused at once, not started.
    refused = _invoke(web, fn, {}).result(10)
    assert refused.status == "unavailable" and "shutting down" in refused.error["message"], refused
    outcome = in_flight.result(30)
    assert outcome.status == "ok" and outcome.reply is not None, (outcome.status, outcome.error)
    assert supervisor.process.wait(30) == 0
    assert not supervisor.socket_path.exists()


def test_readyz_of_a_web_process_reports_the_supervisor(client, remote_web):
    supervisor, _ = remote_web
    body = client.get("/readyz").json()
    assert body["checks"]["engine"].startswith(f"ok (supervisor pid {supervisor.process.pid}"), body
    supervisor.stop()
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503, body
    assert body["checks"]["engine"].startswith("failed:") and str(supervisor.socket_path) in body["checks"]["engine"]
