"""Request body parsers for the API.

``JSONParser`` is DRF's, with one rule added: a body nested deeper than
``STRATUS_MAX_JSON_DEPTH`` levels (64) answers 400 naming the limit. Python's json module
recurses once per level, so a body of a few kilobytes of ``[[[[...`` used to end in a
RecursionError (500) in the parser, or later in whatever walked the data. The depth is
measured on the raw text before anything is decoded, without recursion: strings are cut
out (brackets inside them do not nest), then the running count of openers minus closers
is taken over what is left.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json as drf_json

from apps.core.errors import DomainError

# A JSON string: a quote, then runs of plain characters and escapes, then a quote
# ("unrolled" so the regex engine neither backtracks nor recurses on long strings).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply ``text`` (JSON) nests arrays and objects: 0 for a scalar, 1 for ``[1]``.
    Linear in the length of the text; never recurses. Malformed text gets a number too (the
    parser then refuses it for what it is)."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not skeleton:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, skeleton))))


def too_deep(depth: int, limit: int) -> DomainError:
    return DomainError(
        f"The JSON body nests {depth} levels deep: JSON may nest at most {limit} levels "
        "(arrays and objects inside each other).",
        code="json_too_deep",
    )


def loads_bounded(text: str, *, limit: int | None = None, parse_constant: Any = None) -> Any:
    """``json.loads`` for text from outside: refuses (DomainError, 400) anything nested deeper
    than ``limit`` (STRATUS_MAX_JSON_DEPTH) before decoding it."""
    limit = int(settings.STRATUS_MAX_JSON_DEPTH if limit is None else limit)
    # A body with fewer openers than the limit cannot nest deeper: skip the scan.
    if text.count("[") + text.count("{") > limit:
        depth = json_depth(text)
        if depth > limit:
            raise too_deep(depth, limit)
    return json.loads(text, parse_constant=parse_constant)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the depth bound (see the module docstring)."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            text = codecs.getreader(encoding)(stream).read()
            parse_constant = drf_json.strict_constant if self.strict else None
            return loads_bounded(text, parse_constant=parse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
