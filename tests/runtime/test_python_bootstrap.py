"""The Python bootstrap (runtime/stratus_bootstrap) as a real subprocess speaking the frame protocol."""

from __future__ import annotations

import base64
import json
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.runtime.harness import BootstrapInstance, invoke_over_pipe_pair

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"
PYTHON_COMMAND = [sys.executable, "-m", "stratus_bootstrap"]
PYTHON_ENV = {"PYTHONPATH": str(RUNTIME_DIR), "PYTHONDONTWRITEBYTECODE": "1"}


class Instance(BootstrapInstance):
    """`python -m stratus_bootstrap`, plus http frames for WSGI/ASGI apps."""

    def __init__(self, task_root: Path, handler: str, kind: str = "event", env: dict[str, str] | None = None) -> None:
        super().__init__(PYTHON_COMMAND, task_root, handler, kind, env, runtime_env=PYTHON_ENV)

    def http(self, method: str, path: str, query: str = "", headers=(), body: bytes = b"", request_id="h-1"):
        self.send(
            {
                "type": "http",
                "id": request_id,
                "deadline_ms": time.time() * 1000 + 5000,
                "method": method,
                "path": path,
                "query_string": query,
                "headers": [list(h) for h in headers],
                "body_b64": base64.b64encode(body).decode(),
            }
        )
        reply = self.read_reply()
        assert reply["id"] == request_id
        return reply


@pytest.fixture
def start(tmp_path):
    instances: list[Instance] = []

    def _start(code: str, handler: str = "index.handler", kind: str = "event", filename: str = "index.py", env=None):
        (tmp_path / filename).write_text(textwrap.dedent(code))
        inst = Instance(tmp_path, handler, kind, env)
        instances.append(inst)
        return inst

    yield _start
    for inst in instances:
        inst.close()


def test_lambda_style_handler(start):
    inst = start(
        """
        def handler(event, context):
            return {
                "echo": event,
                "request_id": context.aws_request_id,
                "remaining": context.get_remaining_time_in_millis(),
                "name": context.function_name,
                "version": context.function_version,
                "memory": context.memory_limit_in_mb,
                "arn": context.invoked_function_arn,
                "group": context.log_group_name,
                "stream": context.log_stream_name,
            }
        """
    )
    ready = inst.ready()
    assert isinstance(ready["init_ms"], float) and ready["init_ms"] >= 0
    reply = inst.invoke({"a": 1}, request_id="abc-123")
    assert reply["type"] == "result", reply
    result = reply["result"]
    assert result["echo"] == {"a": 1}
    assert result["request_id"] == "abc-123"
    assert 0 < result["remaining"] <= 5000
    assert (result["name"], result["version"], result["memory"]) == ("hello", "3", 256)
    assert result["arn"] == "stratus:fn:hello:3"
    assert result["group"] and result["stream"]
    assert reply["duration_ms"] >= 0


def test_scf_style_handler_reads_context_as_dict(start):
    inst = start(
        """
        def main_handler(event, context):
            return {
                "rid": context["request_id"],
                "name": context.get("function_name"),
                "limit": context["time_limit_in_ms"],
                "missing": context.get("nope", "dflt"),
                "memory": context["memory_limit_in_mb"],
                "has_env": "environment" in context,
            }
        """,
        handler="index.main_handler",
    )
    inst.ready()
    result = inst.invoke({}, request_id="scf-1")["result"]
    assert result == {
        "rid": "scf-1",
        "name": "hello",
        "limit": 5000,
        "missing": "dflt",
        "memory": 256,
        "has_env": True,
    }


def test_async_handler_is_awaited(start):
    inst = start(
        """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0.01)
            return {"doubled": event["n"] * 2, "rid": context.aws_request_id}
        """
    )
    inst.ready()
    assert inst.invoke({"n": 21}, "a1")["result"] == {"doubled": 42, "rid": "a1"}
    assert inst.invoke({"n": 5}, "a2")["result"] == {"doubled": 10, "rid": "a2"}


def test_handler_error_then_instance_reused(start):
    inst = start(
        """
        COUNT = 0

        def handler(event, context):
            global COUNT
            COUNT += 1
            if event.get("fail"):
                raise ValueError("bad input: " + event["fail"])
            return {"count": COUNT}
        """
    )
    inst.ready()
    assert inst.invoke({}, "r1")["result"] == {"count": 1}
    err = inst.invoke({"fail": "boom"}, "r2")
    assert err["type"] == "error"
    assert err["error"]["type"] == "ValueError"
    assert err["error"]["message"] == "bad input: boom"
    stack = err["error"]["stack"]
    assert isinstance(stack, list) and all(isinstance(s, str) for s in stack)
    joined = "".join(stack)
    assert "index.py" in joined and "ValueError: bad input: boom" in joined
    assert "stratus_bootstrap" not in joined
    assert inst.invoke({}, "r3")["result"] == {"count": 3}


def test_prints_stderr_and_fd_writes_become_log_frames(start):
    inst = start(
        """
        import os
        import sys

        print("imported")

        def handler(event, context):
            print("hello", event["who"])
            sys.stderr.write("warn line\\n")
            os.write(1, b"raw fd one\\n")
            os.write(2, b"raw fd two\\n")
            print("no newline at end", end="")
            return "ok"
        """
    )
    inst.ready()
    assert inst.logs == [{"type": "log", "id": None, "stream": "stdout", "text": "imported"}]
    inst.logs.clear()
    assert inst.invoke({"who": "world"}, "log-1")["result"] == "ok"
    assert all(log["id"] == "log-1" for log in inst.logs), inst.logs
    stdout = [log["text"] for log in inst.logs if log["stream"] == "stdout"]
    stderr = [log["text"] for log in inst.logs if log["stream"] == "stderr"]
    assert stdout == ["hello world", "raw fd one", "no newline at end"]
    assert stderr == ["warn line", "raw fd two"]
    # The second request's logs carry its own id.
    inst.logs.clear()
    assert inst.invoke({"who": "again"}, "log-2")["result"] == "ok"
    assert {log["id"] for log in inst.logs} == {"log-2"}
    assert "hello again" in [log["text"] for log in inst.logs]
    # Nothing reached the process's real stdout/stderr.
    inst.send({"type": "shutdown"})
    assert inst.wait() == 0
    assert inst.proc.stdout is not None and inst.proc.stderr is not None
    assert inst.proc.stdout.read() == b""
    assert inst.proc.stderr.read() == b""


def test_a_burst_larger_than_the_pipe_and_a_childs_output_all_precede_the_reply_in_order(start):
    # 5,000 lines (~150 KB) overflow the 64 KB pipe: the pump thread drains while the handler
    # writes, the serving thread sends the rest before the reply; a child process writes to
    # the same fd 1 and its line belongs to the request too.
    inst = start(
        """
        import subprocess
        import sys

        def handler(event, context):
            for i in range(5000):
                print(f"line {i:05d} " + "x" * 16)
            subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
            print("tail without newline", end="")
            return "done"
        """
    )
    inst.ready()
    assert inst.invoke({}, "burst-1")["result"] == "done"  # read_reply keeps the frames before it
    texts = [log["text"] for log in inst.logs if log["id"] == "burst-1"]
    assert texts[:5000] == [f"line {i:05d} " + "x" * 16 for i in range(5000)]
    assert texts[5000:] == ["from a child", "tail without newline"]
    assert all(log["id"] == "burst-1" for log in inst.logs)


def test_output_between_requests_is_sent_without_a_request_id(start):
    inst = start(
        """
        import threading
        import time

        def later():
            time.sleep(0.3)
            print("background tick")

        def handler(event, context):
            threading.Thread(target=later).start()
            return "started"
        """
    )
    inst.ready()
    assert inst.invoke({}, "bg-1")["result"] == "started"
    assert inst.read() == {"type": "log", "id": None, "stream": "stdout", "text": "background tick"}


def test_import_error_reports_init_error_and_exits_1(start):
    inst = start("import no_such_module_here\n\ndef handler(event, context):\n    return 1\n")
    msg = inst.read_reply()
    assert msg["type"] == "init_error"
    assert msg["error"]["type"] == "ModuleNotFoundError"
    assert "no_such_module_here" in msg["error"]["message"]
    assert any("index.py" in line for line in msg["error"]["stack"])
    assert inst.wait() == 1


def test_missing_handler_attribute_is_an_init_error(start):
    inst = start("def other(event, context):\n    return 1\n")
    msg = inst.read_reply()
    assert msg["type"] == "init_error"
    assert "handler" in msg["error"]["message"]
    assert inst.wait() == 1


def test_syntax_error_reports_init_error_and_exits_1(start):
    inst = start("def handler(event, context)\n    return 1\n")
    msg = inst.read_reply()
    assert msg["type"] == "init_error"
    assert msg["error"]["type"] == "SyntaxError"
    assert "index.py" in msg["error"]["message"]
    assert inst.wait() == 1


def test_wsgi_app(start):
    inst = start(
        """
        import json

        CALLS = 0

        def app(environ, start_response):
            global CALLS
            CALLS += 1
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            payload = json.dumps({
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "query": environ["QUERY_STRING"],
                "ctype": environ.get("CONTENT_TYPE"),
                "custom": environ.get("HTTP_X_CUSTOM"),
                "body": body.decode(),
                "calls": CALLS,
            }).encode()
            start_response("201 Created", [("Content-Type", "application/json"), ("X-App", "wsgi")])
            return [payload]
        """,
        handler="app.app",
        kind="http",
        filename="app.py",
    )
    inst.ready()
    reply = inst.http(
        "POST",
        "/items/a%20b",
        query="x=1&y=2",
        headers=[("Host", "example.test"), ("Content-Type", "text/plain"), ("X-Custom", "yes")],
        body=b"hi there",
    )
    assert reply["type"] == "http_response", reply
    assert reply["status"] == 201
    assert ["X-App", "wsgi"] in reply["headers"]
    seen = json.loads(base64.b64decode(reply["body_b64"]))
    assert seen == {
        "method": "POST",
        "path": "/items/a b",
        "query": "x=1&y=2",
        "ctype": "text/plain",
        "custom": "yes",
        "body": "hi there",
        "calls": 1,
    }
    again = json.loads(base64.b64decode(inst.http("GET", "/", request_id="h-2")["body_b64"]))
    assert again["calls"] == 2 and again["method"] == "GET"


def test_asgi_app_with_lifespan(start):
    inst = start(
        """
        import json

        STARTUPS = 0

        async def app(scope, receive, send):
            global STARTUPS
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        STARTUPS += 1
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            payload = json.dumps({
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "body": body.decode(),
                "startups": STARTUPS,
            }).encode()
            await send({"type": "http.response.start", "status": 202,
                        "headers": [(b"content-type", b"application/json"), (b"x-app", b"asgi")]})
            await send({"type": "http.response.body", "body": payload[:5], "more_body": True})
            await send({"type": "http.response.body", "body": payload[5:]})
        """,
        handler="app.app",
        kind="http",
        filename="app.py",
    )
    inst.ready()
    for n in (1, 2):
        reply = inst.http(
            "PUT", "/thing/7", query="q=z", headers=[("X-Custom", "yes")], body=b"payload", request_id=f"as-{n}"
        )
        assert reply["type"] == "http_response", reply
        assert reply["status"] == 202
        assert ["x-app", "asgi"] in reply["headers"]
        seen = json.loads(base64.b64decode(reply["body_b64"]))
        assert seen["method"] == "PUT" and seen["path"] == "/thing/7" and seen["query"] == "q=z"
        assert seen["headers"]["x-custom"] == "yes"
        assert seen["body"] == "payload"
        assert seen["startups"] == 1


def test_asgi_app_without_lifespan_support(start):
    inst = start(
        """
        class App:
            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    raise RuntimeError("only http")
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"ok"})

        app = App()
        """,
        handler="app.app",
        kind="http",
        filename="app.py",
    )
    inst.ready()
    reply = inst.http("GET", "/")
    assert reply["status"] == 200 and base64.b64decode(reply["body_b64"]) == b"ok"


def test_stratus_variables_hidden_user_variables_visible(start):
    inst = start(
        """
        import os

        SEEN_AT_IMPORT = sorted(os.environ)

        def handler(event, context):
            return {"now": sorted(os.environ), "at_import": SEEN_AT_IMPORT, "mine": os.environ.get("MY_SETTING")}
        """,
        env={"MY_SETTING": "42", "STRATUS_EXTRA": "secret"},
    )
    inst.ready()
    result = inst.invoke({})["result"]
    for keys in (result["now"], result["at_import"]):
        assert not [k for k in keys if k.startswith("STRATUS_")]
        assert "MY_SETTING" in keys
        assert "AWS_LAMBDA_FUNCTION_NAME" in keys
    assert result["mine"] == "42"


def test_non_serialisable_result(start):
    inst = start(
        """
        def handler(event, context):
            if event == "nan":
                return float("nan")
            if event == "ok":
                return {"fine": True}
            return {"when": object()}
        """
    )
    inst.ready()
    err = inst.invoke("bad", "ns-1")
    assert err["type"] == "error" and err["error"]["type"] == "ResultNotSerializable"
    assert inst.invoke("nan", "ns-2")["error"]["type"] == "ResultNotSerializable"
    assert inst.invoke("ok", "ns-3")["result"] == {"fine": True}


def test_shutdown_message_and_eof_exit_cleanly(start):
    inst = start("def handler(event, context):\n    return 1\n")
    inst.ready()
    inst.send({"type": "shutdown"})
    assert inst.wait() == 0
    other = start("def handler(event, context):\n    return 1\n")
    other.ready()
    other.sock.shutdown(socket.SHUT_WR)
    assert other.wait() == 0


def test_http_app_failure_is_an_error_frame(start):
    inst = start(
        """
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/boom":
                raise KeyError("nope")
            start_response("200 OK", [])
            return [b"fine"]
        """,
        handler="app.app",
        kind="http",
        filename="app.py",
    )
    inst.ready()
    err = inst.http("GET", "/boom")
    assert err["type"] == "error" and err["error"]["type"] == "KeyError"
    ok = inst.http("GET", "/", request_id="h-2")
    assert ok["status"] == 200 and base64.b64decode(ok["body_b64"]) == b"fine"


def test_pipe_pair_control_channel(tmp_path):
    (tmp_path / "index.py").write_text("def handler(event, context):\n    return {'got': event}\n")

    ready, reply, code = invoke_over_pipe_pair(PYTHON_COMMAND, tmp_path, 7, runtime_env=PYTHON_ENV)

    assert ready["type"] == "ready"
    assert reply == {"type": "result", "id": "p1", "result": {"got": 7}, "duration_ms": ANY_FLOAT}
    assert code == 0


class _AnyFloat:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, float)


ANY_FLOAT = _AnyFloat()
