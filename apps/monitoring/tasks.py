"""Celery work for the metric rollups.

- ``rollups_compact_task``: every STRATUS_METRICS_COMPACT_INTERVAL_S (beat, set in
  apps.monitoring.apps) and when a worker comes up: minute rows past 7 days, hour rows past
  90 days go, in bounded batches (rollups.rollups_compact); what is left goes at the next run.
  Without beat (the embedded worker) each run queues the next.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from apps.core.periodic import chain_next, start_on_worker_ready
from apps.monitoring import rollups

logger = logging.getLogger(__name__)

_COMPACT_CHAIN_KEY = "stratus:monitoring:rollups-compact:chain"


@shared_task
def rollups_compact_task(chain: bool = False) -> int:
    interval = settings.STRATUS_METRICS_COMPACT_INTERVAL_S
    if chain and not chain_next(rollups_compact_task, key=_COMPACT_CHAIN_KEY, interval_s=interval, gap_s=interval // 2):
        return 0  # another chain is alive
    result = rollups.rollups_compact()
    deleted = result.minutes_deleted + result.hours_deleted + result.totals_deleted
    if deleted:
        logger.info("Metric rollups compacted: %s", result)
    return deleted


start_on_worker_ready(rollups_compact_task)
