"""The level of a log line, read from its text at write time (so it can be filtered on).

Recognised: a leading level word, bare or bracketed, followed by whitespace, ``:`` or the
end of the line (``[ERROR]\\t2024-...`` as AWS Lambda's Python runtime writes it,
``ERROR:root:msg`` as Python logging's default format does, ``WARN something``), and JSON
object lines with a ``level`` / ``levelname`` key (structlog, python-json-logger, pino with
its numeric levels). Anything else has no level (""): we never guess from words in the
middle of a line. ``line_level`` adds the stream's default: a stdout line that says no level
(a bare ``print()``, ``console.log``) is ``info``, so ``level=info`` finds it; stderr and
system lines keep no level unless they say one."""

from __future__ import annotations

import json
import re

DEBUG, INFO, WARNING, ERROR, CRITICAL = "debug", "info", "warning", "error", "critical"
LEVELS = (DEBUG, INFO, WARNING, ERROR, CRITICAL)

_NAMES = {
    "trace": DEBUG,
    "debug": DEBUG,
    "info": INFO,
    "notice": INFO,
    "warn": WARNING,
    "warning": WARNING,
    "error": ERROR,
    "err": ERROR,
    "critical": CRITICAL,
    "crit": CRITICAL,
    "fatal": CRITICAL,
}
# pino / bunyan numeric levels.
_NUMBERS = {10: DEBUG, 20: DEBUG, 30: INFO, 40: WARNING, 50: ERROR, 60: CRITICAL}

_PREFIX = re.compile(
    r"^\s*\[?(?P<word>ERROR|WARNING|WARN|INFO|DEBUG|CRITICAL|FATAL)\]?(?=[\s:\]]|$)",
    re.IGNORECASE,
)
# Only small lines are parsed as JSON: a 16 KB blob is not worth decoding for a level.
_JSON_MAX_CHARS = 4096


def parse_level(text: str) -> str:
    match = _PREFIX.match(text)
    if match:
        return _NAMES[match.group("word").lower()]
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}") and len(stripped) <= _JSON_MAX_CHARS:
        try:
            obj = json.loads(stripped)
        except (ValueError, RecursionError):  # a function's line, nested arbitrarily deep
            return ""
        if isinstance(obj, dict):
            for key in ("level", "levelname"):
                value = obj.get(key)
                if isinstance(value, str):
                    return _NAMES.get(value.strip().lower(), "")
                if isinstance(value, int) and not isinstance(value, bool):
                    return _NUMBERS.get(value, "")
    return ""


def line_level(text: str, stream: str) -> str:
    """The level a stored line gets: the one it says, else ``info`` on stdout, else none."""
    return parse_level(text) or (INFO if stream == "stdout" else "")
