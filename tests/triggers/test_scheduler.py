"""The scheduler's claim: every occurrence once, with two schedulers at once on a fake clock;
overlap and misfire policies."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.triggers import scheduler, services
from apps.triggers.models import FireStatus, Trigger, TriggerFire
from apps.triggers.schedule import fire_times, parse, zone_get
from tests.triggers.conftest import make_trigger, plain_function

# 01:55 EDT on the 2027 fall-back day (in the future: at() refuses the past): the ten minutes run through the repeated hour.
BASE = datetime(2027, 11, 7, 5, 55, tzinfo=UTC)
SPAN_S = 600

EXPRESSIONS = [
    ("every-minute-ny", "* * * * *", "America/New_York"),
    ("every-2-min", "*/2 * * * *", "Europe/Berlin"),
    ("rate-1", "rate(1 minute)", "UTC"),
    ("aws-every-3", "cron(*/3 * * * ? *)", "UTC"),
    ("half-past-one-ny", "30 1 * * *", "America/New_York"),  # fired at 05:30Z, not again at 06:30Z
    ("once", "at(2027-11-07T01:58)", "America/New_York"),  # 01:58 EDT = 05:58Z
]


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_fire_every_occurrence_exactly_once(world, caplog):
    # Given triggers whose occurrences over ten fake minutes are known
    function = plain_function(world)
    triggers = {}
    for name, expression, tz in EXPRESSIONS:
        triggers[name] = make_trigger(
            world, function, name=name, expression=expression, timezone=tz, overlap_policy="allow", at=BASE
        )
    end = BASE + timedelta(seconds=SPAN_S - 1)
    expected = {
        name: [
            t
            for t in [
                triggers[name].next_fire_at,
                *fire_times(parse(expression), zone_get(tz), triggers[name].next_fire_at, 20, anchor=BASE),
            ]
            if t is not None and t <= end
        ]
        for name, expression, tz in EXPRESSIONS
    }
    assert [len(expected[n]) for n, *_ in EXPRESSIONS] == [10, 5, 10, 3, 0, 1]

    # When two schedulers tick every fake second at the same time, in two threads
    barrier = threading.Barrier(2)
    claims: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            for second in range(SPAN_S):
                barrier.wait(timeout=30)
                now = BASE + timedelta(seconds=second)
                claims[name] += [c.fire_id for c in scheduler.triggers_claim_due(now=now, runner=name)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    caplog.set_level(logging.ERROR, logger="apps.triggers.scheduler")
    threads = [threading.Thread(target=run, args=(n,)) for n in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors

    # Then every occurrence was fired once, by one of them, and none needed the unique guard
    assert not set(claims["a"]) & set(claims["b"])
    for name, *_ in EXPRESSIONS:
        fired = list(
            TriggerFire.objects.filter(trigger=triggers[name])
            .order_by("scheduled_at")
            .values_list("scheduled_at", flat=True)
        )
        assert fired == expected[name], name
    assert len(claims["a"]) + len(claims["b"]) == sum(len(v) for v in expected.values())
    assert "already fired" not in caplog.text
    if connection.vendor == "postgresql":
        # Both took part (SKIP LOCKED shares the rows; neither waited for the other's).
        assert claims["a"] and claims["b"]


@pytest.mark.django_db
def test_an_edit_applies_at_the_next_tick(world):
    function = plain_function(world)
    trigger = make_trigger(world, function, expression="0 3 * * *", timezone="UTC")
    before = trigger.next_fire_at
    updated = services.trigger_update(actor=world.bob, trigger=trigger, fields={"expression": "*/5 * * * *"})
    assert updated.next_fire_at is not None and before is not None and updated.next_fire_at < before
    assert updated.next_fire_at.minute % 5 == 0
    paused = services.trigger_pause(actor=world.bob, trigger=updated)
    assert (paused.enabled, paused.next_fire_at) == (False, None)
    assert scheduler.triggers_claim_due(now=before + timedelta(days=1)) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("policy", "second_status"), [("skip", "skipped"), ("queue", "queued"), ("allow", "running")])
def test_overlap_policy(world, policy, second_status):
    function = plain_function(world)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    trigger = make_trigger(world, function, overlap_policy=policy, at=base)

    first = scheduler.triggers_claim_due(now=base)
    second = scheduler.triggers_claim_due(now=base + timedelta(minutes=1))

    assert [c.status for c in first] == ["running"]
    assert [c.status for c in second] == [second_status]
    if policy == "queue":
        # The queued fire starts when the running one ends, once.
        assert services.fire_queued_claim(trigger_id=trigger.pk) is None  # still running
        TriggerFire.objects.filter(pk=first[0].fire_id).update(status=FireStatus.OK)
        assert services.fire_queued_claim(trigger_id=trigger.pk) == second[0].fire_id
        assert services.fire_queued_claim(trigger_id=trigger.pk) is None
        assert TriggerFire.objects.get(pk=second[0].fire_id).status == FireStatus.RUNNING


@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["skip", "run_once"])
def test_misfire_policy_after_downtime(world, policy):
    function = plain_function(world)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    trigger = make_trigger(world, function, misfire_policy=policy, at=base)

    # No scheduler ran for ten minutes and a half: occurrences base .. base+10min were missed.
    claimed = scheduler.triggers_claim_due(now=base + timedelta(minutes=10, seconds=30))

    fires = list(TriggerFire.objects.filter(trigger=trigger))
    assert len(fires) == 1 and len(claimed) == 1
    assert fires[0].scheduled_at == base + timedelta(minutes=10)  # the latest missed occurrence
    assert fires[0].status == ("missed" if policy == "skip" else "running")
    assert "11 occurrence(s)" in fires[0].error
    trigger.refresh_from_db()
    assert trigger.next_fire_at == base + timedelta(minutes=11)
    # A scheduler on time again fires normally (once the run-once fire has ended).
    TriggerFire.objects.filter(trigger=trigger).update(status=FireStatus.OK)
    assert [c.status for c in scheduler.triggers_claim_due(now=base + timedelta(minutes=11, seconds=1))] == ["running"]


@pytest.mark.django_db
def test_an_at_trigger_finishes_and_end_at_stops_a_schedule(world):
    function = plain_function(world)
    once = make_trigger(world, function, name="once", expression="at(2031-06-01T12:00)", timezone="UTC")
    assert once.next_fire_at == datetime(2031, 6, 1, 12, tzinfo=UTC)
    scheduler.triggers_claim_due(now=datetime(2031, 6, 1, 12, 0, 1, tzinfo=UTC))
    once.refresh_from_db()
    assert once.next_fire_at is None and once.last_scheduled_at == datetime(2031, 6, 1, 12, tzinfo=UTC)

    ending = make_trigger(
        world,
        function,
        name="ending",
        expression="0 * * * *",
        start_at="2031-01-01T00:00:00Z",
        end_at="2031-01-01T02:00:00Z",
    )
    assert ending.next_fire_at == datetime(2031, 1, 1, 0, tzinfo=UTC)
    for hour in range(4):
        scheduler.triggers_claim_due(now=datetime(2031, 1, 1, hour, 0, 1, tzinfo=UTC))
    assert TriggerFire.objects.filter(trigger=ending).count() == 3  # 00:00, 01:00, 02:00
    assert Trigger.objects.get(pk=ending.pk).next_fire_at is None
