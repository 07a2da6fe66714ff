"""A run from claim to its final state: the four phases, checkout → steps → package →
deploy, each of which may end it (failed, canceled, parked for an approval, or succeeded
with nothing to deploy), and the attendance around them (heartbeat, log, workspace, the
lane's next run)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from django.db import close_old_connections

from apps.pipelines import run_services
from apps.pipelines.models import Run
from apps.pipelines.runner.checkout import checkout, checkout_again
from apps.pipelines.runner.claim import claim, claim_approved, finish
from apps.pipelines.runner.deploy import deploy, deploy_step
from apps.pipelines.runner.heartbeat import Heartbeat, worker_name
from apps.pipelines.runner.job import Job, Plan, workspace_path
from apps.pipelines.runner.logs import LogWriter
from apps.pipelines.runner.packaging import package
from apps.pipelines.runner.steps import run_steps

logger = logging.getLogger(__name__)


def run_execute(run_id: int) -> str | None:
    """Execute a queued run in this thread; returns its final state (None: not ours)."""
    worker = worker_name()
    run = claim(run_id, worker)
    if run is None:
        return None
    return _attend(run, worker, _four_phases)


def _four_phases(job: Job) -> str:
    """checkout → steps → package → deploy: the first phase that ends the run gives its
    final state."""
    return _after_checkout(job, checkout(job))


def _after_checkout(job: Job, plan: Plan | str) -> str:
    if isinstance(plan, str):  # the checkout ended the run (failed, behind its branch, parked)
        return plan
    return run_steps(job, plan) or package(job, plan) or deploy(job, plan)


def run_resume(run_id: int) -> str | None:
    """After approval (``run_approve`` set the run RUNNING), as the approver: the deploy of a
    run that waited before its deploy; or, for a run that waited before its steps for a
    protected environment's secrets, the commit checked out again, the steps with those
    secrets, packaging and the deploy."""
    worker = worker_name()
    run = claim_approved(run_id, worker)
    if run is None:
        return None
    return _attend(run, worker, _resume, what="resuming run")


def _resume(job: Job) -> str:
    run, approver = job.run, job.run.approved_by
    assert approver is not None  # claim_approved took only an approved run
    job.log.system(f"approved by {approver.get_username()}")
    if (run.pipeline or {}).get("approval") == "steps":
        return _after_checkout(job, checkout_again(job))
    step = run.steps.filter(kind="deploy").first()
    if step is None:
        finish(run, Run.State.FAILED, "no deploy step to resume", log=job.log)
        return Run.State.FAILED
    return deploy_step(run, step, approver, job.log)


def _attend(run: Run, worker: str, work: Callable[[Job], str], *, what: str = "run") -> str:
    """``work`` on a run this worker holds: a heartbeat meanwhile, an unexpected error as the
    run's failure, the workspace removed and the lane's next run started afterwards."""
    heartbeat = Heartbeat(run.pk, worker)
    heartbeat.start()
    lane = run_services.lane_of(run)
    workspace = workspace_path(run.pk)
    log: LogWriter | None = None
    try:
        log = LogWriter(run.pk)
        state = work(Job(run, workspace, heartbeat, log))
    except Exception as exc:  # noqa: BLE001 - the run records why it failed
        logger.exception("%s %s failed", what, run.pk)
        finish(run, Run.State.FAILED, f"internal error: {type(exc).__name__}: {exc}", log=log)
        state = Run.State.FAILED
    finally:
        heartbeat.stop()
        shutil.rmtree(workspace, ignore_errors=True)
        close_old_connections()
    run_services.branch_advance(**lane)
    return state
