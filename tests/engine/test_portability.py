"""Handlers written for Lambda and SCF, deployed through the services and called through the real
gateway and sandbox: the runtime environment they read, and Node's handler styles."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from apps.monitoring.models import LogLine
from apps.monitoring.sink import get_sink
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_routed

TASK_ROOT_HANDLER = """
import json
import os

with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "config", "settings.json")) as f:
    SETTINGS = json.load(f)

def handler(event, context):
    return {
        "greeting": SETTINGS["greeting"],
        "cwd_is_root": os.getcwd() == os.environ["LAMBDA_TASK_ROOT"],
        "relative": open("config/settings.json").read() == json.dumps(SETTINGS),
        "handler": os.environ["_HANDLER"],
        "function": [os.environ["AWS_LAMBDA_FUNCTION_NAME"], os.environ["SCF_FUNCTIONNAME"]],
        "version": [os.environ["AWS_LAMBDA_FUNCTION_VERSION"], os.environ["SCF_FUNCTIONVERSION"]],
        "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
        "namespace": os.environ["SCF_NAMESPACE"],
        "region": [os.environ["AWS_REGION"], os.environ["AWS_DEFAULT_REGION"], os.environ["TENCENTCLOUD_REGION"]],
        "tz": os.environ["TZ"],
    }
"""


def test_python_handler_reads_files_relative_to_lambda_task_root(world: Any, engine: Any, served: Any, settings: Any):
    settings.STRATUS_FUNCTION_REGION = "ap-guangzhou"
    fn = make_function(
        world,
        "taskroot",
        {"main.py": TASK_ROOT_HANDLER, "config/settings.json": '{"greeting": "hi from the code root"}'},
        memory_mb=256,
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    response = served.get(url(fn, path="x"))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "greeting": "hi from the code root",
        "cwd_is_root": True,
        "relative": True,
        "handler": "main.handler",
        "function": ["taskroot", "taskroot"],
        "version": ["1", "1"],
        "memory": "256",
        "namespace": "web",
        "region": ["ap-guangzhou", "ap-guangzhou", "ap-guangzhou"],
        "tz": ":UTC",
    }


NODE_CALLBACK = """
exports.handler = function (event, context, callback) {
  context.callbackWaitsForEmptyEventLoop = event.queryStringParameters.wait === 'yes';
  setTimeout(() => console.log('written after the callback'), 100);
  if (event.queryStringParameters.fail) {
    context.fail(new RangeError('out of range'));
    return;
  }
  callback(null, { statusCode: 200, body: 'answered ' + context.awsRequestId });
};
"""


def _lines(request_id: str) -> list[str]:
    get_sink().flush()
    return [line.text for line in LogLine.objects.filter(request_id=request_id).order_by("id")]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_callback_handler_through_the_gateway(world: Any, engine: Any, served: Any):
    fn = make_function(world, "nodecb", {"index.js": NODE_CALLBACK}, runtime="node20", handler="index.handler")
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    # Waiting for the empty event loop (the default): the timer's line is the request's, before the answer.
    # (The invocation id is fresh per call: X-Stratus-Invocation-Id; X-Request-Id is the trace id.)
    waited = served.get(url(fn, path="x?wait=yes"), headers={"x-request-id": "cb-wait-1"})
    assert waited.status_code == 200, waited.text
    waited_id = waited.headers["x-stratus-invocation-id"]
    assert waited.text == f"answered {waited_id}"
    assert _lines(waited_id) == ["written after the callback"]

    # Not waiting: the answer comes first; the later line still lands under its request.
    at_once = served.get(url(fn, path="x?wait=no"), headers={"x-request-id": "cb-now-1"})
    assert at_once.status_code == 200, at_once.text
    now_id = at_once.headers["x-stratus-invocation-id"]
    assert _lines(now_id) == []
    assert wait_for(lambda: _lines(now_id), timeout=5) == ["written after the callback"]

    # context.fail is an error answer, not a null result.
    failed = served.get(url(fn, path="x?wait=no&fail=1"), headers={"x-request-id": "cb-fail-1"})
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["code"] == "function_error"
    assert failed.json()["error"]["message"] == "RangeError: out of range"
