"""The Node.js bootstrap (runtime/node/bootstrap.js) as a real subprocess speaking the frame protocol."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import textwrap
import time
from pathlib import Path

import pytest

from tests.runtime.harness import BootstrapInstance, invoke_over_pipe_pair

BOOTSTRAP = Path(__file__).resolve().parents[2] / "runtime" / "node" / "bootstrap.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None and not os.environ.get("CI"),
    reason="`node` is not on PATH (the Node bootstrap tests need Node.js 20; under CI they fail instead)",
)


class NodeInstance(BootstrapInstance):
    """`node runtime/node/bootstrap.js` on a socketpair."""

    def __init__(self, task_root: Path, handler: str, kind: str = "event", env: dict[str, str] | None = None) -> None:
        if NODE is None:
            pytest.fail("`node` is not on PATH but CI is set: the Node bootstrap must be tested in CI")
        super().__init__([NODE, str(BOOTSTRAP)], task_root, handler, kind, env)


@pytest.fixture
def start(tmp_path):
    instances: list[NodeInstance] = []

    def _start(code: str, handler: str = "index.handler", kind: str = "event", filename: str = "index.js", env=None):
        target = tmp_path / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(code))
        inst = NodeInstance(tmp_path, handler, kind, env)
        instances.append(inst)
        return inst

    yield _start
    for inst in instances:
        inst.close()


def test_async_handler_with_lambda_context(start):
    inst = start(
        """
        exports.handler = async (event, context) => {
            await new Promise((resolve) => setTimeout(resolve, 5));
            return {
                echo: event,
                requestId: context.awsRequestId,
                remaining: context.getRemainingTimeInMillis(),
                name: context.functionName,
                version: context.functionVersion,
                memory: context.memoryLimitInMB,
                arn: context.invokedFunctionArn,
                group: context.logGroupName,
                stream: context.logStreamName,
            };
        };
        """
    )
    ready = inst.ready()
    assert isinstance(ready["init_ms"], int | float) and ready["init_ms"] >= 0
    reply = inst.invoke({"a": 1}, request_id="abc-123")
    assert reply["type"] == "result", reply
    result = reply["result"]
    assert result["echo"] == {"a": 1}
    assert result["requestId"] == "abc-123"
    assert 0 < result["remaining"] <= 5000
    assert (result["name"], result["version"], str(result["memory"])) == ("hello", "3", "256")
    assert result["arn"] == "stratus:fn:hello:3"
    assert result["group"] and result["stream"]
    assert reply["duration_ms"] >= 0
    assert inst.invoke({"a": 2}, request_id="abc-124")["result"]["requestId"] == "abc-124"


def test_callback_style_handler(start):
    inst = start(
        """
        exports.handler = (event, context, callback) => {
            setTimeout(() => {
                if (event.fail) callback(new TypeError("cb failed"));
                else callback(null, { doubled: event.n * 2, rid: context.awsRequestId });
            }, 5);
        };
        """,
        filename="src/app.js",
        handler="src/app.handler",
    )
    inst.ready()
    assert inst.invoke({"n": 21}, "cb-1")["result"] == {"doubled": 42, "rid": "cb-1"}
    err = inst.invoke({"fail": True}, "cb-2")
    assert err["type"] == "error" and err["error"]["type"] == "TypeError"
    assert err["error"]["message"] == "cb failed"
    assert inst.invoke({"n": 1}, "cb-3")["result"] == {"doubled": 2, "rid": "cb-3"}


def test_sync_handler_in_subdirectory(start):
    inst = start("exports.main = (event) => ({ sync: event });\n", filename="src/app.js", handler="src/app.main")
    inst.ready()
    assert inst.invoke(7, "s-1")["result"] == {"sync": 7}


def test_scf_style_context_fields(start):
    inst = start(
        """
        exports.main_handler = async (event, context) => ({
            rid: context.request_id,
            name: context.function_name,
            version: context.function_version,
            memory: context.memory_limit_in_mb,
            limit: context.time_limit_in_ms,
            hasEnv: typeof context.environment === "string",
        });
        """,
        handler="index.main_handler",
    )
    inst.ready()
    assert inst.invoke({}, request_id="scf-1")["result"] == {
        "rid": "scf-1",
        "name": "hello",
        "version": "3",
        "memory": 256,
        "limit": 5000,
        "hasEnv": True,
    }


def test_thrown_error_then_instance_reused(start):
    inst = start(
        """
        let count = 0;
        exports.handler = async (event) => {
            count += 1;
            if (event.fail) throw new RangeError("bad input: " + event.fail);
            if (event.later) {
                setTimeout(() => { throw new Error("async boom"); }, 1);
                return new Promise(() => {});
            }
            if (event.reject) Promise.reject(new Error("unhandled " + count));
            if (event.reject) return new Promise((resolve) => setTimeout(resolve, 200));
            return { count };
        };
        """
    )
    inst.ready()
    assert inst.invoke({}, "r1")["result"] == {"count": 1}
    err = inst.invoke({"fail": "boom"}, "r2")
    assert err["type"] == "error"
    assert err["error"]["type"] == "RangeError"
    assert err["error"]["message"] == "bad input: boom"
    stack = err["error"]["stack"]
    assert isinstance(stack, list) and all(isinstance(s, str) for s in stack)
    joined = "\n".join(stack)
    assert "index.js" in joined and "bootstrap.js" not in joined
    assert isinstance(err["duration_ms"], int | float)
    assert inst.invoke({}, "r3")["result"] == {"count": 3}
    uncaught = inst.invoke({"later": True}, "r4")
    assert uncaught["error"] == {**uncaught["error"], "type": "Error", "message": "async boom"}
    rejected = inst.invoke({"reject": True}, "r5")
    assert rejected["error"]["message"] == "unhandled 5"
    assert inst.invoke({}, "r6")["result"] == {"count": 6}


def test_console_and_stream_writes_become_log_frames(start):
    inst = start(
        """
        console.log("imported");
        exports.handler = async (event) => {
            console.log("hello", event.who);
            console.info({ n: 1 });
            console.error("bad", 2);
            console.warn("careful");
            process.stdout.write("two\\nlines\\n");
            process.stderr.write(Buffer.from("raw err\\n"));
            process.stdout.write("no newline at end");
            return "ok";
        };
        """
    )
    inst.ready()
    assert inst.logs == [{"type": "log", "id": None, "stream": "stdout", "text": "imported"}]
    inst.logs.clear()
    assert inst.invoke({"who": "world"}, "log-1")["result"] == "ok"
    assert all(log["id"] == "log-1" for log in inst.logs), inst.logs
    stdout = [log["text"] for log in inst.logs if log["stream"] == "stdout"]
    stderr = [log["text"] for log in inst.logs if log["stream"] == "stderr"]
    assert stdout == ["hello world", "{ n: 1 }", "two", "lines", "no newline at end"]
    assert stderr == ["bad 2", "careful", "raw err"]
    inst.logs.clear()
    assert inst.invoke({"who": "again"}, "log-2")["result"] == "ok"
    assert {log["id"] for log in inst.logs} == {"log-2"}
    assert "hello again" in [log["text"] for log in inst.logs]
    inst.send({"type": "shutdown"})
    assert inst.wait() == 0
    assert inst.proc.stdout is not None and inst.proc.stderr is not None
    assert inst.proc.stdout.read() == b""
    assert inst.proc.stderr.read() == b""


def test_missing_module_is_an_init_error_and_exit_1(start):
    inst = start('require("no-such-module-here");\nexports.handler = async () => 1;\n')
    msg = inst.read_reply()
    assert msg["type"] == "init_error", msg
    assert "no-such-module-here" in msg["error"]["message"]
    assert any("index.js" in line for line in msg["error"]["stack"])
    assert inst.wait() == 1


def test_missing_export_is_an_init_error(start):
    inst = start("exports.other = async () => 1;\n")
    msg = inst.read_reply()
    assert msg["type"] == "init_error"
    assert msg["error"]["type"] == "HandlerNotFound"
    assert "handler" in msg["error"]["message"]
    assert inst.wait() == 1


def test_syntax_error_is_an_init_error_and_exit_1(start):
    inst = start("exports.handler = async (event => {\n  return 1;\n};\n")
    msg = inst.read_reply()
    assert msg["type"] == "init_error"
    assert msg["error"]["type"] == "SyntaxError"
    assert "index.js" in msg["error"]["message"]
    assert inst.wait() == 1


def test_stratus_variables_hidden_user_variables_visible(start):
    inst = start(
        """
        const atImport = Object.keys(process.env).sort();
        exports.handler = async () => ({
            now: Object.keys(process.env).sort(),
            atImport,
            mine: process.env.MY_SETTING,
            fn: process.env.AWS_LAMBDA_FUNCTION_NAME,
            memory: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        });
        """,
        env={"MY_SETTING": "42", "STRATUS_EXTRA": "secret"},
    )
    inst.ready()
    result = inst.invoke({})["result"]
    for keys in (result["now"], result["atImport"]):
        assert not [k for k in keys if k.startswith("STRATUS_")]
        assert "MY_SETTING" in keys and "AWS_LAMBDA_FUNCTION_VERSION" in keys
    assert (result["mine"], result["fn"], result["memory"]) == ("42", "hello", "256")


def test_non_serialisable_results(start):
    inst = start(
        """
        exports.handler = async (event) => {
            if (event === "bigint") return { n: 10n };
            if (event === "circular") { const a = {}; a.self = a; return a; }
            return { fine: true };
        };
        """
    )
    inst.ready()
    err = inst.invoke("bigint", "ns-1")
    assert err["type"] == "error" and err["error"]["type"] == "ResultNotSerializable"
    assert inst.invoke("circular", "ns-2")["error"]["type"] == "ResultNotSerializable"
    assert inst.invoke("ok", "ns-3")["result"] == {"fine": True}


def test_http_kind_is_unsupported(start):
    inst = start("exports.app = async () => 1;\n", handler="index.app", kind="http")
    inst.ready()
    inst.send({"type": "http", "id": "h-1", "deadline_ms": time.time() * 1000 + 5000, "method": "GET", "path": "/"})
    err = inst.read_reply()
    assert err["id"] == "h-1" and err["type"] == "error"
    assert err["error"]["type"] == "Unsupported"
    assert err["error"]["message"] == "http kind is not supported on node20 yet"


def test_shutdown_and_eof_exit_cleanly(start):
    inst = start("exports.handler = async () => 1;\n")
    inst.ready()
    inst.send({"type": "shutdown"})
    assert inst.wait() == 0
    other = start("exports.handler = async () => 1;\n")
    other.ready()
    other.sock.shutdown(socket.SHUT_WR)
    assert other.wait() == 0


def test_split_frames_are_reassembled(start):
    inst = start("exports.handler = async (event) => ({ got: event });\n")
    inst.ready()
    first = json.dumps({"type": "invoke", "id": "p-1", "deadline_ms": time.time() * 1000 + 5000, "event": "x" * 5000})
    second = json.dumps({"type": "invoke", "id": "p-2", "deadline_ms": time.time() * 1000 + 5000, "event": 2})
    data = struct.pack(">I", len(first)) + first.encode() + struct.pack(">I", len(second)) + second.encode()
    for i in range(0, len(data), 1000):
        inst.sock.sendall(data[i : i + 1000])
        time.sleep(0.005)
    assert inst.read_reply() == {"type": "result", "id": "p-1", "result": {"got": "x" * 5000}, "duration_ms": ANY_NUM}
    assert inst.read_reply()["result"] == {"got": 2}


def test_pipe_pair_control_channel(tmp_path):
    if NODE is None:
        pytest.fail("`node` is not on PATH but CI is set")
    (tmp_path / "index.js").write_text("exports.handler = async (event) => ({ got: event });\n")

    ready, reply, code = invoke_over_pipe_pair([NODE, str(BOOTSTRAP)], tmp_path, 7)

    assert ready["type"] == "ready"
    assert reply == {"type": "result", "id": "p1", "result": {"got": 7}, "duration_ms": ANY_NUM}
    assert code == 0


class _AnyNumber:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int | float) and not isinstance(other, bool)


ANY_NUM = _AnyNumber()


# --- handler semantics as Lambda's Node runtime (issue 17) -------------------------------------


def test_two_parameter_handler_answers_at_context_succeed(start):
    inst = start(
        """
        exports.handler = function (event, context) {
            setTimeout(() => context.succeed({ ok: event.n }), 30);
        };
        """
    )
    inst.ready()
    reply = inst.invoke({"n": 7}, "s-1")
    assert reply["type"] == "result" and reply["result"] == {"ok": 7}
    assert reply["duration_ms"] >= 25


def test_arrow_handler_returning_a_timer_waits_for_its_callback(start):
    # `(e, c, cb) => setTimeout(...)` returns a Timeout: that is not the answer.
    inst = start("exports.handler = (event, context, cb) => setTimeout(() => cb(null, 'later'), 30);\n")
    inst.ready()
    assert inst.invoke({}, "t-1")["result"] == "later"
    two = start(
        "exports.handler = (event, context) => setTimeout(() => context.done(null, 'done'), 30);\n",
        filename="two.js",
        handler="two.handler",
    )
    two.ready()
    assert two.invoke({}, "t-2")["result"] == "done"


@pytest.mark.parametrize(
    ("call", "error_type", "message"),
    [
        ("context.fail(new RangeError('bad range'))", "RangeError", "bad range"),
        ("context.fail('plain string')", "Error", "plain string"),
        ("context.done(new Error('done with error'))", "Error", "done with error"),
        ("callback('callback string')", "Error", "callback string"),
        ("callback({ message: 'object error', name: 'Custom' })", "Custom", "object error"),
    ],
)
def test_errors_given_to_fail_done_or_the_callback_are_errors(start, call, error_type, message):
    inst = start(f"exports.handler = (event, context, callback) => {{ {call}; }};\n")
    inst.ready()
    reply = inst.invoke({}, "e-1")
    assert reply["type"] == "error", reply
    assert (reply["error"]["type"], reply["error"]["message"]) == (error_type, message)


def test_handler_returning_nothing_answers_null_once_its_event_loop_is_empty(start):
    inst = start(
        """
        let saved = 0;
        exports.handler = (event, context) => {
            setTimeout(() => { saved += 1; console.log('saved', saved); }, 40);
        };
        exports.count = async () => saved;
        """
    )
    inst.ready()
    reply = inst.invoke({}, "n-1")
    assert reply["type"] == "result" and reply["result"] is None
    assert reply["duration_ms"] >= 35  # the timer ran before the answer
    assert [(m["id"], m["text"]) for m in inst.logs] == [("n-1", "saved 1")]


def test_callback_waits_for_the_event_loop_by_default(start):
    inst = start(
        """
        exports.handler = (event, context, callback) => {
            context.callbackWaitsForEmptyEventLoop = event.wait;
            setTimeout(() => console.log('flushed after the callback'), 60);
            callback(null, { waited: event.wait });
        };
        """
    )
    inst.ready()
    waited = inst.invoke({"wait": True}, "w-1")
    assert waited["result"] == {"waited": True}
    assert waited["duration_ms"] >= 55
    assert [(m["id"], m["text"]) for m in inst.logs] == [("w-1", "flushed after the callback")]

    inst.logs.clear()
    at_once = inst.invoke({"wait": False}, "w-2")
    assert at_once["result"] == {"waited": False}
    assert at_once["duration_ms"] < 50
    assert inst.logs == []
    # The line written after the answer is not dropped: it carries the request it belongs to.
    late = inst.read()
    assert (late["type"], late["id"], late["text"]) == ("log", "w-2", "flushed after the callback")


def test_async_handler_answers_without_waiting_for_the_event_loop(start):
    inst = start(
        """
        exports.handler = async () => {
            setTimeout(() => console.log('after the answer'), 80);
            return 'fast';
        };
        """
    )
    inst.ready()
    reply = inst.invoke({}, "a-1")
    assert reply["result"] == "fast" and reply["duration_ms"] < 70
    late = inst.read()
    assert (late["id"], late["text"]) == ("a-1", "after the answer")
    # The next request's lines are its own again.
    assert inst.invoke({}, "a-2")["result"] == "fast"
    assert [m["id"] for m in inst.logs] == []


def test_esm_handlers_load(start, tmp_path):
    mjs = start(
        "export const handler = async (event, context) => ({ esm: 'mjs', rid: context.awsRequestId });\n",
        filename="index.mjs",
    )
    mjs.ready()
    assert mjs.invoke({}, "m-1")["result"] == {"esm": "mjs", "rid": "m-1"}

    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "lib.js").write_text("export const helper = (x) => ({ esm: 'type-module', x });\n")
    module = start(
        """
        import { helper } from './lib.js';
        export async function handler(event) { return helper(event.x); }
        """,
        filename="app.js",
        handler="app.handler",
    )
    module.ready()
    assert module.invoke({"x": 3}, "m-2")["result"] == {"esm": "type-module", "x": 3}
