"""The live log tail against a served console (uvicorn on a real socket): the websocket
/ws/functions/{id}/logs/ with a real websockets client, the SSE stream with httpx, tickets.
Lines are written as the engine's sink writes them (RecordSink.flush from this thread), and
published on this process's channel layer (in memory, or Redis with REDIS_URL)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apps.functions import services as function_services
from apps.monitoring.records import LogRecord
from apps.monitoring.sink import RecordSink
from apps.tenancy import token_services
from apps.tenancy.models import Environment
from tests.conftest import build_world, serving_console


@pytest.fixture
def served(transactional_db: None) -> Iterator[str]:
    with serving_console() as address:
        yield address


@pytest.fixture
def setup(served: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    world = build_world()
    fn = function_services.function_create(
        actor=world.alice, project=world.web, name="checkout", runtime="python3.11", handler="main.handler"
    )
    _, token = token_services.token_create(user=world.carol, name="tail", scopes=["read"])  # a viewer
    _, outsider = token_services.token_create(user=world.charlie, name="tail", scopes=["read"])
    sink = RecordSink(flush_interval_s=0, journal_dir=tmp_path / "journal")
    envs = {e.name: e for e in Environment.objects.filter(project=world.web)}
    yield {"world": world, "fn": fn, "token": token, "outsider": outsider, "sink": sink, "envs": envs, "url": served}
    sink._journal.release()


def write(s: dict[str, Any], texts: list[str], *, env: str = "dev", request_id: str = "r1", version: int = 1) -> None:
    from django.utils import timezone

    s["sink"].submit_logs(
        [
            LogRecord(
                function_id=s["fn"].pk,
                environment_id=s["envs"][env].pk,
                binding_id=None,
                version=version,
                request_id=request_id,
                ts=timezone.now(),
                stream="stdout",
                text=text,
            )
            for text in texts
        ]
    )
    s["sink"].flush()


def ws_url(s: dict[str, Any], query: str = "", token: str | None = None) -> str:
    token = s["token"] if token is None else token
    return f"ws://{s['url']}/ws/functions/{s['fn'].pk}/logs/?token={token}&{query}"


def receive(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def receive_lines(ws: Any, count: int, timeout: float = 10.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Lines (and dropped notices) until ``count`` lines are accounted for."""
    lines: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(lines) + sum(d["count"] for d in dropped) < count:
        message = receive(ws, timeout=max(0.1, deadline - time.monotonic()))
        if message["type"] == "lines":
            lines.extend(message["lines"])
        elif message["type"] == "dropped":
            dropped.append(message)
        else:
            raise AssertionError(f"unexpected {message}")
    return lines, dropped


def closed_code(ws: Any) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_backlog_then_live_lines_in_order_and_a_resume_with_no_gap_and_no_duplicate(setup: dict[str, Any]) -> None:
    s = setup
    write(s, [f"old {i}" for i in range(250)])

    with connect(ws_url(s)) as ws:
        backlog = receive(ws)
        assert backlog["type"] == "backlog"
        assert [ln["text"] for ln in backlog["lines"]] == [f"old {i}" for i in range(50, 250)]  # the last 200
        write(s, ["live 1", "live 2"])
        write(s, ["live 3"], env="prod")
        lines, dropped = receive_lines(ws, 3)
        assert dropped == []
        assert [ln["text"] for ln in lines] == ["live 1", "live 2", "live 3"]
        assert [ln["environment"] for ln in lines] == ["dev", "dev", "prod"]
        cursor = lines[-1]["id"]
        ids = [ln["id"] for ln in backlog["lines"] + lines]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

    write(s, ["while away 1", "while away 2"])  # nobody watching
    with connect(ws_url(s, f"after={cursor}")) as ws:
        resumed = receive(ws)
        assert resumed["type"] == "backlog"
        assert [ln["text"] for ln in resumed["lines"]] == ["while away 1", "while away 2"]
        write(s, ["after resume"])
        lines, _ = receive_lines(ws, 1)
        assert [ln["text"] for ln in lines] == ["after resume"]
        assert lines[0]["id"] > resumed["lines"][-1]["id"]


def test_lines_committed_out_of_publish_order_are_sent_once_in_id_order(setup: dict[str, Any]) -> None:
    """Two writer processes may publish in the other order than they committed, or a message
    may be lost: the watcher reads the gap from the database and skips the late copy."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.utils import timezone

    from apps.monitoring.models import LogLine
    from apps.monitoring.services import log_function_group_name, log_line_data

    s = setup
    with connect(ws_url(s, "backlog=0")) as ws:
        assert receive(ws)["lines"] == []
        # Two writes committed in order, their messages held back (as from another process)
        s["sink"].flush()
        first = LogLine.objects.create(
            function=s["fn"],
            environment=s["envs"]["dev"],
            version=1,
            ts=timezone.now(),
            stream="stdout",
            level="info",
            text="committed first",
        )
        second = LogLine.objects.create(
            function=s["fn"],
            environment=s["envs"]["dev"],
            version=1,
            ts=timezone.now(),
            stream="stdout",
            level="info",
            text="committed second",
        )
        group = log_function_group_name(function_id=s["fn"].pk)
        send = async_to_sync(get_channel_layer().group_send)
        # The second's message arrives first: its prev (the first's id) is past what the watcher has
        send(group, {"type": "log.lines", "prev": first.id, "lines": [log_line_data(second, "dev")]})
        lines, _ = receive_lines(ws, 2)
        assert [ln["text"] for ln in lines] == ["committed first", "committed second"]
        # The first's message, late: nothing is sent twice
        send(group, {"type": "log.lines", "prev": first.id - 1, "lines": [log_line_data(first, "dev")]})
        write(s, ["next"])
        lines, _ = receive_lines(ws, 1)
        assert [ln["text"] for ln in lines] == ["next"]


def test_filters_on_the_server_and_a_filter_change_without_reconnecting(setup: dict[str, Any]) -> None:
    s = setup
    write(s, ["INFO booting", "[ERROR] payment failed", "payment ok"], request_id="a")
    write(s, ["ERROR: prod boom"], env="prod", request_id="b", version=2)

    with connect(ws_url(s, "level=error&environment=dev")) as ws:
        assert [ln["text"] for ln in receive(ws)["lines"]] == ["[ERROR] payment failed"]
        write(s, ["ERROR: again", "fine"])
        write(s, ["ERROR: not dev"], env="prod")
        lines, _ = receive_lines(ws, 1)
        assert [ln["text"] for ln in lines] == ["ERROR: again"]

        ws.send(json.dumps({"type": "filters", "q": r"/pay\w+ (ok|failed)/", "backlog": 10}))
        changed = receive(ws)
        assert changed["type"] == "backlog"
        assert changed["filters"]["regex"] is True
        assert [ln["text"] for ln in changed["lines"]] == ["[ERROR] payment failed", "payment ok"]

        ws.send(json.dumps({"type": "filters", "request_id": "b", "version": 2}))
        assert [ln["text"] for ln in receive(ws)["lines"]] == ["ERROR: prod boom"]

        ws.send(json.dumps({"type": "filters", "q": "PAYMENT"}))  # a substring, ignoring case
        assert [ln["text"] for ln in receive(ws)["lines"]] == ["[ERROR] payment failed", "payment ok"]
        write(s, ["Payment again"], env="prod")
        lines, _ = receive_lines(ws, 1)
        assert [ln["text"] for ln in lines] == ["Payment again"]


def test_a_bad_regex_or_an_unknown_filter_answers_a_clear_error(setup: dict[str, Any]) -> None:
    s = setup
    with connect(ws_url(s, "q=(a)\\1&regex=1")) as ws:
        error = receive(ws)
        assert error["type"] == "error" and error["code"] == "invalid_filter"
        assert "not a valid regular expression" in error["message"] and "q" in error["fields"]
        assert closed_code(ws) == 4400
    with connect(ws_url(s, "colour=red")) as ws:
        error = receive(ws)
        assert error["fields"] == {"colour": ["unknown filter"]}
        assert closed_code(ws) == 4400

    write(s, ["x"])
    with connect(ws_url(s, "level=info")) as ws:
        assert len(receive(ws)["lines"]) == 1
        ws.send(json.dumps({"type": "filters", "q": "/[unclosed/"}))
        error = receive(ws)
        assert error["type"] == "error" and "missing ]" in error["message"]
        ws.send(json.dumps({"type": "filters", "level": "loud"}))
        assert receive(ws)["fields"]["level"] == ["unknown level 'loud'"]
        write(s, ["still watching with the old filters"])  # the socket stays open, filters kept
        lines, _ = receive_lines(ws, 1)
        assert [ln["text"] for ln in lines] == ["still watching with the old filters"]


def test_a_catastrophic_regex_is_matched_in_linear_time(setup: dict[str, Any]) -> None:
    s = setup
    write(s, ["a" * 16000 + "!"] * 20)
    started = time.monotonic()
    with connect(ws_url(s, "q=(a%2Ba%2B)%2B$&regex=1")) as ws:  # (a+a+)+$: exponential when backtracking
        assert len(receive(ws)["lines"]) == 0
    assert time.monotonic() - started < 2


def test_a_flood_over_the_rate_cap_is_reported_as_dropped(setup: dict[str, Any], settings: Any) -> None:
    settings.STRATUS_LOG_TAIL_RATE = 1000
    s = setup
    with connect(ws_url(s, "backlog=0")) as ws:
        assert receive(ws)["lines"] == []
        write(s, [f"flood {i}" for i in range(3000)])  # one write: far over 1,000 lines/s
        lines, dropped = receive_lines(ws, 3000)
        assert len(lines) == 1000
        assert [d["reason"] for d in dropped] == ["rate_limit"]
        assert dropped[0]["count"] == 2000
        assert [ln["text"] for ln in lines] == [f"flood {i}" for i in range(1000)]
        time.sleep(1.1)  # the bucket refills
        write(s, ["after the flood"])
        lines, dropped = receive_lines(ws, 1)
        assert [ln["text"] for ln in lines] == ["after the flood"] and dropped == []


def test_a_client_that_does_not_read_gets_a_dropped_count_never_silent_loss(
    setup: dict[str, Any], settings: Any
) -> None:
    settings.STRATUS_LOG_TAIL_RATE = 1_000_000
    settings.STRATUS_LOG_TAIL_BUFFER = 200
    s = setup
    raw = socket.create_connection(tuple(s["url"].split(":")))  # type: ignore[arg-type]
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    total = 0
    with connect(ws_url(s, "backlog=0"), sock=raw, max_queue=1, max_size=None) as ws:
        assert receive(ws)["lines"] == []
        for batch in range(12):  # ~36 MB: more than the sockets' buffers hold
            write(s, [f"{batch}-{i} " + "x" * 12000 for i in range(250)])
            total += 250
        lines, dropped = receive_lines(ws, total, timeout=60)
    assert {d["reason"] for d in dropped} == {"slow_client"}
    assert len(lines) + sum(d["count"] for d in dropped) == total
    ids = [ln["id"] for ln in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert lines[0]["text"].startswith("0-0 ")


def test_outsiders_learn_nothing_and_bad_credentials_close_4401(setup: dict[str, Any]) -> None:
    s = setup
    with connect(ws_url(s, token=s["outsider"])) as ws:
        assert closed_code(ws) == 4404
    with connect(f"ws://{s['url']}/ws/functions/999999/logs/?token={s['token']}") as ws:
        assert closed_code(ws) == 4404
    with connect(ws_url(s, token="stt_not-a-token")) as ws:
        assert closed_code(ws) == 4401
    # no credential at all (a browser page of the console's origin without a session)
    with connect(f"ws://{s['url']}/ws/functions/{s['fn'].pk}/logs/", origin=f"http://{s['url']}") as ws:
        assert closed_code(ws) == 4404


def test_a_ticket_opens_the_websocket_once(setup: dict[str, Any]) -> None:
    s = setup
    api = httpx.Client(base_url=f"http://{s['url']}", headers={"Authorization": f"Bearer {s['token']}"})
    answer = api.post(f"/api/v1/functions/{s['fn'].pk}/logs/ticket")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["expires_in"] == 60 and body["websocket"] == f"/ws/functions/{s['fn'].pk}/logs/"
    write(s, ["hello ticket"])
    url = f"ws://{s['url']}{body['websocket']}?ticket={body['ticket']}"
    with connect(url) as ws:  # no Origin, no cookie, no header
        assert [ln["text"] for ln in receive(ws)["lines"]] == ["hello ticket"]
    with connect(url) as ws:
        assert closed_code(ws) == 4401  # single use
    other = httpx.Client(base_url=f"http://{s['url']}", headers={"Authorization": f"Bearer {s['outsider']}"})
    assert other.post(f"/api/v1/functions/{s['fn'].pk}/logs/ticket").status_code == 404


def test_a_watcher_of_a_deleted_function_is_closed_cleanly(setup: dict[str, Any]) -> None:
    s = setup
    with connect(ws_url(s, "environment=prod")) as ws:
        receive(ws)
        function_services.function_delete(actor=s["world"].alice, function=s["fn"])
        assert receive(ws) == {"type": "closing", "reason": "function_deleted"}
        assert closed_code(ws) == 4410


# --- Server-Sent Events -----------------------------------------------------------------------


def sse_events(lines: Iterator[str], count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of the next ``count`` events (comments skipped)."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    current: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if current:
                events.append((current.get("id", ""), current["event"], json.loads(current["data"])))
                current = {}
                if len(events) == count:
                    return events
            continue
        key, _, value = line.partition(": ")
        current[key] = value
    raise AssertionError("the stream ended")


def test_sse_stream_with_a_token_resumes_from_last_event_id(setup: dict[str, Any], settings: Any) -> None:
    settings.STRATUS_LOG_TAIL_HEARTBEAT_S = 0.2
    s = setup
    write(s, ["one", "two"])
    url = f"http://{s['url']}/api/v1/functions/{s['fn'].pk}/logs/stream"
    headers = {"Authorization": f"Bearer {s['token']}", "Accept": "text/event-stream"}
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = response.iter_lines()
            ((_, kind, data),) = sse_events(stream, 1)
            assert kind == "backlog" and [ln["text"] for ln in data["lines"]] == ["one", "two"]
            write(s, ["three"])
            ((event_id, kind, data),) = sse_events(stream, 1)
            assert kind == "lines" and [ln["text"] for ln in data["lines"]] == ["three"]
            assert event_id == str(data["lines"][-1]["id"])
            heartbeat = next(line for line in stream if line.startswith(":"))
            assert heartbeat == ": heartbeat"
        write(s, ["four"])
        with client.stream("GET", url, headers={**headers, "Last-Event-ID": event_id}) as response:
            ((_, kind, data),) = sse_events(response.iter_lines(), 1)
            assert kind == "backlog" and [ln["text"] for ln in data["lines"]] == ["four"]

        bad = client.get(f"{url}?q=(a)\\1&regex=1", headers=headers)
        assert bad.status_code == 400 and "q" in bad.json()["error"]["fields"]
        assert client.get(url, headers={**headers, "Authorization": f"Bearer {s['outsider']}"}).status_code == 404
        assert client.get(url, headers={"Accept": "text/event-stream"}).status_code in (401, 403)
