"""`celery -A console worker` as a real process on Redis: `-l info` shows task activity, and
SIGTERM to its process group (systemd, Ctrl-C) is a warm shutdown: a running task finishes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from console.test_settings import uid_block_for
from tests.engine.conftest import wait_for
from tests.engine.test_supervisor_process import _database_url
from tests.prerequisites import needs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs(bool(django_settings.REDIS_URL), "a real worker needs Redis (REDIS_URL)")


class Worker:
    def __init__(self, data_dir: Path) -> None:
        self.queue = f"test-{uuid.uuid4().hex[:12]}"
        env = {k: v for k, v in os.environ.items() if k != "STRATUS_TEST_DATABASE_NAME"}
        env.update(
            DJANGO_SETTINGS_MODULE="console.settings",
            DATABASE_URL=_database_url(),
            STRATUS_DATA_DIR=str(data_dir),
            STRATUS_TASK_QUEUE=self.queue,
        )
        # Another installation (its own data directory): uid ranges of its own.
        env.update(uid_block_for(str(data_dir)))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "console",
                "worker",
                "-l",
                "info",
                "-c",
                "1",
                "-n",
                f"{self.queue}@%h",
                "--include",
                "tests.core.worker_tasks",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as under systemd
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def send(self, directory: Path, seconds: float) -> str:
        # The console's own app: its broker and its installation's key prefix, as the worker's.
        from console.celery import app

        return str(app.send_task("tests.sleep_and_touch", args=[str(directory), seconds], queue=self.queue).id)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def worker(transactional_db: None) -> Iterator[Worker]:
    data_dir = Path(tempfile.mkdtemp(prefix="stratus-worker-", dir="/tmp"))
    worker = Worker(data_dir)
    try:
        # No wait for "ready": tasks sent meanwhile wait in the queue.
        yield worker
    finally:
        worker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_info_level_shows_tasks_received_and_succeeded(worker: Any, tmp_path: Path) -> None:
    task_id = worker.send(tmp_path, 0)
    wait_for(lambda: "succeeded" in worker.output() and task_id in worker.output(), timeout=30, interval=0.1)
    lines = [line for line in worker.lines if task_id in line]
    assert any("received" in line for line in lines), worker.output()[-3000:]
    assert any("succeeded" in line for line in lines), worker.output()[-3000:]
    assert all(line.startswith("{") for line in lines)  # our JSON lines, not Celery's own format


def test_sigterm_to_the_process_group_lets_the_running_task_finish(worker: Any, tmp_path: Path) -> None:
    worker.send(tmp_path, 3)
    wait_for(lambda: (tmp_path / "started").exists(), timeout=30, interval=0.05)
    os.killpg(worker.process.pid, signal.SIGTERM)  # what systemd and Ctrl-C do
    assert worker.process.wait(60) == 0, worker.output()[-3000:]
    assert (tmp_path / "done").exists(), worker.output()[-3000:]
