"""Celery work that drives releases from the state in the database.

- ``release_advance(release_id, step_index)``: queued after each auto step (countdown =
  dwell) and re-queued while a step is not yet due. It acts only if the release is still
  running at that step, so duplicated, late or redelivered tasks are no-ops.
- ``releases_sweep()``: evaluates every running release (gates of manual releases, auto
  steps whose task was lost, e.g. by a restart of the embedded worker, whose in-memory
  broker forgets queued tasks). Production runs ``celery -A console beat`` beside the
  workers, which sends it every ``SWEEP_INTERVAL_S`` (the beat_schedule entry set in
  apps.releases.apps). The embedded default has no beat: the ``worker_ready`` kick starts a
  chain in which each sweep queues the next; a cache timestamp keeps chains from multiplying.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from apps.core.outbox import enqueue_after_commit
from apps.core.periodic import chain_next, start_on_worker_ready
from apps.releases.models import Release
from apps.releases.services import release_tick

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 10
SWEEP_MIN_GAP_S = 5
_SWEEP_RAN_KEY = "stratus:releases:sweep:ran"
_SWEEP_CHAIN_KEY = "stratus:releases:sweep:chain"


@shared_task
def release_advance(release_id: int, step_index: int) -> None:
    """Evaluate the gate and take the next auto step when due (see services.release_tick)."""
    wait = release_tick(release_id=release_id, step_index=step_index)
    if wait is not None:
        enqueue_after_commit(release_advance, release_id, step_index, countdown=wait)


@shared_task
def releases_sweep(chain: bool = False) -> int:
    """Evaluate what is due for every running release; returns how many it looked at.

    ``chain`` (the embedded default's kick): queue the next sweep in SWEEP_INTERVAL_S. A
    chained sweep that finds another chain ran less than SWEEP_MIN_GAP_S ago stops, and any
    sweep skips its evaluation when another one ran that recently."""
    if chain and not chain_next(
        releases_sweep, key=_SWEEP_CHAIN_KEY, interval_s=SWEEP_INTERVAL_S, gap_s=SWEEP_MIN_GAP_S
    ):
        return 0  # another chain is alive: this one ends here
    if not cache.add(_SWEEP_RAN_KEY, 1, timeout=SWEEP_MIN_GAP_S):
        return 0
    return sweep_now()


def sweep_now() -> int:
    ids = list(Release.objects.filter(state=Release.State.RUNNING).values_list("pk", flat=True))
    for release_id in ids:
        try:
            release_tick(release_id=release_id)
        except Exception:  # noqa: BLE001 - one broken release must not stop the others
            logger.exception("release sweep failed for release %s", release_id)
    return len(ids)


# A worker came up: sweep at once (catches tasks lost while it was down). Without beat (the
# embedded worker) the sweep keeps itself going.
start_on_worker_ready(releases_sweep)
