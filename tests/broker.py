"""A broker that tests can take down and bring back: a private ``redis-server`` on a free
port (no persistence), and the Celery app pointed at it for the duration of a test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.prerequisites import missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on one port; ``stop()`` kills it, ``start()`` brings it back there."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server is not installed")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.stop()


def _reset_producer_pools(app: Any) -> None:
    # The app caches a connection pool for the broker it first used (celery's own reset
    # after a fork): drop it so the next send connects to the broker configured now. Not
    # closed: kombu keeps it in a registry per broker and hands it out again later.
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Send (and let ``apps.core.worker`` consume) on ``url`` inside the block."""
    from console.celery import app

    old = app.conf.broker_url, app.conf.broker_transport
    _reset_producer_pools(app)
    app.conf.broker_url, app.conf.broker_transport = url, None
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport = old
        _reset_producer_pools(app)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")
