"""POST /api/v1/functions/{id}/draft/invoke: the draft's saved files run once, as they would
in an environment once deployed, without a version (the WebIDE's Run, VS Code's invoke).
A real engine with real function processes; drafts written through the draft service."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from apps.engine.routing import DRAFT_NUMBER
from apps.functions import draft_services
from apps.functions import services as function_services
from apps.functions.draft_code import draft_code_prepare
from apps.functions.models import Function
from apps.monitoring.models import Invocation, LogLine
from apps.monitoring.sink import get_sink
from apps.tenancy.environment_services import environment_secret_set, environment_var_set
from apps.tenancy.models import Environment
from tests.engine.conftest import running_as_root, wait_for
from tests.prerequisites import missing

HELLO = """
import os

def handler(event, context):
    print("hello from the draft", context.function_version)
    if event.get("fail"):
        raise ValueError("bad input: " + event["fail"])
    return {"name": event.get("name"), "greeting": os.environ.get("GREETING"), "key": os.environ.get("API_KEY")}
"""


def draft_function(world: Any, name: str = "drafty", files: dict[str, str] | None = None, **config: Any) -> Function:
    config.setdefault("runtime", "python3.11")
    config.setdefault("handler", "main.handler")
    function = function_services.function_create(actor=world.alice, project=world.web, name=name, **config)
    for path, content in (files or {"main.py": HELLO}).items():
        save(world, function, path, content)
    return function


def save(world: Any, function: Function, path: str, content: str) -> None:
    draft_services.draft_file_write(actor=world.bob, function=function, path=path, content=content.encode())


def run(client: Any, function: Function, **body: Any) -> Any:
    return client.post(f"/api/v1/functions/{function.pk}/draft/invoke", body, format="json")


def test_the_draft_runs_with_the_environments_values_and_no_version_is_made(world, engine, client_for):
    dev = Environment.objects.get(project=world.web, name="dev")
    staging = Environment.objects.get(project=world.web, name="staging")
    environment_var_set(actor=world.alice, environment=dev, name="GREETING", value="hi from dev")
    environment_secret_set(actor=world.alice, environment=dev, name="API_KEY", value="dev-key")
    environment_var_set(actor=world.alice, environment=staging, name="GREETING", value="hi from staging")
    function = draft_function(world)
    bob = client_for(world.bob)  # a developer

    first = run(bob, function, environment="dev", event={"name": "ada"})
    second = run(bob, function, environment="dev", event={"name": "bob"})
    elsewhere = run(bob, function, environment="staging", event={"name": "cy"})

    assert first.status_code == 200, first.json()
    body = first.json()
    assert (body["status"], body["draft"], body["version"]) == ("ok", True, None)
    assert body["result"] == {"name": "ada", "greeting": "hi from dev", "key": "dev-key"}
    assert [(line["stream"], line["text"]) for line in body["logs"]] == [("stdout", "hello from the draft draft")]
    assert body["cold_start"] is True and body["init_duration_ms"] is not None
    # The same draft runs warm on the same instance; another environment gets its own.
    assert second.json()["cold_start"] is False and second.json()["result"]["name"] == "bob"
    assert elsewhere.json()["result"] == {"name": "cy", "greeting": "hi from staging", "key": None}
    assert function.versions.count() == 0 and function.bindings.count() == 0

    # The runs are recorded as draft runs (version 0), apart from any binding.
    get_sink().flush()
    records = Invocation.objects.filter(function=function).order_by("started_at")
    assert [(r.trigger, r.version, r.binding_id, r.environment.name) for r in records] == [
        ("draft", DRAFT_NUMBER, None, "dev"),
        ("draft", DRAFT_NUMBER, None, "dev"),
        ("draft", DRAFT_NUMBER, None, "staging"),
    ]
    assert LogLine.objects.filter(function=function, request_id=body["request_id"]).count() == 1


def test_a_saved_change_runs_at_once_and_the_old_drafts_instance_stops(world, engine, client_for):
    function = draft_function(world, files={"main.py": "def handler(e, c):\n    return 'one'\n"})
    bob = client_for(world.bob)
    assert run(bob, function, environment="dev").json()["result"] == "one"
    old_keys = {key for key in engine.engine.pools if key[2] == function.pk}
    assert len(old_keys) == 1

    save(world, function, "main.py", "import helper\ndef handler(e, c):\n    return helper.word()\n")
    save(world, function, "helper.py", "def word():\n    return 'two'\n")
    body = run(bob, function, environment="dev").json()

    assert (body["status"], body["result"], body["cold_start"]) == ("ok", "two", True)
    # The first draft's pool drains and goes: one draft instance per function and environment.
    wait_for(lambda: not old_keys & set(engine.engine.pools))
    assert len([key for key in engine.engine.pools if key[2] == function.pk]) == 1
    # Unsaved edits are not the draft: what runs is what was saved.
    assert run(bob, function, environment="dev").json()["result"] == "two"


def test_errors_come_back_with_type_message_stack_and_limits_are_the_functions(world, engine, client_for):
    function = draft_function(world, timeout_s=1)
    bob = client_for(world.bob)

    failed = run(bob, function, environment="dev", event={"fail": "nope"}).json()
    assert failed["status"] == "error"
    assert (failed["error"]["type"], failed["error"]["message"]) == ("ValueError", "bad input: nope")
    assert any('main.py", line' in frame for frame in failed["error"]["stack"])

    save(world, function, "main.py", "import time\ndef handler(e, c):\n    time.sleep(5)\n")
    slow = run(bob, function, environment="dev").json()
    assert slow["status"] == "timeout", slow
    assert slow["error"]["message"] == "Task timed out after 1.00 seconds"

    save(world, function, "main.py", "def handler(e, c):\n    return (\n")
    broken = run(bob, function, environment="dev").json()
    assert broken["status"] == "error" and broken["error"]["type"] in ("SyntaxError", "Runtime.ImportModuleError")


def test_who_may_run_the_draft_and_where(world, engine, client_for):
    function = draft_function(world)
    assert Environment.objects.get(project=world.web, name="prod").protected  # the default project's prod

    assert run(client_for(world.carol), function, environment="dev").status_code == 403  # viewer
    assert run(client_for(world.charlie), function, environment="dev").status_code == 404  # another org
    refused = run(client_for(world.alice), function, environment="prod")  # even the org's admin
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "environment_protected"
    assert "protected" in refused.json()["error"]["message"]
    assert run(client_for(world.bob), function, environment="nope").status_code == 404
    assert run(client_for(world.bob, scopes=["read"]), function, environment="dev").status_code == 403
    assert run(client_for(world.bob, scopes=["invoke"]), function, environment="dev").status_code == 200
    too_big = run(client_for(world.bob), function, environment="dev", event={"x": "a" * (6 * 1024 * 1024)})
    assert too_big.status_code == 413

    empty = function_services.function_create(
        actor=world.alice, project=world.web, name="empty", runtime="python3.11", handler="main.handler"
    )
    nothing = run(client_for(world.bob), empty, environment="dev")
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (400, "draft_empty")


PROBE = """
import json, os

def handler(event, context):
    found = {}
    for name, path in event["paths"].items():
        try:
            with open(path, "rb") as f:
                found[name] = "read: " + f.read(40).decode(errors="replace")
        except OSError as exc:
            found[name] = exc.errno
    try:
        found["listing"] = os.listdir(event["drafts"])
    except OSError as exc:
        found["listing"] = exc.errno
    return {"found": found, "uid": os.getuid(), "env": sorted(os.environ)}
"""


def test_a_draft_cannot_read_other_drafts_or_the_consoles_data(world, engine, client_for, settings):
    if not running_as_root():
        missing("the sandbox's uid drop needs the engine to run as root")
    victim = draft_function(world, "victim", files={"main.py": "SECRET = 'victim draft code'\n"})
    _, victim_dir = draft_code_prepare(victim)
    attacker = draft_function(world, "attacker", files={"main.py": PROBE})
    paths = {
        "victim_draft": str(victim_dir / "main.py"),
        "secret_key": str(settings.DATA_DIR / "secret_key"),
    }

    body = run(
        client_for(world.bob), attacker, environment="dev", event={"paths": paths, "drafts": str(victim_dir.parent)}
    ).json()

    assert body["status"] == "ok", body
    result = body["result"]
    # Hidden from its mounts (ENOENT) or closed to its uid (EACCES), though all exist here.
    assert all(Path(path).exists() for path in paths.values())
    assert set(result["found"]) == {"victim_draft", "secret_key", "listing"}
    assert set(result["found"].values()) <= {errno.EACCES, errno.ENOENT}, result["found"]
    assert result["uid"] != 0
    assert not [name for name in result["env"] if name.startswith(("DJANGO", "STRATUS_", "DATABASE", "REDIS"))]
    assert "victim draft code" not in json.dumps(body)
