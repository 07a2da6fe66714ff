"""stratus.yaml: parse and validate a pipeline into a plain dict, with line-numbered errors.

::

    functions:                      # packaged into versions (source "git"), then deployed
      - name: hello
        path: functions/hello       # directory relative to the repository root
        runtime: python3.11
        handler: main.handler
        memory_mb: 256              # optional: kind, the knobs (memory_mb, timeout_s, ...:
                                    # apps/functions/knobs.py, the API's ranges), env
    steps:                          # shell commands run in order in the workspace
      - name: test
        run: python3 -m pytest -q tests
        timeout_s: 600              # 1..3600, default 600
        memory_mb: 2048             # 64..16384, default 2048: per process, and the step's
                                    # whole tree where the host's cgroups allow it
        env: {PYTHONUNBUFFERED: "1"}
        secrets: false              # true: the target environment's variables and secrets,
                                    # if its pipeline_secrets setting allows (console only);
                                    # a protected one's only after the run is approved
    triggers:                       # the first match wins
      - branch: main                # fnmatch pattern; or tag: "v*"
        environment: prod
        release: {steps: [10, 50, 100], advance: auto, dwell_s: 60}
      - branch: "*"
        preview: true               # environment preview-<branch>

Every error is a DomainError (400) naming the line: ``stratus.yaml line 7:
steps[1].timeout_s must be between 1 and 3600``.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import yaml

from apps.core import event_shapes
from apps.core.errors import DomainError
from apps.functions.knobs import CONFIG_FIELDS, KNOBS

FILENAME = "stratus.yaml"
DEFAULT_TIMEOUT_S = 600
MAX_TIMEOUT_S = 3600
DEFAULT_STEP_MEMORY_MB = 2048
MIN_STEP_MEMORY_MB, MAX_STEP_MEMORY_MB = 64, 16384
MAX_STEPS = 50
MAX_BYTES = 256 * 1024

TOP_KEYS = ("functions", "steps", "triggers")
FUNCTION_KEYS = ("name", "path", *CONFIG_FIELDS)  # a function's configuration, as the API takes it
STEP_KEYS = ("name", "run", "timeout_s", "memory_mb", "env", "secrets")
TRIGGER_KEYS = ("branch", "tag", "environment", "preview", "release")
_FUNCTION_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,48}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Path = tuple[str | int, ...]


class _Lines:
    """Line numbers (1-based) of every node, by its path in the document."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def walk(self, node: yaml.Node, path: Path) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    self.walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i))

    def of(self, path: Path) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def _fmt(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(document)"


class _Checker:
    def __init__(self, lines: _Lines) -> None:
        self.lines = lines

    def error(self, path: Path, message: str) -> DomainError:
        line = self.lines.of(path)
        where = _fmt(path)
        text = f"{FILENAME} line {line}: {where} {message}"
        return DomainError(text, code="pipeline_invalid", fields={"pipeline": [text]})

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, "must be a mapping")
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                raise self.error((*path, str(key)), f"is not a known field; known: {', '.join(allowed)}")
        return value

    def listing(self, value: Any, path: Path) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, "must be a list")
        return value

    def string(
        self, value: Any, path: Path, *, required: bool = True, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> str:
        if value is None:
            if required:
                raise self.error(path, "is required")
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(path, "must be a string")
        text = str(value)
        if required and not text.strip():
            raise self.error(path, "must not be empty")
        if pattern is not None and not pattern.match(text):
            raise self.error(path, f"'{text}' is not valid{': ' + hint if hint else ''}")
        return text

    def integer(self, value: Any, path: Path, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(path, f"must be between {low} and {high}")
        return value

    def env(self, value: Any, path: Path) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, "must be a mapping of NAME: value")
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _VAR_NAME.match(key):
                raise self.error((*path, str(key)), "is not a valid variable name")
            if item is None or isinstance(item, (dict, list)):
                raise self.error((*path, key), "must be a string, number or boolean")
            out[key] = ("true" if item else "false") if isinstance(item, bool) else str(item)
        return out


def _relative_path(checker: _Checker, value: Any, path: Path) -> str:
    text = checker.string(value, path).strip().strip("/") or "."
    parts = text.split("/")
    if text.startswith("~") or "\\" in text or any(p == ".." for p in parts):
        raise checker.error(path, f"'{value}' must be a directory inside the repository")
    return "/".join(p for p in parts if p not in ("", ".")) or "."


def parse_pipeline(text: str | bytes) -> dict[str, Any]:
    """The validated pipeline: {"functions": [...], "steps": [...], "triggers": [...]}."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise DomainError(f"{FILENAME} is larger than {MAX_BYTES // 1024} KB.", code="pipeline_invalid")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DomainError(f"{FILENAME} is not UTF-8 text.", code="pipeline_invalid") from None
    if len(text) > MAX_BYTES:
        raise DomainError(f"{FILENAME} is larger than {MAX_BYTES // 1024} KB.", code="pipeline_invalid")
    lines = _Lines()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        message = f"{FILENAME} line {line}: {problem}"
        raise DomainError(message, code="pipeline_invalid", fields={"pipeline": [message]}) from None
    except yaml.YAMLError as exc:
        raise DomainError(f"{FILENAME}: {exc}", code="pipeline_invalid") from None
    if node is not None:
        lines.walk(node, ())
    c = _Checker(lines)
    if data is None:
        data = {}
    top = c.mapping(data, (), TOP_KEYS)

    functions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(c.listing(top.get("functions"), ("functions",))):
        p: Path = ("functions", i)
        item = c.mapping(item, p, FUNCTION_KEYS)
        name = c.string(
            item.get("name"), (*p, "name"), pattern=_FUNCTION_NAME, hint="lowercase letters, digits, - and _"
        )
        if name in seen:
            raise c.error((*p, "name"), f"'{name}' is listed twice")
        seen.add(name)
        fn: dict[str, Any] = {
            "name": name,
            "path": _relative_path(c, item.get("path", f"functions/{name}"), (*p, "path")),
            "runtime": c.string(item.get("runtime"), (*p, "runtime")),
            "handler": c.string(item.get("handler"), (*p, "handler")),
        }
        if "kind" in item:
            fn["kind"] = c.string(item["kind"], (*p, "kind"))
        if "event_format" in item:
            fmt = c.string(item["event_format"], (*p, "event_format"))
            if fmt not in event_shapes.FORMATS:
                raise c.error((*p, "event_format"), f"must be one of {', '.join(event_shapes.FORMATS)}")
            fn["event_format"] = fmt
        if "routes" in item:
            routes = c.listing(item["routes"], (*p, "routes"))
            for j, template in enumerate(routes):
                problems = event_shapes.route_problems([template])
                if problems:
                    raise c.error((*p, "routes", j), problems[0])
            problems = event_shapes.route_problems(routes)
            if problems:
                raise c.error((*p, "routes"), problems[0])
            fn["routes"] = routes
        if "description" in item:
            fn["description"] = c.string(item["description"], (*p, "description"), required=False)
        for knob in KNOBS:
            if knob.name in item:
                fn[knob.name] = c.integer(item[knob.name], (*p, knob.name), knob.min, knob.max)
        if "env" in item:
            fn["env"] = c.env(item["env"], (*p, "env"))
        functions.append(fn)

    steps: list[dict[str, Any]] = []
    step_names: set[str] = set()
    raw_steps = c.listing(top.get("steps"), ("steps",))
    if len(raw_steps) > MAX_STEPS:
        raise c.error(("steps",), f"has {len(raw_steps)} steps; at most {MAX_STEPS}")
    for i, item in enumerate(raw_steps):
        p = ("steps", i)
        item = c.mapping(item, p, STEP_KEYS)
        name = c.string(
            item.get("name", f"step {i + 1}"),
            (*p, "name"),
            pattern=_STEP_NAME,
            hint="letters, digits, spaces, '.', '_' and '-'",
        )
        if name in step_names:
            raise c.error((*p, "name"), f"'{name}' is used by another step")
        step_names.add(name)
        secrets = item.get("secrets", False)
        if not isinstance(secrets, bool):
            raise c.error((*p, "secrets"), "must be true or false")
        steps.append(
            {
                "name": name,
                "run": c.string(item.get("run"), (*p, "run")),
                "timeout_s": c.integer(item.get("timeout_s", DEFAULT_TIMEOUT_S), (*p, "timeout_s"), 1, MAX_TIMEOUT_S),
                "memory_mb": c.integer(
                    item.get("memory_mb", DEFAULT_STEP_MEMORY_MB),
                    (*p, "memory_mb"),
                    MIN_STEP_MEMORY_MB,
                    MAX_STEP_MEMORY_MB,
                ),
                "env": c.env(item.get("env"), (*p, "env")),
                "secrets": secrets,
            }
        )

    triggers: list[dict[str, Any]] = []
    for i, item in enumerate(c.listing(top.get("triggers"), ("triggers",))):
        p = ("triggers", i)
        item = c.mapping(item, p, TRIGGER_KEYS)
        if ("branch" in item) == ("tag" in item):
            raise c.error(p, "needs exactly one of branch or tag")
        kind = "branch" if "branch" in item else "tag"
        pattern = c.string(item[kind], (*p, kind))
        preview = item.get("preview", False)
        if not isinstance(preview, bool):
            raise c.error((*p, "preview"), "must be true or false")
        has_env = item.get("environment") is not None
        if preview == has_env:
            raise c.error(p, "needs either environment: <name> or preview: true")
        if preview and kind == "tag":
            raise c.error((*p, "preview"), "works with branch triggers only")
        trigger: dict[str, Any] = {kind: pattern, "preview": preview}
        if has_env:
            trigger["environment"] = c.string(
                item["environment"], (*p, "environment"), pattern=_ENV_NAME, hint="lowercase letters, digits and dashes"
            )
        if item.get("release") is not None:
            from apps.releases.services import plan_validate

            try:
                trigger["release"] = plan_validate(item["release"])
            except DomainError as exc:
                detail = exc.message[len("plan") :] if exc.message.startswith("plan") else ": " + exc.message
                field = detail.split(":", 1)[0].lstrip(".")
                rest = detail.split(":", 1)[1].strip() if ":" in detail else detail
                sub: Path = (*p, "release", *([field] if field else []))
                raise c.error(sub, rest.rstrip(".")) from None
        triggers.append(trigger)

    return {"functions": functions, "steps": steps, "triggers": triggers}


def trigger_for(pipeline: dict[str, Any], *, branch: str = "", tag: str = "") -> dict[str, Any] | None:
    """The first trigger whose pattern matches the branch (or tag); None if none does."""
    for trigger in pipeline.get("triggers", []):
        if branch and "branch" in trigger and fnmatch.fnmatchcase(branch, trigger["branch"]):
            return dict(trigger)
        if tag and "tag" in trigger and fnmatch.fnmatchcase(tag, trigger["tag"]):
            return dict(trigger)
    return None
