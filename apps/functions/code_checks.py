"""Problems in a Python file while it is typed (the WebIDE's markers, issue 15): pyflakes.

``python_diagnostics(path, source)`` answers syntax errors and pyflakes' findings (undefined
names, unused imports and variables...) as editor diagnostics. pyflakes parses with ``ast``
and never executes the code, but the source is tenant input all the same, so the check runs
in a child process (``code_check_worker.py``) under a deadline and CPU and memory limits:
CPython's parser holds the GIL for as long as it parses (measured on a 2-core host: 9 s and
630 MB for a megabyte of ``x=1`` lines), and deep nesting ends in RecursionError or
MemoryError. In a child, a slow, deep or huge input costs that child only; the web process
waits for it without the GIL, and answers one diagnostic instead of a 500.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from apps.core.errors import DomainError
from apps.functions import draft_selectors
from apps.functions.archives import MiB, normalize_path
from apps.functions.models import Function

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
SOURCE = "pyflakes"
PYTHON_SUFFIXES = (".py", ".pyi")
WORKER = Path(__file__).with_name("code_check_worker.py")

# What Python refuses to compile or certainly fails on when run; the rest of pyflakes'
# findings (unused names, redefinitions, format strings...) are warnings.
ERROR_CODES = frozenset(
    {
        "syntax-error",
        "indentation-error",
        "too-complex",
        "undefined-name",
        "undefined-local",
        "undefined-export",
        "duplicate-argument",
        "return-outside-function",
        "yield-outside-function",
        "continue-outside-loop",
        "break-outside-loop",
        "default-except-not-last",
        "two-starred-expressions",
        "too-many-expressions-in-starred-assignment",
        "future-feature-not-defined",
        "late-future-import",
        "import-star-not-permitted",
    }
)


@dataclass(frozen=True)
class CheckLimits:
    # 1 MB is far beyond a file anyone edits in the browser; the draft keeps up to 10 MB files.
    max_source_bytes: int = 1 * MiB
    # The check is feedback while typing: a file that takes longer is not checked. Common
    # files take tens of milliseconds (most of it the child's start).
    timeout_seconds: float = 5.0
    # A megabyte of the shortest statements peaks at about 630 MB of AST; more is refused.
    memory_bytes: int = 1024 * MiB
    max_problems: int = 500
    # Checks running at once in this process (each may take a core for the deadline); a
    # request waits this long for a turn, then answers 503.
    concurrent: int = 2
    wait_seconds: float = 2.0


# Module-level so tests can swap in other limits (all but ``concurrent``, read once here).
LIMITS = CheckLimits()
_slots = threading.BoundedSemaphore(LIMITS.concurrent)


@dataclass(frozen=True)
class Diagnostic:
    """One problem, for the editor: lines and columns 1-based, columns in characters of the
    line, the end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    code: str
    message: str
    source: str = SOURCE


def is_python(path: str) -> bool:
    return path.lower().endswith(PYTHON_SUFFIXES)


def _too_large(size: int) -> DomainError:
    return DomainError(
        f"The code to check is {size} bytes: the Python check reads at most {LIMITS.max_source_bytes} bytes.",
        code="check_too_large",
        status_code=413,
    )


def _busy() -> DomainError:
    return DomainError(
        f"The Python check is busy ({LIMITS.concurrent} checks running): try again in a moment.",
        code="check_busy",
        status_code=503,
    )


def _whole_file(code: str, message: str, severity: Severity) -> list[Diagnostic]:
    return [Diagnostic(1, 1, 1, 2, severity, code, message)]


def _diagnostic(found: dict[str, Any]) -> Diagnostic:
    code = str(found["code"])
    return Diagnostic(
        line=int(found["line"]),
        column=int(found["column"]),
        end_line=int(found["end_line"]),
        end_column=int(found["end_column"]),
        severity="error" if code in ERROR_CODES else "warning",
        code=code,
        message=str(found["message"]),
    )


def _pyflakes_dir() -> str:
    # The child runs isolated (-I: no environment, no user site, not the current directory)
    # and is told where pyflakes is instead, wherever this process found it.
    import pyflakes

    return str(Path(pyflakes.__file__).resolve().parent.parent)


def _run_worker(path: str, source: bytes) -> list[Diagnostic]:
    command = [
        sys.executable,
        "-I",
        str(WORKER),
        _pyflakes_dir(),
        path,
        str(LIMITS.max_problems),
        str(math.ceil(LIMITS.timeout_seconds)),
        str(LIMITS.memory_bytes),
    ]
    # An empty environment: the child needs none, and the console's settings and secrets
    # stay out of a process that reads tenant input.
    with subprocess.Popen(  # noqa: S603 - fixed argv (our worker), the source goes to stdin
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={}, cwd=os.sep
    ) as child:
        try:
            out, err = child.communicate(source, timeout=LIMITS.timeout_seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            return _whole_file(
                "check-timeout",
                f"Not checked: the check stops after {LIMITS.timeout_seconds:g} s and this file takes longer.",
                "warning",
            )
    try:
        found = json.loads(out) if child.returncode == 0 else None
    except ValueError:
        found = None
    if not isinstance(found, list):
        # Killed by its CPU or memory limit, or a crash: the input is why, not the caller.
        logger.warning("python check of %s ended with %s: %s", path, child.returncode, err[-500:])
        return _whole_file(
            "check-failed", "Not checked: the file is too large or too complex for the check's limits.", "warning"
        )
    return [_diagnostic(item) for item in found]


def python_diagnostics(path: str, source: bytes | str) -> list[Diagnostic]:
    """Syntax errors and pyflakes' findings in ``source`` (the file at ``path``, which only
    says whether it is Python: other files have no diagnostics). Larger than
    ``LIMITS.max_source_bytes`` is 413; no free slot within ``wait_seconds`` is 503."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    if len(data) > LIMITS.max_source_bytes:
        raise _too_large(len(data))
    if not is_python(path):
        return []
    if not _slots.acquire(timeout=LIMITS.wait_seconds):
        raise _busy()
    try:
        return _run_worker(path, data)
    finally:
        _slots.release()


def draft_diagnostics(*, function: Function, path: str, content: str | None) -> tuple[str, list[Diagnostic]]:
    """The diagnostics of a draft file (``function`` already scoped to the caller): of
    ``content`` (the editor's unsaved buffer) if given, else of the saved file (404 if it is
    not in the draft). Answers the normalized path with them."""
    path = normalize_path(path)
    if content is None:
        source: bytes | str = bytes(draft_selectors.draft_file_get(function=function, path=path).content)
    else:
        source = content
    return path, python_diagnostics(path, source)
