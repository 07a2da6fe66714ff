"""Celery work for pipeline runs (ids only; every task re-reads the rows and is a no-op when
the run is no longer in the state it was queued for).

- ``run_execute(run_id)``: claim a queued run and execute it (apps.pipelines.executor).
- ``run_resume(run_id)``: deploy an approved run.
- ``runs_reap``: every ``REAP_INTERVAL_S`` (beat, set in apps.pipelines.apps) and when a
  worker comes up: fail runs whose worker vanished, start queued runs whose task was lost.
  Without beat (the embedded worker) each reap queues the next, as the releases sweep does.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache

from apps.pipelines import executor

logger = logging.getLogger(__name__)

REAP_INTERVAL_S = 15
_REAP_CHAIN_KEY = "stratus:pipelines:reap:chain"


@shared_task
def run_execute(run_id: int) -> str | None:
    return executor.run_execute(run_id)


@shared_task
def run_resume(run_id: int) -> str | None:
    return executor.run_resume(run_id)


@shared_task
def runs_reap(chain: bool = False) -> int:
    if chain:
        if not cache.add(_REAP_CHAIN_KEY, 1, timeout=REAP_INTERVAL_S // 2):
            return 0  # another chain is alive
        runs_reap.apply_async(kwargs={"chain": True}, countdown=REAP_INTERVAL_S)
    return executor.runs_reap_stale()


@worker_ready.connect
def _kick_reap(sender: Any = None, **kwargs: Any) -> None:
    runs_reap.apply_async(kwargs={"chain": bool(settings.STRATUS_EMBEDDED_WORKER)})
