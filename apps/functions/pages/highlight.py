"""Code on the versions pages: a file as escaped lines with syntax classes, and a unified diff
as rows (kind, old and new line numbers, code). Highlighting is done on the server with
Pygments when it is installed (token classes styled in stratus.css: no inline style, the
CSP allows none); without it lines are escaped plain text. Either way every byte of the
file goes through escaping: a version's files are tenant content."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

HIGHLIGHT_LINE_LIMIT = 5000  # beyond this many lines: plain escaped text (fast enough for any file)
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")

try:  # Pygments ships with the dev tools; the pages work without it.
    from pygments.lexers import get_lexer_for_filename
    from pygments.token import STANDARD_TYPES, Token
    from pygments.util import ClassNotFound

    HAVE_PYGMENTS = True
except ImportError:  # pragma: no cover - depends on the installation
    HAVE_PYGMENTS = False


@lru_cache(maxsize=64)
def _lexer(path: str) -> Any:
    if not HAVE_PYGMENTS:
        return None
    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _css_class(ttype: Any) -> str:
    while ttype not in STANDARD_TYPES and ttype is not Token:
        ttype = ttype.parent
    return STANDARD_TYPES.get(ttype, "")


def highlighted_lines(path: str, text: str) -> list[SafeString]:
    """``text`` as lines of escaped HTML, with ``<span class="hl-k">`` etc. when a lexer knows the file."""
    lines = text.splitlines()
    lexer = _lexer(path)
    if lexer is None or len(lines) > HIGHLIGHT_LINE_LIMIT:
        return [mark_safe(escape(line)) for line in lines]  # noqa: S308 - escaped just here
    out: list[str] = []
    current: list[str] = []
    for ttype, value in lexer.get_tokens(text):
        css = _css_class(ttype)
        parts = value.split("\n")
        for index, part in enumerate(parts):
            if index:
                out.append("".join(current))
                current = []
            if part:
                current.append(f'<span class="hl-{css}">{escape(part)}</span>' if css else str(escape(part)))
    if current:
        out.append("".join(current))
    out = [line.replace("\r", "") for line in out]
    while len(out) > len(lines):  # a trailing newline in the text gives no extra line
        out.pop()
    return [mark_safe(line) for line in out]  # noqa: S308 - every piece was escaped above


def diff_lines(path: str, diff: str) -> list[dict[str, Any]]:
    """A unified diff as rows: {"kind": "hunk"|"add"|"del"|"ctx", "old": n|None, "new": n|None,
    "code": escaped html}. The ---/+++ header lines are dropped (the page names both sides)."""
    rows: list[dict[str, Any]] = []
    old = new = 0
    body = diff.splitlines()
    highlight = _lexer(path) is not None and len(body) <= HIGHLIGHT_LINE_LIMIT
    for line in body:
        if line.startswith(("--- ", "+++ ")) and not rows:
            continue
        match = _HUNK.match(line)
        if match:
            old, new = int(match.group(1)), int(match.group(2))
            rows.append({"kind": "hunk", "old": None, "new": None, "code": escape(line)})
            continue
        sign, code = line[:1], line[1:]
        if sign == "\\":  # "\ No newline at end of file"
            rows.append({"kind": "hunk", "old": None, "new": None, "code": escape(line)})
            continue
        html = highlighted_lines(path, code)[0] if highlight and code else escape(code)
        if sign == "+":
            rows.append({"kind": "add", "old": None, "new": new, "code": html})
            new += 1
        elif sign == "-":
            rows.append({"kind": "del", "old": old, "new": None, "code": html})
            old += 1
        else:
            rows.append({"kind": "ctx", "old": old, "new": new, "code": html})
            old += 1
            new += 1
    return rows
