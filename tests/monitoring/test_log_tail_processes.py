"""The live tail across processes on Redis: the lines are written and published by this
process (as the engine's sink does), the websocket is served by another (a console started
with uvicorn on the same database and Redis). Then that console is killed and another started:
the client resumes from its cursor and no stored line is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from websockets.sync.client import connect

from apps.functions import services as function_services
from apps.monitoring.records import LogRecord
from apps.monitoring.sink import RecordSink
from apps.tenancy import token_services
from apps.tenancy.models import Environment
from console.test_settings import uid_block_for
from tests.conftest import build_world
from tests.engine.conftest import free_port
from tests.engine.test_supervisor_process import _database_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="two processes share lines through Redis")


class Console:
    """`uvicorn console.asgi:application` in a process of its own (lifespan off: no engine)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "STRATUS_TEST_DATABASE_NAME"}
        env.update(
            DJANGO_SETTINGS_MODULE="console.settings", DATABASE_URL=_database_url(), STRATUS_DATA_DIR=str(data_dir)
        )
        env.update(uid_block_for(str(data_dir)))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "console.asgi:application",
                "--port",
                str(self.port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"the console did not start: {out[-2000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def consoles(transactional_db: None, tmp_path: Path) -> Iterator[list[Console]]:
    started: list[Console] = []
    yield started
    for console in started:
        console.kill()


def test_lines_written_in_one_process_reach_a_websocket_served_by_another(
    consoles: list[Console], tmp_path: Path
) -> None:
    world = build_world()
    fn = function_services.function_create(
        actor=world.alice, project=world.web, name="checkout", runtime="python3.11", handler="main.handler"
    )
    dev = Environment.objects.get(project=world.web, name="dev")
    _, token = token_services.token_create(user=world.carol, name="tail", scopes=["read"])
    sink = RecordSink(flush_interval_s=0, journal_dir=tmp_path / "journal")

    def write(texts: list[str]) -> None:
        now = timezone.now()
        sink.submit_logs([LogRecord(fn.pk, dev.pk, None, 1, "r1", now, "stdout", t) for t in texts])
        sink.flush()

    consoles.append(Console(tmp_path / "console-1"))
    url = f"ws://127.0.0.1:{consoles[0].port}/ws/functions/{fn.pk}/logs/?token={token}"
    try:
        with connect(url) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "backlog"
            sent = time.monotonic()
            write(["from the engine's process"])
            message = json.loads(ws.recv(timeout=10))
            assert [ln["text"] for ln in message["lines"]] == ["from the engine's process"]
            assert time.monotonic() - sent < 2
            cursor = message["cursor"]
            # The console serving the socket dies; lines keep being written meanwhile
            consoles[0].kill()
            write(["while the console was down 1", "while the console was down 2"])
            with pytest.raises(Exception):  # noqa: B017 - closed or reset, whichever the kernel says
                ws.recv(timeout=10)
        consoles.append(Console(tmp_path / "console-2"))
        resume = f"ws://127.0.0.1:{consoles[1].port}/ws/functions/{fn.pk}/logs/?token={token}&after={cursor}"
        with connect(resume) as ws:
            backlog = json.loads(ws.recv(timeout=10))
            assert [ln["text"] for ln in backlog["lines"]] == [
                "while the console was down 1",
                "while the console was down 2",
            ]
            write(["live again"])
            assert [ln["text"] for ln in json.loads(ws.recv(timeout=10))["lines"]] == ["live again"]
    finally:
        sink._journal.release()
