"""/ws/runs/{id}/ over a real socket: the console served by uvicorn, a websocket client, and a
run's lines written from another thread (as the worker writes them). On the embedded default
the channel layer is in memory: a line published from the worker's thread must wake the
consumer on the server's loop at once, not whenever that loop next has I/O."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from apps.pipelines import runner
from apps.tenancy import token_services
from tests.conftest import build_world, serving_console
from tests.pipelines.conftest import make_repository
from tests.pipelines.test_runs import push
from tests.prerequisites import needs


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


# --- quiet sockets on Redis (issue 20) ---------------------------------------------------------

# redis-py reads with a 5 s socket timeout by default and channels_redis blocks 5 s per read of a
# channel, so a websocket whose channel stayed quiet for 5 s died ("Timeout reading from ...").
# The silence here is several times that (STRATUS_TEST_WS_SILENCE_S may lengthen it).
OLD_TIMEOUT_S = 5.0
SILENCE_S = max(6 * OLD_TIMEOUT_S, float(os.environ.get("STRATUS_TEST_WS_SILENCE_S") or 0))


@needs(bool(os.environ.get("REDIS_URL")), "needs Redis (REDIS_URL): the timeout was the Redis channel layer's")
def test_a_run_websocket_on_redis_stays_open_through_a_long_silence(console_url: str, settings: Any) -> None:
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    world = build_world()
    run = push(make_repository(world.web, "/nonexistent/origin.git"), "b" * 40)
    _, token = token_services.token_create(user=world.alice, name="ws", scopes=["read"])

    with connect(f"ws://{console_url}/ws/runs/{run.pk}/?token={token}") as ws:
        assert _receive(ws)["state"] == "queued"
        started = time.monotonic()
        # Nothing to say for a long while: the socket must neither close nor send anything.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=SILENCE_S)
        assert time.monotonic() - started >= SILENCE_S
        writer = runner.LogWriter(run.pk)
        writer.add("after the silence")
        writer.flush()
        message = _receive(ws, timeout=15.0)
        assert [line["text"] for line in message["lines"]] == ["after the silence"]


# --- who needs an Origin (issue 20) ------------------------------------------------------------


def _session_cookie(user: Any) -> str:
    from django.conf import settings as django_settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"


def test_a_session_websocket_must_come_from_the_consoles_origin(console_url: str) -> None:
    """Cookies go with any page's handshake: a session socket from another site is refused
    (cross-site websocket hijacking), from the console's own origin it is served."""
    world = build_world()
    run = push(make_repository(world.web, "/nonexistent/origin.git"), "c" * 40)
    cookie = _session_cookie(world.alice)
    url = f"ws://{console_url}/ws/runs/{run.pk}/"

    for origin in ("http://evil.example", None):
        with pytest.raises(InvalidStatus) as refused:
            kwargs: dict[str, Any] = {"origin": origin} if origin else {}
            connect(url, additional_headers={"Cookie": cookie}, **kwargs).close()
        assert refused.value.response.status_code == 403
    # A refusal leaves nothing waiting on the channel layer (Channels' own denier, a consumer,
    # kept a receive on Redis open for ever: one more per refused handshake).
    layer = get_channel_layer()
    deadline = time.monotonic() + 5
    while getattr(layer, "receive_count", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert getattr(layer, "receive_count", 0) == 0
    with connect(url, additional_headers={"Cookie": cookie}, origin=f"http://{console_url}") as ws:
        assert _receive(ws)["state"] == "queued"


def test_a_token_websocket_needs_no_origin(console_url: str) -> None:
    """A token is no ambient credential: command-line clients and the VS Code extension open
    sockets without an Origin, with ?token= or an Authorization header."""
    world = build_world()
    run = push(make_repository(world.web, "/nonexistent/origin.git"), "d" * 40)
    _, token = token_services.token_create(user=world.alice, name="ws", scopes=["read"])
    url = f"ws://{console_url}/ws/runs/{run.pk}/"

    with connect(f"{url}?token={token}") as ws:
        assert _receive(ws)["state"] == "queued"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert _receive(ws)["state"] == "queued"
    with connect(f"{url}?token=stt_not-a-token") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_token_websocket_never_acts_on_the_session_it_carries(console_url: str) -> None:
    """A token socket skips the Origin check, so its cookies are dropped: the session of a
    visitor whom another site makes open one with a token of its own does not count."""
    world = build_world()
    run = push(make_repository(world.web, "/nonexistent/origin.git"), "e" * 40)
    _, outsider_token = token_services.token_create(user=world.charlie, name="ws", scopes=["read"])
    cookie = _session_cookie(world.alice)  # alice sees the run, charlie does not

    with (
        connect(
            f"ws://{console_url}/ws/runs/{run.pk}/?token={outsider_token}",
            additional_headers={"Cookie": cookie},
            origin="http://evil.example",
        ) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
