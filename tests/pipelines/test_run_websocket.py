"""/ws/runs/{id}/: authorization on connect, the backlog first, then live lines in order,
never twice, gaps filled from the database; the state when it changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.test import Client

from apps.pipelines import run_services, runner
from apps.pipelines.models import Run
from apps.pipelines.runner.claim import claim
from apps.tenancy import token_services
from tests.conftest import build_world
from tests.pipelines.conftest import make_repository

ORIGIN = [(b"origin", b"http://testserver")]


class WebsocketCommunicator(ApplicationCommunicator):
    """channels.testing.WebsocketCommunicator, trimmed (channels.testing imports daphne,
    which this project does not install)."""

    def __init__(self, application: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        from urllib.parse import unquote, urlparse

        parsed = urlparse(path)
        scope = {
            "type": "websocket",
            "path": unquote(parsed.path),
            "query_string": parsed.query.encode(),
            "headers": headers,
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float = 5) -> tuple[bool, Any]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        return True, response.get("subprotocol")

    async def receive_json_from(self, timeout: float = 5) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 5) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


@pytest.fixture
def live(transactional_db: None) -> Any:
    world = build_world()
    repo = make_repository(world.web, "/nonexistent/origin.git")
    run = run_services.run_for_push(
        repository=repo, ref="refs/heads/main", commit_sha="a" * 40, commit_message="m", author="a", pusher="p"
    )
    claim(run.pk, "test-worker")
    return world, run


def token(user: Any, scopes: list[str]) -> str:
    return token_services.token_create(user=user, name="ws", scopes=scopes)[1]


async def connect(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    from console.asgi import application

    comm = WebsocketCommunicator(application, path, headers=[*ORIGIN, *(headers or [])])
    connected, _ = await comm.connect()
    assert connected
    return comm


def write(run_id: int, texts: list[str]) -> None:
    log = runner.LogWriter(run_id)
    for text in texts:
        log.add(text)
    log.flush()


async def texts(comm: WebsocketCommunicator, count: int) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    while len(got) < count:
        message = await comm.receive_json_from(timeout=5)
        assert message["type"] == "lines", message
        got += [(line["seq"], line["text"]) for line in message["lines"]]
    return got


def test_backlog_then_live_lines_in_order(live: Any) -> None:
    world, run = live
    write(run.pk, ["one", "two", "three"])
    plaintext = token(world.carol, ["read"])  # a viewer may watch

    async def scenario() -> None:
        comm = await connect(f"/ws/runs/{run.pk}/?token={plaintext}")
        assert await texts(comm, 3) == [(1, "one"), (2, "two"), (3, "three")]
        state = await comm.receive_json_from(timeout=5)
        assert state["type"] == "state" and state["state"] == "running"

        await sync_to_async(write)(run.pk, ["four", "five"])  # the runner's way: rows + group
        assert await texts(comm, 2) == [(4, "four"), (5, "five")]

        # A repeated message and an overlapping one: nothing twice, nothing out of order.
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        await layer.group_send(
            f"run.{run.pk}",
            {"type": "run.lines", "lines": [{"seq": 5, "ts": "", "stream": "stdout", "text": "five", "step": None}]},
        )
        await sync_to_async(write)(run.pk, ["six"])
        assert await texts(comm, 1) == [(6, "six")]

        # A gap (a message the layer dropped): read from the database.
        await sync_to_async(_write_silently)(run.pk, ["seven", "eight"])
        await sync_to_async(write)(run.pk, ["nine"])
        assert await texts(comm, 3) == [(7, "seven"), (8, "eight"), (9, "nine")]

        await sync_to_async(Run.objects.filter(pk=run.pk).update)(state=Run.State.SUCCEEDED, reason="done")
        await sync_to_async(run_services.publish_state)(run.pk)
        state = await comm.receive_json_from(timeout=5)
        assert (state["type"], state["state"], state["reason"]) == ("state", "succeeded", "done")
        assert await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()

        # A late client asking from seq 7 gets 8 and 9 only.
        late = await connect(f"/ws/runs/{run.pk}/?after=7&token={plaintext}")
        assert await texts(late, 2) == [(8, "eight"), (9, "nine")]
        assert (await late.receive_json_from(timeout=5))["state"] == "succeeded"
        await late.disconnect()

    async_to_sync(scenario)()


def _write_silently(run_id: int, lines: list[str]) -> None:
    log = runner.LogWriter(run_id)
    for text in lines:
        log.add(text)
    from apps.pipelines.models import RunLogLine

    RunLogLine.objects.bulk_create(log.pending)  # rows without a group message
    log.pending = []


def test_session_user_can_watch(live: Any) -> None:
    world, run = live
    write(run.pk, ["hello"])
    client = Client()
    client.force_login(world.bob)
    name = settings.SESSION_COOKIE_NAME
    cookie = f"{name}={client.cookies[name].value}".encode()

    async def scenario() -> None:
        comm = await connect(f"/ws/runs/{run.pk}/", headers=[(b"cookie", cookie)])
        assert await texts(comm, 1) == [(1, "hello")]
        await comm.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("who", ["outsider", "anonymous", "bad-token", "no-read-scope"])
def test_unauthorized_clients_are_closed(live: Any, who: str) -> None:
    world, run = live
    write(run.pk, ["secret line"])
    query = {
        "outsider": f"?token={token(world.charlie, ['read'])}",
        "anonymous": "",
        "bad-token": "?token=stt_nope",
        "no-read-scope": f"?token={token(world.bob, ['invoke'])}",
    }[who]

    async def scenario() -> None:
        comm = await connect(f"/ws/runs/{run.pk}/{query}")
        message = await comm.receive_output(timeout=5)
        assert message["type"] == "websocket.close"
        assert message["code"] == (4401 if who in ("bad-token", "no-read-scope") else 4404)
        await comm.wait()

    async_to_sync(scenario)()


def test_unknown_run_is_closed(live: Any) -> None:
    world, _ = live
    plaintext = token(world.alice, ["read"])

    async def scenario() -> None:
        comm = await connect(f"/ws/runs/987654/?token={plaintext}")
        message = await comm.receive_output(timeout=5)
        assert message == {"type": "websocket.close", "code": 4404}

    async_to_sync(scenario)()
