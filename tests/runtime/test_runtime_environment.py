"""The runtime environment a function sees, as Lambda and SCF document it, for the Python and the
Node bootstrap alike (real subprocesses speaking the frame protocol): the platforms' variables,
the region setting, TZ and LANG, and the code root as working directory."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.harness import BootstrapInstance

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"
NODE = shutil.which("node")

NAMES = [
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "TZ",
    "LANG",
    "SCF_FUNCTIONNAME",
    "SCF_FUNCTIONVERSION",
    "SCF_NAMESPACE",
    "SCF_RUNTIME",
    "USER_CODE_ROOT",
    "TENCENTCLOUD_RUNENV",
    "TENCENTCLOUD_REGION",
]

PYTHON_HANDLER = """
import os
import time

NAMES = {names!r}
AT_IMPORT = {{name: os.environ.get(name) for name in NAMES}}

def handler(event, context):
    with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "data", "greeting.txt")) as f:
        greeting = f.read().strip()
    with open("data/greeting.txt") as f:  # relative to the working directory: the code root
        relative = f.read().strip()
    return {{
        "env": {{name: os.environ.get(name) for name in NAMES}},
        "at_import": AT_IMPORT,
        "cwd": os.getcwd(),
        "greeting": greeting,
        "relative": relative,
        "utc_offset": time.localtime().tm_gmtoff,
        "log_stream": context.log_stream_name,
        "log_group": context.log_group_name,
        "namespace": context["namespace"],
    }}
"""

NODE_HANDLER = """
const fs = require('fs');
const path = require('path');
const NAMES = {names};
const AT_IMPORT = Object.fromEntries(NAMES.map((n) => [n, process.env[n] === undefined ? null : process.env[n]]));

exports.handler = async (event, context) => ({{
  env: Object.fromEntries(NAMES.map((n) => [n, process.env[n] === undefined ? null : process.env[n]])),
  at_import: AT_IMPORT,
  cwd: process.cwd(),
  greeting: fs.readFileSync(path.join(process.env.LAMBDA_TASK_ROOT, 'data', 'greeting.txt'), 'utf8').trim(),
  relative: fs.readFileSync('data/greeting.txt', 'utf8').trim(),
  utc_offset: -new Date(2024, 6, 1).getTimezoneOffset() * 60,
  log_stream: context.logStreamName,
  log_group: context.logGroupName,
  namespace: context.namespace,
}});
"""


def start(runtime: str, tmp_path: Path, env: dict[str, str]) -> BootstrapInstance:
    root = tmp_path / "code"
    (root / "data").mkdir(parents=True)
    (root / "data" / "greeting.txt").write_text("hello from the code root\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if runtime == "python":
        (root / "main.py").write_text(textwrap.dedent(PYTHON_HANDLER.format(names=NAMES)))
        command = [sys.executable, "-m", "stratus_bootstrap"]
        runtime_env = {"PYTHONPATH": str(RUNTIME_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
        handler = "main.handler"
    else:
        if NODE is None:
            pytest.skip("`node` is not on PATH")
        (root / "main.js").write_text(NODE_HANDLER.format(names=json.dumps(NAMES)))
        command, runtime_env, handler = [NODE, str(RUNTIME_DIR / "node" / "bootstrap.js")], {}, "main.handler"
    # Started from another directory: the bootstrap itself makes the code root the working directory.
    return BootstrapInstance(command, root, handler, env=env, runtime_env=runtime_env, cwd=elsewhere)


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_lambda_and_scf_variables_and_the_code_root(runtime: str, tmp_path: Path) -> None:
    inst = start(
        runtime,
        tmp_path,
        {
            "STRATUS_RUNTIME": "python3.11" if runtime == "python" else "node20",
            "STRATUS_PROJECT": "web",
            "STRATUS_ENVIRONMENT": "dev",
            "STRATUS_REGION": "eu-west-3",
            # The platforms reserve these: a function's own value does not replace them.
            "AWS_LAMBDA_FUNCTION_NAME": "spoofed",
            "_HANDLER": "spoofed.handler",
        },
    )
    try:
        inst.ready()
        result: dict[str, Any] = inst.invoke({})["result"]
    finally:
        inst.close()
    root = str(tmp_path / "code")
    env = result["env"]
    stream = env.pop("AWS_LAMBDA_LOG_STREAM_NAME")
    assert env == {
        "LAMBDA_TASK_ROOT": root,
        "LAMBDA_RUNTIME_DIR": str(RUNTIME_DIR),
        "_HANDLER": "main.handler",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11" if runtime == "python" else "AWS_Lambda_nodejs20.x",
        "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "AWS_LAMBDA_FUNCTION_VERSION": "3",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/stratus/functions/hello",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "TZ": ":UTC",
        "LANG": "C.UTF-8",
        "SCF_FUNCTIONNAME": "hello",
        "SCF_FUNCTIONVERSION": "3",
        "SCF_NAMESPACE": "web",
        "SCF_RUNTIME": "Python3.11" if runtime == "python" else "Nodejs20",
        "USER_CODE_ROOT": root,
        "TENCENTCLOUD_RUNENV": "SCF",
        "TENCENTCLOUD_REGION": "eu-west-3",
    }
    # One log stream per instance, named as Lambda names them: <yyyy/mm/dd>/[<version>]<instance id>.
    assert stream.count("/") == 3 and "/[3]" in stream and len(stream.rsplit("]", 1)[1]) == 32
    assert result["log_stream"] == stream and result["log_group"] == "/stratus/functions/hello"
    assert result["namespace"] == "web"
    assert result["at_import"] == {**env, "AWS_LAMBDA_LOG_STREAM_NAME": stream}  # set before the handler loads
    assert result["cwd"] == root
    assert result["greeting"] == result["relative"] == "hello from the code root"
    assert result["utc_offset"] == 0


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_a_function_may_set_its_own_region_time_zone_and_language(runtime: str, tmp_path: Path) -> None:
    inst = start(
        runtime,
        tmp_path,
        {"STRATUS_REGION": "eu-west-3", "AWS_REGION": "ap-guangzhou", "TZ": "Asia/Shanghai", "LANG": "en_US.UTF-8"},
    )
    try:
        inst.ready()
        result: dict[str, Any] = inst.invoke({})["result"]
    finally:
        inst.close()
    env = result["env"]
    assert (env["AWS_REGION"], env["AWS_DEFAULT_REGION"], env["TENCENTCLOUD_REGION"]) == (
        "ap-guangzhou",
        "ap-guangzhou",
        "eu-west-3",
    )
    assert (env["TZ"], env["LANG"]) == ("Asia/Shanghai", "en_US.UTF-8")
    assert result["utc_offset"] == 8 * 3600  # the time zone took effect, not just the variable
