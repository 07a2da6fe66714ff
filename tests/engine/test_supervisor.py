"""Production shape: the supervisor serves the engine on a Unix socket and the web side
(STRATUS_ENGINE=remote) forwards to it. Both run in this process on separate loops, talking
over a real socket."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from apps.engine import host as host_module
from apps.engine.host import EngineHost, build_local_engine
from apps.engine.remote import RemoteEngine, SupervisorServer
from tests.engine.conftest import Served, deploy_latest, free_port, make_function, url, wait_for
from tests.engine.test_faults_and_limits import _alive


@pytest.fixture
def supervisor(settings: Any, sandbox_dir: Path, transactional_db: None) -> Iterator[tuple[EngineHost, Path]]:
    settings.STRATUS_SANDBOX_DIR = sandbox_dir
    settings.STRATUS_ROUTES_RESYNC_S = 0
    socket_path = Path(tempfile.mkdtemp(prefix="sup-", dir="/tmp")) / "supervisor.sock"
    supervisor_host = EngineHost(build_local_engine())
    supervisor_host.start()
    server = SupervisorServer(supervisor_host.engine, socket_path)  # type: ignore[arg-type]
    supervisor_host.call_sync(server.start())
    settings.STRATUS_ENGINE = "remote"
    settings.STRATUS_SUPERVISOR_SOCKET = socket_path
    host_module.stop_host()
    yield supervisor_host, socket_path
    host_module.stop_host()
    supervisor_host.call_sync(server.close())
    supervisor_host.stop()


def test_web_process_forwards_to_the_supervisor(world, supervisor, client_for):
    supervisor_host, socket_path = supervisor
    fn = make_function(
        world,
        "remote",
        {"main.py": "import os\ndef handler(e, c):\n    print('from', os.getpid())\n    return {'pid': os.getpid()}\n"},
    )
    deploy_latest(world, fn)
    web = host_module.get_host()
    assert isinstance(web.engine, RemoteEngine)
    wait_for(lambda: (fn.project.org.slug, "web", "dev", fn.name) in web.engine.routes)

    from console.asgi import application

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    served = Served(f"http://127.0.0.1:{port}")
    try:
        response = served.get(url(fn))
        assert response.status_code == 200, response.text
        pid = response.json()["pid"]
        # The instance belongs to the supervisor's engine, not to the web process.
        pools = [p for p in supervisor_host.engine.pools.values() if p.spec.function_id == fn.pk]  # type: ignore[attr-defined]
        assert [i.pid for p in pools for i in p.instances] == [pid]

        body = (
            client_for(world.bob)
            .post(f"/api/v1/functions/{fn.pk}/invoke", {"environment": "dev", "event": {}}, format="json")
            .json()
        )
        assert body["status"] == "ok" and body["result"] == {"pid": pid}
        assert body["logs"][0]["text"] == f"from {pid}"
        # /readyz of a web process tells what confines the supervisor's instances.
        isolation = served.get("/readyz").json()["isolation"]
        assert isolation == supervisor_host.engine.spawner.isolation.report()  # type: ignore[attr-defined]
    finally:
        served.client.close()
        server.should_exit = True
        thread.join(10)


def test_a_draft_runs_on_the_supervisors_engine(world, supervisor, client_for):
    supervisor_host, _ = supervisor
    from apps.functions import draft_services, services

    fn = services.function_create(
        actor=world.alice, project=world.web, name="drafted", runtime="python3.11", handler="main.handler"
    )
    code = "import os\ndef handler(e, c):\n    return {'pid': os.getpid(), 'v': %d}\n"
    draft_services.draft_file_write(actor=world.bob, function=fn, path="main.py", content=(code % 1).encode())
    bob = client_for(world.bob)

    def run() -> dict[str, Any]:
        response = bob.post(f"/api/v1/functions/{fn.pk}/draft/invoke", {"environment": "dev"}, format="json")
        assert response.status_code == 200, response.json()
        return dict(response.json())

    first = run()
    assert first["status"] == "ok" and first["draft"] is True and first["result"]["v"] == 1, first
    pools = [p for p in supervisor_host.engine.pools.values() if p.spec.function_id == fn.pk]  # type: ignore[attr-defined]
    assert [i.pid for p in pools for i in p.instances] == [first["result"]["pid"]]
    # A saved change reaches the supervisor as the new draft, not the one it ran before.
    draft_services.draft_file_write(actor=world.bob, function=fn, path="main.py", content=(code % 2).encode())
    assert run()["result"]["v"] == 2


def test_a_missing_supervisor_answers_503(world, supervisor):
    supervisor_host, socket_path = supervisor
    fn = make_function(world, "lonely", {"main.py": "def handler(e, c):\n    return 1\n"})
    deploy_latest(world, fn)
    web = host_module.get_host()
    wait_for(lambda: any(r.function_id == fn.pk for r in web.engine.routes.values()))
    socket_path.unlink()
    route = next(r for r in web.engine.routes.values() if r.function_id == fn.pk)

    from apps.engine.engine import CallSite

    began = time.monotonic()
    outcome = web.call_sync(
        web.engine.invoke(
            route.pick(),
            {"type": "invoke", "id": "r1", "event": {}},
            site=CallSite(fn.pk, route.environment_id, route.binding_id, "http"),
        )
    )
    assert outcome.status == "unavailable"
    assert "engine is unavailable" in outcome.error["message"]
    assert time.monotonic() - began < 5


def test_serve_runs_the_engine_on_the_servers_own_loop(world, settings, sandbox_dir, transactional_db):
    """`manage.py serve` turns the ASGI lifespan on: the engine starts with the server, on its
    loop (no thread hop per request), and stops with it, taking its instances along."""
    settings.STRATUS_SANDBOX_DIR = sandbox_dir
    settings.STRATUS_ROUTES_RESYNC_S = 0
    host_module.stop_host()
    fn = make_function(world, "onloop", {"main.py": "import os\ndef handler(e, c):\n    return {'pid': os.getpid()}\n"})
    deploy_latest(world, fn)

    from console.asgi import application

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    served = Served(f"http://127.0.0.1:{port}")
    try:
        engine_host = host_module.current_host()
        assert engine_host is not None and engine_host._thread is None  # attached, not threaded
        wait_for(lambda: any(r.function_id == fn.pk for r in engine_host.engine.routes.values()))
        response = served.get(url(fn))
        assert response.status_code == 200, response.text
        pid = response.json()["pid"]
    finally:
        served.client.close()
        server.should_exit = True
        thread.join(10)
    assert host_module.current_host() is None
    wait_for(lambda: not _alive(pid))
