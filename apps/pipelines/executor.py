"""Executing a run: claim, checkout, steps, package, deploy, with live logs.

- Claim: QUEUED → RUNNING under the project's row lock, only when no other run of the same
  branch (or tag) is running; ``worker`` and ``heartbeat_at`` are set, and a heartbeat
  thread refreshes ``heartbeat_at`` every ``HEARTBEAT_S`` while this process works on it.
- Workspace ``DATA_DIR/pipelines/runs/<run id>/``: ``git archive`` of the exact commit from
  the mirror (fetched first). The pipeline is ``stratus.yaml`` at that commit, or the
  console-held ``repository.pipeline_yaml`` when ``pipeline_source`` is console.
- A run a push (or a redelivered push) started goes on only while its commit is its branch's
  (or tag's) head after that fetch: otherwise (a replayed old body, pushes delivered out of
  order, a force-push away from it) it is canceled before any step with "superseded: branch
  main is at <head> (this push was for <commit>)", deploys nothing, its deliveries become
  ``stale`` with that reason, and the head's own run starts again if this run had superseded
  it (``_behind_branch``). Manual runs and retries run the commit they name.
- No trigger matching the branch/tag: the run **succeeds** with reason "no trigger matches
  branch x": checks (the steps) still run, packaging and deploying are skipped. A push to a
  branch the pipeline does not deploy is then still tested.
- Each step: ``bash -c <run>`` (``sh`` without bash) in its own session (process group),
  confined like a function instance (step_sandbox.py: its own cgroup, step_cgroup.py; a
  private mount namespace with only the workspace writable and private /tmp and /dev/shm;
  the run's own uid; no new privileges; the egress firewall with the target environment's
  allow-list), cwd the workspace, rlimits
  (DATA = the step's memory_mb, NOFILE 4096, NPROC generous, CORE 0), a scrubbed environment
  (PATH, HOME=<workspace>/.home, LANG, CI, STRATUS_*; the step's env; the target
  environment's variables and secrets only with ``secrets: true``, see below). stdout+stderr are read
  line by line, written as RunLogLine rows in small batches (every ``FLUSH_S``) and
  published to the channel-layer group ``run.<id>``. A timeout or a cancel SIGKILLs the
  whole process group and cgroup; so does the end of the step (no stray background
  processes, not even one that left the group with setsid).
- A failing step fails the run: later steps are skipped and nothing is deployed.
- Secrets (checked after checkout, before any step runs, ``_secrets_rule``): when a step has
  ``secrets: true`` and the trigger targets an environment,
  * the environment's ``pipeline_secrets`` setting (``allows_pipeline_secrets()``: unset =
    yes when unprotected, no when protected; set in the console only, stratus.yaml has no
    key for it) says no → the run fails before any step, its steps skipped, with a reason
    naming the rule;
  * it says yes and the environment is protected → the run parks in ``waiting_approval``
    before its first step (``run.pipeline["approval"] = "steps"``), as GitHub holds a job
    for an environment's required reviewers. ``run_approve`` (deploy right there, not the
    pusher) resumes it: ``run_resume`` exports the commit again (the workspace went with
    the worker), re-checks the setting, runs the steps with the secrets, packages (as the
    pipeline) and deploys as the approver with no second approval;
  * unprotected → the steps get them now. Previews are created unprotected.
  ``_environment_values`` loads the values once per run and is a second lock (nothing for a
  protected environment unless approved). Each secret value, and each line of a multi-line
  one, is masked as ``***`` by the LogWriter in every line before it is stored or
  published, and in the run's reason (``_finish(..., log=log)``; step notes are log lines):
  the rows, the log API and the websocket carry only masked text, for every reader. Values
  shorter than ``MIN_MASK_LEN`` (4) are not masked (they would blank ordinary text); the log
  says so by the secret's name. Masking is a safety net, not a boundary: a step that
  transforms a value (base64, reversed) prints it unmasked; the approval is the boundary.
- Package: each function's directory becomes a version (source ``git``). Deploy: into the
  trigger's environment (``preview-<branch>`` created for preview triggers) directly, or by
  ``release_start`` with the trigger's plan when a version already serves there. A protected
  environment parks the run in ``waiting_approval`` before the deploy
  (``run.pipeline["approval"] = "deploy"``), unless it was approved before its steps;
  ``run_approve`` resumes it (``run_resume``) and the deploy runs as the approver.
- Worker death: ``runs_reap_stale`` fails RUNNING runs without a heartbeat for
  ``STALE_AFTER_S`` ("worker vanished (no heartbeat since …)") and starts the lane's next.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.errors import DomainError
from apps.core.isolation import path_problem
from apps.pipelines import mirror, run_services, step_cgroup, step_sandbox
from apps.pipelines.models import Delivery, Repository, Run, RunLogLine, RunStep
from apps.pipelines.pipeline_config import FILENAME, parse_pipeline, trigger_for
from apps.pipelines.step_cgroup import StepCgroup
from apps.tenancy.models import Environment

logger = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
STALE_AFTER_S = 30.0
FLUSH_S = 0.05
STATE_POLL_S = 1.0
MAX_LINE = 8192
MAX_PACKAGE_BYTES = 50 * 1024 * 1024
MAX_PACKAGE_FILES = 10000
STEP_MAX_PIDS = 4096  # processes+threads of a whole step, where the cgroup has the pids controller
# The steps of run r run as uid PIPELINE_UID_BASE + r (when root). Far above the function
# uids (STRATUS_SANDBOX_UID_BASE 200000 + execution identity), so the two ranges never meet;
# a uid is 32 bits.
PIPELINE_UID_BASE = 1_000_000_000
SKIP_DIRS = {".git", ".home", "__pycache__", "node_modules/.cache"}
# Secret values (and lines of multi-line values) at least this long are masked in the log;
# shorter ones would mask ordinary text (GitLab asks 8 for masked variables; 4 still
# catches PINs and short tokens while leaving words like "on" or "1" alone).
MIN_MASK_LEN = 4
MASK = "***"


def workspace_path(run_id: int) -> Path:
    return mirror.pipelines_dir() / "runs" / str(run_id)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class RunStopped(Exception):
    """The run was canceled (or reaped) while this worker was on it."""


# --- log lines ------------------------------------------------------------------------------


class LogWriter:
    """Numbers a run's lines, masks secret values in them, writes them in small batches and
    publishes each batch.

    Masking happens here and only here, before a line is stored or published, so the
    database rows, the log API and the websocket all carry the masked text, for every
    reader; the run's reason is masked with the same ``mask`` (``_finish(..., log=log)``).
    Each secret value given to ``mask_secrets`` (and each line of a multi-line value,
    stripped) becomes ``***``; values shorter than ``MIN_MASK_LEN`` are left alone: they
    would mask ordinary text everywhere (a one-character secret would blank every
    occurrence of that character), and the caller says so in the log."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.seq = RunLogLine.objects.filter(run_id=run_id).aggregate(n=Max("seq"))["n"] or 0
        self.pending: list[RunLogLine] = []
        self.step_id: int | None = None
        self.last_flush = time.monotonic()
        self.masked: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def mask_secrets(self, secrets: dict[str, str]) -> list[str]:
        """Mask these values from now on; returns the names of the values too short to mask."""
        short = []
        for name, value in secrets.items():
            # A log line holds no line break: a multi-line value is masked line by line.
            lines = value.splitlines()
            parts = [value, value.strip()] if len(lines) <= 1 else [line.strip() for line in lines]
            usable = {part for part in parts if len(part) >= MIN_MASK_LEN}
            if not usable and value:
                short.append(name)
            self.masked |= usable
        if self.masked:
            # Longest first: where one value contains another, the whole of it is masked.
            alternatives = sorted(self.masked, key=lambda v: (-len(v), v))
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))
        return short

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def add(self, text: str, stream: str = "stdout") -> None:
        self.seq += 1
        self.pending.append(
            RunLogLine(
                run_id=self.run_id,
                step_id=self.step_id,
                seq=self.seq,
                ts=timezone.now(),
                stream=stream,
                text=self.mask(text)[:MAX_LINE],  # masked before it is cut: no half secret
            )
        )
        if len(self.pending) >= 500:
            self.flush()

    def system(self, text: str) -> None:
        self.add(text, "system")
        self.flush()

    def maybe_flush(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        RunLogLine.objects.bulk_create(batch)
        run_services.publish(self.run_id, {"type": "run.lines", "lines": [line_json(line) for line in batch]})


def line_json(line: RunLogLine) -> dict[str, Any]:
    return {"seq": line.seq, "ts": line.ts.isoformat(), "stream": line.stream, "text": line.text, "step": line.step_id}


# --- heartbeat ------------------------------------------------------------------------------


class Heartbeat:
    """Refreshes heartbeat_at every HEARTBEAT_S; notices a cancel made elsewhere."""

    def __init__(self, run_id: int, worker: str) -> None:
        self.run_id = run_id
        self.worker = worker
        self.stop_event = threading.Event()
        self.stopped = threading.Event()  # the run left RUNNING under us (canceled, reaped)
        self.thread = threading.Thread(target=self._loop, name=f"run-{run_id}-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self.stop_event.wait(HEARTBEAT_S):
                try:
                    updated = Run.objects.filter(pk=self.run_id, state=Run.State.RUNNING, worker=self.worker).update(
                        heartbeat_at=timezone.now()
                    )
                    if not updated:
                        self.stopped.set()
                except Exception:  # noqa: BLE001 - the next beat tries again
                    logger.exception("heartbeat of run %s failed", self.run_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)


# --- claim / finish ---------------------------------------------------------------------------


def claim(run_id: int, worker: str) -> Run | None:
    """QUEUED → RUNNING if nothing else of its lane runs; None when not ours to run."""
    with transaction.atomic():
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            return None
        run_services._lock_project(run.project_id)
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


def _finish(
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
    with transaction.atomic():
        done = Run.objects.filter(pk=run.pk, state__in=from_states).update(
            state=state, reason=reason[:500], finished_at=now, heartbeat_at=now
        )
        RunStep.objects.filter(run=run, state__in=(RunStep.State.PENDING, RunStep.State.RUNNING)).update(
            state=RunStep.State.SKIPPED
        )
    run_services.publish_state(run.pk)
    return bool(done)


def _still_running(run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, state=Run.State.RUNNING).exists()


# --- steps ----------------------------------------------------------------------------------


def step_uid(run: Run) -> int | None:
    """The uid this run's steps run as (root only: base + run id, with no supplementary
    groups), like a function identity: two runs, even of one project, cannot reach each
    other's workspace or processes, and the firewall rules of one run (its target
    environment's egress_allow) are its own. None when not root (steps then run as the
    worker's own uid)."""
    if os.geteuid() != 0:
        return None
    return int(getattr(settings, "STRATUS_PIPELINE_UID_BASE", PIPELINE_UID_BASE)) + int(run.pk)


def _harden_for_steps(workspace: Path, uid: int) -> None:
    """Let ``uid`` reach its workspace and nothing else: the data directory and the
    directories down to the workspace become 0711 (traversable, not listable); every other
    entry directly in the data directory and in pipelines/ loses its group/other permissions
    (keys, database, mirrors); the workspace is chowned to the uid, 0700."""
    data = Path(settings.DATA_DIR).resolve()
    pipelines = mirror.pipelines_dir().resolve()
    runs = workspace.parent.resolve()
    chain = [data, *[p for p in reversed(runs.parents) if data in p.parents], runs]
    for directory in chain:
        os.chmod(directory, 0o711)  # noqa: S103 - traversable by step uids, not listable
    keep_in_data = {chain[1].name if len(chain) > 1 else ""}
    sandbox = Path(settings.STRATUS_SANDBOX_DIR).resolve()
    if data in sandbox.parents:  # the engine's sandbox stays reachable by function uids
        keep_in_data.add(sandbox.relative_to(data).parts[0])
    for parent, keep in ((data, keep_in_data), (pipelines, {runs.name})):
        if parent not in chain:
            continue
        for entry in os.scandir(parent):
            if entry.name in keep or entry.is_symlink():
                continue
            mode = stat.S_IMODE(os.lstat(entry.path).st_mode)
            if mode & 0o077:
                os.chmod(entry.path, mode & ~0o077)
    _chown_tree(workspace, uid)
    os.chmod(workspace, 0o700)
    problem = path_problem(workspace.parent, readable=False)
    if problem is not None:
        raise DomainError(
            f"the run workspace {workspace} is not reachable by the step user (uid {uid}): {problem} is not "
            "traversable by other users (needs o+x)",
            code="workspace_unreachable",
        )


def _chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, uid)
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(dirpath, name), uid, uid)


def _preexec(memory_mb: int | None) -> None:
    """Limits only (plain os calls): the cgroup, the mounts and the uid are the launcher's
    (step_sandbox.py), which runs next, still as root."""
    os.umask(0o022)
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb is not None:
        # RLIMIT_DATA, not RLIMIT_AS: it counts memory a process writes to (heap, anonymous
        # mappings), not address space it only reserves, which Node/V8, Go and the JVM reserve
        # by the gigabyte. Per process; the step's cgroup caps the whole tree where the
        # memory controller is available.
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    nproc = 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY:
        nproc = min(nproc, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, hard if hard != resource.RLIM_INFINITY else nproc))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def _shell() -> list[str]:
    bash = shutil.which("bash")
    return [bash, "-eo", "pipefail", "-c"] if bash else ["/bin/sh", "-e", "-c"]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
            preexec_fn=functools.partial(_preexec, memory_mb),  # noqa: PLW1509 - rlimits only: os calls, no locks
            close_fds=True,
        )
    except BaseException:
        if cgroup is not None:
            cgroup.kill_and_remove()
        raise
    pgid = proc.pid

    def kill_all() -> None:
        _kill_group(pgid)
        if cgroup is not None:
            cgroup.kill_and_remove()

    run_services.RUNNING_PGIDS[run_id] = pgid
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
                if not _still_running(run_id):
                    reason = "canceled"
            if not reason and now >= deadline:
                reason = f"timed out after {timeout_s:g} s"
            if reason:
                kill_all()
                proc.wait()
                break
    finally:
        kill_all()  # leftovers of the step (background jobs, daemons) go with it
        run_services.RUNNING_PGIDS.pop(run_id, None)
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


def _step_start(step: RunStep, log: LogWriter) -> float:
    step.state = RunStep.State.RUNNING
    step.started_at = timezone.now()
    step.save(update_fields=["state", "started_at"])
    log.step_id = step.pk
    log.system(f"▶ {step.name}" + (f": {step.command}" if step.command else ""))
    return time.monotonic()


def _step_end(step: RunStep, started: float, state: str, exit_code: int | None, log: LogWriter, note: str = "") -> None:
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


# --- environment --------------------------------------------------------------------------


def step_env(
    *, run: Run, workspace: Path, step: dict[str, Any], environment_values: dict[str, str] | None
) -> dict[str, str]:
    """A step's scrubbed environment. ``environment_values`` are the target environment's
    variables and secrets as ``_environment_values`` loaded them (None when they may not
    reach this run's steps); a step gets them only with ``secrets: true``."""
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


def _secrets_rule(pipeline: dict[str, Any], environment: Environment | None) -> tuple[str, str] | None:
    """May this run start its steps? ``("refuse", why)`` when a step asks for the secrets of
    an environment that does not give them to pipelines (its ``pipeline_secrets`` setting,
    off by default when protected: stratus.yaml cannot turn it on); ``("approval", why)``
    when they are a protected environment's: the steps wait for an approval, as GitHub's
    environments with required reviewers do; None when the steps may run now."""
    asking = [spec["name"] for spec in pipeline["steps"] if spec.get("secrets")]
    if not asking or environment is None:
        return None
    name = environment.name
    if not environment.allows_pipeline_secrets():
        return "refuse", (
            f"step '{asking[0]}' asks for the secrets of environment '{name}' (secrets: true), but '{name}' "
            "does not let pipeline steps use its secrets (environment setting pipeline_secrets)"
        )
    if environment.protected:
        return "approval", (
            f"waiting for approval to run steps with {name}'s secrets (step '{asking[0]}' has secrets: true; "
            f"the deploy to {name} then needs no second approval)"
        )
    return None


def _environment_values(
    *, environment: Environment | None, pipeline: dict[str, Any], log: LogWriter, approved: bool
) -> dict[str, str] | None:
    """The variables and secrets that steps with ``secrets: true`` get, or None when none may:
    no step asks, no target environment, its setting forbids it, or it is protected and the
    run is not approved (``_secrets_rule`` stops such a run before its steps; this is the
    second lock). From here on, the secret values are masked in the run's log."""
    if environment is None or not any(spec.get("secrets") for spec in pipeline["steps"]):
        return None
    if not environment.allows_pipeline_secrets() or (environment.protected and not approved):
        return None
    from apps.tenancy.services import environment_secret_values

    secrets = environment_secret_values(environment=environment)
    for name in log.mask_secrets(secrets):
        log.system(f"secret {name} is shorter than {MIN_MASK_LEN} characters: it is not masked in this log")
    values = {v.name: v.value for v in environment.variables.all()}
    values.update(secrets)
    return values


# --- package / deploy ------------------------------------------------------------------------


def read_function_dir(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not Path(dirpath, d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            data = path.read_bytes()
            total += len(data)
            if total > MAX_PACKAGE_BYTES or len(files) >= MAX_PACKAGE_FILES:
                raise DomainError(
                    f"{root.name}: the function directory is larger than {MAX_PACKAGE_BYTES // 1024 // 1024} MB "
                    f"or {MAX_PACKAGE_FILES} files.",
                    code="package_too_large",
                )
            files[rel] = data
    return files


def _function_for(actor: Any, run: Run, spec: dict[str, Any]) -> Any:
    from apps.functions import services as function_services
    from apps.functions.models import Function

    config = {k: v for k, v in spec.items() if k not in ("name", "path")}
    function = Function.objects.filter(project=run.project, name=spec["name"]).first()
    if function is None:
        return function_services.function_create(actor=actor, project=run.project, name=spec["name"], **config)
    changed = {k: v for k, v in config.items() if getattr(function, k) != v}
    if changed:
        function = function_services.function_update(actor=actor, function=function, **changed)
    return function


def _target_environment(run: Run, trigger: dict[str, Any], create: bool) -> Environment | None:
    if trigger.get("preview"):
        name = run_services.preview_environment_name(run.branch)
        env = Environment.objects.filter(project=run.project, name=name).first()
        if env is None and create:
            from apps.tenancy.roles import Role
            from apps.tenancy.services import environment_create

            actor = run_services.pipeline_actor(run.project)
            actor._stratus_org_roles = {run.project.org_id: Role.ADMIN}  # creating an environment
            env = environment_create(actor=actor, project=run.project, name=name)
        return env
    return Environment.objects.filter(project=run.project, name=trigger["environment"]).first()


def _deploy(run: Run, actor: Any) -> list[str]:
    """Deploy every packaged version; returns what was done, per function."""
    from apps.functions.deploy_services import binding_url, deploy
    from apps.functions.models import Binding, Function, Version
    from apps.releases.services import release_start

    trigger = run.pipeline.get("trigger") or {}
    environment = Environment.objects.select_related("project__org").get(project=run.project, name=run.environment)
    plan = trigger.get("release")
    notes = []
    for name, version_id in (run.pipeline.get("versions") or {}).items():
        function = Function.objects.get(project=run.project, name=name)
        version = Version.objects.get(pk=version_id)
        binding = Binding.objects.filter(function=function, environment=environment).first()
        serving = binding is not None and any(
            int(t.get("version", 0)) == version.number and int(t.get("weight", 0)) == 100 for t in binding.traffic
        )
        if serving:
            notes.append(f"{name} v{version.number} already serves 100% in {environment.name}")
            continue
        has_stable = binding is not None and len(binding.traffic) == 1 and int(binding.traffic[0]["weight"]) == 100
        if plan and plan["steps"] != [100] and has_stable:
            release = release_start(actor=actor, function=function, environment=environment, version=version, plan=plan)
            notes.append(f"{name} v{version.number}: release {release.pk} {release.state} in {environment.name}")
        else:
            binding = deploy(actor=actor, function=function, environment=environment, version=version)
            notes.append(f"{name} v{version.number} deployed to {environment.name}: {binding_url(binding)}")
    return notes


# --- the run --------------------------------------------------------------------------------


def _load_pipeline(run: Run, repository: Repository) -> dict[str, Any]:
    if repository.pipeline_source == Repository.PipelineSource.CONSOLE:
        return parse_pipeline(repository.pipeline_yaml)
    data = mirror.read_file_at(repository, run.commit_sha, FILENAME)
    if data is None:
        raise DomainError(f"No {FILENAME} at the repository root in commit {run.commit_sha[:12]}.", code="no_pipeline")
    return parse_pipeline(data)


def run_execute(run_id: int) -> str | None:
    """Execute a queued run in this thread; returns its final state (None: not ours)."""
    worker = worker_name()
    run = claim(run_id, worker)
    if run is None:
        return None
    heartbeat = Heartbeat(run_id, worker)
    heartbeat.start()
    lane = run_services._lane(run)
    workspace = workspace_path(run_id)
    log: LogWriter | None = None
    state: str | None = None
    try:
        log = LogWriter(run_id)
        state = _execute(run, workspace, heartbeat, log)
    except Exception as exc:  # noqa: BLE001 - the run records why it failed
        logger.exception("run %s failed", run_id)
        _finish(run, Run.State.FAILED, f"internal error: {type(exc).__name__}: {exc}", log=log)
        state = Run.State.FAILED
    finally:
        heartbeat.stop()
        shutil.rmtree(workspace, ignore_errors=True)
        close_old_connections()
    run_services.branch_advance(**lane)
    return state


def _export(run: Run, repository: Repository, workspace: Path, log: LogWriter, *, head_check: bool = False) -> str:
    """The exact commit from the mirror (fetched first) into a fresh workspace. With
    ``head_check`` (a run a push started): when the commit is not its branch's head after the
    fetch, nothing is exported and the answer says why ("" otherwise)."""
    mirror.mirror_fetch(repository)
    if not mirror.has_commit(repository, run.commit_sha):
        raise DomainError(f"commit {run.commit_sha} is not in {repository.url}", code="no_commit")
    if head_check:
        behind = run_services.head_problem(
            repository=repository, branch=run.branch, tag=run.tag, commit_sha=run.commit_sha
        )
        if behind:
            return behind
    shutil.rmtree(workspace, ignore_errors=True)
    count = mirror.export_commit(repository, run.commit_sha, workspace)
    log.add(f"exported {count} files of {run.commit_sha[:12]}", "system")
    return ""


def _behind_branch(
    run: Run, repository: Repository, checkout: RunStep, started: float, log: LogWriter, why: str
) -> str:
    """A pushed run whose commit is not its branch's head after the fetch (a replayed body, or
    pushes delivered out of order): it ends without deploying, and its deliveries say why.
    Where it had superseded the head's own run, that one starts again."""
    from apps.pipelines import delivery_services

    log.system(f"{why}: nothing deployed")
    _step_end(checkout, started, RunStep.State.SKIPPED, None, log, "not the branch head")
    _finish(run, Run.State.CANCELED, why, log=log)
    delivery_services.deliveries_stale(run_id=run.pk, reason=f"{why}: nothing deployed (run {run.number})")
    head = mirror.resolve_commit(repository, f"refs/heads/{run.branch}" if run.branch else f"refs/tags/{run.tag}")
    if head is not None:
        run_services.run_again_for_head(run=run, head_sha=head["sha"])
    return Run.State.CANCELED


def _execute(run: Run, workspace: Path, heartbeat: Heartbeat, log: LogWriter) -> str:
    repository = Repository.objects.get(pk=run.repository_id)
    run = Run.objects.select_related("project__org").get(pk=run.pk)
    log.system(f"run {run.number}: {run.branch or run.tag} @ {run.commit_sha[:12]} on {run.worker}")

    # checkout
    checkout = RunStep.objects.create(run=run, index=0, name="checkout", kind="checkout", command=run.commit_sha)
    started = _step_start(checkout, log)
    try:
        # A run a push started deploys its commit only while that is the branch's head: a
        # replayed old push body must not deploy an old commit over a newer one.
        behind = _export(
            run, repository, workspace, log, head_check=run.trigger in (Run.Trigger.PUSH, Run.Trigger.REDELIVER)
        )
        if behind:
            return _behind_branch(run, repository, checkout, started, log, behind)
        info = mirror.resolve_commit(repository, run.commit_sha)
        if info is not None:  # the commit's own message and author, not the webhook's say-so
            run.commit_message, run.commit_author = info["message"][:10000], info["author"][:200]
            run.save(update_fields=["commit_message", "commit_author"])
        pipeline = _load_pipeline(run, repository)
    except DomainError as exc:
        log.add(exc.message, "stderr")
        _step_end(checkout, started, RunStep.State.FAILED, None, log)
        _finish(run, Run.State.FAILED, exc.message, log=log)
        return Run.State.FAILED
    trigger = trigger_for(pipeline, branch=run.branch, tag=run.tag)
    environment: Environment | None = None
    if trigger is not None:
        run.preview = bool(trigger.get("preview"))
        run.environment = run_services.preview_environment_name(run.branch) if run.preview else trigger["environment"]
        environment = _target_environment(run, trigger, create=False)
    run.pipeline = {**pipeline, "trigger": trigger}
    run.save(update_fields=["pipeline", "preview", "environment"])
    _step_end(checkout, started, RunStep.State.SUCCEEDED, 0, log)

    steps = [
        RunStep.objects.create(run=run, index=i + 1, name=s["name"], kind="run", command=s["run"])
        for i, s in enumerate(pipeline["steps"])
    ]
    n = len(steps) + 1
    package = deploy = None
    if trigger is not None and pipeline["functions"]:
        package = RunStep.objects.create(run=run, index=n, name="package", kind="package")
        deploy = RunStep.objects.create(
            run=run, index=n + 1, name=f"deploy to {run.environment}", kind="deploy", command=run.environment
        )

    # Before any step runs: a protected environment's secrets reach approved steps only.
    rule = _secrets_rule(pipeline, environment)
    if rule is not None and rule[0] == "refuse":
        log.add(rule[1], "stderr")
        _finish(run, Run.State.FAILED, rule[1], log=log)
        return Run.State.FAILED
    if rule is not None:
        return _park_for_approval(run, log, reason=rule[1], before_steps=True)
    return _steps_and_deploy(
        run,
        workspace,
        heartbeat,
        log,
        repository=repository,
        pipeline=pipeline,
        trigger=trigger,
        environment=environment,
        steps=steps,
        package=package,
        deploy=deploy,
        approver=None,
    )


def _run_steps(
    run: Run,
    workspace: Path,
    heartbeat: Heartbeat,
    log: LogWriter,
    *,
    steps: list[RunStep],
    pipeline: dict[str, Any],
    values: dict[str, str] | None,
    uid: int | None,
) -> str | None:
    """Each step in turn; the run's final state if one ended it (failed, canceled), else None."""
    for step, spec in zip(steps, pipeline["steps"], strict=True):
        if not _still_running(run.pk):
            _finish(run, Run.State.CANCELED, "canceled", from_states=())
            return Run.State.CANCELED
        started = _step_start(step, log)
        code, reason = run_command(
            run_id=run.pk,
            command=spec["run"],
            cwd=workspace,
            env=step_env(run=run, workspace=workspace, step=spec, environment_values=values),
            timeout_s=spec["timeout_s"],
            log=log,
            heartbeat=heartbeat,
            uid=uid,
            memory_mb=spec["memory_mb"],
            cgroup_name=f"run-{run.pk}-{step.index}",
        )
        if reason:
            _step_end(step, started, RunStep.State.FAILED, code, log, reason)
            if reason == "canceled":
                _finish(run, Run.State.CANCELED, "canceled", from_states=())  # already canceled: skip steps
                return Run.State.CANCELED
            _finish(run, Run.State.FAILED, f"step {spec['name']} {reason}", log=log)
            return Run.State.FAILED
        _step_end(step, started, RunStep.State.SUCCEEDED, code, log)
    return None


def _steps_and_deploy(
    run: Run,
    workspace: Path,
    heartbeat: Heartbeat,
    log: LogWriter,
    *,
    repository: Repository,
    pipeline: dict[str, Any],
    trigger: dict[str, Any] | None,
    environment: Environment | None,
    steps: list[RunStep],
    package: RunStep | None,
    deploy: RunStep | None,
    approver: Any,
) -> str:
    """Everything after checkout: steps, package, deploy. Run by ``_execute``, or by
    ``run_resume`` for a run whose steps waited for approval (``approver`` set): the steps
    then get the protected environment's secrets and the deploy, as the approver, needs
    no second approval."""
    values = _environment_values(environment=environment, pipeline=pipeline, log=log, approved=approver is not None)
    uid = step_uid(run)
    if uid is not None and steps:
        (workspace / ".home").mkdir(exist_ok=True)
        try:
            _harden_for_steps(workspace, uid)
        except DomainError as exc:
            log.add(exc.message, "stderr")
            _finish(run, Run.State.FAILED, exc.message, log=log)
            return Run.State.FAILED
    # The run's uid reaches what its target environment allows, for as long as its steps run.
    step_sandbox.allow_egress(uid, tuple(environment.egress_allow or ()) if environment is not None else ())
    try:
        ended = _run_steps(run, workspace, heartbeat, log, steps=steps, pipeline=pipeline, values=values, uid=uid)
    finally:
        step_sandbox.forget_egress(uid)
    if ended is not None:
        return ended

    if trigger is None:
        what = f"branch {run.branch}" if run.branch else f"tag {run.tag}"
        reason = f"no trigger matches {what}"
        log.system(reason + ": nothing deployed")
        _finish(run, Run.State.SUCCEEDED, reason, log=log)
        return Run.State.SUCCEEDED
    if package is None or deploy is None:
        _finish(run, Run.State.SUCCEEDED, "no functions to deploy", log=log)
        return Run.State.SUCCEEDED

    if uid is not None and steps:
        # Take the workspace back: whatever the steps left running (a daemon that escaped
        # the process group) can no longer swap files or symlinks under the packager.
        _chown_tree(workspace, 0)

    # package
    if not _still_running(run.pk):  # canceled (or reaped) between steps
        _finish(run, Run.State.CANCELED, "canceled", from_states=())
        return Run.State.CANCELED
    # Packaging is the pipeline's own work even after an approval: an approver may hold only
    # the deploy right on the environment, not the right to create functions and versions.
    actor = run_services.pipeline_actor(run.project)
    started = _step_start(package, log)
    versions: dict[str, int] = {}
    try:
        for spec in pipeline["functions"]:
            root = workspace / spec["path"]
            real, ws = root.resolve(), workspace.resolve()
            if real != ws and ws not in real.parents:
                raise DomainError(f"functions {spec['name']}: '{spec['path']}' leads outside the workspace.")
            if not root.is_dir():
                raise DomainError(f"functions {spec['name']}: directory '{spec['path']}' is not in the commit.")
            files = read_function_dir(root)
            function = _function_for(actor, run, spec)
            from apps.functions.version_services import version_create

            version, created = version_create(
                actor=actor,
                function=function,
                files=files,
                source="git",
                message=(run.commit_message.splitlines() or [""])[0][:500],
                source_info={
                    "repo": repository.url,
                    "branch": run.branch,
                    "tag": run.tag,
                    "commit": run.commit_sha,
                    "author": run.commit_author,
                    "message": run.commit_message[:2000],
                    "run": run.number,
                },
                reuse_identical=True,
            )
            versions[spec["name"]] = version.pk
            log.add(
                f"{spec['name']}: {'new ' if created else 'unchanged, '}version {version.number} ({len(files)} files)",
                "system",
            )
    except DomainError as exc:
        log.add(exc.message, "stderr")
        _step_end(package, started, RunStep.State.FAILED, None, log)
        _finish(run, Run.State.FAILED, f"package: {exc.message}", log=log)
        return Run.State.FAILED
    run.pipeline = {**run.pipeline, "versions": versions}
    run.save(update_fields=["pipeline"])
    _step_end(package, started, RunStep.State.SUCCEEDED, 0, log)

    # deploy
    if not _still_running(run.pk):
        _finish(run, Run.State.CANCELED, "canceled", from_states=())
        return Run.State.CANCELED
    try:
        environment = _target_environment(run, trigger, create=True)
    except DomainError as exc:
        _finish(run, Run.State.FAILED, f"deploy: {exc.message}", log=log)
        return Run.State.FAILED
    if environment is None:
        _finish(run, Run.State.FAILED, f"deploy: environment '{run.environment}' does not exist in {run.project}")
        return Run.State.FAILED
    if approver is not None:  # approved before its steps: one approval covers the deploy
        return deploy_step(run, deploy, approver, log)
    if environment.protected:
        return _park_for_approval(run, log)
    return deploy_step(run, deploy, actor, log)


def deploy_step(run: Run, step: RunStep, actor: Any, log: LogWriter) -> str:
    started = _step_start(step, log)
    try:
        with transaction.atomic():
            # Under the run's row lock: a cancel either lands before (nothing is deployed)
            # or waits until the deploy committed.
            if not Run.objects.select_for_update().filter(pk=run.pk, state=Run.State.RUNNING).exists():
                _step_end(step, started, RunStep.State.SKIPPED, None, log, "canceled")
                _finish(run, Run.State.CANCELED, "canceled", from_states=())
                return Run.State.CANCELED
            notes = _deploy(run, actor)
    except DomainError as exc:
        log.add(exc.message, "stderr")
        _step_end(step, started, RunStep.State.FAILED, None, log)
        _finish(run, Run.State.FAILED, f"deploy: {exc.message}", log=log)
        return Run.State.FAILED
    for note in notes:
        log.add(note, "system")
    _step_end(step, started, RunStep.State.SUCCEEDED, 0, log)
    _finish(run, Run.State.SUCCEEDED, "; ".join(notes)[:500], log=log)
    log.system(f"run {run.number} succeeded")
    return Run.State.SUCCEEDED


def _park_for_approval(run: Run, log: LogWriter, *, reason: str = "", before_steps: bool = False) -> str:
    """Protected target: wait for approval, before the deploy or (``before_steps``: a step
    asks for the environment's secrets) before the first step; ``run.pipeline["approval"]``
    says which ("deploy" or "steps") for ``run_resume``. A newer queued run of the lane
    supersedes this one at once (it would deploy an older commit)."""
    reason = reason or f"waiting for approval to deploy to {run.environment}"
    with transaction.atomic():
        run_services._lock_project(run.project_id)
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


def run_resume(run_id: int) -> str | None:
    """After approval (``run_approve`` set the run RUNNING), as the approver: the deploy of a
    run that waited before its deploy; or, for a run that waited before its steps for a
    protected environment's secrets, the workspace exported again (a worker's workspace goes
    when it lets go of a run), the steps with those secrets, packaging and the deploy."""
    worker = worker_name()
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
    heartbeat = Heartbeat(run_id, worker)
    heartbeat.start()
    lane = run_services._lane(run)
    workspace = workspace_path(run_id)
    log: LogWriter | None = None
    state: str | None
    try:
        log = LogWriter(run_id)
        log.system(f"approved by {run.approved_by.get_username()}")
        if (run.pipeline or {}).get("approval") == "steps":
            state = _resume_steps(run, workspace, heartbeat, log)
        else:
            step = run.steps.filter(kind="deploy").first()
            if step is None:
                _finish(run, Run.State.FAILED, "no deploy step to resume", log=log)
                state = Run.State.FAILED
            else:
                state = deploy_step(run, step, run.approved_by, log)
    except Exception as exc:  # noqa: BLE001
        logger.exception("resuming run %s failed", run_id)
        _finish(run, Run.State.FAILED, f"internal error: {type(exc).__name__}: {exc}", log=log)
        state = Run.State.FAILED
    finally:
        heartbeat.stop()
        shutil.rmtree(workspace, ignore_errors=True)
        close_old_connections()
    run_services.branch_advance(**lane)
    return state


def _resume_steps(run: Run, workspace: Path, heartbeat: Heartbeat, log: LogWriter) -> str:
    """An approved run's steps, package and deploy, following the pipeline stored at its
    checkout: what the approver saw, even if the console-held pipeline changed since."""
    repository = Repository.objects.get(pk=run.repository_id)
    pipeline = {key: run.pipeline.get(key) or [] for key in ("functions", "steps", "triggers")}
    trigger = run.pipeline.get("trigger")
    environment = _target_environment(run, trigger, create=False) if trigger else None
    rule = _secrets_rule(pipeline, environment)
    if rule is not None and rule[0] == "refuse":  # the setting was turned off while it waited
        log.add(rule[1], "stderr")
        _finish(run, Run.State.FAILED, rule[1], log=log)
        return Run.State.FAILED
    try:
        _export(run, repository, workspace, log)
    except DomainError as exc:
        log.add(exc.message, "stderr")
        _finish(run, Run.State.FAILED, f"checkout: {exc.message}", log=log)
        return Run.State.FAILED
    return _steps_and_deploy(
        run,
        workspace,
        heartbeat,
        log,
        repository=repository,
        pipeline=pipeline,
        trigger=trigger,
        environment=environment,
        steps=list(run.steps.filter(kind="run").order_by("index")),
        package=run.steps.filter(kind="package").first(),
        deploy=run.steps.filter(kind="deploy").first(),
        approver=run.approved_by,
    )


# --- worker death ---------------------------------------------------------------------------


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
            run_services.branch_advance(**run_services._lane(run))
    # Pushes waiting for a fetch (delivery_check_head) whose task was lost: queue it again
    # (it changes only a delivery still pending, so a second copy does nothing).
    from apps.pipelines.tasks import delivery_check

    waiting = Delivery.objects.filter(outcome=Delivery.Outcome.PENDING, processed_at__lt=cutoff)
    for delivery_id in waiting.values_list("pk", flat=True):
        delivery_check.delay(delivery_id)
    # Runs queued whose task was lost (e.g. the embedded broker restarted): start them.
    for lane in (
        Run.objects.filter(state=Run.State.QUEUED, created_at__lt=cutoff)
        .values("project_id", "branch", "tag")
        .distinct()
    ):
        run_services.branch_advance(**lane)
    return reaped
