"""No record lost: the sink's byte bound, its journal on local disk, replay after a restart or a
crash, a clean stop, and drops only when the journal cannot be written. Real database, real
files (a real full tmpfs when this runs as root), real threads and a real killed process.

A database outage is staged per thread: the thread that flushes gets a connection pointing at
nothing (a closed port for PostgreSQL, a path in a missing directory for SQLite), so the
driver really fails to connect; the test's own connection (and its transaction) is untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from apps.monitoring import journal as journal_module
from apps.monitoring import services
from apps.monitoring import sink as sink_module
from apps.monitoring.models import LOG_TEXT_MAX_BYTES, Invocation, LogLine
from apps.monitoring.records import InvocationRecord, LogRecord
from apps.monitoring.sink import RecordSink
from tests.monitoring.conftest import invocation_record, log_record

pytestmark = pytest.mark.django_db


def in_thread(fn: Callable[[], Any], *, database: str = "reachable") -> Any:
    """Run ``fn`` in a thread of its own; with database="down" that thread's connection points
    at a server that is not there (the outage), the other threads' are untouched."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            if database == "down":
                connection.close()
                if connection.vendor == "sqlite":
                    connection.settings_dict = {**connection.settings_dict, "NAME": "/nonexistent/stratus/db.sqlite3"}
                else:
                    # Without the pool too: a pooled connection would come from the pool's
                    # healthy ones whatever HOST and PORT say.
                    options = {k: v for k, v in connection.settings_dict.get("OPTIONS", {}).items() if k != "pool"}
                    connection.settings_dict = {
                        **connection.settings_dict,
                        "HOST": "127.0.0.1",
                        "PORT": "1",
                        "OPTIONS": options,
                    }
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def crash(sink: RecordSink) -> None:
    """What the kernel does to the journal of a killed process: its files are closed (so its
    lock is free) and nothing else; nothing is flushed, synced or deleted."""
    journal = sink._journal
    for fd in (journal._fd, journal._own_lock_fd, *journal._adopted_locks.values()):
        if fd is not None:
            os.close(fd)
    for segment in journal._segments:
        if segment.reader is not None:
            segment.reader.close()
    journal._closed = True


def submit_requests(sink: RecordSink, fn: Any, env: Any, numbers: range) -> None:
    """Per request, as the engine does: its log line, then its invocation record."""
    for i in numbers:
        sink.submit_logs([log_record(fn, env, f"line {i}", request_id=f"r{i}")])
        sink.submit_invocation(invocation_record(fn, env, request_id=f"r{i}"))


def stored_in_order() -> tuple[list[str], list[str]]:
    return (
        list(LogLine.objects.order_by("id").values_list("text", flat=True)),
        list(Invocation.objects.order_by("id").values_list("request_id", flat=True)),
    )


def segments(journal_dir: Path) -> list[str]:
    return sorted(p.name for p in journal_dir.glob("records-*.jsonl"))


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return value


# --- bounded by bytes -----------------------------------------------------------------------


def test_memory_is_bounded_by_bytes_and_huge_lines_spill_to_the_journal(fn, dev, journal_dir):
    # Given a sink that may hold 256 KB of records (and 100,000 of them)
    bound = 256 * 1024
    sink = RecordSink(max_items=100_000, max_bytes=bound, flush_interval_s=0, journal_dir=journal_dir)

    # When a function writes 300 lines of 1 MB each
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):
            sink.submit_logs([log_record(fn, dev, f"{i:03d} " + "x" * 1_000_000)])
            assert sink.stats()["buffered"]["bytes"] <= bound
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    # Then memory holds about the bound (300 lines cut to 16 KB would be 4.8 MB; uncut, 300 MB)
    # and the rest waits in the journal; nothing is dropped
    assert held < 2 * 1024 * 1024
    stats = sink.stats()
    assert stats["dropped"] == 0
    assert stats["buffered"]["records"] + stats["journal"]["records"] == 300
    assert stats["journal"]["records"] > 250
    # (a line is cut to what the database stores when it is submitted: 16 KB on disk, not 1 MB)
    assert 250 * LOG_TEXT_MAX_BYTES < stats["journal"]["bytes"] < 300 * (LOG_TEXT_MAX_BYTES + 1024)

    # And a flush writes every line once, in order, cut as the database stores lines
    assert sink.flush() == 300
    texts, _ = stored_in_order()
    assert [t[:3] for t in texts] == [f"{i:03d}" for i in range(300)]
    assert all(len(t.encode()) <= LOG_TEXT_MAX_BYTES and t.endswith("…[truncated]") for t in texts)
    assert sink.pending() == 0
    assert segments(journal_dir) == []
    sink._journal.release()


# --- the database down ----------------------------------------------------------------------


def test_with_the_database_down_records_go_to_the_journal_and_arrive_once_in_order(fn, dev, sink, journal_dir, caplog):
    # Given 60 requests' records waiting while the database is down
    submit_requests(sink, fn, dev, range(60))
    with caplog.at_level(logging.ERROR, logger="apps.monitoring.sink"):
        assert in_thread(sink.flush, database="down") == 0

    # Then the failed write moved them out of memory to the journal, on disk
    stats = sink.stats()
    assert (stats["buffered"]["records"], stats["journal"]["records"]) == (0, 120)
    assert stats["last_write_error"].startswith("OperationalError")
    assert "Writing 120 log/invocation records failed (attempt 1); kept for the next flush" in caplog.text
    assert len(segments(journal_dir)) == 1

    # And requests during the outage join them at the next failed attempt
    submit_requests(sink, fn, dev, range(60, 90))
    assert in_thread(sink.flush, database="down") == 0
    assert (sink.stats()["buffered"]["records"], sink.stats()["journal"]["records"]) == (0, 180)
    assert LogLine.objects.count() == Invocation.objects.count() == 0

    # When the database is back (with 10 more requests in memory meanwhile)
    submit_requests(sink, fn, dev, range(90, 100))
    assert sink.flush() == 200

    # Then every record arrived exactly once, in the order submitted, and the journal is gone
    texts, request_ids = stored_in_order()
    assert texts == [f"line {i}" for i in range(100)]
    assert request_ids == [f"r{i}" for i in range(100)]
    assert sink.pending() == 0
    assert sink.stats()["dropped"] == 0
    assert segments(journal_dir) == []


# --- restarts ---------------------------------------------------------------------------------


def test_a_restart_with_records_in_flight_writes_each_exactly_once(fn, dev, journal_dir):
    # Given a sink whose 40 requests' records are journaled (the database was down)...
    first = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    first.start()
    submit_requests(first, fn, dev, range(30))
    in_thread(first.flush, database="down")
    submit_requests(first, fn, dev, range(30, 40))
    in_thread(first.flush, database="down")
    assert first.stats()["journal"]["records"] == 80
    # ...of which the first 50 reached the database just before the process died, before
    # the journal was cleaned up (the write committed, the segment not yet deleted)
    lines = (journal_dir / segments(journal_dir)[0]).read_bytes().splitlines(keepends=True)
    written = [journal_module.decode(line) for line in lines[:50]]
    services.records_write(
        logs=[r for _, r in written if isinstance(r, LogRecord)],
        invocations=[r for _, r in written if isinstance(r, InvocationRecord)],
        log_keys=[(first._sink_id, seq) for seq, r in written if isinstance(r, LogRecord)],
        invocation_keys=[(first._sink_id, seq) for seq, r in written if isinstance(r, InvocationRecord)],
    )
    # ...and 5 more requests only in memory, not yet journaled
    submit_requests(first, fn, dev, range(40, 45))

    # When the process dies and a new one starts on the same data directory
    crash(first)
    del first
    second = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    second.start()
    assert second.stats()["replayed_from_stopped_processes"] == 80
    assert second.flush() == 30

    # Then each journaled request has exactly one invocation record and its line: the 50
    # written before the crash were skipped by their keys, not inserted again
    texts, request_ids = stored_in_order()
    assert request_ids == [f"r{i}" for i in range(40)]
    assert texts == [f"line {i}" for i in range(40)]
    stats = second.stats()
    assert (stats["written"], stats["duplicates_skipped"], stats["dropped"]) == (30, 50, 0)
    # (the 5 requests only in memory died with the process: the bound of a crash)
    # And the journal of the dead process is gone, its lock file too
    assert sorted(p.name for p in journal_dir.iterdir()) == []
    second._journal.release()


CHILD = """
import json, os, sys, time
import django

django.setup()
from datetime import UTC, datetime

from apps.monitoring.records import InvocationRecord, LogRecord
from apps.monitoring.sink import RecordSink

journal_dir, function_id, environment_id, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sink = RecordSink(flush_interval_s=0.05, journal_dir=journal_dir)
sink.start()
for i in range(count):
    ids = dict(function_id=function_id, environment_id=environment_id, binding_id=None, version=1)
    sink.submit_logs([LogRecord(**ids, request_id=f"k{i}", ts=datetime.now(UTC), stream="stdout", text=f"killed {i}")])
    sink.submit_invocation(InvocationRecord(
        **ids, request_id=f"k{i}", trigger="http", started_at=datetime.now(UTC), duration_ms=1.0,
        init_duration_ms=None, cold_start=False, status="ok", error_type="", peak_rss_kb=None,
    ))
deadline = time.monotonic() + 60
while sink.stats()["journal"]["records"] < 2 * count and time.monotonic() < deadline:
    time.sleep(0.01)
print(json.dumps(sink.stats()), flush=True)
time.sleep(600)
"""


def test_a_killed_process_loses_nothing_it_had_journaled(fn, dev, journal_dir):
    # Given a real process whose sink journaled 200 requests' records (its database is a
    # closed port: every write fails, so they went to disk)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.test_settings",
        "DATABASE_URL": "postgres://stratus@127.0.0.1:1/unreachable",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(journal_dir), str(fn.pk), str(dev.pk), "200"],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        stats = json.loads(child.stdout.readline())
        assert (stats["journal"]["records"], stats["buffered"]["records"]) == (400, 0)

        # When it is killed (SIGKILL: no shutdown, no flush)
        child.kill()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # Then the next sink on the same journal writes every record, once
    sink = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    sink.start()
    assert sink.flush() == 400
    texts, request_ids = stored_in_order()
    assert request_ids == [f"k{i}" for i in range(200)]
    assert texts == [f"killed {i}" for i in range(200)]
    assert segments(journal_dir) == []
    sink._journal.release()


def test_a_torn_last_line_left_by_a_crash_is_counted_as_lost_and_the_rest_written(fn, dev, journal_dir, caplog):
    # Given a journal left by a dead process whose last append was cut short
    journal_dir.mkdir()
    lines = [journal_module.encode(i, invocation_record(fn, dev, request_id=f"t{i}")) for i in range(1, 5)]
    (journal_dir / journal_module.segment_name(12345, 1)).write_bytes(b"".join(lines[:3]) + lines[3][:40])
    # (and the lock file of another dead process whose segments were all written)
    (journal_dir / journal_module.lock_name(67890)).touch()

    # When a sink starts and flushes
    sink = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    sink.start()
    with caplog.at_level(logging.ERROR, logger="apps.monitoring.sink"):
        assert sink.flush() == 3

    # Then the complete records are written, the torn one is counted and logged as lost
    assert list(Invocation.objects.order_by("id").values_list("request_id", flat=True)) == ["t1", "t2", "t3"]
    assert sink.stats()["dropped_by_reason"] == {"journal_unreadable": 1}
    assert "Dropped 1 log/invocation records (journal_unreadable" in caplog.text
    assert list(journal_dir.iterdir()) == []
    sink._journal.release()


# --- the keeper: how long records stay only in memory -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_records_leave_memory_for_the_journal_after_max_age_and_are_synced(world, journal_dir):
    fn, dev = committed_function(world)
    # Given a running sink whose flusher will not write during the test (as with a database
    # that takes longer than max_age_s to answer)
    # (and lines wait for that interval too, not the live tail's early write)
    sink = RecordSink(flush_interval_s=3600, max_age_s=0.2, journal_dir=journal_dir, tail_flush_s=0)
    sink.start()
    try:
        # When records are submitted
        submit_requests(sink, fn, dev, range(10))
        submitted = time.monotonic()

        # Then within max_age_s (+ the keeper's 0.1 s) they are in the journal, fsync'd
        wait_for(lambda: sink.stats()["journal"]["records"] == 20)
        assert time.monotonic() - submitted < 0.2 + 2 * sink_module.JOURNAL_SYNC_INTERVAL_S + 0.5
        assert sink.stats()["buffered"]["records"] == 0
        wait_for(lambda: not sink._journal._dirty)
    finally:
        # And a clean stop writes them all (from the journal)
        sink.stop()
    texts, request_ids = stored_in_order()
    assert request_ids == [f"r{i}" for i in range(10)]
    assert texts == [f"line {i}" for i in range(10)]
    assert segments(journal_dir) == []


# --- stopping -----------------------------------------------------------------------------------


def committed_function(world: Any) -> tuple[Any, Any]:
    from apps.functions import services as function_services
    from apps.tenancy.models import Environment

    fn = function_services.function_create(
        actor=world.alice, project=world.web, name="stopped", runtime="python3.11", handler="main.handler"
    )
    return fn, Environment.objects.get(project=world.web, name="dev")


@pytest.mark.django_db(transaction=True)
def test_a_clean_stop_writes_everything_still_waiting(world, journal_dir):
    fn, dev = committed_function(world)
    # Given a running sink whose flusher has not written yet (its interval is an hour)
    sink = RecordSink(flush_interval_s=3600, journal_dir=journal_dir)
    sink.start()
    submit_requests(sink, fn, dev, range(1000))
    assert Invocation.objects.count() == 0

    # When it stops
    sink.stop()

    # Then all 2,000 records are in the database, in order, and nothing waits
    texts, request_ids = stored_in_order()
    assert request_ids == [f"r{i}" for i in range(1000)]
    assert len(texts) == 1000
    assert sink.pending() == 0
    assert sink.stats()["flusher"] == "stopped"
    assert list(journal_dir.glob("*")) == []


def test_a_stop_with_the_database_down_journals_everything_for_the_next_start(fn, dev, journal_dir, caplog):
    # Given records waiting in a sink while the database is down
    sink = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    sink.start()
    submit_requests(sink, fn, dev, range(10))

    # When it stops (the server shuts down)
    with caplog.at_level(logging.WARNING, logger="apps.monitoring.sink"):
        in_thread(sink.stop, database="down")

    # Then they wait in the journal, which says so
    assert len(segments(journal_dir)) == 1
    assert f"Records sink stopped with 20 records journaled in {journal_dir}" in caplog.text

    # And the next start writes them
    restarted = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    restarted.start()
    assert restarted.flush() == 20
    assert stored_in_order()[1] == [f"r{i}" for i in range(10)]
    assert list(journal_dir.glob("*")) == []
    restarted._journal.release()


@pytest.mark.django_db(transaction=True)
def test_the_servers_lifespan_shutdown_stops_the_process_sink(world, journal_dir, monkeypatch):
    from apps.engine.host import detach_host

    fn, dev = committed_function(world)
    # Given the process's sink with records not yet written
    sink = RecordSink(flush_interval_s=3600, journal_dir=journal_dir)
    monkeypatch.setattr(sink_module, "_sink", sink)
    sink.start()
    submit_requests(sink, fn, dev, range(3))

    # When the server's lifespan shutdown runs
    asyncio.run(detach_host())

    # Then they are written
    assert stored_in_order()[1] == ["r0", "r1", "r2"]
    assert sink.stats()["flusher"] == "stopped"


# --- when the journal cannot be written -----------------------------------------------------


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real file system with no space left: a 64 KB tmpfs, filled up (needs root)."""
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        (mount / "journal").mkdir()
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount / "journal"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(params=["disk full", "not a directory"])
def unwritable_journal(request: Any, tmp_path: Path) -> Path:
    if request.param == "disk full":
        return request.getfixturevalue("full_tmpfs")
    path = tmp_path / "journal"
    path.write_text("a file where the journal directory should be")
    return path


def test_records_are_dropped_only_when_the_journal_cannot_be_written_and_it_says_so(
    fn, dev, unwritable_journal, client, monkeypatch, caplog
):
    # Given a sink holding 10 records in memory whose journal cannot be written
    sink = RecordSink(max_items=10, flush_interval_s=0, journal_dir=unwritable_journal)
    monkeypatch.setattr(sink_module, "_sink", sink)

    # When the database is down with 5 records waiting, they stay in memory: not dropped
    for i in range(5):
        sink.submit_invocation(invocation_record(fn, dev, request_id=f"r{i}"))
    in_thread(sink.flush, database="down")
    assert (sink.stats()["buffered"]["records"], sink.stats()["dropped"]) == (5, 0)

    # When 95 more arrive, memory keeps its bound: only what exceeds it is dropped, oldest first
    with caplog.at_level(logging.ERROR, logger="apps.monitoring.sink"):
        for i in range(5, 100):
            sink.submit_invocation(invocation_record(fn, dev, request_id=f"r{i}"))
        # Then the drops are counted, by reason, and logged with their number
        assert sink.flush() == 10
    stats = sink.stats()
    assert stats["dropped"] == 90
    assert stats["dropped_by_reason"] == {"journal_unwritable": 90}
    assert stats["journal"]["error"]
    if unwritable_journal.parent.name == "full":
        assert "No space left on device" in stats["journal"]["error"]
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dropped")]
    pattern = (
        r"Dropped (\d+) log/invocation records \(journal_unwritable: \w+: \[Errno \d+\] .+\); (\d+) dropped since start"
    )
    counts = [re.fullmatch(pattern, m) for m in messages]
    assert messages and all(counts), messages
    assert sum(int(m.group(1)) for m in counts if m) == 90
    # (what was kept is written: the newest 10; written + dropped = every record submitted)
    assert list(Invocation.objects.order_by("id").values_list("request_id", flat=True)) == [
        f"r{i}" for i in range(90, 100)
    ]
    assert stats["written"] + stats["dropped"] == 100

    # And /readyz shows them
    report = client.get("/readyz").json()["records"]
    assert report["dropped"] == 90
    assert report["dropped_by_reason"] == {"journal_unwritable": 90}
    assert report["written"] == 10
    assert report["journal"]["error"] == stats["journal"]["error"]


def test_readyz_reports_what_waits_in_memory_and_in_the_journal(fn, dev, journal_dir, client, monkeypatch):
    sink = RecordSink(max_items=3, flush_interval_s=0, journal_dir=journal_dir)
    monkeypatch.setattr(sink_module, "_sink", sink)
    submit_requests(sink, fn, dev, range(4))

    report = client.get("/readyz").json()["records"]

    assert report["buffered"]["records"] == 3
    assert report["buffered"]["bytes"] == sum(entry[2] for entry in sink._buffer)
    assert report["buffered"]["max_records"] == 3
    assert report["journal"]["records"] == 5
    assert report["journal"]["path"] == str(journal_dir)
    assert report["spilled"] == 5
    assert (report["written"], report["dropped"], report["dropped_by_reason"]) == (0, 0, {})
    assert report["flusher"].startswith("off")
    sink._journal.release()


# --- everything at once -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_under_load_with_outages_every_record_arrives_exactly_once_in_order(world, journal_dir, monkeypatch):
    """The flusher's writes fail while ``outage`` is set: a fake failure (records_write raising
    OperationalError), because the flusher's own connection cannot be pointed elsewhere from
    the test; the per-thread real outage is staged in the tests above."""
    from django.db import OperationalError

    fn, dev = committed_function(world)
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 64 * 1024)  # many segments, rotated and deleted
    outage = threading.Event()
    refused: list[int] = []
    real_write = services.records_write

    def records_write(**kwargs: Any) -> Any:
        if outage.is_set():
            refused.append(len(kwargs["logs"]) + len(kwargs["invocations"]))
            raise OperationalError("the database is down (staged)")
        return real_write(**kwargs)

    monkeypatch.setattr(services, "records_write", records_write)
    # Given a running sink with a small memory bound and a short max age
    sink = RecordSink(max_items=300, flush_interval_s=0.01, max_age_s=0.05, journal_dir=journal_dir)
    sink.start()
    try:
        # When a producer submits 5,000 requests' records while the database goes down twice
        for i in range(5000):
            if i in (1000, 3000):
                outage.set()
            elif i in (2000, 4000):
                outage.clear()
            sink.submit_logs([log_record(fn, dev, f"line {i}", request_id=f"r{i}")])
            sink.submit_invocation(invocation_record(fn, dev, request_id=f"r{i}"))
            if i % 50 == 0:
                time.sleep(0.005)
    finally:
        outage.clear()
        sink.stop()

    # Then each request has exactly one invocation record and one line, in the order submitted
    texts, request_ids = stored_in_order()
    assert request_ids == [f"r{i}" for i in range(5000)]
    assert texts == [f"line {i}" for i in range(5000)]
    stats = sink.stats()
    assert (stats["dropped"], stats["duplicates_skipped"]) == (0, 0)  # (nothing written twice either)
    assert refused and stats["spilled"] > 0  # writes failed, and the journal was used
    assert list(journal_dir.glob("*.jsonl")) == []
