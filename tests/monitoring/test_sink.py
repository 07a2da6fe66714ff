"""The sink: batches, bounds, failures, and the live-tail publish, on the real database."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.monitoring.models import LOG_TEXT_MAX_BYTES, Invocation, LogLine
from apps.monitoring.services import INSERT_BATCH, log_group_name
from apps.monitoring.sink import POISON_ATTEMPTS, RecordSink, get_sink
from tests.monitoring.conftest import ago, invocation_record, log_record

pytestmark = pytest.mark.django_db
IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def inserts(ctx: CaptureQueriesContext) -> list[str]:
    # One multi-row INSERT statement per INSERT_BATCH rows.
    return [q["sql"] for q in ctx.captured_queries if "INSERT INTO" in q["sql"].upper()]


def statements_for(rows: int) -> int:
    return math.ceil(rows / INSERT_BATCH)


def test_many_submissions_are_written_in_a_handful_of_bulk_inserts(fn, dev, prod, sink):
    # Given 600 lines and 200 invocations submitted one call at a time, as the engine does
    start = ago(minutes=5)
    for i in range(600):
        sink.submit_logs([log_record(fn, dev if i % 2 else prod, f"line {i}", ts=start + timedelta(milliseconds=i))])
    for i in range(200):
        sink.submit_invocation(invocation_record(fn, dev, request_id=f"r{i}"))
    assert LogLine.objects.count() == 0  # nothing touched the database yet
    assert sink.pending() == 800

    # When the sink flushes
    with CaptureQueriesContext(connection) as ctx:
        written = sink.flush()

    # Then everything is written by one multi-row INSERT per table (up to INSERT_BATCH rows
    # each): the driver releases the GIL once per statement, not once per row
    assert written == 800
    assert len(inserts(ctx)) == statements_for(600) + statements_for(200) == 2
    assert inserts(ctx)[0].startswith("INSERT INTO")
    assert inserts(ctx)[0].count("), (") == 599
    # and besides them, one lookup each of functions and environments (+ savepoint and release),
    # and for the live tail's cursor the lines' lock (PostgreSQL) and the id committed before them
    assert len(ctx.captured_queries) <= len(inserts(ctx)) + 6
    assert LogLine.objects.count() == 600
    assert Invocation.objects.count() == 200
    assert sink.pending() == 0
    line = LogLine.objects.get(text="line 7")
    assert (line.function_id, line.environment_id, line.stream, line.request_id) == (fn.pk, dev.pk, "stdout", "req-1")
    # And a second flush has nothing to do
    with CaptureQueriesContext(connection) as ctx:
        assert sink.flush() == 0
    assert ctx.captured_queries == []


def test_levels_are_parsed_and_text_is_capped_at_write_time(fn, dev, sink):
    sink.submit_logs(
        [
            log_record(fn, dev, "[ERROR]\t2024-05-01T10:00:00Z\tboom", ts=ago(seconds=3)),
            log_record(fn, dev, "é" * 20_000, ts=ago(seconds=2)),
            log_record(fn, dev, "nul\x00byte", ts=ago(seconds=1), request_id="x" * 100),
        ]
    )
    assert sink.flush() == 3
    error, long, nul = LogLine.objects.order_by("ts")
    assert error.level == "error"
    assert long.level == "info"  # a stdout line that says no level
    assert len(long.text.encode()) <= LOG_TEXT_MAX_BYTES
    assert long.text.startswith("é" * 8000)
    assert long.text.endswith("…[truncated]")
    assert nul.text == "nul\ufffdbyte"  # PostgreSQL text cannot hold NUL
    assert nul.request_id == "x" * 64


def test_a_full_buffer_spills_the_oldest_to_the_journal_and_drops_nothing(fn, dev, journal_dir, caplog):
    # Given a sink that holds 5 records in memory
    sink = RecordSink(max_items=5, flush_interval_s=0, journal_dir=journal_dir)

    # When 8 are submitted before a flush
    sink.submit_logs([log_record(fn, dev, f"line {i}", ts=ago(seconds=10 - i)) for i in range(6)])
    sink.submit_invocation(invocation_record(fn, dev, request_id="r6"))
    sink.submit_invocation(invocation_record(fn, dev, request_id="r7"))

    # Then memory keeps the 5 newest and the 3 oldest wait on disk, none dropped
    stats = sink.stats()
    assert stats["buffered"]["records"] == 5
    assert stats["journal"]["records"] == 3
    assert stats["dropped"] == 0
    assert sink.pending() == 8
    assert len(list(journal_dir.glob("records-*.jsonl"))) == 1

    # And a flush writes all 8, oldest first (the journal, then memory), and empties the journal
    with caplog.at_level(logging.WARNING, logger="apps.monitoring.sink"):
        assert sink.flush() == 8
        assert sink.flush() == 0
    assert list(LogLine.objects.order_by("id").values_list("text", flat=True)) == [f"line {i}" for i in range(6)]
    assert list(Invocation.objects.order_by("id").values_list("request_id", flat=True)) == ["r6", "r7"]
    assert sink.pending() == 0
    assert list(journal_dir.glob("records-*.jsonl")) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    sink._journal.release()


def test_a_failed_write_keeps_the_batch_and_writes_it_once_the_database_recovers(fn, dev, sink, caplog):
    # Given records buffered while the invocations table is unavailable (renamed away)
    sink.submit_logs([log_record(fn, dev, f"line {i}") for i in range(3)])
    sink.submit_invocation(invocation_record(fn, dev))
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_invocation RENAME TO monitoring_invocation_away")

    # When the sink flushes
    with caplog.at_level(logging.ERROR, logger="apps.monitoring.sink"):
        written = sink.flush()

    # Then nothing is written (the lines inserted before the failure rolled back with it),
    # nothing is raised, the batch is kept, and the failure is logged
    assert written == 0
    assert sink.pending() == 4
    assert LogLine.objects.count() == 0
    assert "Writing 4 log/invocation records failed (attempt 1); kept for the next flush" in caplog.text

    # And once the table is back, the next flush writes the batch exactly once
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_invocation_away RENAME TO monitoring_invocation")
    sink.submit_logs([log_record(fn, dev, "later")])
    assert sink.flush() == 5
    assert sorted(LogLine.objects.values_list("text", flat=True)) == ["later", "line 0", "line 1", "line 2"]
    assert Invocation.objects.count() == 1
    assert sink.pending() == 0


def test_a_record_refused_for_its_content_is_dropped_after_repeated_attempts_alone(fn, dev, sink, caplog):
    # Given a record the database refuses whatever we retry (a NULL timestamp) between two good ones
    bad = dataclasses.replace(log_record(fn, dev, "bad"), ts=None)
    sink.submit_logs([log_record(fn, dev, "before"), bad, log_record(fn, dev, "after")])

    # When flushes keep failing, the batch is kept until the last attempt
    for _ in range(POISON_ATTEMPTS - 1):
        assert sink.flush() == 0
        assert sink.pending() == 3
    # Then the last attempt writes the batch record by record and drops only the refused one
    with caplog.at_level(logging.ERROR, logger="apps.monitoring.sink"):
        assert sink.flush() == 2
    assert sink.pending() == 0
    assert sink.dropped == 1
    assert sink.stats()["dropped_by_reason"] == {"refused_by_database": 1}
    assert "Dropped 1 of a batch of 3 records refused 5 times" in caplog.text
    assert list(LogLine.objects.order_by("id").values_list("text", flat=True)) == ["before", "after"]

    # And later records are written as usual
    sink.submit_logs([log_record(fn, dev, "good")])
    assert sink.flush() == 1
    assert list(LogLine.objects.order_by("id").values_list("text", flat=True)) == ["before", "after", "good"]


def test_records_of_a_deleted_function_are_skipped_not_failed(fn, dev, sink):
    sink.submit_logs([log_record(987654, dev, "orphan"), log_record(fn, dev, "kept")])
    assert sink.flush() == 1
    assert list(LogLine.objects.values_list("text", flat=True)) == ["kept"]
    assert sink.pending() == 0


def receive(layer, channel: str, timeout: float = 1.0):
    async def go():
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(go)()


def test_each_flush_publishes_one_message_per_group_to_the_live_tail(fn, dev, prod, sink, settings):
    # Given listeners on the dev and prod log groups of the function
    settings.CHANNEL_LAYERS = IN_MEMORY_LAYER
    layer = get_channel_layer()
    dev_channel = async_to_sync(layer.new_channel)()
    prod_channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(log_group_name(function_id=fn.pk, environment_id=dev.pk), dev_channel)
    async_to_sync(layer.group_add)(log_group_name(function_id=fn.pk, environment_id=prod.pk), prod_channel)

    # When lines for both environments are submitted (out of order) and flushed
    t = ago(seconds=10)
    sink.submit_logs(
        [
            log_record(fn, dev, "second", ts=t + timedelta(seconds=2)),
            log_record(fn, dev, "ERROR: first", ts=t + timedelta(seconds=1), request_id="req-9", version=3),
        ]
    )
    sink.submit_logs([log_record(fn, prod, "prod line", ts=t)])
    sink.submit_invocation(invocation_record(fn, dev))
    assert sink.flush() == 4

    # Then each group gets exactly one message with its lines in the order written (their ids:
    # the live tail's cursor), as the API shows them, and the id committed before them
    message = receive(layer, dev_channel)
    first, second, prod_line = LogLine.objects.order_by("id")
    assert message == {
        "type": "log.lines",
        "prev": LogLine.objects.filter(id__lt=first.id).order_by("-id").values_list("id", flat=True).first() or 0,
        "lines": [
            {
                "id": first.id,
                "ts": (t + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
                "stream": "stdout",
                "level": "info",
                "request_id": "req-1",
                "version": 1,
                "environment": "dev",
                "text": "second",
            },
            {
                "id": second.id,
                "ts": (t + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
                "stream": "stdout",
                "level": "error",
                "request_id": "req-9",
                "version": 3,
                "environment": "dev",
                "text": "ERROR: first",
            },
        ],
    }
    assert prod_line.id > second.id
    assert [line["text"] for line in receive(layer, prod_channel)["lines"]] == ["prod line"]
    with pytest.raises(asyncio.TimeoutError):
        receive(layer, dev_channel, timeout=0.05)


def test_a_failed_publish_is_logged_and_the_lines_stay_written(fn, dev, sink, settings, caplog):
    # Given a channel layer that cannot be reached (nothing listens on port 1)
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    sink.submit_logs([log_record(fn, dev, "stored anyway")])

    with caplog.at_level(logging.ERROR, logger="apps.monitoring.services"):
        assert sink.flush() == 1

    assert list(LogLine.objects.values_list("text", flat=True)) == ["stored anyway"]
    assert "Live-tail publish failed" in caplog.text


def test_get_sink_is_one_per_process():
    assert get_sink() is get_sink()


@pytest.mark.django_db(transaction=True)
def test_the_flusher_thread_writes_in_the_background_and_stop_flushes(world, settings):
    from apps.functions import services as function_services
    from apps.tenancy.models import Environment

    settings.CHANNEL_LAYERS = IN_MEMORY_LAYER
    fn = function_services.function_create(
        actor=world.alice, project=world.web, name="bg", runtime="python3.11", handler="main.handler"
    )
    dev = Environment.objects.get(project=world.web, name="dev")
    sink = RecordSink(flush_interval_s=0.05)
    sink.start()
    sink.start()  # idempotent
    try:
        # When a line is submitted, the flusher writes it without anyone calling flush()
        sink.submit_logs([log_record(fn, dev, "background")])
        deadline = time.monotonic() + 10
        while not LogLine.objects.filter(text="background").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert LogLine.objects.filter(text="background").exists()
        sink.submit_invocation(invocation_record(fn, dev, request_id="last"))
    finally:
        sink.stop()
    # Then stop() flushed what was left, and the thread is gone
    assert Invocation.objects.filter(request_id="last").exists()
    assert sink.pending() == 0
    assert sink._thread is None


def test_no_thread_with_a_zero_interval_and_stop_flushes_in_the_caller(fn, dev):
    sink = RecordSink(flush_interval_s=0)
    sink.start()
    assert sink._thread is None
    sink.submit_logs([log_record(fn, dev, "on demand")])
    sink.stop()
    assert list(LogLine.objects.values_list("text", flat=True)) == ["on demand"]
