"""A run's state as this worker moves it: the claim/finish state machine.

- ``claim``: QUEUED → RUNNING under the project's row lock, only when no other run of its
  lane (project, branch or tag) is running; ``worker`` and ``heartbeat_at`` are set.
- ``claim_approved``: an approved run (``run_approve`` set it RUNNING with no worker) becomes
  this worker's.
- ``park_for_approval``: RUNNING → WAITING_APPROVAL, or CANCELED when a newer queued run of
  the lane supersedes it.
- ``finish``: RUNNING → SUCCEEDED / FAILED / CANCELED, steps not yet done skipped;
  ``stop_if_canceled`` ends a run that left RUNNING under us.
Every change is published to the run's group after it is written.

Writes are fenced by ``worker``: a worker that froze past the reaper's patience (SIGSTOP, a
stalled VM) finds on waking that its run was queued again and claimed by another worker.
Every check and write here matches ``worker`` too, so the sleeper stops at its next check and
neither ends, skips the steps of, nor deploys the run the other worker now owns.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.pipelines import run_services
from apps.pipelines.models import Run, RunStep
from apps.pipelines.runner.logs import LogWriter

logger = logging.getLogger(__name__)


def claim(run_id: int, worker: str) -> Run | None:
    """QUEUED → RUNNING if nothing else of its lane runs; None when not ours to run."""
    with transaction.atomic():
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            return None
        run_services.lock_project(run.project_id)
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.state != Run.State.QUEUED:
            return None
        busy = Run.objects.filter(
            project_id=run.project_id, branch=run.branch, tag=run.tag, state=Run.State.RUNNING
        ).exclude(pk=run.pk)
        if busy.exists():
            return None  # starts when that one ends (branch_advance)
        now = timezone.now()
        run.state = Run.State.RUNNING
        run.worker = worker
        run.heartbeat_at = now
        run.started_at = run.started_at or now
        run.save(update_fields=["state", "worker", "heartbeat_at", "started_at"])
    run_services.publish_state(run.pk)
    return run


def claim_approved(run_id: int, worker: str) -> Run | None:
    """An approved run nobody works on yet becomes ours; None when not ours to resume."""
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("project__org", "approved_by")
            .filter(pk=run_id)
            .first()
        )
        if run is None or run.state != Run.State.RUNNING or run.worker or run.approved_by is None:
            return None
        run.worker = worker
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["worker", "heartbeat_at"])
    return run


def finish(
    run: Run,
    state: str,
    reason: str = "",
    *,
    from_states: tuple[str, ...] = (Run.State.RUNNING,),
    log: LogWriter | None = None,
) -> bool:
    """End the run (steps not yet done are skipped). With ``log``: its pending lines are
    stored first (a reader gets them before the final state) and the reason is masked."""
    if log is not None:
        try:
            log.flush()
        except Exception:  # noqa: BLE001 - the lines are best effort; the final state is not
            logger.exception("storing the last lines of run %s failed", run.pk)
        reason = log.mask(reason)
    now = timezone.now()
    owned = ours(run)
    with transaction.atomic():
        done = owned.filter(state__in=from_states).update(
            state=state, reason=reason[:500], finished_at=now, heartbeat_at=now
        )
        # Not the steps of a run another worker claimed meanwhile (it recreated them).
        if done or owned.exists():
            RunStep.objects.filter(run=run, state__in=(RunStep.State.PENDING, RunStep.State.RUNNING)).update(
                state=RunStep.State.SKIPPED
            )
    run_services.publish_state(run.pk)
    return bool(done)


def ours(run: Run) -> QuerySet[Run]:
    """The run while it is still this worker's (the fence: see the module docstring). A run
    object without a worker (never claimed here) is matched by id alone."""
    owned = Run.objects.filter(pk=run.pk)
    return owned.filter(worker=run.worker) if run.worker else owned


def still_running(run_id: int, worker: str = "") -> bool:
    """RUNNING and, given ``worker``, still that worker's."""
    running = Run.objects.filter(pk=run_id, state=Run.State.RUNNING)
    return (running.filter(worker=worker) if worker else running).exists()


def stop_if_canceled(run: Run) -> str | None:
    """CANCELED when the run left RUNNING under us (canceled, or reaped): its steps not yet
    done are skipped and the state it already has is kept. None while it still runs and is
    ours; a run another worker claimed since is left to that worker."""
    if still_running(run.pk, run.worker):
        return None
    finish(run, Run.State.CANCELED, "canceled", from_states=())
    return Run.State.CANCELED


def park_for_approval(run: Run, log: LogWriter, *, reason: str = "", before_steps: bool = False) -> str:
    """Protected target: wait for approval, before the deploy or (``before_steps``: a step
    asks for the environment's secrets) before the first step; ``run.pipeline["approval"]``
    says which ("deploy" or "steps") for ``run_resume``. A newer queued run of the lane
    supersedes this one at once (it would deploy an older commit)."""
    reason = reason or f"waiting for approval to deploy to {run.environment}"
    with transaction.atomic():
        run_services.lock_project(run.project_id)
        newer = (
            Run.objects.filter(
                project_id=run.project_id, branch=run.branch, tag=run.tag, state=Run.State.QUEUED, number__gt=run.number
            )
            .order_by("-number")
            .first()
        )
        if newer is not None:
            Run.objects.filter(pk=run.pk, state=Run.State.RUNNING).update(
                state=Run.State.CANCELED,
                reason=f"superseded by run {newer.number}",
                superseded_by=newer,
                finished_at=timezone.now(),
            )
            run.steps.filter(state=RunStep.State.PENDING).update(state=RunStep.State.SKIPPED)
            state: str = Run.State.CANCELED
        else:
            run.pipeline = {**run.pipeline, "approval": "steps" if before_steps else "deploy"}
            Run.objects.filter(pk=run.pk, state=Run.State.RUNNING).update(
                state=Run.State.WAITING_APPROVAL,
                reason=log.mask(reason),
                worker="",
                pipeline=run.pipeline,
            )
            state = Run.State.WAITING_APPROVAL
    if newer is not None:
        log.system(f"superseded by run {newer.number}")
    elif before_steps:
        log.system(f"environment {run.environment} is protected: waiting for approval before steps use its secrets")
    else:
        log.system(f"environment {run.environment} is protected: waiting for approval")
    run_services.publish_state(run.pk)
    return state
