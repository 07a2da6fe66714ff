"""The buffer between the execution engine and the database.

The engine (its own thread and asyncio loop) calls ``submit_logs`` / ``submit_invocation``
for every line and request: they append to an in-memory buffer under a short lock and
return, never touching the database or the network. A flusher thread (or ``flush()``
called directly, as tests do) writes what is buffered in a few bulk INSERTs per batch
(services.records_write), then publishes the new lines to their live-tail groups, and
every minute prunes by age and lines per function (services.records_prune).

Bounded: at most ``max_items`` records wait in memory (STRATUS_RECORDS_BUFFER); beyond
that the oldest are dropped and counted (a warning per flush says how many). A failed
write puts its batch back at the front of the buffer for the next attempt (so the same
bound applies to it) and logs; nothing is ever raised into a submitter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from apps.monitoring import services
from apps.monitoring.models import LogLine
from apps.monitoring.records import InvocationRecord, LogRecord

logger = logging.getLogger(__name__)

Record = LogRecord | InvocationRecord

# Records per write transaction: a flush of a full buffer is several short transactions,
# not one long one, and a failure puts back only what was not written.
CHUNK_ITEMS = 10_000
# Retention pruning runs from the flusher at most this often.
PRUNE_INTERVAL_S = 60.0
# A batch refused this many times in a row for its content (not because the database is
# unreachable or locked) is dropped, so one bad record cannot stall every later one.
POISON_ATTEMPTS = 5


class RecordSink:
    def __init__(self, *, max_items: int | None = None, flush_interval_s: float | None = None) -> None:
        self.max_items = max(1, max_items if max_items is not None else settings.STRATUS_RECORDS_BUFFER)
        self.flush_interval_s = (
            flush_interval_s if flush_interval_s is not None else settings.STRATUS_RECORDS_FLUSH_INTERVAL_S
        )
        self._buffer: deque[Record] = deque()
        self._lock = threading.Lock()  # guards the buffer and counters; held for microseconds
        self._flush_lock = threading.Lock()  # one flush at a time, so rows keep their order
        self.dropped = 0  # records dropped since start: buffer overflow or poison batches
        self._dropped_unreported = 0
        self._failures = 0  # consecutive failed writes of the batch at the head of the buffer
        self._touched: set[int] = set()  # functions given lines since the last prune
        self._last_prune = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the engine's side: never blocks, never touches the database ---------------------------

    def submit_logs(self, records: Sequence[LogRecord]) -> None:
        if not records:
            return
        with self._lock:
            self._buffer.extend(records)
            self._trim_locked()

    def submit_invocation(self, record: InvocationRecord) -> None:
        with self._lock:
            self._buffer.append(record)
            self._trim_locked()

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _trim_locked(self) -> None:
        over = len(self._buffer) - self.max_items
        if over > 0:
            for _ in range(over):
                self._buffer.popleft()
            self.dropped += over
            self._dropped_unreported += over

    # --- writing: the caller's thread -----------------------------------------------------------

    def flush(self) -> int:
        """Write everything buffered when called, in this thread; returns rows written.
        Stops at the first failed batch (kept for the next flush); never raises."""
        written = 0
        lines: list[LogLine] = []
        environment_names: dict[int, str] = {}
        with self._flush_lock:
            with self._lock:
                remaining = len(self._buffer)  # what is buffered now; later submissions wait
            while remaining > 0:
                with self._lock:
                    take = min(CHUNK_ITEMS, remaining, len(self._buffer))
                    chunk = [self._buffer.popleft() for _ in range(take)]
                if not chunk:
                    break
                remaining -= len(chunk)
                try:
                    result = services.records_write(
                        logs=[r for r in chunk if isinstance(r, LogRecord)],
                        invocations=[r for r in chunk if isinstance(r, InvocationRecord)],
                    )
                except Exception as exc:
                    if self._keep_failed(chunk, exc):
                        break
                    continue
                self._failures = 0
                written += result.written
                lines.extend(result.lines)
                environment_names.update(result.environment_names)
                if result.orphaned:
                    logger.info("Skipped %d records of deleted functions or environments", result.orphaned)
            with self._lock:
                self._touched.update(line.function_id for line in lines)
                dropped, self._dropped_unreported = self._dropped_unreported, 0
        if dropped:
            logger.warning(
                "Dropped %d log/invocation records: more than %d were waiting to be written", dropped, self.max_items
            )
        if lines:
            services.log_lines_publish(lines=lines, environment_names=environment_names)
        return written

    def _keep_failed(self, chunk: list[Record], exc: Exception) -> bool:
        """Put a failed batch back at the front (oldest first, within the bound) and log.
        Returns False when the batch is dropped instead (refused POISON_ATTEMPTS times for
        its content), so the flush goes on with the next one."""
        self._failures += 1
        unreachable = isinstance(exc, OperationalError | InterfaceError)
        if not unreachable and self._failures >= POISON_ATTEMPTS:
            self._failures = 0
            with self._lock:
                self.dropped += len(chunk)
                self._dropped_unreported += len(chunk)
            logger.error(
                "Dropped a batch of %d records refused %d times: %s", len(chunk), POISON_ATTEMPTS, exc, exc_info=exc
            )
            return False
        with self._lock:
            self._buffer.extendleft(reversed(chunk))
            self._trim_locked()
        logger.error(
            "Writing %d log/invocation records failed (attempt %d); kept for the next flush: %s",
            len(chunk),
            self._failures,
            exc,
            exc_info=exc,
        )
        return True

    def prune(self) -> services.PruneResult:
        """Retention pruning for the functions given lines since the last prune (and by age
        for everything). The flusher calls it at most every PRUNE_INTERVAL_S."""
        with self._lock:
            touched, self._touched = self._touched, set()
        return services.records_prune(function_ids=touched)

    # --- the flusher thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flusher (idempotent). With a flush interval of 0 there is no
        thread: records are written only by explicit flush() calls."""
        if self.flush_interval_s <= 0 or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stratus-records-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the flusher after a last flush (in its thread, which owns its database
        connection); without a thread, flush here."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.flush()
            return
        self._stop.set()
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.flush_interval_s):
                self._tick()
            self._tick(prune=False)
        finally:
            close_old_connections()

    def _tick(self, prune: bool = True) -> None:
        # Like a request: drop a connection that broke or outlived CONN_MAX_AGE first.
        close_old_connections()
        try:
            self.flush()
            if prune and time.monotonic() - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune = time.monotonic()
                self.prune()
        except Exception:
            logger.exception("Monitoring flusher tick failed")


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
