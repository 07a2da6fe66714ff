"""Worker death: ``runs_reap_stale`` fails RUNNING runs without a heartbeat for
``STALE_AFTER_S`` ("worker vanished (no heartbeat since …)") and starts the lane's next; it
also queues again the work whose task was lost (a delivery waiting for its fetch, a queued
run)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.core.outbox import enqueue_after_commit
from apps.pipelines import run_services, step_cgroup
from apps.pipelines.models import Delivery, Run, RunStep

STALE_AFTER_S = 30.0


def runs_reap_stale(now: datetime | None = None) -> int:
    """Fail RUNNING runs whose worker stopped beating; start their lanes' next runs."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=STALE_AFTER_S)
    reaped = 0
    for run in Run.objects.filter(state=Run.State.RUNNING, heartbeat_at__lt=cutoff):
        since = run.heartbeat_at.isoformat(timespec="seconds") if run.heartbeat_at else "?"
        with transaction.atomic():
            done = Run.objects.filter(pk=run.pk, state=Run.State.RUNNING, heartbeat_at__lt=cutoff).update(
                state=Run.State.FAILED,
                reason=f"worker vanished (no heartbeat since {since})",
                finished_at=now,
            )
            if done:
                run.steps.filter(state=RunStep.State.RUNNING).update(state=RunStep.State.FAILED, finished_at=now)
                run.steps.filter(state=RunStep.State.PENDING).update(state=RunStep.State.SKIPPED)
        if done:
            reaped += 1
            # What its steps left on this host (the worker died, so nothing else ends them;
            # a worker on another host leaves its cgroups to its own host's reaper).
            step_cgroup.kill_run(run.pk)
            run_services.publish_state(run.pk)
            run_services.branch_advance(**run_services.lane_of(run))
    # Pushes waiting for a fetch (delivery_check_head) whose task was lost: queue it again
    # (it changes only a delivery still pending, so a second copy does nothing).
    from apps.pipelines.tasks import delivery_check  # tasks imports the runner

    waiting = Delivery.objects.filter(outcome=Delivery.Outcome.PENDING, processed_at__lt=cutoff)
    for delivery_id in waiting.values_list("pk", flat=True):
        enqueue_after_commit(delivery_check, delivery_id)
    # Runs queued whose task was lost (e.g. the embedded broker restarted): start them.
    for lane in (
        Run.objects.filter(state=Run.State.QUEUED, created_at__lt=cutoff)
        .values("project_id", "branch", "tag")
        .distinct()
    ):
        run_services.branch_advance(**lane)
    return reaped
