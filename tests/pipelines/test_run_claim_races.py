"""Claiming a run under a real race (PostgreSQL): however many workers reach for a queued run
at once, one runs it; however many queued runs of one lane are claimed at once, one runs."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from apps.pipelines.models import Run
from apps.pipelines.runner.claim import claim
from tests.pipelines.conftest import make_repository
from tests.races import on_postgresql, race

pytestmark = [on_postgresql, pytest.mark.django_db(transaction=True)]


def queued_run(repository: Any, number: int, branch: str = "main") -> Run:
    return Run.objects.create(
        project=repository.project,
        repository=repository,
        number=number,
        branch=branch,
        commit_sha=f"{number:040x}",
        trigger=Run.Trigger.PUSH,
    )


def test_one_worker_wins_a_run_that_many_claim_at_once(world: Any) -> None:
    run = queued_run(make_repository(world.web, "/nonexistent/origin.git"), 1)

    outcomes = race([partial(claim, run.pk, f"worker-{n}") for n in range(8)])

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    winners = [result.worker for _, result in outcomes if result is not None]
    assert len(winners) == 1
    run.refresh_from_db()
    assert (run.state, run.worker) == (Run.State.RUNNING, winners[0])


def test_one_run_of_a_lane_runs_when_its_queued_runs_are_claimed_at_once(world: Any) -> None:
    repository = make_repository(world.web, "/nonexistent/origin.git")
    runs = [queued_run(repository, n) for n in range(1, 7)]  # one lane: project web, branch main
    other = queued_run(repository, 7, branch="feature")  # another lane: runs beside them

    outcomes = race([partial(claim, r.pk, f"worker-{r.pk}") for r in [*runs, other]])

    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    running = Run.objects.filter(state=Run.State.RUNNING)
    assert sorted(running.values_list("branch", flat=True)) == ["feature", "main"]
    assert Run.objects.filter(branch="main", state=Run.State.QUEUED).count() == 5
