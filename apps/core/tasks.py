"""Celery work of the ground floor: the outbox's periodic drain (apps/core/outbox.py).

``outbox_drain`` runs every ``DRAIN_INTERVAL_S`` on beat's schedule (production), as a chain
on the embedded worker, and whenever a worker comes up: it sends what a process that died
before the broker came back still owed it. (A living process that saw a send fail drains on
its own, in its reconciler thread, without waiting for this.)
"""

from __future__ import annotations

from celery import shared_task

from apps.core import outbox
from apps.core.periodic import chain_next, start_on_worker_ready

DRAIN_INTERVAL_S = 10
_DRAIN_CHAIN_KEY = "stratus:core:outbox:chain"


@shared_task
def outbox_drain(chain: bool = False) -> int:
    if chain and not chain_next(outbox_drain, key=_DRAIN_CHAIN_KEY, interval_s=DRAIN_INTERVAL_S, gap_s=5):
        return 0  # another chain is alive
    return outbox.drain()


start_on_worker_ready(outbox_drain)
