"""Periodic tasks (apps/core/periodic.py): on beat's schedule, run when a worker comes up, and
chained on the embedded worker, one chain at a time."""

from __future__ import annotations

from typing import Any

import pytest
from celery.signals import worker_ready
from django.core.cache import cache

from apps.functions.tasks import bindings_refresh, refresh_interval_s
from apps.pipelines.tasks import REAP_INTERVAL_S, runs_reap
from apps.releases.tasks import SWEEP_INTERVAL_S, releases_sweep
from console.celery import app

PERIODIC = [
    ("releases-sweep", releases_sweep, lambda: SWEEP_INTERVAL_S),
    ("pipelines-reap", runs_reap, lambda: REAP_INTERVAL_S),
    ("bindings-refresh", bindings_refresh, refresh_interval_s),
]


@pytest.mark.parametrize("embedded", [True, False])
def test_a_worker_coming_up_runs_each_periodic_task_chained_only_on_the_embedded_worker(
    embedded: bool, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STRATUS_EMBEDDED_WORKER = embedded
    queued: list[tuple[str, dict[str, Any]]] = []
    for _, task, _ in PERIODIC:
        monkeypatch.setattr(task, "apply_async", lambda kwargs=None, task=task, **_: queued.append((task.name, kwargs)))
    worker_ready.send(sender=None)
    assert sorted(queued) == sorted((task.name, {"chain": embedded}) for _, task, _ in PERIODIC)


def test_each_periodic_task_is_on_beats_schedule() -> None:
    for name, task, interval in PERIODIC:
        assert app.conf.beat_schedule[name] == {"task": task.name, "schedule": float(interval())}


@pytest.mark.django_db
def test_a_second_chain_ends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.core.periodic import chain_next

    queued: list[float] = []
    monkeypatch.setattr(runs_reap, "apply_async", lambda kwargs=None, countdown=0: queued.append(countdown))
    cache.delete("test:periodic:chain")
    assert chain_next(runs_reap, key="test:periodic:chain", interval_s=15, gap_s=7) is True
    assert chain_next(runs_reap, key="test:periodic:chain", interval_s=15, gap_s=7) is False
    assert queued == [15]
