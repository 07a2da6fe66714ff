"""Failures inside the engine still answer in the envelope and leave a record: a channel lost
under pipelined requests, pools drained and reaped from several tasks at once, and a bounded
fault run (load through the gateway while deploying and killing instances).

These run the engine on uvloop, as `manage.py serve` does: it raises on a write to a closed
transport where asyncio's own loop stays quiet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import threading
import time
from typing import Any

import httpx

from apps.engine.engine import CallSite
from apps.engine.instance import Instance
from apps.functions import version_services
from apps.monitoring.models import Invocation
from apps.monitoring.sink import get_sink
from apps.tenancy.models import Environment
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_revision, wait_routed


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _pools(engine_host: Any, fn: Any) -> list[Any]:
    return [pool for key, pool in list(engine_host.engine.pools.items()) if key[2] == fn.pk]


def _route_version(engine_host: Any, fn: Any) -> Any:
    key = (fn.project.org.slug, fn.project.slug, "dev", fn.name)
    route = engine_host.engine.routes[key]
    return route, next(iter(route.versions.values()))


PIPELINED = """
import os

def handler(event, context):
    if event.get("die"):
        os._exit(3)
    return {"pid": os.getpid()}
"""


def test_requests_on_an_instance_whose_channel_is_lost_answer_crashed_with_records(world, engine_on_uvloop):
    """Requests pipelined on one instance keep arriving while it dies with requests unread
    (its end of the channel resets): the ones still written to the closed channel fail as
    'crashed' like the rest (not with an exception out of the engine), each recorded."""
    engine_host = engine_on_uvloop
    fn = make_function(world, "pipelined", {"main.py": PIPELINED}, instance_concurrency=1000, max_instances=1)
    deploy_latest(world, fn)
    wait_routed(engine_host, fn)
    route, rv = _route_version(engine_host, fn)
    site = CallSite(fn.pk, route.environment_id, route.binding_id, "http")
    engine = engine_host.engine

    async def storm() -> list[Any]:
        ids = iter(range(10**6))

        def frame(**event: Any) -> dict[str, Any]:
            return {"type": "invoke", "id": f"lost-{next(ids)}", "event": event}

        await engine.invoke(rv, frame(), site=site)  # the instance is up
        calls = [asyncio.ensure_future(engine.invoke(rv, frame(die=True), site=site))]
        # A new request on every turn of the loop, as a busy gateway sends them, until a
        # while after the instance died.
        for _ in range(2000):
            calls.append(asyncio.ensure_future(engine.invoke(rv, frame(), site=site)))
            await asyncio.sleep(0)
            if calls[0].done() and len(calls) > 200:
                break
        return await asyncio.gather(*calls, return_exceptions=True)

    results = engine_host.call_sync(storm(), timeout=60)

    raised = [repr(r) for r in results if isinstance(r, BaseException)]
    assert raised == []
    statuses = {r.status for r in results}
    assert "crashed" in statuses and statuses <= {"ok", "crashed", "throttled"}, statuses
    crashed = [r for r in results if r.status == "crashed"]
    assert all(r.error["type"] == "Runtime.ExitError" for r in crashed), {r.error["message"] for r in crashed}
    get_sink().flush()
    records = dict(Invocation.objects.filter(function=fn).values_list("request_id", "status"))
    assert len(records) == len(results) + 1
    assert all(records[r.request_id] == r.status for r in results)


def test_a_failure_inside_the_engine_still_answers_in_the_envelope(world, engine, served, monkeypatch, caplog):
    fn = make_function(world, "netted", {"main.py": SLOW})
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(engine.engine, "invoke", broken)

    response = served.get(url(fn), headers={"x-request-id": "netted-1"})

    assert response.status_code == 503
    assert response.headers["x-request-id"] == "netted-1"
    assert response.json()["error"]["code"] == "engine_unavailable"
    assert response.json()["error"]["message"] == "The function engine failed: a bug in the engine"
    assert [r.getMessage() for r in caplog.records if r.name == "stratus.gateway"] == [
        "the engine failed to serve a request"
    ]


def test_an_instance_that_cannot_start_answers_502_with_a_record(world, engine, served, monkeypatch):
    fn = make_function(world, "unstartable", {"main.py": SLOW})
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    async def no_zygote(spec: Any) -> Any:
        raise RuntimeError("the zygote died while starting the instance")

    monkeypatch.setattr(engine.engine.spawner, "spawn", no_zygote)

    response = served.get(url(fn), headers={"x-request-id": "unstartable-1"})

    assert response.status_code == 502
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (
        "function_crashed",
        "The instance could not start: the zygote died while starting the instance",
    )
    get_sink().flush()
    record = Invocation.objects.get(request_id=response.headers["x-stratus-invocation-id"])
    assert (record.status, record.error_type) == ("crashed", "Runtime.StartError")


SLOW = """
import os, time

def handler(event, context):
    time.sleep(0.3)
    return os.getpid()
"""


def test_drains_and_reaps_at_once_stop_each_instance_once(world, engine, monkeypatch):
    fn = make_function(world, "drained", {"main.py": SLOW}, max_instances=3, idle_timeout_s=1)
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    route, rv = _route_version(engine, fn)
    site = CallSite(fn.pk, route.environment_id, route.binding_id, "http")

    async def three_at_once() -> list[Any]:
        frames = [{"type": "invoke", "id": f"drain-{i}", "event": {}} for i in range(3)]
        return await asyncio.gather(*(engine.engine.invoke(rv, f, site=site) for f in frames))

    assert [o.status for o in engine.call_sync(three_at_once(), timeout=30)] == ["ok"] * 3
    (pool,) = _pools(engine, fn)
    instances = list(pool.instances)
    assert len(instances) == 3
    stops: list[int] = []
    real_stop = Instance._stop

    async def counted_stop(self: Instance, grace_s: float) -> None:
        stops.append(self.pid)
        await real_stop(self, grace_s)

    monkeypatch.setattr(Instance, "_stop", counted_stop, raising=False)

    async def at_once() -> None:
        # Two route reloads draining the same pool, the maintenance loop reaping it, and a
        # request's release forgetting an instance, all in the same turn of the loop.
        far = time.monotonic() + 3600
        await asyncio.gather(pool.drain(), pool.drain(), pool.reap(now=far), instances[0].stop())

    engine.call_sync(at_once(), timeout=30)

    assert sorted(stops) == sorted(i.pid for i in instances)
    assert pool.instances == []
    for instance in instances:
        wait_for(lambda instance=instance: not _alive(instance.pid))


def test_reserved_instances_topped_up_from_several_tasks_at_once_are_started_once(world, engine):
    fn = make_function(world, "reserved", {"main.py": SLOW}, min_instances=2, max_instances=4)
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    wait_for(lambda: sum(len(p.instances) for p in _pools(engine, fn)) == 2)
    (pool,) = _pools(engine, fn)

    async def lose_them_and_top_up() -> None:
        lost, pool.instances = pool.instances, []
        # A route reload, a pre-warm and the maintenance loop (which runs meanwhile as well),
        # in the same turn of the loop.
        await asyncio.gather(pool.ensure_min(), pool.ensure_min(), pool.ensure_min(), *(i.stop() for i in lost))

    engine.call_sync(lose_them_and_top_up(), timeout=30)

    wait_for(lambda: pool.starting == 0)
    assert len(pool.instances) == 2


FAULTY = """
import asyncio

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.sleep(0.3)  # closing its connections: a stop takes a while
                await send({"type": "lifespan.shutdown.complete"})
                return
    print("serving")
    await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""
REQUESTS = 3000
CLIENTS = 12


def test_load_while_deploying_and_killing_instances_answers_every_request_in_the_envelope(
    world, engine_on_uvloop, served, caplog
):
    """A bounded fault run (a count of requests, not a timing): every answer is a 2xx or an
    enveloped error, every request the engine saw has its invocation record, nothing crashed.
    Requests are pipelined on instances (instance_concurrency), instances are killed with
    requests unread, old versions drain while the maintenance loop drains and reaps too."""
    engine_host = engine_on_uvloop
    engine_host.engine.maintenance_s = 0.05
    fn = make_function(
        world,
        "faulty",
        {"web.py": FAULTY.replace("VERSION", "v1")},
        kind="http",
        handler="web.app",
        max_instances=3,
        instance_concurrency=4,
        idle_timeout_s=1,
    )
    deploy_latest(world, fn)
    wait_routed(engine_host, fn)
    # uvicorn's loggers do not propagate to the root logger, where caplog listens.
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING)
    answers: list[tuple[str, int, bytes]] = []
    sent = iter(range(REQUESTS))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=served.base_url, timeout=30) as http:
            while True:
                with lock:
                    n = next(sent, None)
                if n is None:
                    return
                request_id = f"fault-{n}"
                response = http.get(url(fn), headers={"x-request-id": request_id})
                # The record is the invocation's (its own id); the trace id is echoed.
                assert response.headers["x-request-id"] == request_id
                invocation_id = response.headers.get("x-stratus-invocation-id", request_id)
                answers.append((invocation_id, response.status_code, response.content))

    try:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        dev = Environment.objects.get(project=fn.project, name="dev")
        for n in range(2, 6):
            while len(answers) < REQUESTS * (n - 1) // 6:
                time.sleep(0.01)
            _kill_some(engine_host, fn)
            version_services.version_create(
                actor=world.alice,
                function=fn,
                files={"web.py": FAULTY.replace("VERSION", f"v{n}").encode()},
                source="files",
            )
            deploy_latest(world, fn)
            wait_revision(engine_host, fn)
            _kill_some(engine_host, fn)
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        uvicorn_logger.removeHandler(caplog.handler)

    assert len(answers) == REQUESTS
    not_enveloped = [(status, body[:200]) for _, status, body in answers if status >= 300 and not _enveloped(body)]
    assert not_enveloped == []
    assert {status for _, status, _ in answers} <= {200, 429, 502, 504}
    # Every answer came from the engine (the URL is always routed): a 404 would not have.
    engine_answers = {request_id for request_id, status, _ in answers if status in (200, 429, 502, 504)}
    get_sink().flush()
    recorded = set(Invocation.objects.filter(function=fn, environment=dev).values_list("request_id", flat=True))
    assert len(recorded) == Invocation.objects.filter(function=fn).count()  # one record per request
    assert recorded == engine_answers
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]


def _enveloped(body: bytes) -> bool:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and {"code", "message"} <= set(error)


def _kill_some(engine_host: Any, fn: Any) -> None:
    """SIGKILL up to two running instances of ``fn``, as the OOM killer or a crash would."""
    instances = [i for pool in _pools(engine_host, fn) for i in pool.instances if not i.dead]
    for instance in random.sample(instances, min(2, len(instances))):
        os.kill(instance.pid, signal.SIGKILL)
