"""The buffer between the execution engine and the database: no record is lost silently.

The engine (its own thread and asyncio loop) calls ``submit_logs`` / ``submit_invocation``
for every line and request: they append to an in-memory buffer under a short lock and
return, never touching the database or the network. Every record gets a key there, (this
sink's random id, a sequence number), stored with its row under a unique constraint: writing
a record twice (a replay) inserts it once. A flusher thread (or ``flush()`` called directly,
as tests do) writes what is buffered in a few bulk INSERTs per batch
(services.records_write), publishes the new lines to their live-tail groups, and every
minute prunes by age and lines per function (services.records_prune).

Nothing is dropped for being late. Records wait in one queue, oldest first: the journal on
local disk (journal.py, ``DATA_DIR/journal``), then memory. The flusher always writes the
oldest: the journal's records while it holds any, then memory's. Memory is moved to the
journal ("spilled", oldest first, by a keeper thread) when

- it holds more than ``max_items`` records (STRATUS_RECORDS_BUFFER) or more than
  ``max_bytes`` (STRATUS_RECORDS_BUFFER_BYTES; a record counts its text lengths plus
  RECORD_OVERHEAD_BYTES, long log lines being cut to what a LogLine stores on submission);
- a record has waited longer than ``max_age_s`` (twice the flush interval, at least 1 s): the
  database is slow;
- a write fails (the database is down): everything in memory goes at once.

Order (rows are inserted in submission order): the flusher takes records from memory only when
the journal has none pending (checked under the sink's lock, with the peek), and leaves them in
memory until they are written; a spill appends to the journal before it removes records from
memory. So a spill may journal records whose write from memory is in flight: once that write
commits, the journal's copies (this sink's numbers up to the last written) are skipped, and
memory drops what the journal wrote. Without threads (flush interval 0, as in tests) a
submitter over the bound spills itself and there is no age bound.

Backpressure: a submitter never waits for the database. When memory reaches twice its bound
(the keeper is behind, the disk slow), the submitter spills one batch itself before it
returns, so producers go at the disk's pace instead of growing memory.

Journal appends are fsync'd every JOURNAL_SYNC_INTERVAL_S (0.1 s) by the keeper. What a crash
can lose:

- a process crash (kill -9, OOM): the records still in memory, i.e. those submitted in the
  last ``max_age_s`` (1 s by default) + JOURNAL_SYNC_INTERVAL_S, never more than the memory
  bound; in steady state, what arrived since the last flush (0.5 s). Journal appends
  survive it (they are in the kernel).
- a machine crash or power loss: that, plus journal appends of the last 0.1 s.

A clean ``stop()`` writes everything to the database, or, when it cannot (down, or out of
time), to the journal; the next ``start()`` (this process or another on the same data
directory) replays the journal before newer records, then deletes it.

Drops happen only when the journal cannot be written (disk full, read-only, its own bound
STRATUS_RECORDS_JOURNAL_BYTES reached) and memory is over its bound, when the database
refuses a record for its content POISON_ATTEMPTS times, or when a journal line cannot be
read back (a torn last line after a crash, damage). Each is counted by reason
(``stats()``, shown in /readyz), and logged with the number.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from apps.monitoring import journal as journal_module
from apps.monitoring import services
from apps.monitoring.models import LOG_TEXT_MAX_BYTES
from apps.monitoring.records import InvocationRecord, LogRecord
from apps.monitoring.services import RecordKey

logger = logging.getLogger(__name__)

Record = LogRecord | InvocationRecord

# Bounds used when the settings do not name them (STRATUS_RECORDS_BUFFER_BYTES: memory;
# STRATUS_RECORDS_JOURNAL_BYTES: the journal on disk, 0 for "until the disk is full"). The
# journal's own bound keeps a long outage from filling the disk that the embedded default's
# database and artifacts share with it.
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_JOURNAL_BYTES = 4 * 1024 * 1024 * 1024

# Records per write transaction: a flush of a full buffer is several short transactions,
# not one long one, and a failure keeps only what was not written. Bytes too, for batches
# read back from the journal.
CHUNK_ITEMS = 10_000
CHUNK_BYTES = 8 * 1024 * 1024
# Records per journal append: the keeper holds the spill lock this long, and a submitter
# over twice the bound waits at most about one such append.
SPILL_ITEMS = 1_000
SPILL_BYTES = 4 * 1024 * 1024
# Estimated bytes of a record besides its strings (the dataclass, its ints, datetime, the
# queue entry). A record is sized cheaply on submission: this plus the lengths of its text
# and request id (a log line) or its request id and error type (an invocation).
RECORD_OVERHEAD_BYTES = 300
# The keeper spills and fsyncs this often: the bound on journal appends a power loss loses.
JOURNAL_SYNC_INTERVAL_S = 0.1
# After a failed write the flusher waits, doubling from the flush interval up to this.
RETRY_MAX_S = 5.0
# After a failed journal append, spilling waits this long before trying the disk again.
JOURNAL_RETRY_S = 1.0
# Retention pruning runs from the flusher at most this often.
PRUNE_INTERVAL_S = 60.0
# A batch refused this many times in a row for its content (not because the database is
# unreachable or locked) is written record by record, and the refused records are dropped,
# so one bad record cannot stall every later one.
POISON_ATTEMPTS = 5
# Drops are logged at most this often (with the number since the last message).
DROP_LOG_INTERVAL_S = 1.0

# Why records were dropped (stats()["dropped_by_reason"]).
DROP_JOURNAL_UNWRITABLE = "journal_unwritable"
DROP_REFUSED = "refused_by_database"
DROP_JOURNAL_UNREADABLE = "journal_unreadable"

# Log lines longer than this many characters may exceed LOG_TEXT_MAX_BYTES in UTF-8: they
# are cut on submission, as the database would store them.
_LONG_TEXT_CHARS = LOG_TEXT_MAX_BYTES // 4


# A record waiting in memory: (seq, record, size, time.monotonic() at submission). A plain
# tuple: one is built per record on the engine's thread, the cheapest container there is.
_Entry = tuple[int, Record, int, float]
_SEQ: Final = 0
_RECORD: Final = 1
_SIZE: Final = 2
_AT: Final = 3


def _new_sink_id() -> int:
    return secrets.randbits(63)  # a positive BIGINT


class RecordSink:
    def __init__(
        self,
        *,
        max_items: int | None = None,
        max_bytes: int | None = None,
        flush_interval_s: float | None = None,
        journal_dir: Path | str | None = None,
        journal_max_bytes: int | None = None,
        max_age_s: float | None = None,
        tail_flush_s: float | None = None,
    ) -> None:
        self.max_items = max(1, max_items if max_items is not None else settings.STRATUS_RECORDS_BUFFER)
        self.max_bytes = max(
            1,
            max_bytes
            if max_bytes is not None
            else getattr(settings, "STRATUS_RECORDS_BUFFER_BYTES", DEFAULT_BUFFER_BYTES),
        )
        self.flush_interval_s = (
            flush_interval_s if flush_interval_s is not None else settings.STRATUS_RECORDS_FLUSH_INTERVAL_S
        )
        self.max_age_s = max_age_s if max_age_s is not None else max(1.0, 2 * self.flush_interval_s)
        self.journal_dir = Path(journal_dir) if journal_dir is not None else Path(settings.DATA_DIR) / "journal"
        self.journal_max_bytes = (
            journal_max_bytes
            if journal_max_bytes is not None
            else getattr(settings, "STRATUS_RECORDS_JOURNAL_BYTES", DEFAULT_JOURNAL_BYTES)
        )
        self._buffer: deque[_Entry] = deque()
        self._bytes = 0
        self._seq = 0  # the last number given to a record
        self._sink_id = _new_sink_id()
        self._journal = journal_module.Journal(self.journal_dir, sink=self._sink_id, max_bytes=self.journal_max_bytes)
        # Our records up to this number are written (or settled): a journal batch holding
        # them again (spilled while their write was in flight) skips them.
        self._committed = 0
        self._lock = threading.Lock()  # guards the buffer and counters; held for microseconds
        self._flush_lock = threading.Lock()  # one flush at a time, so rows keep their order
        self._spill_lock = threading.Lock()  # one spill at a time, so the journal keeps the order
        self._state_lock = threading.Lock()  # start/stop
        self.written = 0
        self.duplicates = 0  # keyed records the database already had (a replay)
        self.spilled = 0  # records moved from memory to the journal
        self.replayed = 0  # records found in journals of stopped processes
        self.dropped_by_reason: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()
        self._drop_details: dict[str, str] = {}
        self._last_drop_log = float("-inf")
        self.last_write_error = ""
        self.journal_error = ""
        self._journal_retry_at = float("-inf")
        self._failures = 0  # consecutive failed writes of the oldest batch
        self._retry_at = float("-inf")
        self._touched: set[int] = set()  # functions given lines since the last prune
        self._last_prune = float("-inf")
        self._started = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Set by submit_logs: the flusher writes log lines within tail_flush_s (the live tail's
        # latency), not at the next flush interval; invocations alone wait for the interval.
        self._lines_waiting = threading.Event()
        self.tail_flush_s = (
            tail_flush_s if tail_flush_s is not None else getattr(settings, "STRATUS_LOG_TAIL_FLUSH_S", 0.01)
        )
        self._thread: threading.Thread | None = None
        self._keeper: threading.Thread | None = None
        self._flush_deadline: float | None = None

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())

    # --- the engine's side: never waits for the database ------------------------------------

    def submit_logs(self, records: Sequence[LogRecord]) -> None:
        # Per request, on the engine's loop: kept to plain operations (no helper calls).
        if not records:
            return
        for r in records:
            if len(r.text) > _LONG_TEXT_CHARS:
                records = [self._capped(r) for r in records]
                break
        now = time.monotonic()
        with self._lock:
            seq = self._seq
            added = 0
            append = self._buffer.append
            for record in records:
                seq += 1
                size = RECORD_OVERHEAD_BYTES + len(record.text) + len(record.request_id)
                append((seq, record, size, now))
                added += size
            self._seq = seq
            self._bytes += added
            over = len(self._buffer) > self.max_items or self._bytes > self.max_bytes
        if not self._lines_waiting.is_set():
            self._lines_waiting.set()
        if over:
            self._relieve()

    def submit_invocation(self, record: InvocationRecord) -> None:
        size = RECORD_OVERHEAD_BYTES + len(record.request_id) + len(record.error_type)
        now = time.monotonic()
        with self._lock:
            self._seq += 1
            self._buffer.append((self._seq, record, size, now))
            self._bytes += size
            over = len(self._buffer) > self.max_items or self._bytes > self.max_bytes
        if over:
            self._relieve()

    @staticmethod
    def _capped(record: LogRecord) -> LogRecord:
        if len(record.text) <= _LONG_TEXT_CHARS:
            return record
        capped = services.cap_log_text(record.text)
        return record if capped is record.text else dataclasses.replace(record, text=capped)

    def _over_locked(self, factor: int) -> bool:
        return len(self._buffer) > factor * self.max_items or self._bytes > factor * self.max_bytes

    def _relieve(self) -> None:
        """Memory is over its bound: the keeper spills (woken now). Without a keeper, or at
        twice the bound (the keeper is behind), the submitter spills a batch itself."""
        keeper = self._keeper
        try:
            if keeper is not None and keeper.is_alive():
                self._wake.set()
                with self._lock:
                    far_over = self._over_locked(2)
                if far_over:
                    self._spill(limit_batches=1)
            else:
                self._spill()
        except Exception:  # never into the engine: the keeper or the next flush tries again
            logger.exception("Spilling log/invocation records to the journal failed")

    def pending(self) -> int:
        """Records not yet written: in memory and in the journal."""
        with self._lock:
            return len(self._buffer) + self._journal.pending_records

    # --- spilling: memory -> journal -------------------------------------------------------

    def _spill(self, *, everything: bool = False, by_age: bool = False, limit_batches: int | None = None) -> int:
        """Move the oldest records of memory to the journal: those over the bound, those older
        than max_age_s (``by_age``), or all that were there when called (``everything``), a
        batch per append. Returns the records moved. When the journal cannot be written,
        records stay in memory within its bound; only what exceeds the bound is dropped."""
        moved = 0
        batches = 0
        with self._lock:
            upto = self._seq
        while limit_batches is None or batches < limit_batches:
            # One batch per hold of the spill lock: batches go to the journal in memory's
            # order, and a submitter spilling too waits for one append, not a whole spill.
            with self._spill_lock:
                cutoff = time.monotonic() - self.max_age_s if by_age else None
                with self._lock:
                    batch = self._spill_batch_locked(upto, everything=everything, cutoff=cutoff)
                if not batch:
                    break
                if time.monotonic() < self._journal_retry_at:
                    self._drop_over_bound(self.journal_error)
                    break
                try:
                    self._journal.append([journal_module.encode(e[_SEQ], e[_RECORD]) for e in batch])
                except OSError as exc:
                    self.journal_error = f"{type(exc).__name__}: {exc}"
                    self._journal_retry_at = time.monotonic() + JOURNAL_RETRY_S
                    logger.error("Spilling %d records to the journal failed: %s", len(batch), exc)
                    self._drop_over_bound(self.journal_error)
                    break
                self.journal_error = ""
                with self._lock:
                    self._pop_through_locked(batch[-1][_SEQ])
                    self.spilled += len(batch)
            moved += len(batch)
            batches += 1
        return moved

    def _spill_batch_locked(self, upto: int, *, everything: bool, cutoff: float | None) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        items_left = len(self._buffer)
        bytes_left = self._bytes
        for entry in self._buffer:
            if entry[_SEQ] > upto:
                break
            over = items_left > self.max_items or bytes_left > self.max_bytes
            if not (everything or over or (cutoff is not None and entry[_AT] <= cutoff)):
                break
            batch.append(entry)
            size += entry[_SIZE]
            items_left -= 1
            bytes_left -= entry[_SIZE]
            if len(batch) >= SPILL_ITEMS or size >= SPILL_BYTES:
                break
        return batch

    def _pop_through_locked(self, seq: int) -> None:
        buffer = self._buffer
        while buffer and buffer[0][_SEQ] <= seq:
            self._bytes -= buffer.popleft()[_SIZE]

    def _drop_over_bound(self, why: str) -> None:
        """The journal cannot take records: drop the oldest of memory beyond its bound."""
        dropped = 0
        with self._lock:
            while self._buffer and self._over_locked(1):
                self._bytes -= self._buffer.popleft()[_SIZE]
                dropped += 1
        if dropped:
            self._note_dropped(dropped, DROP_JOURNAL_UNWRITABLE, why)

    # --- writing: the caller's thread -------------------------------------------------------

    def flush(self, deadline: float | None = None) -> int:
        """Write what is waiting when called (journal first, then memory), in this thread;
        returns rows written. Stops at the first failed batch (memory then goes to the
        journal) or at ``deadline`` (time.monotonic()); never raises."""
        written = 0
        with self._flush_lock:
            with self._lock:
                upto = self._seq  # later submissions wait for the next flush
                budget = len(self._buffer) + self._journal.pending_records
            while budget > 0 and (deadline is None or time.monotonic() < deadline):
                chunk: list[_Entry] = []
                with self._lock:
                    # The journal holds the oldest records whenever it holds any.
                    from_journal = self._journal.has_pending()
                    if not from_journal:
                        # Spilled, then written from the journal before the spill removed
                        # them from memory: they are done.
                        self._pop_through_locked(self._committed)
                        chunk = self._peek_locked(upto)
                if from_journal:
                    try:
                        batch = self._journal.read(max_items=CHUNK_ITEMS, max_bytes=CHUNK_BYTES)
                    except Exception as exc:
                        logger.exception("Reading the records journal failed")
                        self.journal_error = f"{type(exc).__name__}: {exc}"
                        break
                    if batch is None or batch.lines == 0:
                        break
                    items = [
                        ((sink, seq), record)
                        for sink, seq, record in batch.records
                        if not (sink == self._sink_id and seq <= self._committed)
                    ]
                    ok, count = self._write(items)
                    if not ok:
                        self._spill(everything=True)  # down: memory waits on disk too
                        break
                    written += count
                    if batch.unreadable:
                        self._note_dropped(batch.unreadable, DROP_JOURNAL_UNREADABLE, batch.segment.path.name)
                    self._journal.consume(batch)
                    budget -= batch.lines
                else:
                    if not chunk:
                        break
                    ok, count = self._write([((self._sink_id, e[_SEQ]), e[_RECORD]) for e in chunk])
                    if not ok:
                        # Down (or refusing): what memory holds waits on disk, not in memory.
                        self._spill(everything=True)
                        break
                    written += count
                    with self._lock:
                        self._pop_through_locked(chunk[-1][_SEQ])
                    budget -= len(chunk)
        self._report_drops(force=True)
        return written

    def _peek_locked(self, upto: int) -> list[_Entry]:
        """The oldest records of memory, without removing them: they leave memory once
        written (so a spill meanwhile journals them too, and the journal skips them)."""
        chunk: list[_Entry] = []
        size = 0
        for entry in self._buffer:
            if entry[_SEQ] > upto or len(chunk) >= CHUNK_ITEMS or (chunk and size >= CHUNK_BYTES):
                break
            chunk.append(entry)
            size += entry[_SIZE]
        return chunk

    def _write(self, items: list[tuple[RecordKey, Record]]) -> tuple[bool, int]:
        """Write one batch; (settled, rows written). Not settled: it failed and is kept."""
        if not items:
            return True, 0
        try:
            result = self._records_write(items)
        except Exception as exc:
            return self._write_failed(items, exc)
        self._failures = 0
        self._retry_at = float("-inf")
        self.last_write_error = ""
        self._settled(items)
        return True, self._wrote(result)

    @staticmethod
    def _records_write(items: list[tuple[RecordKey, Record]]) -> services.WriteResult:
        logs = [(k, r) for k, r in items if isinstance(r, LogRecord)]
        calls = [(k, r) for k, r in items if isinstance(r, InvocationRecord)]
        return services.records_write(
            logs=[r for _, r in logs],
            invocations=[r for _, r in calls],
            log_keys=[k for k, _ in logs],
            invocation_keys=[k for k, _ in calls],
        )

    def _settled(self, items: list[tuple[RecordKey, Record]]) -> None:
        own = [key[1] for key, _ in items if key[0] == self._sink_id]
        if own:
            self._committed = max(self._committed, max(own))

    def _wrote(self, result: services.WriteResult) -> int:
        with self._lock:
            self.written += result.written
            self.duplicates += result.duplicates
            self._touched.update(line.function_id for line in result.lines)
        if result.orphaned:
            logger.info("Skipped %d records of deleted functions or environments", result.orphaned)
        if result.lines:
            services.log_lines_publish(
                lines=result.lines, environment_names=result.environment_names, prev_line_id=result.prev_line_id
            )
        return result.written

    def _write_failed(self, items: list[tuple[RecordKey, Record]], exc: Exception) -> tuple[bool, int]:
        """Log a failed write and schedule the retry. A batch refused POISON_ATTEMPTS times for
        its content is written record by record, dropping only the refused ones (returns
        (True, rows written): settled); otherwise (False, 0): kept for the next attempt."""
        self._failures += 1
        self.last_write_error = f"{type(exc).__name__}: {exc}"
        self._retry_at = time.monotonic() + min(RETRY_MAX_S, self.flush_interval_s * 2**self._failures)
        unreachable = isinstance(exc, OperationalError | InterfaceError)
        if not unreachable and self._failures >= POISON_ATTEMPTS:
            self._failures = 0
            return True, self._write_one_by_one(items, exc)
        logger.error(
            "Writing %d log/invocation records failed (attempt %d); kept for the next flush: %s",
            len(items),
            self._failures,
            exc,
            exc_info=exc,
        )
        return False, 0

    def _write_one_by_one(self, items: list[tuple[RecordKey, Record]], exc: Exception) -> int:
        refused = 0
        written = 0
        for item in items:
            try:
                result = self._records_write([item])
            except Exception as one_exc:  # noqa: BLE001 - counted, logged below
                refused += 1
                exc = one_exc
                continue
            written += self._wrote(result)
        self._settled(items)
        if refused:
            logger.error(
                "Dropped %d of a batch of %d records refused %d times: %s",
                refused,
                len(items),
                POISON_ATTEMPTS,
                exc,
                exc_info=exc,
            )
            self._note_dropped(refused, DROP_REFUSED, f"{type(exc).__name__}: {exc}")
        return written

    # --- drops: counted, logged, reported ---------------------------------------------------

    def _note_dropped(self, count: int, reason: str, detail: str) -> None:
        with self._lock:
            self.dropped_by_reason[reason] += count
            self._unreported[reason] += count
            self._drop_details[reason] = detail
        self._report_drops()

    def _report_drops(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._unreported or (not force and now - self._last_drop_log < DROP_LOG_INTERVAL_S):
                return
            unreported, self._unreported = self._unreported, Counter()
            self._last_drop_log = now
            total = sum(self.dropped_by_reason.values())
            details = dict(self._drop_details)
        for reason, count in unreported.items():
            logger.error(
                "Dropped %d log/invocation records (%s: %s); %d dropped since start",
                count,
                reason,
                details.get(reason, ""),
                total,
            )

    def stats(self) -> dict[str, Any]:
        """Counters for /readyz: what waits where, what was written, dropped and why."""
        with self._lock:
            thread = self._thread
            return {
                "flusher": (
                    "running"
                    if thread is not None and thread.is_alive()
                    else "off (flush interval 0: flushed on demand)"
                    if self.flush_interval_s <= 0
                    else "stopped"
                ),
                "buffered": {
                    "records": len(self._buffer),
                    "bytes": self._bytes,
                    "max_records": self.max_items,
                    "max_bytes": self.max_bytes,
                },
                "journal": {**self._journal.describe(), "error": self.journal_error},
                "written": self.written,
                "duplicates_skipped": self.duplicates,
                "spilled": self.spilled,
                "replayed_from_stopped_processes": self.replayed,
                "dropped": sum(self.dropped_by_reason.values()),
                "dropped_by_reason": dict(self.dropped_by_reason),
                "last_write_error": self.last_write_error,
            }

    def prune(self) -> services.PruneResult:
        """Retention pruning for the functions given lines since the last prune (and by age
        for everything). The flusher calls it at most every PRUNE_INTERVAL_S."""
        with self._lock:
            touched, self._touched = self._touched, set()
        return services.records_prune(function_ids=touched)

    # --- lifecycle: start, the threads, stop ------------------------------------------------

    def start(self) -> None:
        """Replay journals left by stopped processes (queued ahead of anything newer), then
        start the flusher and keeper threads (idempotent). With a flush interval of 0 there
        are no threads: records are written by explicit flush() calls, and spilled by the
        submitter when memory is over its bound."""
        with self._state_lock:
            if not self._started:
                self._started = True
                try:
                    records, size = self._journal.adopt()
                except OSError:
                    logger.exception("Looking for journals of stopped processes in %s failed", self.journal_dir)
                else:
                    if records:
                        self.replayed += records
                        logger.warning(
                            "Replaying %d log/invocation records (%d bytes) journaled by a stopped process (%s)",
                            records,
                            size,
                            self.journal_dir,
                        )
            if self.flush_interval_s <= 0 or (self._thread is not None and self._thread.is_alive()):
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="stratus-records-flusher", daemon=True)
            self._keeper = threading.Thread(target=self._keep, name="stratus-records-journal", daemon=True)
            self._thread.start()
            self._keeper.start()
            atexit.register(self._at_exit)

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything to the database, or what it cannot take (down, or ``timeout`` is
        near) to the journal; then release the journal for the next start. The flusher
        writes in its own thread (which owns its database connection); without a thread,
        this one does. The sink can be started (or flushed by hand) again afterwards."""
        with self._state_lock:
            deadline = time.monotonic() + timeout
            thread, keeper = self._thread, self._keeper
            if thread is not None and thread.is_alive():
                # The flusher's last flush leaves a fifth of the time to spill what is left.
                self._flush_deadline = deadline - timeout / 5
                self._stop.set()
                self._wake.set()
                self._lines_waiting.set()
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    logger.error("The records flusher did not stop within %.0f s; journaling what is left", timeout)
            else:
                self.flush(deadline=deadline - timeout / 5)
            self._stop.set()
            if keeper is not None:
                self._wake.set()
                keeper.join(max(0.0, deadline - time.monotonic()))
            self._thread = self._keeper = None
            self._spill(everything=True)
            self._report_drops(force=True)
            # No flush or spill may use the journal while it is swapped (a flusher that did
            # not stop in time still holds the flush lock: then go on without it).
            flushing = self._flush_lock.acquire(timeout=max(0.1, deadline - time.monotonic()))
            try:
                with self._spill_lock:
                    with self._lock:
                        left_in_memory = len(self._buffer)
                        journaled = self._journal.pending_records
                    self._journal.release()
                    # A fresh key space and journal: what is left on disk is now a stopped
                    # sink's, replayed by the next start() (ours or another process's).
                    with self._lock:
                        self._sink_id = _new_sink_id()
                        self._committed = 0
                        self._journal = journal_module.Journal(
                            self.journal_dir, sink=self._sink_id, max_bytes=self.journal_max_bytes
                        )
            finally:
                if flushing:
                    self._flush_lock.release()
            if journaled:
                logger.warning(
                    "Records sink stopped with %d records journaled in %s (written at the next start)",
                    journaled,
                    self.journal_dir,
                )
            if left_in_memory:
                logger.error(
                    "Records sink stopped with %d records neither written nor journaled (%s; %s): "
                    "they are lost if this process exits",
                    left_in_memory,
                    self.last_write_error or "database unavailable",
                    self.journal_error or "journal unavailable",
                )
            self._started = False
            atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        self.stop(timeout=10.0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wait_for_work()
                if self._stop.is_set():
                    break
                self._tick()
            self._tick(prune=False, deadline=self._flush_deadline)
        finally:
            connections.close_all()  # this thread's: it ends here

    def _wait_for_work(self) -> None:
        """Until the flush interval passes, or, when log lines arrive, tail_flush_s after them
        (lines printed meanwhile join the batch): a line reaches the live tail in tens of
        milliseconds, and at high rates a write still carries many lines. Writes happen at
        most every tail_flush_s (0 turns this off: lines wait for the interval too)."""
        deadline = time.monotonic() + self.flush_interval_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.tail_flush_s <= 0:
                self._stop.wait(left)
                continue
            if self._lines_waiting.wait(left):
                self._stop.wait(self.tail_flush_s)
                self._lines_waiting.clear()
                return

    def _tick(self, prune: bool = True, deadline: float | None = None) -> None:
        # Like a request: drop a connection that broke or outlived CONN_MAX_AGE first.
        close_old_connections()
        try:
            if deadline is not None or time.monotonic() >= self._retry_at:
                self.flush(deadline=deadline)
            if prune and time.monotonic() - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune = time.monotonic()
                self.prune()
        except Exception:
            logger.exception("Monitoring flusher tick failed")

    def _keep(self) -> None:
        """The keeper: spill what memory should not hold (over the bound, too old), fsync the
        journal every JOURNAL_SYNC_INTERVAL_S."""
        while not self._stop.is_set():
            self._wake.wait(JOURNAL_SYNC_INTERVAL_S)
            self._wake.clear()
            try:
                self._spill(by_age=True)
                self._journal.sync()
                self._report_drops()
            except Exception:
                logger.exception("Monitoring journal keeper failed")


_sink: RecordSink | None = None
_sink_lock = threading.Lock()


def get_sink() -> RecordSink:
    """The process-wide sink (built from settings on first use; start() it where the
    engine starts, stop() at shutdown)."""
    global _sink
    with _sink_lock:
        if _sink is None:
            _sink = RecordSink()
        return _sink


def sink_report() -> dict[str, Any]:
    """The /readyz section "records" (registered by MonitoringConfig.ready)."""
    return get_sink().stats()
