"""Celery work for pipeline runs (ids only; every task re-reads the rows and is a no-op when
the run is no longer in the state it was queued for).

- ``run_execute(run_id)``: claim a queued run and execute it (apps.pipelines.runner).
- ``run_resume(run_id)``: resume an approved run: its deploy, or (when it waited before its
  steps for a protected environment's secrets) its steps with those secrets, then the deploy.
- ``delivery_check(delivery_id)``: a pushed commit that looked older than what its branch last
  ran: fetch, then start its run if it is the branch head, else record the delivery as stale
  (apps.pipelines.delivery_services.delivery_check_head).
- ``runs_reap``: every ``REAP_INTERVAL_S`` (beat, set in apps.pipelines.apps) and when a
  worker comes up: fail runs whose worker vanished, start queued runs whose task was lost.
  Without beat (the embedded worker) each reap queues the next, as the releases sweep does.
"""

from __future__ import annotations

import logging

from celery import shared_task

from apps.core.periodic import chain_next, start_on_worker_ready
from apps.pipelines import runner

logger = logging.getLogger(__name__)

REAP_INTERVAL_S = 15
_REAP_CHAIN_KEY = "stratus:pipelines:reap:chain"


@shared_task
def run_execute(run_id: int) -> str | None:
    return runner.run_execute(run_id)


@shared_task
def run_resume(run_id: int) -> str | None:
    return runner.run_resume(run_id)


@shared_task
def delivery_check(delivery_id: int) -> str | None:
    from apps.pipelines import delivery_services

    delivery = delivery_services.delivery_check_head(delivery_id)
    return delivery.outcome if delivery is not None else None


@shared_task
def runs_reap(chain: bool = False) -> int:
    if chain and not chain_next(runs_reap, key=_REAP_CHAIN_KEY, interval_s=REAP_INTERVAL_S, gap_s=REAP_INTERVAL_S // 2):
        return 0  # another chain is alive
    return runner.runs_reap_stale()


start_on_worker_ready(runs_reap)
