"""Celery work of alerts.

- ``alerts_evaluate()``: every EVALUATION_INTERVAL_S (beat in production; a chain on the
  embedded worker, started when a worker comes up, as apps.releases.tasks does), evaluates
  the due rules (a bounded batch) and queues again notifications whose task was lost.
- ``notification_deliver(notification_id)``: one attempt; a failure that may be retried
  queues the next attempt with exponential backoff (through the outbox, so it survives the
  broker being down). Evaluation never waits on a delivery.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from apps.alerts.services import EVALUATION_INTERVAL_S
from apps.core.outbox import enqueue_after_commit
from apps.core.periodic import chain_next, start_on_worker_ready

logger = logging.getLogger(__name__)

EVALUATION_MIN_GAP_S = 10
_RAN_KEY = "stratus:alerts:evaluate:ran"
_CHAIN_KEY = "stratus:alerts:evaluate:chain"


@shared_task
def alerts_evaluate(chain: bool = False) -> int:
    """Evaluate what is due; returns how many rules were evaluated. Any run skips when another
    ran less than EVALUATION_MIN_GAP_S ago (rules are not due yet anyway)."""
    from apps.alerts import services

    if chain and not chain_next(
        alerts_evaluate, key=_CHAIN_KEY, interval_s=EVALUATION_INTERVAL_S, gap_s=EVALUATION_MIN_GAP_S
    ):
        return 0
    if not cache.add(_RAN_KEY, 1, timeout=EVALUATION_MIN_GAP_S):
        return 0
    evaluated = services.alerts_evaluate_due()
    services.notifications_requeue()
    return evaluated


@shared_task
def notification_deliver(notification_id: int) -> None:
    from apps.alerts import services

    delay = services.notification_deliver(notification_id=notification_id)
    if delay is not None:
        enqueue_after_commit(notification_deliver, notification_id, countdown=delay)


start_on_worker_ready(alerts_evaluate)
