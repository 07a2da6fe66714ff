"""Writes of monitoring rows: batches of records from the sink, the live-tail publish that
follows them, and retention pruning. Nothing here runs on the request hot path: the engine
only ever calls sink.RecordSink.submit_*; these run in the sink's flusher (or a test)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, overload

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from apps.functions.models import Function
from apps.monitoring import rollups
from apps.monitoring.levels import line_level
from apps.monitoring.models import LOG_TEXT_MAX_BYTES, Invocation, LogLine, Stream
from apps.monitoring.records import InvocationRecord, LogRecord
from apps.tenancy.models import Environment

# A record's key: (the id of the sink that took it, its number there); see LogLine.sink_id.
RecordKey = tuple[int, int]

logger = logging.getLogger(__name__)

# Rows per INSERT statement (SQLite and PostgreSQL both take this many comfortably).
INSERT_BATCH = 1000
# Rows per DELETE statement when pruning, and statements per table per prune call, so one
# prune never holds a long lock; whatever is left goes at the next call.
PRUNE_BATCH = 5000
PRUNE_MAX_BATCHES = 20
# Lines per live-tail message: a burst larger than this sends its newest lines only (the
# rest are in the API); channel layers cap message size and per-channel capacity.
TAIL_MAX_LINES = 1000

_TRUNCATED = " …[truncated]"
_STREAMS = set(Stream.values)
_STATUSES = set(Invocation.Status.values)
_TRIGGERS = set(Invocation.Trigger.values)


def log_group_name(*, function_id: int, environment_id: int) -> str:
    """The channel-layer group that receives a function's new lines in one environment."""
    return f"logs.f{function_id}.e{environment_id}"


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; one such line would otherwise fail its whole batch.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _cap_text(text: str) -> str:
    text = _clean(text)
    if len(text) * 4 <= LOG_TEXT_MAX_BYTES:  # fast path: cannot exceed the cap in UTF-8
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= LOG_TEXT_MAX_BYTES:
        return text
    keep = LOG_TEXT_MAX_BYTES - len(_TRUNCATED.encode())
    return raw[:keep].decode("utf-8", "ignore") + _TRUNCATED


def cap_log_text(text: str) -> str:
    """The text as a LogLine stores it (NUL replaced, at most LOG_TEXT_MAX_BYTES of UTF-8):
    the sink applies it on submission to long lines, so an oversized line costs its stored
    size in memory and in the journal, not its original size."""
    return _cap_text(text)


def log_line_from_record(record: LogRecord, key: RecordKey | None = None) -> LogLine:
    stream = record.stream if record.stream in _STREAMS else Stream.SYSTEM
    return LogLine(
        sink_id=key[0] if key else None,
        sink_seq=key[1] if key else None,
        function_id=record.function_id,
        environment_id=record.environment_id,
        binding_id=record.binding_id,
        version=record.version,
        request_id=_clean(record.request_id)[:64],
        ts=record.ts,
        stream=stream,
        level=line_level(record.text, stream),
        text=_cap_text(record.text),
    )


# Invocation rows are written at the request rate: built as plain tuples (every value is a
# str, number, bool or None the drivers take as is, but the timestamp, adapted per backend)
# rather than as model instances.
INVOCATION_COLUMNS = (
    "request_id",
    "function_id",
    "environment_id",
    "binding_id",
    "version",
    "trigger",
    "started_at",
    "duration_ms",
    "init_duration_ms",
    "cold_start",
    "status",
    "error_type",
    "peak_rss_kb",
    "concurrency",
    "sink_id",
    "sink_seq",
)


def invocation_row(record: InvocationRecord, key: RecordKey | None = None) -> tuple[Any, ...]:
    return (
        _clean(record.request_id)[:64],
        record.function_id,
        record.environment_id,
        record.binding_id,
        record.version,
        record.trigger if record.trigger in _TRIGGERS else Invocation.Trigger.INVOKE,
        connection.ops.adapt_datetimefield_value(record.started_at),
        float(record.duration_ms),
        None if record.init_duration_ms is None else float(record.init_duration_ms),
        bool(record.cold_start),
        record.status if record.status in _STATUSES else Invocation.Status.ERROR,
        _clean(record.error_type)[:200],
        record.peak_rss_kb,
        record.concurrency,
        key[0] if key else None,
        key[1] if key else None,
    )


@dataclass
class WriteResult:
    written: int = 0
    # Records whose function or environment no longer exists (deleted since the request ran).
    orphaned: int = 0
    # Keyed records already in the database (a replay), skipped by the unique key.
    duplicates: int = 0
    # The log lines inserted (not the replays skipped), ids set, in id order.
    lines: list[LogLine] = field(default_factory=list)
    environment_names: dict[int, str] = field(default_factory=dict)
    # The largest LogLine id committed before this batch's lines (see _insert_log_lines).
    prev_line_id: int = 0


def records_write(
    *,
    logs: Sequence[LogRecord],
    invocations: Sequence[InvocationRecord],
    log_keys: Sequence[RecordKey] | None = None,
    invocation_keys: Sequence[RecordKey] | None = None,
) -> WriteResult:
    """Insert one batch of records in one transaction: a handful of statements whatever the
    batch size (two lookups, then bulk INSERTs of INSERT_BATCH rows). Records of functions or
    environments deleted meanwhile are skipped rather than failing the batch on the FK.

    ``log_keys`` / ``invocation_keys`` (parallel to the records: (sink id, number), see
    LogLine.sink_id) make the write idempotent: a row whose key is already stored is skipped
    (ON CONFLICT DO NOTHING on the unique key, nothing else), so writing a batch again
    after a crash or a lost commit answer adds nothing. ``written`` counts rows inserted.
    Raises the database's error when the write fails; the caller keeps the batch."""
    result = WriteResult()
    if not logs and not invocations:
        return result
    if log_keys is not None and len(log_keys) != len(logs):
        raise ValueError("log_keys must be parallel to logs")
    if invocation_keys is not None and len(invocation_keys) != len(invocations):
        raise ValueError("invocation_keys must be parallel to invocations")
    function_ids = {r.function_id for r in logs} | {r.function_id for r in invocations}
    environment_ids = {r.environment_id for r in logs} | {r.environment_id for r in invocations}
    with transaction.atomic():
        live_functions = set(Function.objects.filter(pk__in=function_ids).values_list("pk", flat=True))
        result.environment_names = dict(Environment.objects.filter(pk__in=environment_ids).values_list("pk", "name"))

        def alive(r: LogRecord | InvocationRecord) -> bool:
            return r.function_id in live_functions and r.environment_id in result.environment_names

        lines = [
            log_line_from_record(r, log_keys[i] if log_keys is not None else None)
            for i, r in enumerate(logs)
            if alive(r)
        ]
        alive_calls = [
            (r, invocation_keys[i] if invocation_keys is not None else None)
            for i, r in enumerate(invocations)
            if alive(r)
        ]
        calls = [invocation_row(r, key) for r, key in alive_calls]
        result.orphaned = len(logs) + len(invocations) - len(lines) - len(calls)
        inserted = 0
        stored: list[LogLine] = []
        if lines:
            stored, result.prev_line_id = _insert_log_lines(lines)
            inserted += len(stored)
        if calls:
            # RETURNING answers the inserted rows only (both databases), so a replayed record
            # (its key already stored) is not among them.
            returned = _insert_rows(Invocation, INVOCATION_COLUMNS, calls, returning=("sink_id", "sink_seq"))
            inserted += len(returned)
            new_keys = {(k[0], k[1]) for k in returned if k[0] is not None}
            # The rollups count exactly the rows just inserted (a replayed record is skipped
            # by its key, so it is never counted twice), in the same transaction.
            rollups.rollups_apply(records=[r for r, key in alive_calls if key is None or key in new_keys])
    result.written = inserted
    result.duplicates = len(lines) + len(calls) - inserted
    result.lines = stored
    return result


# The PostgreSQL advisory lock that orders LogLine writes (any 64-bit constant no other code
# takes: "stratus-loglines" in ASCII).
LOG_LINES_LOCK = 0x73747261_74757331


def _insert_log_lines(lines: Sequence[LogLine]) -> tuple[list[LogLine], int]:
    """INSERT the lines (skipping keys already stored) and return those inserted, their ids
    set, in id order, with the largest LogLine id committed before them.

    The live tail's cursor is a LogLine id, and it only works if ids commit in id order:
    then "every line with an id <= N" is a fixed set once N is visible, and a reader resuming
    after N misses nothing and repeats nothing. A sequence alone does not give that: ids are
    drawn before commit, and with several writer processes a smaller id can commit after a
    larger one is seen. So on PostgreSQL writers of lines take one transaction-scoped
    advisory lock before drawing ids, and hold it until their commit is visible (locks are
    released after the commit). SQLite has one writer at a time already: the INSERT takes the
    database's write lock and holds it to the commit. The write is a few milliseconds, so
    the lock costs other writers little; invocations and everything else do not take it.

    ``prev`` (the largest id committed before this batch, read under the lock) goes out with
    the live-tail message: a consumer that has seen its group's lines through ``prev`` knows
    the message follows on with no gap; otherwise it reads the gap from the database."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOG_LINES_LOCK])
    fields = [f for f in LogLine._meta.concrete_fields if not f.primary_key]
    prepare = [(f.attname, f.get_db_prep_save) for f in fields]
    rows = [[prep(getattr(obj, attname), connection) for attname, prep in prepare] for obj in lines]
    returned = _insert_rows(LogLine, [f.column for f in fields], rows, returning=("id", "sink_id", "sink_seq"))
    stored: list[LogLine] = []
    if any(line.sink_id is None for line in lines):
        # Unkeyed rows never conflict: RETURNING gives every row, in VALUES order.
        for line, (pk, _, _) in zip(lines, returned, strict=True):
            line.pk = pk
            stored.append(line)
    else:
        by_key = {(sink_id, sink_seq): pk for pk, sink_id, sink_seq in returned}
        for line in lines:
            pk = by_key.get((line.sink_id, line.sink_seq))
            if pk is not None:
                line.pk = pk
                stored.append(line)
    stored.sort(key=lambda ln: ln.pk)
    table = connection.ops.quote_name(LogLine._meta.db_table)
    with connection.cursor() as cursor:
        if stored:
            cursor.execute(f"SELECT MAX(id) FROM {table} WHERE id < %s", [stored[0].pk])  # noqa: S608
        else:
            cursor.execute(f"SELECT MAX(id) FROM {table}")  # noqa: S608 - the model's table
        prev = cursor.fetchone()[0] or 0
    return stored, int(prev)


@overload
def _insert_rows(model: type[Any], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int: ...
@overload
def _insert_rows(
    model: type[Any], columns: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: Sequence[str]
) -> list[tuple[Any, ...]]: ...
def _insert_rows(
    model: type[Any], columns: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: Sequence[str] = ()
) -> int | list[tuple[Any, ...]]:
    """INSERT ``rows``, skipping those whose (sink_id, sink_seq) is already stored; returns the
    rows inserted. Only uniqueness conflicts are skipped: SQLite's ``ON CONFLICT DO NOTHING``
    (not ``INSERT OR IGNORE``, which would also swallow NOT NULL and CHECK failures) and
    PostgreSQL's. Rows without a key (NULL) never conflict.

    One multi-row ``VALUES`` statement per INSERT_BATCH rows, not an executemany: the driver
    releases the GIL around every statement it runs, and each release costs up to the
    interpreter's switch interval to win back while the gateway's event loop is busy. Row by
    row, that made a batch of 1,000 records take a second under load, and held SQLite's write
    lock (and so every deploy) that long.

    With ``returning`` (column names), answers the inserted rows' values of those columns
    instead of a count (RETURNING: PostgreSQL, and SQLite since 3.35)."""
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    row_sql = f"({', '.join(['%s'] * len(columns))})"
    suffix = f" RETURNING {', '.join(connection.ops.quote_name(c) for c in returning)}" if returning else ""
    inserted = 0
    returned: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        per_statement = max(1, min(INSERT_BATCH, rollups.max_query_params() // len(columns)))
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            values = ", ".join([row_sql] * len(batch))
            sql = f"INSERT INTO {table} ({names}) VALUES {values} ON CONFLICT DO NOTHING{suffix}"  # noqa: S608 - names from the model
            cursor.execute(sql, [value for row in batch for value in row])
            if returning:
                returned.extend(tuple(row) for row in cursor.fetchall())
                continue
            # Both drivers count the rows a statement inserted; -1 would mean "unknown".
            inserted += cursor.rowcount if cursor.rowcount >= 0 else len(batch)
    return returned if returning else inserted


def log_line_data(line: LogLine, environment_name: str) -> dict[str, Any]:
    """One line as the API and the live tail show it (api.serializers.LogLineSerializer).
    ``id`` is the live tail's cursor: ids commit in id order (see _insert_log_lines)."""
    return {
        "id": line.pk,
        "ts": line.ts.isoformat().replace("+00:00", "Z"),
        "stream": line.stream,
        "level": line.level,
        "request_id": line.request_id,
        "version": line.version,
        "environment": environment_name,
        "text": line.text,
    }


def log_function_group_name(*, function_id: int) -> str:
    """The channel-layer group that receives a function's new lines in every environment (a
    watcher of all environments joins this one group, so one write is one message to it)."""
    return f"logs.f{function_id}"


def log_control_group_name(*, function_id: int) -> str:
    """The group every live-tail watcher of a function joins for news about the function
    itself (it was deleted), whatever its lines' group."""
    return f"logs.f{function_id}.control"


def log_lines_publish(
    *, lines: Iterable[LogLine], environment_names: dict[int, str], prev_line_id: int | None = None
) -> int:
    """Send written lines to their live-tail groups: per function, one message to the
    function's group and one to each (function, environment) group it wrote to, lines in id
    order, the newest TAIL_MAX_LINES of each. Call after the lines are committed, with the
    ``prev_line_id`` their write answered (WriteResult.prev_line_id).

    A message is {"type": "log.lines", "prev": id, "lines": [...]}: the group's lines with
    ids above ``prev`` up to the last one are exactly these (a consumer that has its group
    through ``prev`` has no gap; monitoring.tail reads one from the database otherwise). When
    lines are cut, ``prev`` is the last line left out. Without ``prev_line_id`` (lines from
    elsewhere), ``prev`` is None: consumers check the database. A channel-layer failure is
    logged, never raised: the lines are stored and the API serves them. Returns the number
    of messages sent."""
    groups: dict[str, list[LogLine]] = defaultdict(list)
    for line in lines:
        groups[log_function_group_name(function_id=line.function_id)].append(line)
        groups[log_group_name(function_id=line.function_id, environment_id=line.environment_id)].append(line)
    if not groups:
        return 0
    messages: list[tuple[str, dict[str, Any]]] = []
    for group, members in groups.items():
        members.sort(key=lambda ln: (ln.pk or 0, ln.ts))
        prev = prev_line_id
        if len(members) > TAIL_MAX_LINES:
            prev = members[-TAIL_MAX_LINES - 1].pk
            members = members[-TAIL_MAX_LINES:]
        payload = [log_line_data(ln, environment_names.get(ln.environment_id, "")) for ln in members]
        messages.append((group, {"type": "log.lines", "prev": prev, "lines": payload}))
    sent = 0
    try:
        layer = get_channel_layer()
        if layer is None:
            return 0

        threadsafe = getattr(layer, "group_send_threadsafe", None)  # the embedded default's layer
        if threadsafe is not None:
            for group, message in messages:
                threadsafe(group, message)
                sent += 1
            return sent

        async def send_all() -> None:
            # One trip into an event loop for every group (async_to_sync costs milliseconds).
            nonlocal sent
            for group, message in messages:
                await layer.group_send(group, message)
                sent += 1

        async_to_sync(send_all)()
    except Exception:
        logger.exception("Live-tail publish failed after %d of %d groups; lines are stored", sent, len(groups))
    return sent


def function_deleted_publish(*, function_id: int) -> None:
    """Tell the function's live-tail watchers it is gone (after the delete commits): they
    close with monitoring.tail.CLOSE_FUNCTION_DELETED."""
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(
                log_control_group_name(function_id=function_id), {"type": "log.function_deleted"}
            )
    except Exception:
        logger.exception("Telling live-tail watchers of function %d that it was deleted failed", function_id)


# --- retention --------------------------------------------------------------------------------


def _delete_batches(queryset: Callable[[], QuerySet[Any]], *, keep: int = 0) -> int:
    """Delete the rows ``queryset()`` selects, after its first ``keep`` (in its order),
    PRUNE_BATCH rows per statement and at most PRUNE_MAX_BATCHES statements. The rows have
    no dependents, so each batch is a single ``DELETE ... WHERE id IN (SELECT ... LIMIT)``."""
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        qs = queryset()
        batch = qs.values("pk")[keep : keep + PRUNE_BATCH]
        count, _ = qs.model._default_manager.filter(pk__in=batch).delete()
        deleted += count
        if count < PRUNE_BATCH:
            break
    return deleted


@dataclass
class PruneResult:
    log_lines_expired: int = 0
    log_lines_over_cap: int = 0
    invocations_expired: int = 0


def records_prune(*, now: datetime | None = None, function_ids: Iterable[int] | None = None) -> PruneResult:
    """Delete log lines older than STRATUS_LOG_RETENTION_DAYS, each function's lines beyond
    its newest STRATUS_LOG_MAX_LINES_PER_FUNCTION, and invocations older than
    STRATUS_INVOCATION_RETENTION_DAYS, in bounded batches (a call does bounded work; the
    flusher calls it every minute). ``function_ids`` limits the per-function cap to those
    functions (the flusher passes the ones it wrote lines for); None checks every function."""
    now = now or timezone.now()
    result = PruneResult()
    log_cutoff = now - timedelta(days=settings.STRATUS_LOG_RETENTION_DAYS)
    result.log_lines_expired = _delete_batches(lambda: LogLine.objects.filter(ts__lt=log_cutoff).order_by("ts"))
    call_cutoff = now - timedelta(days=settings.STRATUS_INVOCATION_RETENTION_DAYS)
    result.invocations_expired = _delete_batches(
        lambda: Invocation.objects.filter(started_at__lt=call_cutoff).order_by("started_at")
    )

    cap = settings.STRATUS_LOG_MAX_LINES_PER_FUNCTION
    if function_ids is None:
        over = (
            LogLine.objects.values("function_id")
            .annotate(lines=Count("id"))
            .filter(lines__gt=cap)
            .values_list("function_id", flat=True)
        )
        function_ids = list(over)
    for function_id in sorted(set(function_ids)):
        # Everything past the newest `cap` lines (the (function, -ts) index walks to the cut).
        newest_first = partial(_lines_newest_first, function_id)
        result.log_lines_over_cap += _delete_batches(newest_first, keep=cap)
    return result


def _lines_newest_first(function_id: int) -> QuerySet[LogLine]:
    return LogLine.objects.filter(function_id=function_id).order_by("-ts", "-id")
