"""stratus.yaml parsing: the shape, defaults, and errors that name the line."""

from __future__ import annotations

import pytest

from apps.core.errors import DomainError
from apps.pipelines.pipeline_config import parse_pipeline, trigger_for

EXAMPLE = """\
functions:
  - name: hello
    path: functions/hello        # directory packaged into the version
    runtime: python3.11
    handler: main.handler
steps:
  - name: install
    run: pip install -r functions/hello/requirements.txt -t functions/hello
  - name: test
    run: python -m pytest -q tests
    timeout_s: 600
triggers:
  - branch: main
    environment: prod
    release: {steps: [10, 50, 100], advance: auto, dwell_s: 60}
  - branch: develop
    environment: staging
  - branch: "*"
    preview: true
"""


def test_the_issue_example_parses() -> None:
    p = parse_pipeline(EXAMPLE)
    assert p["functions"] == [
        {"name": "hello", "path": "functions/hello", "runtime": "python3.11", "handler": "main.handler"}
    ]
    assert p["steps"][0] == {
        "name": "install",
        "run": "pip install -r functions/hello/requirements.txt -t functions/hello",
        "timeout_s": 600,
        "memory_mb": 2048,
        "env": {},
        "secrets": False,
    }
    assert p["triggers"][0]["release"]["steps"] == [10, 50, 100]
    assert trigger_for(p, branch="main")["environment"] == "prod"
    assert trigger_for(p, branch="develop")["environment"] == "staging"
    assert trigger_for(p, branch="feature/x")["preview"] is True
    assert trigger_for(p, tag="v1") is None


def test_empty_file_is_an_empty_pipeline() -> None:
    assert parse_pipeline("") == {"functions": [], "steps": [], "triggers": []}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "steps:\n  - name: a\n    run: x\n  - name: b\n    run: y\n    timeout_s: 0\n",
            "stratus.yaml line 6: steps[1].timeout_s must be between 1 and 3600",
        ),
        (
            "steps:\n  - name: a\n    run: x\n  - name: b\n    run: y\n    timeout_s: 7200\n",
            "stratus.yaml line 6: steps[1].timeout_s must be between 1 and 3600",
        ),
        (
            "steps:\n  - name: a\n    run: x\n    memory_mb: 32\n",
            "stratus.yaml line 4: steps[0].memory_mb must be between 64 and 16384",
        ),
        ("steps:\n  - name: a\n", "stratus.yaml line 2: steps[0].run is required"),
        ("stepz: []\n", "stratus.yaml line 1: stepz is not a known field"),
        (
            "steps:\n  - name: a\n    run: x\n    secrets: maybe\n",
            "stratus.yaml line 4: steps[0].secrets must be true or false",
        ),
        (
            "steps:\n  - {name: a, run: x}\n  - {name: a, run: y}\n",
            "stratus.yaml line 3: steps[1].name 'a' is used by another step",
        ),
        (
            "functions:\n  - name: hello\n    path: ../etc\n    runtime: python3.11\n    handler: main.handler\n",
            "stratus.yaml line 3: functions[0].path '../etc' must be a directory inside the repository",
        ),
        (
            "functions:\n  - name: hello\n    runtime: python3.11\n",
            "stratus.yaml line 2: functions[0].handler is required",
        ),
        (
            "triggers:\n  - branch: main\n",
            "stratus.yaml line 2: triggers[0] needs either environment: <name> or preview: true",
        ),
        (
            "triggers:\n  - branch: main\n    tag: v1\n    environment: prod\n",
            "stratus.yaml line 2: triggers[0] needs exactly one of branch or tag",
        ),
        (
            "triggers:\n  - branch: main\n    environment: Prod!\n",
            "stratus.yaml line 3: triggers[0].environment 'Prod!' is not valid",
        ),
        (
            "triggers:\n  - branch: main\n    environment: prod\n    release: {steps: [10, 50]}\n",
            "stratus.yaml line 4: triggers[0].release.steps the last step must be 100",
        ),
        ("steps: [\n", "stratus.yaml line 2:"),
        ("- a\n- b\n", "stratus.yaml line 1: (document) must be a mapping"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DomainError) as info:
        parse_pipeline(text)
    assert info.value.status_code == 400
    assert info.value.message.startswith(message), info.value.message


def test_env_values_become_strings_and_first_trigger_wins() -> None:
    p = parse_pipeline(
        "steps:\n  - run: echo\n    env: {A: 1, B: true}\ntriggers:\n  - {branch: 'rel/*', environment: staging}\n"
        "  - {branch: '*', environment: dev}\n  - {tag: 'v*', environment: prod}\n"
    )
    assert p["steps"][0]["env"] == {"A": "1", "B": "true"}
    assert p["steps"][0]["name"] == "step 1"
    assert trigger_for(p, branch="rel/2")["environment"] == "staging"
    assert trigger_for(p, branch="x")["environment"] == "dev"
    assert trigger_for(p, tag="v2")["environment"] == "prod"
