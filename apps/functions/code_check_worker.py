"""The child process of the WebIDE's Python check (``apps/functions/code_checks.py`` starts it).

Run as a script (``python -I code_check_worker.py <pyflakes dir> <filename> <max problems>
<seconds of CPU> <bytes of memory>``): it limits itself, reads a Python source from stdin
as bytes, parses it with ``ast`` and runs pyflakes over the tree (nothing is executed), and
writes one JSON list of problems to stdout: ``{"code", "line", "column", "end_line",
"end_column", "message"}``, lines and columns 1-based, columns counted in characters of the
line (``ast`` counts UTF-8 bytes), the end exclusive.

Why a process: the source is tenant input, and parsing it holds the GIL for as long as it
takes (seconds for a megabyte of short statements on a small host); a crafted one may also
exhaust the recursion or memory of the parser. Here that costs this process only, which the
parent kills at its deadline. Imports nothing but the standard library and pyflakes, so it
starts in tens of milliseconds, without Django or any of the console's settings.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from typing import Any

_WORD = re.compile(r"\w+")


def _limit(cpu_seconds: int, memory_bytes: int) -> None:
    # The parent's deadline kills a slow check; these bound what one can take before that
    # (and stop it even if the parent were gone).
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _char_column(lines: list[bytes], line: int, byte_col: int) -> int:
    """The 0-based character column of a 0-based UTF-8 byte column (what ``ast`` gives)."""
    if not 1 <= line <= len(lines):
        return byte_col
    return len(lines[line - 1][:byte_col].decode("utf-8", "replace"))


def _text(lines: list[bytes], line: int) -> str:
    return lines[line - 1].decode("utf-8", "replace") if 1 <= line <= len(lines) else ""


def _span(text: str, col: int, name: str | None) -> tuple[int, int]:
    """The 0-based [start, end) characters to underline: the name the message is about if it
    is on the line at or after ``col`` (``import os`` points at the statement, the name is
    what is unused), else the word at ``col``, else one character."""
    # "'os.path' imported but unused" for `from os import path`: the last part is on the line.
    for candidate in (name, name.rsplit(".", 1)[-1]) if name else ():
        found = re.search(r"(?<![\w.])" + re.escape(candidate) + r"(?!\w)", text[col:])
        if found:
            return col + found.start(), col + found.end()
    word = _WORD.match(text, col)
    if word:
        return col, word.end()
    return col, col + 1


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(code: str, line: int, start: int, end: int, message: str, end_line: int | None = None) -> dict[str, Any]:
    """One problem; ``start`` and ``end`` are 0-based character columns, the end exclusive
    (at least one character is underlined)."""
    end_line = end_line or line
    if end_line == line:
        end = max(end, start + 1)
    return {
        "code": code,
        "line": line,
        "column": start + 1,
        "end_line": end_line,
        "end_column": end + 1,
        "message": message,
    }


def syntax_problem(error: SyntaxError, lines: list[bytes]) -> dict[str, Any]:
    """A SyntaxError as one problem. Since 3.10 ``offset`` and ``end_offset`` are 1-based
    characters of ``text``; some errors (null bytes, a bad encoding) carry no position."""
    line = error.lineno or 1
    start = max((error.offset or 1) - 1, 0)
    end_line = error.end_lineno if error.end_lineno and error.end_lineno >= line else line
    end = (error.end_offset or 0) - 1
    if end_line != line and end < 0:
        end_line, end = line, start + 1
    kind = "indentation-error" if isinstance(error, IndentationError) else "syntax-error"
    return problem(kind, line, start, end, str(error.msg), end_line)


def pyflakes_problems(tree: ast.AST, filename: str, lines: list[bytes]) -> list[dict[str, Any]]:
    from pyflakes import checker

    found = []
    for message in checker.Checker(tree, filename=filename).messages:
        line = int(message.lineno)
        text = _text(lines, line)
        col = _char_column(lines, line, int(getattr(message, "col", 0) or 0))
        args = message.message_args
        name = args[0] if args and isinstance(args[0], str) else None
        start, end = _span(text, col, name)
        found.append(problem(_kebab(type(message).__name__), line, start, end, message.message % args))
    return found


def check(source: bytes, filename: str) -> list[dict[str, Any]]:
    lines = source.splitlines()  # \r, \n and \r\n, as Python's tokenizer (not str.splitlines' \x0c, \u2028...)
    try:
        # bytes, so that a coding declaration and a BOM mean what they mean to Python.
        tree = ast.parse(source, filename=filename)
    except SyntaxError as error:  # IndentationError and TabError too
        return [syntax_problem(error, lines)]
    except ValueError as error:  # "source code string cannot contain null bytes" on some versions
        return [problem("syntax-error", 1, 0, 1, str(error))]
    return sorted(pyflakes_problems(tree, filename, lines), key=lambda p: (p["line"], p["column"]))


def too_complex(message: str) -> list[dict[str, Any]]:
    # Python itself refuses such a file in the same way, so it is an error, on line 1: where
    # the parser gave up is not known.
    return [problem("too-complex", 1, 0, 1, message)]


def main(argv: list[str]) -> int:
    pyflakes_dir, filename, max_problems, cpu_seconds, memory_bytes = argv[1:6]
    _limit(int(cpu_seconds), int(memory_bytes))
    sys.path.insert(0, pyflakes_dir)
    source = sys.stdin.buffer.read()
    try:
        found = check(source, filename)
    except RecursionError:
        found = too_complex("The code nests too deeply to check (brackets, operators or calls inside each other).")
    except MemoryError:
        # CPython's parser raises MemoryError for deep nesting ("stack overflow") as well as
        # when the memory limit above is reached.
        found = too_complex("Python runs out of memory parsing this code: it nests too deeply or is too large.")
    limit = int(max_problems)
    if len(found) > limit:
        more = len(found) - limit
        found = found[:limit] + [
            problem("too-many-problems", found[limit]["line"], 0, 1, f"{more} more problems not shown.")
        ]
    sys.stdout.write(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
