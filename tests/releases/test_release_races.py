"""One active release per binding, and each step taken once, under real races (PostgreSQL):
two releases started at once on one binding, and duplicated or late release_advance tasks
delivered at once."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.errors import Conflict
from apps.functions.models import TrafficChange
from apps.releases import tasks
from apps.releases.models import Release
from apps.releases.services import release_start
from tests.races import on_postgresql, race
from tests.releases.conftest import age_step, binding, env, timeline
from tests.releases.test_gates_and_tasks import queued  # noqa: F401  (tasks recorded, not sent)

pytestmark = [on_postgresql, pytest.mark.django_db(transaction=True)]

MANUAL = {"steps": [10, 50, 100], "advance": "manual"}
AUTO = {"steps": [10, 50, 100], "advance": "auto", "dwell_s": 60}


def test_two_releases_started_at_once_on_one_binding_one_wins(world: Any, fn: Any) -> None:
    dev = env(world)

    def start(version: int) -> Release:
        return release_start(
            actor=world.alice, function=fn, environment=dev, version=fn.versions.get(number=version), plan=MANUAL
        )

    outcomes = race([lambda: start(2), lambda: start(3)])

    started = [result for kind, result in outcomes if kind == "ok"]
    refused = [result for kind, result in outcomes if kind == "raised"]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert isinstance(refused[0], Conflict) and refused[0].code == "release_active"
    assert list(Release.objects.filter(state__in=Release.ACTIVE_STATES).values_list("pk", flat=True)) == [started[0].pk]
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start"]


def test_duplicated_and_late_advance_tasks_delivered_at_once_take_the_step_once(
    world: Any,
    fn: Any,
    queued: Any,  # noqa: F811
) -> None:
    # Given an auto release whose first step's dwell has passed
    release = release_start(
        actor=world.alice, function=fn, environment=env(world), version=fn.versions.get(number=2), plan=AUTO
    )
    age_step(release, 61)
    queued.clear()  # the step-0 task release_start queued

    # When its step-0 task arrives six times at once (redelivered, duplicated), with late ones
    # for a step already gone
    outcomes = race([lambda: tasks.release_advance(release.pk, 0) for _ in range(6)])

    # Then the step was taken once
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    release.refresh_from_db()
    assert (release.step_index, release.canary_percent, release.state) == (1, 50, Release.State.RUNNING)
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "step"]
    assert TrafficChange.objects.filter(binding=binding(fn), reason="step").count() == 1
    assert [(name, args) for name, args, _ in queued] == [("release_advance", (release.pk, 1))]  # one chain
