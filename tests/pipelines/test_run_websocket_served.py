"""/ws/runs/{id}/ over a real socket: the console served by uvicorn, a websocket client, and a
run's lines written from another thread (as the worker writes them). On the embedded default
the channel layer is in memory: a line published from the worker's thread must wake the
consumer on the server's loop at once, not whenever that loop next has I/O."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect

from apps.pipelines import runner
from apps.tenancy import token_services
from tests.conftest import build_world, serving_console
from tests.pipelines.conftest import make_repository
from tests.pipelines.test_runs import push


@pytest.fixture
def console_url(transactional_db: None) -> Iterator[str]:
    with serving_console() as address:
        yield address


def _receive(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def test_lines_written_by_another_thread_reach_a_served_websocket_at_once(console_url: str) -> None:
    world = build_world()
    run = push(make_repository(world.web, "/nonexistent/origin.git"), "a" * 40)
    _, token = token_services.token_create(user=world.alice, name="ws", scopes=["read"])
    log = runner.LogWriter(run.pk)
    log.add("before connect")
    log.flush()

    with connect(f"ws://{console_url}/ws/runs/{run.pk}/?token={token}", origin=f"http://{console_url}") as ws:
        assert [line["text"] for line in _receive(ws)["lines"]] == ["before connect"]  # the backlog
        assert _receive(ws)["state"] == "queued"
        for n in range(3):
            sent: list[float] = []

            def write(n: int = n) -> None:  # a worker thread, not the server's loop
                writer = runner.LogWriter(run.pk)
                writer.add(f"live {n}")
                sent.append(time.monotonic())
                writer.flush()

            worker = threading.Thread(target=write)
            worker.start()
            worker.join()
            message = _receive(ws, timeout=10.0)  # the server's loop is idle meanwhile
            assert [line["text"] for line in message["lines"]] == [f"live {n}"]
            assert [line["seq"] for line in message["lines"]] == [n + 2]
