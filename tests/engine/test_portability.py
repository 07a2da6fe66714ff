"""Handlers written for Lambda and SCF, deployed through the services and called through the real
gateway and sandbox: the runtime environment they read, and Node's handler styles."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import deploy_latest, make_function, url, wait_routed

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
