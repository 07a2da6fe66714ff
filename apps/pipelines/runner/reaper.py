"""Worker death: ``runs_reap_stale`` finds RUNNING runs without a heartbeat for
``STALE_AFTER_S``. The first time a run's worker vanishes it is queued again from its checkout
(its steps and workspace start over; its log keeps what was written, with a line saying why),
unless a newer run of its lane is queued (that one supersedes it). The second time, or when
superseded, it fails: "worker vanished (no heartbeat since …)", naming the retry. Either way
what its steps left on this host is killed and the lane moves on. The reaper also queues
again the work whose task was lost (a delivery waiting for its fetch, a queued run)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.core.outbox import enqueue_after_commit
from apps.pipelines import run_services, step_cgroup
from apps.pipelines.models import Delivery, Run, RunLogLine, RunStep

STALE_AFTER_S = 30.0
WORKER_LOSS_RETRIES = 1  # a run interrupted by its worker's death is queued again this many times


def runs_reap_stale(now: datetime | None = None) -> int:
    """Queue again (once) or fail RUNNING runs whose worker stopped beating; start their
    lanes' next runs. Returns how many runs were reaped."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=STALE_AFTER_S)
    reaped = 0
    for run in Run.objects.filter(state=Run.State.RUNNING, heartbeat_at__lt=cutoff):
        since = run.heartbeat_at.isoformat(timespec="seconds") if run.heartbeat_at else "?"
        vanished = f"worker vanished (no heartbeat since {since})"
        with transaction.atomic():
            run_services.lock_project(run.project_id)
            newer = Run.objects.filter(
                project_id=run.project_id, branch=run.branch, tag=run.tag, state=Run.State.QUEUED, number__gt=run.number
            ).exists()
            stale = Run.objects.filter(pk=run.pk, state=Run.State.RUNNING, heartbeat_at__lt=cutoff)
            retry = run.worker_losses < WORKER_LOSS_RETRIES and not newer
            if retry:
                attempt = run.worker_losses + 1
                # The same run again from its checkout: a claim starts it as from the queue.
                # Its approval (if any) does not carry over to steps that run again.
                done = stale.update(
                    state=Run.State.QUEUED,
                    worker="",
                    heartbeat_at=None,
                    approved_by=None,
                    worker_losses=F("worker_losses") + 1,
                    reason=f"{vanished}; queued again (retry {attempt} of {WORKER_LOSS_RETRIES})",
                )
                if done:
                    RunLogLine.objects.filter(run=run).update(step=None)  # the log stays
                    run.steps.all().delete()
            else:
                why = (
                    f"; not retried: run {run.number} was already retried after a worker loss"
                    if run.worker_losses
                    else "; not retried: a newer run of its branch is queued"
                )
                done = stale.update(state=Run.State.FAILED, reason=(vanished + why)[:500], finished_at=now)
                if done:
                    run.steps.filter(state=RunStep.State.RUNNING).update(state=RunStep.State.FAILED, finished_at=now)
                    run.steps.filter(state=RunStep.State.PENDING).update(state=RunStep.State.SKIPPED)
        if done:
            reaped += 1
            # What its steps left on this host (the worker died, so nothing else ends them;
            # a worker on another host leaves its cgroups to its own host's reaper).
            step_cgroup.kill_run(run.pk)
            if retry:
                _log_system(run.pk, f"{vanished}: the run starts again from its checkout")
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


def _log_system(run_id: int, text: str) -> None:
    from apps.pipelines.runner.logs import LogWriter

    log = LogWriter(run_id)
    log.system(text)
    log.flush()
