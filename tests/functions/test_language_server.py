"""/ws/functions/{id}/lsp/: a Python language server per editor, over a real websocket to the
served console, a real jedi-language-server process, confined (as root) with no network."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps.functions import draft_services
from apps.functions import services as function_services
from apps.functions.language_server import live_sessions
from apps.functions.models import Function
from tests.conftest import build_world, serving_console
from tests.prerequisites import missing

MAIN = "import json\nimport helper\n\n\ndef handler(event, context):\n    return json.du\n"


@pytest.fixture
def served(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    sandbox = Path("/tmp") / f"stratus-lsp-test-{os.getpid()}-{time.monotonic_ns()}"
    sandbox.mkdir(mode=0o711)
    settings.STRATUS_SANDBOX_DIR = sandbox
    world = build_world()
    function = function_services.function_create(
        actor=world.alice, project=world.web, name="typed", runtime="python3.11", handler="main.handler"
    )
    for path, content in {
        "main.py": MAIN.encode(),
        "helper.py": b"def word():\n    '''The word of the day.'''\n    return 'hi'\n",
        "evil.so": b"\x7fELF not really",
    }.items():
        draft_services.draft_file_write(actor=world.alice, function=function, path=path, content=content)
    with serving_console() as address:
        yield {"address": address, "world": world, "function": function, "sandbox": sandbox}
    import shutil

    shutil.rmtree(sandbox, ignore_errors=True)


def open_lsp(served: dict[str, Any], user: Any) -> ClientConnection:
    client = Client()
    client.force_login(user)
    address, function = served["address"], served["function"]
    name = settings.SESSION_COOKIE_NAME
    return connect(
        f"ws://{address}/ws/functions/{function.pk}/lsp/",
        origin=f"http://{address}",
        additional_headers={"Cookie": f"{name}={client.cookies[name].value}"},
        open_timeout=10,
    )


def receive(ws: ClientConnection, timeout: float = 20.0) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


def answer(ws: ClientConnection, request_id: int, timeout: float = 20.0) -> Any:
    """The response to ``request_id``, skipping notifications the server sends meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        message = receive(ws, max(0.1, deadline - time.monotonic()))
        if message.get("id") == request_id and "method" not in message:
            return message


def request(ws: ClientConnection, request_id: int, method: str, params: dict[str, Any]) -> Any:
    ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    return answer(ws, request_id)


def initialize(ws: ClientConnection) -> dict[str, Any]:
    assert receive(ws) == {"stratus": "ready"}
    result = request(ws, 1, "initialize", {"processId": None, "rootUri": "draft:/", "capabilities": {}})["result"]
    ws.send(json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    ws.send(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {"uri": "draft:/main.py", "languageId": "python", "version": 1, "text": MAIN}
                },
            }
        )
    )
    return dict(result)


def eventually(predicate: Any, timeout: float = 10.0) -> None:
    """The server stops a session after the socket closes, on its own loop: wait for it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def labels(result: Any) -> list[str]:
    items = result["items"] if isinstance(result, dict) else result
    return [item["label"] for item in items]


def at(line: int, character: int) -> dict[str, Any]:
    return {"textDocument": {"uri": "draft:/main.py"}, "position": {"line": line, "character": character}}


def test_completion_hover_and_definition_over_the_websocket_in_the_drafts_names(served: dict[str, Any]) -> None:
    with open_lsp(served, served["world"].bob) as ws:
        capabilities = initialize(ws)["capabilities"]
        assert capabilities["completionProvider"] and capabilities["hoverProvider"]

        assert labels(request(ws, 2, "textDocument/completion", at(5, 18))["result"]) == ["dump", "dumps"]
        hover = request(ws, 3, "textDocument/hover", at(0, 8))["result"]
        assert "JSON" in json.dumps(hover)

        # Another file of the draft, edited in the editor (didChange) and read from the snapshot.
        changed = MAIN + "helper.wo\n"
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didChange",
                    "params": {
                        "textDocument": {"uri": "draft:/main.py", "version": 2},
                        "contentChanges": [{"text": changed}],
                    },
                }
            )
        )
        assert labels(request(ws, 4, "textDocument/completion", at(6, 9))["result"]) == ["word"]
        found = request(ws, 5, "textDocument/definition", at(1, 9))["result"]  # import helper
        # The server's own paths never reach the editor: the draft's names do.
        assert [location["uri"] for location in found] == ["draft:/helper.py"], found
        assert "stratus-lsp-test" not in json.dumps(found)


def test_who_may_open_a_language_server(served: dict[str, Any]) -> None:
    world = served["world"]
    with open_lsp(served, world.carol) as ws:  # a viewer reads the code: completions too
        assert initialize(ws)["capabilities"]["hoverProvider"]
    with open_lsp(served, world.charlie) as ws:  # another organization
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


def test_limits_refuse_with_the_reason_and_an_idle_session_stops(served: dict[str, Any], settings: Any) -> None:
    eventually(lambda: not live_sessions())  # the sessions of earlier tests have stopped
    settings.STRATUS_LSP_MAX_PER_USER = 1
    settings.STRATUS_LSP_IDLE_S = 1
    bob = served["world"].bob
    with open_lsp(served, bob) as first:
        assert receive(first) == {"stratus": "ready"}
        pid = next(s.pid for s in live_sessions() if s.user_id == bob.pk)
        with open_lsp(served, bob) as second:
            refused = receive(second)
            assert refused["stratus"] == "refused" and "STRATUS_LSP_MAX_PER_USER" in refused["reason"]
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        # Silent for longer than STRATUS_LSP_IDLE_S: closed, and its server is gone.
        with pytest.raises(ConnectionClosed) as idle:
            first.recv(timeout=15)
        assert idle.value.rcvd is not None and idle.value.rcvd.code == 4408
    eventually(lambda: not Path(f"/proc/{pid}").exists())
    eventually(lambda: not [s for s in live_sessions() if s.user_id == bob.pk])


def test_the_server_is_confined_without_network_and_sees_only_its_snapshot(served: dict[str, Any]) -> None:
    if os.geteuid() != 0:
        missing("confinement (the uid drop and namespaces) needs the console to run as root")
    function: Function = served["function"]
    with open_lsp(served, served["world"].bob) as ws:
        initialize(ws)
        session = next(s for s in live_sessions() if s.function_id == function.pk)
        status = Path(f"/proc/{session.pid}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        assert len(set(uids)) == 1 and int(uids[0]) > settings.STRATUS_LSP_UID_BASE
        groups = next(line.split()[1:] for line in status.splitlines() if line.startswith("Groups:"))
        assert groups == []
        assert os.readlink(f"/proc/{session.pid}/ns/net") != os.readlink("/proc/self/ns/net")  # no network
        assert os.readlink(f"/proc/{session.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        # Its snapshot: the draft's sources, its own, and never a compiled module jedi would load.
        assert sorted(p.name for p in session.root.iterdir()) == ["helper.py", "main.py"]
        assert session.root.stat().st_uid == int(uids[0]) and oct(session.root.stat().st_mode & 0o777) == "0o700"
    eventually(lambda: not session.root.exists() and session not in live_sessions())
