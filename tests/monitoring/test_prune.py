"""Retention: log lines by age and by count per function, invocations by age, in bounded batches."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.functions import services as function_services
from apps.monitoring import services
from apps.monitoring.models import Invocation, LogLine
from apps.monitoring.services import records_prune
from tests.monitoring.conftest import ago, invocation_record, log_record

pytestmark = pytest.mark.django_db


def test_lines_and_invocations_older_than_their_retention_are_deleted(fn, dev, sink, settings):
    # Given lines either side of the 7-day log retention and invocations either side of 30 days
    settings.STRATUS_LOG_RETENTION_DAYS = 7
    settings.STRATUS_INVOCATION_RETENTION_DAYS = 30
    sink.submit_logs(
        [
            log_record(fn, dev, "8 days old", ts=ago(days=8)),
            log_record(fn, dev, "6 days old", ts=ago(days=6)),
        ]
    )
    sink.submit_invocation(invocation_record(fn, dev, request_id="31d", started_at=ago(days=31)))
    sink.submit_invocation(invocation_record(fn, dev, request_id="8d", started_at=ago(days=8)))
    assert sink.flush() == 4

    # When pruning runs
    result = records_prune()

    # Then only what is past retention is gone
    assert (result.log_lines_expired, result.invocations_expired, result.log_lines_over_cap) == (1, 1, 0)
    assert list(LogLine.objects.values_list("text", flat=True)) == ["6 days old"]
    assert list(Invocation.objects.values_list("request_id", flat=True)) == ["8d"]


def test_each_function_keeps_its_newest_lines_up_to_the_cap(world, fn, dev, prod, sink, settings):
    # Given a cap of 5 lines per function, 12 lines of `checkout` (both environments) and 3 of another
    settings.STRATUS_LOG_MAX_LINES_PER_FUNCTION = 5
    other = function_services.function_create(
        actor=world.alice, project=world.web, name="other", runtime="python3.11", handler="main.handler"
    )
    start = ago(hours=1)
    sink.submit_logs(
        [log_record(fn, dev if i % 2 else prod, f"c{i:02d}", ts=start + timedelta(seconds=i)) for i in range(12)]
    )
    sink.submit_logs([log_record(other, dev, f"o{i}", ts=start) for i in range(3)])
    sink.flush()

    # When pruning runs
    result = records_prune()

    # Then checkout keeps its 5 newest, the other function all 3
    assert result.log_lines_over_cap == 7
    assert sorted(LogLine.objects.filter(function=fn).values_list("text", flat=True)) == [
        "c07",
        "c08",
        "c09",
        "c10",
        "c11",
    ]
    assert LogLine.objects.filter(function=other).count() == 3


def test_one_prune_call_does_bounded_work_and_the_next_one_finishes(fn, dev, sink, settings, monkeypatch):
    # Given 9 lines over a cap of 1, and prune batches of 2 rows, at most 2 batches per call
    settings.STRATUS_LOG_MAX_LINES_PER_FUNCTION = 1
    monkeypatch.setattr(services, "PRUNE_BATCH", 2)
    monkeypatch.setattr(services, "PRUNE_MAX_BATCHES", 2)
    start = ago(hours=1)
    sink.submit_logs([log_record(fn, dev, f"l{i}", ts=start + timedelta(seconds=i)) for i in range(10)])
    sink.flush()

    # When pruning runs twice, then a third time
    first = records_prune(function_ids=[fn.pk]).log_lines_over_cap
    second = records_prune(function_ids=[fn.pk]).log_lines_over_cap
    third = records_prune(function_ids=[fn.pk]).log_lines_over_cap

    # Then each call deletes at most 4 rows, oldest first, until only the newest is left
    assert (first, second, third) == (4, 4, 1)
    assert list(LogLine.objects.values_list("text", flat=True)) == ["l9"]


def test_the_sink_prunes_the_functions_it_wrote_lines_for(fn, dev, sink, settings):
    settings.STRATUS_LOG_MAX_LINES_PER_FUNCTION = 2
    sink.submit_logs([log_record(fn, dev, f"l{i}", ts=ago(seconds=10 - i)) for i in range(4)])
    sink.flush()

    assert sink.prune().log_lines_over_cap == 2
    assert sorted(LogLine.objects.values_list("text", flat=True)) == ["l2", "l3"]
    # And with nothing written since, the next prune checks no function
    assert sink.prune().log_lines_over_cap == 0
