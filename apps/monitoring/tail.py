"""The live log tail: one watcher's filters, backlog, live lines, cursor and drops, whatever
carries it (the websocket in consumers.py, Server-Sent Events in api/stream.py).

The cursor is a LogLine id. Ids commit in id order (services._insert_log_lines: an advisory
lock on PostgreSQL, SQLite's single writer), so "every line with an id <= C" is a fixed set
once C is visible: a watcher that resumes after C reads ``id > C`` and gets no gap and no
duplicate. Live messages can still arrive out of order (two writer processes publish in
either order) or not at all (a channel-layer queue was full): each message carries ``prev``,
the last id committed before its lines. A watcher knows its group's lines through
``complete`` (an id); a message with ``prev <= complete`` follows on directly, otherwise the
lines in (complete, newest] are read from the database. A message whose lines are all at or
below ``complete`` is a late copy of lines already read and is skipped.

What a watcher receives, in order (JSON objects with a ``type``):

- ``backlog``: ``{"lines": [...], "cursor": C, "filters": {...}}`` on connect and after each
  filter change: the last ``backlog`` lines (200 by default, at most MAX_BACKLOG), or with
  ``after=C`` every line after C (up to the buffer size; more is reported as dropped).
- ``lines``: ``{"lines": [...], "cursor": C}`` live lines, in id order; ``cursor`` is the last
  line's id. A line is {id, ts, stream, level, request_id, version, environment, text}.
- ``dropped``: ``{"count": N, "reason": R, "cursor": C}`` lines that matched but were not sent:
  ``rate_limit`` (over STRATUS_LOG_TAIL_RATE lines/s), ``slow_client`` (the watcher did not
  read and STRATUS_LOG_TAIL_BUFFER lines were queued), ``too_many`` (a gap or resume larger
  than the buffer). ``cursor`` is past them: they are in the history API
  (GET /api/v1/functions/{id}/logs?...), never silently lost.
- ``error``: ``{"code", "message", "fields"}`` for a bad filter (the socket stays open with
  the previous filters after a filter change; at connect it then closes with 4400).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

from apps.monitoring.levels import LEVELS
from apps.monitoring.models import LogLine, Stream
from apps.monitoring.services import log_function_group_name, log_group_name, log_line_data

# Close codes of the live-tail websocket (and what the SSE stream answers instead).
CLOSE_BAD_REQUEST = 4400  # a bad filter or parameter at connect (after an ``error`` message)
CLOSE_UNAUTHORIZED = 4401  # a bad, expired or revoked token or ticket
CLOSE_NOT_FOUND = 4404  # no such function, or not the caller's
CLOSE_FUNCTION_DELETED = 4410  # the function was deleted while watched (after a ``closing`` message)

DEFAULT_BACKLOG = 200
MAX_BACKLOG = 5000
MAX_QUERY_CHARS = 200
LINES_PER_FRAME = 500
# Rows read per query when a filter runs here (a regex): a backlog reads back this many at a
# time, and gives up after SCAN_MAX rows (the per-function cap keeps a function's lines bounded).
SCAN_CHUNK = 2000
SCAN_MAX = 20_000

FILTER_KEYS = ("environment", "version", "level", "stream", "request_id", "q", "regex")
CONNECT_KEYS = (*FILTER_KEYS, "after", "backlog", "token", "ticket")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the caller's error, answered; not a log line
_RE2_OPTIONS.max_mem = 8 << 20  # a compiled pattern's memory (RE2 refuses patterns needing more)


class FilterError(Exception):
    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def data(self) -> dict[str, Any]:
        return {"type": "error", "code": "invalid_filter", "message": self.message, "fields": self.fields}


@dataclass(frozen=True)
class Filters:
    environment: str = ""
    environment_id: int | None = None
    version: int | None = None
    levels: tuple[str, ...] = ()
    stream: str = ""
    request_id: str = ""
    q: str = ""
    regex: bool = False
    pattern: Any = field(default=None, compare=False)  # a compiled re2 pattern when regex

    def describe(self) -> dict[str, Any]:
        return {
            "environment": self.environment or None,
            "version": self.version,
            "level": ",".join(self.levels) or None,
            "stream": self.stream or None,
            "request_id": self.request_id or None,
            "q": self.q or None,
            "regex": self.regex,
        }

    def matches(self, line: dict[str, Any]) -> bool:
        if self.environment and line["environment"] != self.environment:
            return False
        if self.version is not None and line["version"] != self.version:
            return False
        if self.levels and line["level"] not in self.levels:
            return False
        if self.stream and line["stream"] != self.stream:
            return False
        if self.request_id and line["request_id"] != self.request_id:
            return False
        if self.q:
            if self.pattern is not None:
                return self.pattern.search(line["text"]) is not None
            return self.q.lower() in line["text"].lower()
        return True

    def narrow(self, qs: Any) -> Any:
        """The same filters in SQL, as far as SQL can say them (not a regex)."""
        if self.environment_id is not None:
            qs = qs.filter(environment_id=self.environment_id)
        if self.version is not None:
            qs = qs.filter(version=self.version)
        if self.levels:
            qs = qs.filter(level__in=self.levels)
        if self.stream:
            qs = qs.filter(stream=self.stream)
        if self.request_id:
            qs = qs.filter(request_id=self.request_id)
        if self.q and self.pattern is None:
            qs = qs.filter(text__icontains=self.q)
        return qs


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_filters(raw: dict[str, Any], *, allowed: tuple[str, ...] = FILTER_KEYS) -> Filters:
    """Filters from a query string or a ``filters`` message; FilterError names what is wrong.
    ``environment`` is a name (resolved by the caller); ``level`` one level or a comma list;
    ``q`` a case-insensitive substring, or a regular expression with ``regex=1`` or written
    ``/pattern/`` (``/pattern/i``: ignoring case). Regexes are RE2's syntax: matching takes
    time linear in the line, so no pattern can stall the tail (backreferences and lookaround,
    which need backtracking, are refused with the reason)."""
    unknown = sorted(k for k in raw if k not in allowed)
    if unknown:
        raise FilterError(
            f"Unknown filter {', '.join(repr(k) for k in unknown)}; the filters are {', '.join(FILTER_KEYS)}.",
            {k: ["unknown filter"] for k in unknown},
        )

    def text(key: str, limit: int) -> str:
        value = raw.get(key)
        if value is None:
            return ""
        if not isinstance(value, str | int):
            raise FilterError(f"{key} must be a string.", {key: ["must be a string"]})
        value = str(value).strip()
        if len(value) > limit:
            raise FilterError(f"{key} is longer than {limit} characters.", {key: [f"at most {limit} characters"]})
        return value

    environment = text("environment", 100)
    request_id = text("request_id", 64)
    stream = text("stream", 10).lower()
    if stream and stream not in Stream.values:
        raise FilterError(
            f"stream must be one of {', '.join(Stream.values)}.", {"stream": [f"not one of {Stream.values}"]}
        )
    version: int | None = None  # 0: draft runs (the WebIDE's Run logs as version 0)
    if text("version", 12):
        try:
            version = int(text("version", 12))
        except ValueError:
            version = 0
        if version < 0:
            raise FilterError(
                "version must be a version number (0: the draft's runs).", {"version": ["not a version number"]}
            )
    levels = tuple(sorted({v.strip().lower() for v in text("level", 100).split(",") if v.strip()}))
    bad_levels = [v for v in levels if v not in LEVELS]
    if bad_levels:
        raise FilterError(
            f"level must be one of {', '.join(LEVELS)} (or a comma list of them), not {', '.join(bad_levels)}.",
            {"level": [f"unknown level {v!r}" for v in bad_levels]},
        )
    q = text("q", MAX_QUERY_CHARS)
    regex = _truthy(raw.get("regex", ""))
    flags_ignore_case = False
    if not regex and len(q) >= 2 and q.startswith("/") and (q.endswith("/") or q.endswith("/i")):
        regex = True
        flags_ignore_case = q.endswith("/i")
        q = q[1:-2] if flags_ignore_case else q[1:-1]
    pattern = None
    if regex and q:
        options = re2.Options()
        options.log_errors = False
        options.max_mem = _RE2_OPTIONS.max_mem
        options.case_sensitive = not flags_ignore_case
        try:
            pattern = re2.compile(q, options)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise FilterError(
                f"q is not a valid regular expression ({reason}). Regexes use RE2 syntax: no backreferences "
                "or lookaround, so matching a line is always fast.",
                {"q": [f"invalid regular expression: {reason}"]},
            ) from None
    return Filters(
        environment=environment,
        version=version,
        levels=levels,
        stream=stream,
        request_id=request_id,
        q=q,
        regex=bool(regex and q),
        pattern=pattern,
    )


def parse_backlog(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_BACKLOG
    try:
        backlog = int(value)
    except (TypeError, ValueError):
        backlog = -1
    if not 0 <= backlog <= MAX_BACKLOG:
        raise FilterError(f"backlog must be 0 to {MAX_BACKLOG} lines.", {"backlog": [f"0 to {MAX_BACKLOG}"]})
    return backlog


def parse_cursor(value: Any, key: str = "after") -> int | None:
    if value is None or value == "":
        return None
    try:
        cursor = int(value)
    except (TypeError, ValueError):
        cursor = -1
    if cursor < 0:
        raise FilterError(f"{key} must be a cursor (a line id, 0 or more).", {key: ["not a cursor"]})
    return cursor


# --- database reads (in a worker thread that gives its connection back: an idle watcher holds
# neither a thread nor a database connection) ------------------------------------------------


async def db_call(fn: Callable[..., Any], *args: Any) -> Any:
    def run() -> Any:
        close_old_connections()
        try:
            return fn(*args)
        finally:
            connection.close()

    return await sync_to_async(run, thread_sensitive=False)()


def _environment_names(project_id: int) -> dict[int, str]:
    from apps.tenancy.models import Environment

    return dict(Environment.objects.filter(project_id=project_id).values_list("pk", "name"))


def resolve_environment(project_id: int, filters: Filters) -> Filters:
    """The filter's environment id (FilterError when the project has no such environment)."""
    if not filters.environment:
        return filters
    names = {name: pk for pk, name in _environment_names(project_id).items()}
    if filters.environment not in names:
        raise FilterError(
            f"No environment {filters.environment!r} in this project.", {"environment": ["no such environment"]}
        )
    return Filters(**{**filters.__dict__, "environment_id": names[filters.environment]})


def max_line_id() -> int:
    return LogLine.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _rows(function_id: int, project_id: int, filters: Filters, qs: Any) -> list[dict[str, Any]]:
    names = _environment_names(project_id)
    return [line for line in (log_line_data(row, names.get(row.environment_id, "")) for row in qs)]


def read_backlog(function_id: int, project_id: int, filters: Filters, count: int) -> tuple[list[dict[str, Any]], int]:
    """The newest ``count`` matching lines, oldest first, and the id they are complete through
    (the newest committed id when read: later lines come live)."""
    top = max_line_id()
    if count == 0:
        return [], top
    base = filters.narrow(LogLine.objects.filter(function_id=function_id, id__lte=top)).order_by("-id")
    found: list[dict[str, Any]] = []
    below: int | None = None
    scanned = 0
    while len(found) < count and scanned < SCAN_MAX:
        qs = base.filter(id__lt=below) if below is not None else base
        chunk = list(qs[: SCAN_CHUNK if filters.pattern is not None else count])
        if not chunk:
            break
        scanned += len(chunk)
        below = chunk[-1].pk
        found.extend(line for line in _rows(function_id, project_id, filters, chunk) if filters.matches(line))
        if filters.pattern is None:
            break
    found = found[:count]
    found.reverse()
    return found, top


def read_after(
    function_id: int, project_id: int, filters: Filters, after: int, upto: int | None, limit: int
) -> tuple[list[dict[str, Any]], int, int]:
    """Matching lines with ``after < id <= upto`` (upto None: the newest committed), oldest
    first, at most ``limit`` of them: (lines, how many more matched past the limit, upto)."""
    top = max_line_id() if upto is None else upto
    base = filters.narrow(LogLine.objects.filter(function_id=function_id, id__gt=after, id__lte=top)).order_by("id")
    found: list[dict[str, Any]] = []
    above = after
    skipped = 0
    while True:
        chunk = list(base.filter(id__gt=above)[:SCAN_CHUNK])
        if not chunk:
            break
        above = chunk[-1].pk
        for line in _rows(function_id, project_id, filters, chunk):
            if filters.matches(line):
                if len(found) < limit:
                    found.append(line)
                else:
                    skipped += 1
        if len(found) >= limit and filters.pattern is None:
            # The rest is only counted (in SQL: a filter SQL cannot say is not counted here).
            skipped += base.filter(id__gt=above).count()
            break
    return found, skipped, top


# --- one watcher ------------------------------------------------------------------------------


class LogTail:
    """One watcher's state. The transport feeds it channel-layer messages (``on_message``)
    and sends what ``take()`` returns whenever ``ready`` is set. Not thread-safe: one
    event loop, and the transport handles one message at a time."""

    def __init__(self, *, function_id: int, project_id: int) -> None:
        self.function_id = function_id
        self.project_id = project_id
        self.filters = Filters()
        self.group = log_function_group_name(function_id=function_id)
        self.complete = 0  # the group's lines through this id are read or sent
        self.cursor = 0  # the last id sent or reported dropped
        self.frames: deque[dict[str, Any]] = deque()
        self.queued_lines = 0
        self.ready = asyncio.Event()
        self.buffer = max(1, int(getattr(settings, "STRATUS_LOG_TAIL_BUFFER", 5000)))
        self.rate = max(1, int(getattr(settings, "STRATUS_LOG_TAIL_RATE", 1000)))
        self._tokens = float(self.rate)
        self._refilled = time.monotonic()

    # -- filters and the backlog --

    async def start(self, *, filters: Filters, backlog: int, after: int | None) -> None:
        """Set the filters (resolved) and queue the backlog or, with ``after``, every line
        after that cursor. The transport joins ``self.group`` before calling this, so that
        nothing committed meanwhile is missed (it comes in a message, or in the read)."""
        self.filters = filters
        self.frames.clear()
        self.queued_lines = 0
        if after is not None:
            lines, skipped, top = await db_call(
                read_after, self.function_id, self.project_id, filters, after, None, self.buffer
            )
            self.complete = top
            self.cursor = after
            self._push({"type": "backlog", "lines": lines, "cursor": max(after, top), "filters": filters.describe()})
            if skipped:
                self._push_dropped(skipped, "too_many", top)
        else:
            lines, top = await db_call(read_backlog, self.function_id, self.project_id, filters, backlog)
            self.complete = top
            self._push({"type": "backlog", "lines": lines, "cursor": top, "filters": filters.describe()})
        self.cursor = max(self.cursor, self.complete)

    def group_for(self, filters: Filters) -> str:
        if filters.environment_id is not None:
            return log_group_name(function_id=self.function_id, environment_id=filters.environment_id)
        return log_function_group_name(function_id=self.function_id)

    async def resolve(self, filters: Filters) -> Filters:
        return await db_call(resolve_environment, self.project_id, filters)

    # -- live lines --

    async def on_message(self, event: dict[str, Any]) -> None:
        lines = event.get("lines") or []
        if not lines:
            return
        top = max(line["id"] for line in lines)
        if top <= self.complete:
            return  # a late copy of lines already read from the database
        prev = event.get("prev")
        if prev is None or prev > self.complete:
            # Lines of this group may have committed in (complete, prev] without reaching us
            # (another process's message still on its way, or dropped by a full channel): read
            # them, with this message's lines, from the database.
            found, skipped, _ = await db_call(
                read_after, self.function_id, self.project_id, self.filters, self.complete, top, self.buffer
            )
            self._deliver(found)
            if skipped:
                self._push_dropped(skipped, "too_many", top)
        else:
            self._deliver(sorted((ln for ln in lines if ln["id"] > self.complete), key=lambda ln: ln["id"]))
        self.complete = top

    def _deliver(self, lines: list[dict[str, Any]]) -> None:
        """Queue live lines that pass the filters, the rate cap and the buffer bound; count
        the others as dropped (reported in order, before the next lines sent)."""
        now = time.monotonic()
        self._tokens = min(float(self.rate), self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        for line in lines:
            if not self.filters.matches(line):
                continue
            if self._tokens < 1:
                self._push_dropped(1, "rate_limit", line["id"])
                continue
            if self.queued_lines >= self.buffer:
                self._push_dropped(1, "slow_client", line["id"])
                continue
            self._tokens -= 1
            self._push_line(line)

    def _push_line(self, line: dict[str, Any]) -> None:
        last = self.frames[-1] if self.frames else None
        if last is not None and last["type"] == "lines" and len(last["lines"]) < LINES_PER_FRAME:
            last["lines"].append(line)
            last["cursor"] = line["id"]
        else:
            self.frames.append({"type": "lines", "lines": [line], "cursor": line["id"]})
        self.queued_lines += 1
        self.cursor = line["id"]
        self.ready.set()

    def _push_dropped(self, count: int, reason: str, cursor: int) -> None:
        last = self.frames[-1] if self.frames else None
        if last is not None and last["type"] == "dropped" and last["reason"] == reason:
            last["count"] += count
            last["cursor"] = max(last["cursor"], cursor)
        else:
            self.frames.append({"type": "dropped", "count": count, "reason": reason, "cursor": cursor})
        self.cursor = max(self.cursor, cursor)
        self.ready.set()

    def _push(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        self.queued_lines += len(frame.get("lines", ()))
        self.ready.set()

    def push_message(self, frame: dict[str, Any]) -> None:
        """A message of the transport's own (an error, a pong), in order with the lines."""
        self._push(frame)

    def take(self) -> list[dict[str, Any]]:
        """Everything queued, to send now, in order."""
        frames = list(self.frames)
        self.frames.clear()
        self.queued_lines = 0
        self.ready.clear()
        return frames
