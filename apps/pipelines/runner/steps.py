"""Phase 2, the steps: each ``bash -c <run>`` (``sh`` without bash), confined.

Each step runs in its own session (process group), confined like a function instance
(step_sandbox.py: its own cgroup, step_cgroup.py; a private mount namespace with only the
workspace writable and private /tmp and /dev/shm; the run's own uid; no new privileges; the
egress firewall with the target environment's allow-list), cwd the workspace, rlimits
(step_sandbox.preexec: DATA = the step's memory_mb, NOFILE 4096, NPROC generous, CORE 0), a scrubbed environment
(PATH, HOME=<workspace>/.home, LANG, CI, STRATUS_*; the step's env; the target environment's
variables and secrets only with ``secrets: true``, environment.py). stdout+stderr are read
line by line into the run's log (logs.py). A timeout or a cancel SIGKILLs the whole process
group and cgroup; so does the end of the step (no stray background processes, not even one
that left the group with setsid). A failing step fails the run: later steps are skipped and
nothing is deployed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core.errors import DomainError
from apps.core.isolation.uid_ranges import claim_installation_uids
from apps.pipelines import run_services, step_sandbox
from apps.pipelines.models import Run, RunStep
from apps.pipelines.runner.claim import finish, still_running, stop_if_canceled
from apps.pipelines.runner.environment import environment_values
from apps.pipelines.runner.heartbeat import Heartbeat
from apps.pipelines.runner.job import Job, Plan
from apps.pipelines.runner.logs import FLUSH_S, LogWriter
from apps.pipelines.step_cgroup import StepCgroup
from apps.pipelines.step_processes import running_steps

STATE_POLL_S = 1.0
STEP_MAX_PIDS = 4096  # processes+threads of a whole step, where the cgroup has the pids controller
# The steps of run r run as uid STRATUS_PIPELINE_UID_BASE + r (when root): a range of the
# installation's own, apart from the function uids (STRATUS_SANDBOX_UID_BASE + execution identity)
# and claimed on this host before use (apps/core/isolation/uid_ranges.py).


def run_steps(job: Job, plan: Plan) -> str | None:
    """Every step of the pipeline in turn, with what its target environment gives them; the
    run's final state if a step (or a cancel) ended it, else None. Steps that wait(ed) for an
    approval get the protected environment's secrets only with ``plan.approver`` set."""
    run, log, workspace = job.run, job.log, job.workspace
    values = environment_values(
        environment=plan.environment, pipeline=plan.pipeline, log=log, approved=plan.approver is not None
    )
    uid = step_uid(run)
    if uid is not None and plan.steps:
        (workspace / ".home").mkdir(exist_ok=True)
        try:
            harden_for_steps(workspace, uid)
        except DomainError as exc:
            log.add(exc.message, "stderr")
            finish(run, Run.State.FAILED, exc.message, log=log)
            return Run.State.FAILED
    # The run's uid reaches what its target environment allows, for as long as its steps run.
    step_sandbox.allow_egress(uid, tuple(plan.environment.egress_allow or ()) if plan.environment is not None else ())
    try:
        return _each_step(job, plan, values=values, uid=uid)
    finally:
        step_sandbox.forget_egress(uid)


def _each_step(job: Job, plan: Plan, *, values: dict[str, str] | None, uid: int | None) -> str | None:
    run, log = job.run, job.log
    for step, spec in zip(plan.steps, plan.pipeline["steps"], strict=True):
        if stopped := stop_if_canceled(run):
            return stopped
        started = step_start(step, log)
        code, reason = run_command(
            run_id=run.pk,
            command=spec["run"],
            cwd=job.workspace,
            env=step_env(run=run, workspace=job.workspace, step=spec, environment_values=values),
            timeout_s=spec["timeout_s"],
            log=log,
            heartbeat=job.heartbeat,
            uid=uid,
            memory_mb=spec["memory_mb"],
            cgroup_name=f"run-{run.pk}-{step.index}",
        )
        if reason:
            step_end(step, started, RunStep.State.FAILED, code, log, reason)
            if reason == "canceled":
                finish(run, Run.State.CANCELED, "canceled", from_states=())  # already canceled: skip steps
                return Run.State.CANCELED
            finish(run, Run.State.FAILED, f"step {spec['name']} {reason}", log=log)
            return Run.State.FAILED
        step_end(step, started, RunStep.State.SUCCEEDED, code, log)
    return None


# --- a step's row and log ----------------------------------------------------------------


def step_start(step: RunStep, log: LogWriter) -> float:
    step.state = RunStep.State.RUNNING
    step.started_at = timezone.now()
    step.save(update_fields=["state", "started_at"])
    log.step_id = step.pk
    log.system(f"▶ {step.name}" + (f": {step.command}" if step.command else ""))
    return time.monotonic()


def step_end(step: RunStep, started: float, state: str, exit_code: int | None, log: LogWriter, note: str = "") -> None:
    step.state = state
    step.exit_code = exit_code
    step.finished_at = timezone.now()
    step.duration_ms = round((time.monotonic() - started) * 1000, 1)
    step.save(update_fields=["state", "exit_code", "finished_at", "duration_ms"])
    log.system(
        f"{'✔' if state == RunStep.State.SUCCEEDED else '✘'} {step.name} {state} in {step.duration_ms / 1000:.2f} s"
        + (f" ({note})" if note else "")
    )
    log.step_id = None


# --- who a step runs as, and what it reaches --------------------------------------------------


def step_uid(run: Run) -> int | None:
    """The uid this run's steps run as (root only: base + run id, with no supplementary
    groups), like a function identity: two runs, even of one project, cannot reach each
    other's workspace or processes, and the firewall rules of one run (its target
    environment's egress_allow) are its own. None when not root (steps then run as the
    worker's own uid)."""
    if os.geteuid() != 0:
        return None
    if int(run.pk) >= int(settings.STRATUS_UID_RANGE_SIZE):
        raise RuntimeError(f"run {run.pk} is past the pipeline uid range (STRATUS_UID_RANGE_SIZE)")
    claim_installation_uids()
    return int(settings.STRATUS_PIPELINE_UID_BASE) + int(run.pk)


def harden_for_steps(workspace: Path, uid: int) -> None:
    """Let ``uid`` reach its workspace and nothing else of the data directory; the engine's
    sandbox stays reachable by function uids (step_sandbox.harden_workspace)."""
    step_sandbox.harden_workspace(
        workspace, uid, data_dir=Path(settings.DATA_DIR), keep=(Path(settings.STRATUS_SANDBOX_DIR),)
    )


def step_env(
    *, run: Run, workspace: Path, step: dict[str, Any], environment_values: dict[str, str] | None
) -> dict[str, str]:
    """A step's scrubbed environment. ``environment_values`` are the target environment's
    variables and secrets as ``environment.environment_values`` loaded them (None when they
    may not reach this run's steps); a step gets them only with ``secrets: true``."""
    home = workspace / ".home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "CI": "true",
        "STRATUS_RUN": str(run.number),
        "STRATUS_COMMIT": run.commit_sha,
        "STRATUS_BRANCH": run.branch,
        "STRATUS_TAG": run.tag,
        "STRATUS_ENVIRONMENT": run.environment,
        "PYTHONUNBUFFERED": "1",
    }
    if step.get("secrets") and environment_values is not None:
        env.update(environment_values)
    env.update(step.get("env") or {})
    return env


# --- one command, confined --------------------------------------------------------------------


def _shell() -> list[str]:
    bash = shutil.which("bash")
    return [bash, "-eo", "pipefail", "-c"] if bash else ["/bin/sh", "-e", "-c"]


def run_command(
    *,
    run_id: int,
    command: str,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    log: LogWriter,
    heartbeat: Heartbeat | None,
    uid: int | None = None,
    memory_mb: int | None = None,
    cgroup_name: str | None = None,
) -> tuple[int, str]:
    """Run one step, confined (step_sandbox.py); returns (exit code, failure reason or "").
    With ``cgroup_name`` the step gets its own cgroup (where this host allows it), so nothing
    it starts survives it, even a process that left its process group."""
    confinement = step_sandbox.confinement(uid=uid, workspace=cwd, cgroup_join=[], memory_mb=memory_mb or 2048)
    cgroup = None
    if cgroup_name:
        group_mb = None
        if memory_mb is not None:  # the step's processes and its private /tmp and /dev/shm
            group_mb = memory_mb + (confinement["tmp_mb"] or 0) + (confinement["shm_mb"] or 0)
        cgroup = StepCgroup.create(cgroup_name, memory_mb=group_mb, max_pids=STEP_MAX_PIDS)
    if cgroup is not None:
        confinement["cgroup_join"] = cgroup.group.join_files
    try:
        proc = subprocess.Popen(  # noqa: S603 - the pipeline's own command, by design
            step_sandbox.launcher(confinement, [*_shell(), command]),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=functools.partial(step_sandbox.preexec, memory_mb),  # noqa: PLW1509 - rlimits only: os calls, no locks
            close_fds=True,
        )
    except BaseException:
        if cgroup is not None:
            cgroup.kill_and_remove()
        raise
    pgid = proc.pid

    def kill_all() -> None:
        step_sandbox.kill_group(pgid)
        if cgroup is not None:
            cgroup.kill_and_remove()

    running_steps.add(run_id, pgid)
    lines: queue.Queue[bytes | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            lines.put(raw)
        lines.put(None)

    thread = threading.Thread(target=reader, name=f"run-{run_id}-reader", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    next_state_poll = time.monotonic() + STATE_POLL_S
    reason = ""
    eof = False
    leftovers_killed = False
    try:
        while True:
            try:
                raw = lines.get(timeout=FLUSH_S)
            except queue.Empty:
                raw = b""
            if raw is None:
                eof = True
            elif raw:
                log.add(raw.decode("utf-8", "replace").rstrip("\r\n"))
                while True:  # drain what is ready without waiting
                    try:
                        more = lines.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        eof = True
                        break
                    log.add(more.decode("utf-8", "replace").rstrip("\r\n"))
            log.maybe_flush()
            if eof and proc.poll() is not None:
                break
            if not eof and not leftovers_killed and proc.poll() is not None:
                # The shell is done but something it started in the background still holds
                # the output open: the step is over, so its process group goes.
                leftovers_killed = True
                kill_all()
            if eof:
                # Output closed but the shell lives on: wait for it (bounded by the timeout).
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=FLUSH_S)
            now = time.monotonic()
            if run_services.cancel_requested(run_id) or (heartbeat is not None and heartbeat.stopped.is_set()):
                reason = "canceled"
            elif now >= next_state_poll:
                next_state_poll = now + STATE_POLL_S
                if not still_running(run_id, heartbeat.worker if heartbeat is not None else ""):
                    reason = "canceled"
            if not reason and now >= deadline:
                reason = f"timed out after {timeout_s:g} s"
            if reason:
                kill_all()
                proc.wait()
                break
    finally:
        kill_all()  # leftovers of the step (background jobs, daemons) go with it
        running_steps.discard(run_id)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(2)
        while True:
            try:
                rest = lines.get_nowait()
            except queue.Empty:
                break
            if rest:
                log.add(rest.decode("utf-8", "replace").rstrip("\r\n"))
        if proc.stdout is not None:
            proc.stdout.close()
        log.flush()
    code = proc.returncode if proc.returncode is not None else -9
    if not reason and code != 0:
        reason = f"exited with code {code}"
    return code, reason
