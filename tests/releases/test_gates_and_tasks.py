"""Gates over Invocation rows, auto-advance by the release_advance task, and the sweep.
Time passing is simulated by moving the step's start into the past (age_step)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.releases import tasks
from apps.releases.gates import gate_evaluate
from apps.releases.models import Release
from apps.releases.services import release_start, release_tick
from tests.releases.conftest import age_step, binding, env, invocations, split, timeline, without_warm


class Queued(list[tuple[str, Any, Any]]):
    """The calls, and (``due``) when each one asked the broker to run it: the send's time plus
    its countdown, which a loaded machine cannot shift the way it shifts the countdown itself."""

    due: list[datetime | None]


@pytest.fixture
def queued(monkeypatch: Any) -> Queued:
    """Tasks queued through apply_async (not run): (task name, args/kwargs, countdown)."""
    calls = Queued()
    calls.due = []

    def fake(task_name: str) -> Any:
        def apply_async(args: Any = None, kwargs: Any = None, countdown: Any = None, **_: Any) -> None:
            calls.append((task_name, args if args is not None else kwargs, countdown))
            calls.due.append(None if countdown is None else timezone.now() + timedelta(seconds=countdown))

        return apply_async

    monkeypatch.setattr(tasks.release_advance, "apply_async", fake("release_advance"))
    monkeypatch.setattr(tasks.releases_sweep, "apply_async", fake("releases_sweep"))
    return calls


def begin(world: Any, fn: Any, plan: dict[str, Any], version: int = 2) -> Release:
    return release_start(
        actor=world.alice, function=fn, environment=env(world), version=fn.versions.get(number=version), plan=plan
    )


AUTO = {"steps": [10, 50, 100], "advance": "auto", "dwell_s": 60}


def test_auto_step_queues_its_advance_after_commit(world, fn, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        release = begin(world, fn, AUTO)
    done = timezone.now()

    # The countdown counts from the enqueue, in the transaction: it is sent after commit, less by
    # however long the commit's other work took (seconds on a loaded CI machine), so the task is
    # due at the dwell's end whatever the countdown reads: never before the step's next check,
    # and no later than a dwell after the transaction (0.1 s: the countdown is rounded).
    [index] = [i for i, call in enumerate(queued) if call[0] == "release_advance"]
    name, args, countdown = queued[index]
    assert (name, args) == ("release_advance", (release.pk, 0)) and 0 < countdown <= 60
    assert release.next_step_at is not None
    due = queued.due[index]
    assert due is not None
    assert release.next_step_at - timedelta(seconds=0.1) <= due <= done + timedelta(seconds=60.1)
    assert abs((release.next_step_at - release.step_started_at).total_seconds() - 60) < 0.01


def test_auto_release_advances_after_the_dwell_and_duplicates_are_no_ops(world, fn, queued):
    release = begin(world, fn, AUTO)

    # Before the dwell has passed the task does nothing but look again later (the rest of it)
    tasks.release_advance(release.pk, 0)
    release.refresh_from_db()
    assert release.step_index == 0
    assert queued == []  # the step's own task (queued at start) is still pending: no second chain

    # When the dwell has passed, the task takes the next step
    age_step(release, 61)
    tasks.release_advance(release.pk, 0)
    release.refresh_from_db()
    assert (release.step_index, release.canary_percent, release.state) == (1, 50, "running")

    # And the same task again (duplicated, or late after a restart) changes nothing
    age_step(release, 61)
    tasks.release_advance(release.pk, 0)
    release.refresh_from_db()
    assert release.step_index == 1
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "step"]

    # The current step's task completes the release; late tasks after that do nothing
    tasks.release_advance(release.pk, 1)
    tasks.release_advance(release.pk, 1)
    tasks.release_advance(release.pk, 0)
    release.refresh_from_db()
    assert (release.state, release.canary_percent) == ("completed", 100)
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "step", "complete"]
    assert binding(fn).traffic == [{"version": 2, "weight": 100}]


def test_a_task_arriving_early_requeues_for_the_rest_of_the_dwell(
    world, fn, queued, django_capture_on_commit_callbacks
):
    release = begin(world, fn, AUTO)
    age_step(release, 70)  # the scheduled check time has come …
    started = timezone.now() - timedelta(seconds=20)
    Release.objects.filter(pk=release.pk).update(step_started_at=started)

    # … but the dwell is not over (resumed, say): one follow-up for the remaining ~40 s,
    # through the outbox (sent once the task's work commits; here the test's transaction):
    # due at the dwell's end, give or take the task's own run (and the countdown's rounding)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.release_advance(release.pk, 0)
    took = timezone.now() - before

    [(name, args, countdown)] = queued
    assert (name, args) == ("release_advance", (release.pk, 0))
    assert 0 < countdown <= 40
    due, end = queued.due[0], started + timedelta(seconds=60)
    assert due is not None
    assert end - timedelta(seconds=0.1) <= due <= end + took + timedelta(seconds=0.1)
    # A duplicate now finds that follow-up scheduled and queues nothing more
    with django_capture_on_commit_callbacks(execute=True):
        tasks.release_advance(release.pk, 0)
    assert len(queued) == 1


def test_paused_release_does_not_advance(world, fn, client_for, queued):
    release = begin(world, fn, AUTO)
    client_for(world.alice).post(f"/api/v1/releases/{release.pk}/pause")
    age_step(release, 120)

    tasks.release_advance(release.pk, 0)

    release.refresh_from_db()
    assert (release.state, release.step_index) == ("paused", 0)


GATED = {**AUTO, "gate": {"min_requests": 5, "max_error_rate": 0.1}}


def test_gate_without_enough_canary_requests_waits(world, fn, queued, django_capture_on_commit_callbacks):
    release = begin(world, fn, GATED)
    invocations(release, 2, ok=4, throttled=10)  # throttled requests are not served requests
    age_step(release, 61)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.release_advance(release.pk, 0)

    release.refresh_from_db()
    assert release.step_index == 0
    assert release.gate_result["passed"] is None
    assert release.gate_result["figures"]["canary"]["requests"] == 4
    assert queued and queued[-1][:2] == ("release_advance", (release.pk, 0))


def test_passing_gate_lets_the_auto_release_advance(world, fn, queued):
    release = begin(world, fn, GATED)
    invocations(release, 2, ok=19, error=1)  # 5% errors: within 10%
    invocations(release, 1, ok=100)
    age_step(release, 61)

    tasks.release_advance(release.pk, 0)

    release.refresh_from_db()
    assert (release.step_index, release.state) == (1, "running")
    assert without_warm(binding(fn).traffic) == split(1, 2, 50)
    # The new step's window starts empty: the old rows do not count for it
    result = gate_evaluate(release, timezone.now())
    assert result.passed is None and result.figures["canary"]["requests"] == 0


def test_failing_gate_aborts_back_to_stable_and_records_the_figure(world, fn, queued, client_for):
    release = begin(world, fn, GATED)
    invocations(release, 2, ok=7, error=2, timeout=1)  # 30% errors
    invocations(release, 1, ok=50, error=1)

    # Even before the dwell is over, a failing gate aborts at once
    tasks.release_advance(release.pk, 0)

    release.refresh_from_db()
    assert release.state == "aborted" and release.finished_at is not None
    assert release.failure == {
        "by": "gate",
        "step": 0,
        "percent": 10,
        "figure": "error_rate",
        "canary": 0.3,
        "limit": 0.1,
        "stable": 0.019608,
    }
    assert binding(fn).traffic == [{"version": 1, "weight": 100}]
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "gate_failure"]
    body = client_for(world.alice).get(f"/api/v1/releases/{release.pk}/").json()
    assert body["gate"]["passed"] is False and body["gate"]["figures"]["canary"]["errors"] == 3


def test_error_rate_limit_follows_the_stable_rate_plus_delta(world, fn):
    release = begin(world, fn, {"steps": [10, 100], "gate": {"max_error_rate": 0.05, "max_error_rate_delta": 0.1}})
    invocations(release, 1, ok=80, error=20)  # stable already at 20%
    invocations(release, 2, ok=7, error=3)  # canary 30%: ≤ 20% + 10%

    result = gate_evaluate(release, timezone.now())

    assert result.passed is True
    assert result.limits["error_rate"] == pytest.approx(0.3)
    invocations(release, 2, error=1)  # 4 of 11 = 36%
    result = gate_evaluate(release, timezone.now())
    assert result.passed is False and result.failed["figure"] == "error_rate"


def test_p95_latency_gate(world, fn):
    release = begin(world, fn, {"steps": [10, 100], "gate": {"max_p95_factor": 1.5}})
    invocations(release, 1, ok=40, duration_ms=100.0)
    invocations(release, 2, ok=20, duration_ms=140.0)
    assert gate_evaluate(release, timezone.now()).passed is True

    invocations(release, 2, ok=20, duration_ms=400.0)
    result = gate_evaluate(release, timezone.now())

    assert result.passed is False
    assert result.failed == {"figure": "p95_ms", "canary": 400.0, "limit": 150.0, "stable": 100.0}


def test_crashed_and_timed_out_canary_requests_count_as_errors(world, fn):
    release = begin(world, fn, {"steps": [10, 100], "gate": {"max_error_rate": 0.1}})
    invocations(release, 1, ok=20)
    invocations(release, 2, ok=8, crashed=2)  # 20% of the canary's requests crashed

    result = gate_evaluate(release, timezone.now())

    assert result.passed is False and result.failed["figure"] == "error_rate"
    assert (result.figures["canary"]["errors"], result.figures["canary"]["error_rate"]) == (2, 0.2)
    invocations(release, 2, timeout=1, throttled=5)  # throttled never reached the function
    assert gate_evaluate(release, timezone.now()).figures["canary"]["errors"] == 3


def test_a_canary_p95_exactly_at_the_limit_passes(world, fn):
    release = begin(world, fn, {"steps": [10, 100], "gate": {"max_p95_factor": 1.5}})
    invocations(release, 1, ok=20, duration_ms=100.0)
    invocations(release, 2, ok=20, duration_ms=150.0)  # p95 150 = 100 × 1.5: within (≤)

    result = gate_evaluate(release, timezone.now())

    assert result.limits["p95_ms"] == 150.0
    assert result.passed is True, result.reason


def test_window_s_limits_the_gate_to_recent_requests(world, fn):
    release = begin(world, fn, {"steps": [10, 100], "gate": {"max_error_rate": 0.1, "window_s": 30}})
    age_step(release, 300)
    invocations(release, 2, error=10, at=timezone.now() - timezone.timedelta(seconds=120))
    invocations(release, 2, ok=10)

    result = gate_evaluate(release, timezone.now())

    assert result.passed is True and result.figures["canary"] == {
        "requests": 10,
        "errors": 0,
        "error_rate": 0.0,
        "p95_ms": 10.0,
    }


def test_the_sweep_aborts_a_manual_release_whose_gate_fails(world, fn, queued):
    release = begin(world, fn, {"steps": [10, 50, 100], "gate": {"max_error_rate": 0.1}})
    invocations(release, 2, error=5)
    from django.core.cache import cache

    cache.clear()  # no recent sweep (a worker's chain may have run one)

    assert tasks.releases_sweep() == 1

    release.refresh_from_db()
    assert release.state == "aborted" and release.failure["by"] == "gate"
    assert binding(fn).traffic == [{"version": 1, "weight": 100}]


def test_the_sweep_takes_an_auto_step_whose_task_was_lost(world, fn, queued):
    release = begin(world, fn, AUTO)
    age_step(release, 61)

    tasks.sweep_now()

    release.refresh_from_db()
    assert release.step_index == 1
    assert [name for name, *_ in queued] == []  # the sweep queues nothing of its own


def test_sweep_chains_do_not_multiply(world, queued):
    from django.core.cache import cache

    cache.clear()
    tasks.releases_sweep(chain=True)
    assert queued == [("releases_sweep", {"chain": True}, tasks.SWEEP_INTERVAL_S)]

    # A second chain (a duplicated kick) within the gap ends there; so does a plain sweep's evaluation
    assert tasks.releases_sweep(chain=True) == 0
    assert tasks.releases_sweep() == 0
    assert len(queued) == 1
    cache.clear()


def test_tick_on_a_missing_or_finished_release_is_a_no_op(world, fn):
    assert release_tick(release_id=987654, step_index=0) is None
    release = begin(world, fn, "direct")
    assert release.state == "completed"
    assert release_tick(release_id=release.pk) is None
