"""Rules for a function's configuration, shared by the API and every entry point
(VS Code, pipelines). Each error names the field and the rule."""

from __future__ import annotations

import re
from typing import Any

from apps.core import event_shapes
from apps.core.errors import DomainError
from apps.functions.knobs import KNOBS
from apps.functions.models import Runtime
from apps.tenancy.models import var_name_validator

# Python: `module.func` (module may be dotted, e.g. `app.main.handler`);
# Node: `file.export` (file may sit in folders, e.g. `src/index.handler`).
_PY_HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_NODE_HANDLER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.[A-Za-z_$][A-Za-z0-9_$]*$")
RESERVED_ENV_PREFIXES = ("STRATUS_", "AWS_LAMBDA_", "SCF_")
MAX_ENV_BYTES = 4096 * 4  # like Lambda's 4 KB, with room for a few more variables


def validate_function_config(config: dict[str, Any]) -> None:
    """Raise DomainError naming every broken rule in ``config`` (a full config dict)."""
    errors: dict[str, list[str]] = {}

    def bad(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    runtime, handler = config["runtime"], config["handler"]
    if runtime == Runtime.PYTHON311 and not _PY_HANDLER.match(handler):
        bad("handler", "A Python handler is 'module.function', e.g. 'main.handler'.")
    if runtime == Runtime.NODE20 and (not _NODE_HANDLER.match(handler) or ".." in handler):
        bad("handler", "A Node handler is 'file.export', e.g. 'index.handler'.")
    for knob in KNOBS:
        if not knob.accepts(config.get(knob.name, knob.default)):
            bad(knob.name, knob.range_message)
    if not errors.keys() & {"min_instances", "max_instances"} and config["min_instances"] > config["max_instances"]:
        bad("min_instances", "Must not exceed max_instances.")
    if config.get("event_format", event_shapes.DEFAULT_FORMAT) not in event_shapes.FORMATS:
        bad("event_format", f"Must be one of {', '.join(event_shapes.FORMATS)}.")
    for problem in event_shapes.route_problems(config.get("routes", [])):
        bad("routes", problem)
    env = config["env"]
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        bad("env", "Must be an object of string values.")
    else:
        for name in env:
            try:
                var_name_validator(name)
            except Exception:  # noqa: BLE001 - Django's ValidationError; reported as a field error
                bad("env", f"'{name}': use letters, digits and underscores, not starting with a digit.")
            if name.startswith(RESERVED_ENV_PREFIXES):
                bad("env", f"'{name}': names starting with {', '.join(RESERVED_ENV_PREFIXES)} are reserved.")
        size = sum(len(k) + len(v.encode()) for k, v in env.items())
        if size > MAX_ENV_BYTES:
            bad("env", f"Variables total {size} bytes; the limit is {MAX_ENV_BYTES}.")
    if errors:
        summary = "; ".join(f"{field}: {msgs[0]}" for field, msgs in errors.items())
        raise DomainError(summary, code="invalid", fields=errors)
