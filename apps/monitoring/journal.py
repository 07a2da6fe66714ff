"""The records sink's spill journal: invocation records and log lines on local disk while the
database cannot take them (down, slow, or the in-memory buffer full).

Layout, in ``DATA_DIR/journal/`` (owner-only, like the data directory):

- ``records-<sink>-<n>.jsonl``: segments of one sink (``<sink>``: 16 hex digits, the random id
  a sink takes at each start; ``<n>``: 8 digits, in order). One JSON object per line:
  ``{"k": "log" | "invocation", "seq": <number>, "r": {record fields}}``; the sink id and
  ``seq`` are the record's key in the database (LogLine.sink_id/sink_seq), so a segment
  written twice adds nothing. A segment is closed at SEGMENT_BYTES and a new one started,
  so drained segments are deleted while the journal still grows.
- ``records-<sink>.lock``: created before the sink's first segment and flock'ed for as long
  as the sink (its process) lives. A segment whose lock can be taken belongs to a process
  that is gone: ``adopt()`` (called when a sink starts) queues it for replay, ahead of
  anything newer, holding that lock so that no other process replays it too.

Writes: ``append`` hands a whole batch to the kernel in one ``write`` on an O_APPEND file and
counts it only once it is complete (a failed write is truncated away, so a reader never sees
half a batch and every record of a failed batch is known to be unwritten). ``sync`` fsyncs;
the sink calls it every JOURNAL_SYNC_INTERVAL_S (sink.py). What a process crash loses: nothing
that ``append`` returned from (it is in the kernel's page cache). What a machine crash or
power loss loses: appends since the last ``sync``.

Reads: the sink's flusher reads the oldest segment from where it stopped (``read``), writes
the records to the database, then ``consume``s them; a fully consumed segment is deleted.
A crash between the database write and ``consume`` replays those records: the database's
unique key skips them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from apps.monitoring.records import InvocationRecord, LogRecord

logger = logging.getLogger(__name__)

Record = LogRecord | InvocationRecord

# A segment is closed and a new one started past this size: a drained segment is deleted
# whole, so this bounds what stays on disk after its records are written (and what a crash
# after a write but before the delete replays).
SEGMENT_BYTES = 16 * 1024 * 1024

_SEGMENT = re.compile(r"^records-([0-9a-f]{16})-([0-9]{8})\.jsonl$")
_LOCK = re.compile(r"^records-([0-9a-f]{16})\.lock$")
_DATETIME_FIELDS = ("ts", "started_at")


def encode(seq: int, record: Record) -> bytes:
    """One journal line (ASCII JSON: lone surrogates in a function's output survive)."""
    fields = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(record).items()}
    kind = "log" if isinstance(record, LogRecord) else "invocation"
    return json.dumps({"k": kind, "seq": seq, "r": fields}, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> tuple[int, Record]:
    """(seq, record) of one journal line; raises ValueError/TypeError/KeyError when unreadable."""
    data = json.loads(line)
    fields = data["r"]
    for name in _DATETIME_FIELDS:
        if isinstance(fields.get(name), str):
            fields[name] = datetime.fromisoformat(fields[name])
    kind = data["k"]
    if kind == "log":
        return int(data["seq"]), LogRecord(**fields)
    if kind == "invocation":
        return int(data["seq"]), InvocationRecord(**fields)
    raise ValueError(f"unknown record kind {kind!r}")


def segment_name(sink: int, number: int) -> str:
    return f"records-{sink:016x}-{number:08d}.jsonl"


def lock_name(sink: int) -> str:
    return f"records-{sink:016x}.lock"


class JournalClosed(OSError):
    """The journal was released (its sink stopped) while a late caller still used it."""


@dataclass(eq=False)
class Segment:
    path: Path
    sink: int
    number: int
    size: int = 0  # bytes complete on disk: readers never go past it
    records: int = 0  # lines in those bytes
    read_offset: int = 0
    read_records: int = 0
    sealed: bool = False  # no more appends (rotated, or left by another process)
    reader: IO[bytes] | None = None


@dataclass
class Batch:
    """Records read from the head segment; ``consume(batch)`` once they are written."""

    segment: Segment
    end: int  # offset after the last line read
    lines: int  # lines read (records + the unreadable ones)
    records: list[tuple[int, int, Record]] = field(default_factory=list)  # (sink, seq, record)
    unreadable: int = 0  # lines that did not decode (a torn tail left by a crash, or damage)


class Journal:
    def __init__(self, directory: Path, *, sink: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.sink = sink
        self.max_bytes = max_bytes  # 0: no bound but the disk
        self._lock = threading.Lock()  # held for a write, an fsync, or bookkeeping
        self._segments: deque[Segment] = deque()  # pending, oldest first: adopted, then ours
        self._writer: Segment | None = None
        self._fd: int | None = None
        self._next_number = 1
        self._dirty = False  # appended since the last fsync
        self._own_lock_fd: int | None = None
        self._adopted_locks: dict[int, int] = {}  # sink id -> fd holding its lock
        self._closed = False
        self.disk_bytes = 0  # bytes of the segments on disk (read or not): what max_bytes bounds

    # --- what the sink reports --------------------------------------------------------------

    # Lock-free: the sink asks these under its own lock, which a submitter may be waiting
    # for, so they must not wait for an fsync. list() of a deque is one step under the GIL.

    @property
    def pending_records(self) -> int:
        return sum(s.records - s.read_records for s in list(self._segments))

    @property
    def pending_bytes(self) -> int:
        return sum(s.size - s.read_offset for s in list(self._segments))

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def has_pending(self) -> bool:
        return any(s.read_offset < s.size for s in list(self._segments))

    # --- writing ----------------------------------------------------------------------------

    def append(self, lines: Sequence[bytes]) -> None:
        """Append whole lines in one write. All or nothing: on failure (ENOSPC, EROFS, EIO, the
        journal's own bound) the file is cut back to where it was and OSError is raised."""
        if not lines:
            return
        data = b"".join(lines)
        with self._lock:
            if self._closed:
                raise JournalClosed("the journal was released")
            if self.max_bytes and self.disk_bytes + len(data) > self.max_bytes:
                raise OSError(
                    errno.ENOSPC,
                    f"the journal holds {self.disk_bytes} bytes and may hold {self.max_bytes} "
                    "(STRATUS_RECORDS_JOURNAL_BYTES)",
                )
            segment = self._writable_segment()
            assert self._fd is not None
            before = segment.size
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, before)
                raise
            segment.size += len(data)
            segment.records += len(lines)
            self.disk_bytes += len(data)
            self._dirty = True

    def _writable_segment(self) -> Segment:
        segment = self._writer
        if segment is not None and segment.size < SEGMENT_BYTES:
            return segment
        if segment is not None:  # full: seal it, durable before we move on
            self._seal_writer()
        if self._own_lock_fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / lock_name(self.sink), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
            self._own_lock_fd = fd
        path = self.directory / segment_name(self.sink, self._next_number)
        self._next_number += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._fsync_directory()  # the new name survives a machine crash
        segment = Segment(path=path, sink=self.sink, number=self._next_number - 1)
        self._writer = segment
        self._segments.append(segment)
        return segment

    def _seal_writer(self) -> None:
        if self._fd is not None:
            if self._dirty:
                os.fsync(self._fd)
                self._dirty = False
            os.close(self._fd)
        if self._writer is not None:
            self._writer.sealed = True
        self._fd = None
        self._writer = None

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """fsync what was appended since the last sync (no-op when nothing was)."""
        with self._lock:
            if self._dirty and self._fd is not None:
                os.fsync(self._fd)
                self._dirty = False

    # --- reading ----------------------------------------------------------------------------

    def read(self, *, max_items: int, max_bytes: int) -> Batch | None:
        """The next records of the oldest segment (at most ``max_items`` lines and about
        ``max_bytes``; at least one line), or None when nothing is pending."""
        with self._lock:
            if self._closed:
                raise JournalClosed("the journal was released")
            self._drop_drained_locked()
            if not self._segments:
                return None
            segment = self._segments[0]
            limit = segment.size  # complete lines only: never a batch still being written
            offset = segment.read_offset
            sealed = segment.sealed
            if segment.reader is None:
                segment.reader = open(segment.path, "rb")  # noqa: SIM115 - kept open until drained
            reader = segment.reader
        if offset >= limit:
            return None
        batch = Batch(segment=segment, end=offset, lines=0)
        reader.seek(offset)
        taken = 0
        while batch.end < limit and batch.lines < max_items and (taken < max_bytes or batch.lines == 0):
            line = reader.readline(limit - batch.end)
            if not line:
                break
            batch.end += len(line)
            batch.lines += 1
            taken += len(line)
            if not line.endswith(b"\n"):
                # Only a segment left by a crashed process ends without a newline: the
                # append the crash interrupted. (Ours are counted only once complete.)
                batch.unreadable += 1
                if sealed:
                    batch.end = limit
                continue
            try:
                seq, record = decode(line)
            except (ValueError, TypeError, KeyError) as exc:
                batch.unreadable += 1
                logger.error("Unreadable line in %s at byte %d: %s", segment.path.name, batch.end - len(line), exc)
                continue
            batch.records.append((segment.sink, seq, record))
        return batch

    def consume(self, batch: Batch) -> None:
        """Mark a batch as written; delete its segment once it is fully written."""
        with self._lock:
            segment = batch.segment
            segment.read_offset = max(segment.read_offset, batch.end)
            segment.read_records = min(segment.records, segment.read_records + batch.lines)
            self._drop_drained_locked()

    def _drop_drained_locked(self) -> None:
        while self._segments and self._segments[0].read_offset >= self._segments[0].size:
            segment = self._segments[0]
            if segment is self._writer:
                if segment.size == 0:
                    return  # just opened: the next append fills it
                self._seal_writer()  # drained while open: start afresh at the next append
            self._segments.popleft()
            if segment.reader is not None:
                segment.reader.close()
                segment.reader = None
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            self.disk_bytes -= segment.size
            self._release_adopted_if_done(segment.sink)

    def _release_adopted_if_done(self, sink: int) -> None:
        fd = self._adopted_locks.get(sink)
        if fd is None or any(s.sink == sink for s in self._segments):
            return
        with contextlib.suppress(FileNotFoundError):
            (self.directory / lock_name(sink)).unlink()
        os.close(fd)
        del self._adopted_locks[sink]

    # --- other processes' journals ----------------------------------------------------------

    def adopt(self) -> tuple[int, int]:
        """Queue the segments of sinks whose process is gone (their lock is free), oldest
        sink first, ahead of our own. Returns (records, bytes) adopted. Call before this
        sink's records are written, so they stay in order after the older ones."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0, 0
        by_sink: dict[int, list[tuple[int, Path]]] = {}
        for name in names:
            match = _SEGMENT.match(name) or _LOCK.match(name)
            if match:
                sink = int(match.group(1), 16)
                if sink != self.sink and sink not in self._adopted_locks:
                    found = by_sink.setdefault(sink, [])  # a lock alone: left after its last segment went
                    if name.endswith(".jsonl"):
                        found.append((int(match.group(2)), self.directory / name))
        adopted: list[Segment] = []
        for sink, found in by_sink.items():
            fd = os.open(self.directory / lock_name(sink), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its process is alive: its flusher writes them
                continue
            segments = []
            for number, path in sorted(found):
                try:
                    size = path.stat().st_size
                    records = _count_lines(path)
                except FileNotFoundError:  # replayed and deleted by another process just now
                    continue
                segments.append(Segment(path=path, sink=sink, number=number, size=size, records=records, sealed=True))
            if not segments:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / lock_name(sink)).unlink()
                os.close(fd)
                continue
            self._adopted_locks[sink] = fd
            adopted.extend(segments)
        # Oldest process first (by its first segment's time), each one's segments in order.
        first_mtime: dict[int, float] = {}
        for segment in adopted:
            with contextlib.suppress(OSError):
                first_mtime.setdefault(segment.sink, segment.path.stat().st_mtime)
        adopted.sort(key=lambda s: (first_mtime.get(s.sink, 0.0), s.sink, s.number))
        with self._lock:
            for segment in reversed(adopted):
                self._segments.appendleft(segment)
            self.disk_bytes += sum(s.size for s in adopted)
        return sum(s.records for s in adopted), sum(s.size for s in adopted)

    def release(self) -> None:
        """Close everything and give up the locks (the sink stops): segments still pending
        stay on disk for the next start (ours or another process's) to replay."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                try:
                    self._seal_writer()
                except OSError:
                    logger.exception("Syncing the records journal failed")
            for segment in self._segments:
                if segment.reader is not None:
                    segment.reader.close()
                    segment.reader = None
            ours_left = any(s.sink == self.sink for s in self._segments)
            if self._own_lock_fd is not None:
                if not ours_left:
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / lock_name(self.sink)).unlink()
                os.close(self._own_lock_fd)
                self._own_lock_fd = None
            for fd in self._adopted_locks.values():
                os.close(fd)
            self._adopted_locks.clear()
            self._segments.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.directory),
            "records": self.pending_records,
            "bytes": self.pending_bytes,
            "segments": self.segment_count,
            "disk_bytes": self.disk_bytes,  # pending and already written, until the segment goes
            "max_bytes": self.max_bytes,
        }


def _count_lines(path: Path) -> int:
    """Records in a segment left by another process (a torn last line counts: it is read,
    found unreadable and counted as lost)."""
    count = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
