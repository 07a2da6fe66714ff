"""Runs: dedupe, supersede, never dropping the newest push, cancel (process group killed),
retry, approvals, worker death, and the runs API."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.core.errors import Forbidden
from apps.functions.models import Binding, Function
from apps.pipelines import run_services, runner, step_cgroup
from apps.pipelines.models import Run, RunStep
from apps.pipelines.runner.claim import claim
from apps.pipelines.step_processes import running_steps
from tests.conftest import process_ids
from tests.pipelines.conftest import HELLO, GitRepo, make_repository
from tests.prerequisites import needs, needs_root, needs_sshd


def push(repository: Any, sha: str, branch: str = "main", pusher: str = "pat") -> Run:
    return run_services.run_for_push(
        repository=repository,
        ref=f"refs/heads/{branch}",
        commit_sha=sha,
        commit_message="msg",
        author="Ann",
        pusher=pusher,
    )


# --- queueing (no execution) ------------------------------------------------------------------


@pytest.fixture
def repo(world: Any) -> Any:
    return make_repository(world.web, "/nonexistent/origin.git")


def test_same_commit_same_branch_reuses_the_run(repo: Any) -> None:
    a = push(repo, "a" * 40)
    assert (a.number, a.state, a.branch) == (1, Run.State.QUEUED, "main")
    assert push(repo, "a" * 40).pk == a.pk
    Run.objects.filter(pk=a.pk).update(state=Run.State.SUCCEEDED)
    assert push(repo, "a" * 40).pk == a.pk  # succeeded: not run again
    other_branch = push(repo, "a" * 40, branch="develop")
    assert other_branch.pk != a.pk and other_branch.number == 2
    Run.objects.filter(pk=a.pk).update(state=Run.State.FAILED)
    assert push(repo, "a" * 40).number == 3  # a failed run is tried again


def test_newer_push_supersedes_queued_runs_of_its_branch(repo: Any) -> None:
    a = push(repo, "a" * 40)
    other = push(repo, "c" * 40, branch="develop")
    b = push(repo, "b" * 40)
    a.refresh_from_db()
    other.refresh_from_db()
    assert a.state == Run.State.CANCELED and a.reason == f"superseded by run {b.number}" and a.superseded_by_id == b.pk
    assert other.state == Run.State.QUEUED  # another branch is another lane
    assert b.state == Run.State.QUEUED


def test_newest_commit_waits_for_the_running_one_and_is_never_dropped(repo: Any) -> None:
    a = push(repo, "a" * 40)
    assert claim(a.pk, "w1") is not None  # a is running
    b = push(repo, "b" * 40)
    assert claim(b.pk, "w2") is None  # the lane is busy: b stays queued
    c = push(repo, "c" * 40)
    b.refresh_from_db()
    assert b.state == Run.State.CANCELED and b.reason == f"superseded by run {c.number}"
    Run.objects.filter(pk=a.pk).update(state=Run.State.SUCCEEDED)
    assert run_services.branch_advance(project_id=repo.project_id, branch="main", tag="") == c
    assert claim(c.pk, "w1") is not None
    c.refresh_from_db()
    assert c.state == Run.State.RUNNING and c.commit_sha == "c" * 40


def test_worker_death_is_reaped_with_the_reason(repo: Any) -> None:
    a = push(repo, "a" * 40)
    claim(a.pk, "w1")
    RunStep.objects.create(run=a, index=0, name="checkout", kind="checkout", state=RunStep.State.RUNNING)
    assert runner.runs_reap_stale() == 0  # fresh heartbeat
    old = timezone.now() - timedelta(seconds=60)
    Run.objects.filter(pk=a.pk).update(heartbeat_at=old)
    b = push(repo, "b" * 40)
    assert runner.runs_reap_stale() == 1
    a.refresh_from_db()
    assert a.state == Run.State.FAILED
    assert a.reason.startswith("worker vanished (no heartbeat since ")
    assert a.finished_at is not None
    assert a.steps.get().state == RunStep.State.FAILED  # the step it was on
    assert claim(b.pk, "w2") is not None  # the lane moved on


def test_a_run_whose_worker_vanished_is_queued_again_once_then_failed(repo: Any) -> None:
    from apps.pipelines.runner.logs import LogWriter

    a = push(repo, "a" * 40)
    claim(a.pk, "w1")
    step = RunStep.objects.create(run=a, index=0, name="checkout", kind="checkout", state=RunStep.State.RUNNING)
    log = LogWriter(a.pk)
    log.system("before the worker died")
    log.flush()
    Run.objects.filter(pk=a.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert runner.runs_reap_stale() == 1
    a.refresh_from_db()
    assert a.state == Run.State.QUEUED and a.worker == "" and a.worker_losses == 1
    assert a.reason.startswith("worker vanished (no heartbeat since ") and "queued again (retry 1 of 1)" in a.reason
    assert not RunStep.objects.filter(pk=step.pk).exists()  # the checkout starts over
    texts = list(a.log_lines.values_list("text", flat=True))
    assert texts[0].endswith("before the worker died") and "starts again from its checkout" in texts[-1]
    assert runner.runs_reap_stale() == 0  # idempotent: queued, not reaped twice

    assert claim(a.pk, "w2") is not None  # the lane's run again
    Run.objects.filter(pk=a.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert runner.runs_reap_stale() == 1
    a.refresh_from_db()
    assert a.state == Run.State.FAILED and a.finished_at is not None
    assert "not retried: run 1 was already retried after a worker loss" in a.reason


def test_a_frozen_worker_that_wakes_after_the_retry_leaves_the_run_to_its_new_worker(repo: Any) -> None:
    """w1 froze (not dead) past the reaper's patience; the run was queued again and w2 claimed
    it. When w1 wakes, every check and write of its runner is fenced by worker: it stops, and
    neither ends w2's run, skips w2's steps, nor deploys."""
    from apps.pipelines.runner.claim import finish, still_running, stop_if_canceled
    from apps.pipelines.runner.deploy import deploy_step

    a = push(repo, "a" * 40)
    frozen = claim(a.pk, "w1")
    assert frozen is not None and frozen.worker == "w1"
    stale_deploy = RunStep.objects.create(run=a, index=1, name="deploy", kind="deploy", state=RunStep.State.PENDING)
    Run.objects.filter(pk=a.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert runner.runs_reap_stale() == 1  # queued again (retry 1 of 1)
    fresh = claim(a.pk, "w2")
    assert fresh is not None
    RunStep.objects.create(run=a, index=0, name="build", kind="run", state=RunStep.State.RUNNING)
    RunStep.objects.create(run=a, index=1, name="deploy", kind="deploy", state=RunStep.State.PENDING)

    # w1 wakes up between two steps, in a step, at the deploy, or with a failure to report.
    assert still_running(a.pk, "w1") is False and still_running(a.pk, "w2") is True
    assert stop_if_canceled(frozen) == Run.State.CANCELED
    assert finish(frozen, Run.State.FAILED, "step build exited 1") is False
    from apps.pipelines.runner.logs import LogWriter

    assert deploy_step(frozen, stale_deploy, None, LogWriter(a.pk)) == Run.State.CANCELED

    a.refresh_from_db()
    assert (a.state, a.worker, a.finished_at) == (Run.State.RUNNING, "w2", None)
    assert list(a.steps.order_by("index").values_list("state", flat=True)) == ["running", "pending"]  # w2's
    assert not Binding.objects.filter(function__project=repo.project).exists()  # nothing deployed
    assert stop_if_canceled(fresh) is None  # w2 goes on
    assert finish(fresh, Run.State.SUCCEEDED, "done") is True


def test_a_vanished_workers_run_is_retried_from_its_checkout(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "  - name: greet\n    run: echo greet=hi\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    claim(run.pk, "dead-worker")
    RunStep.objects.create(run=run, index=0, name="checkout", kind="checkout", state=RunStep.State.RUNNING)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert runner.runs_reap_stale() == 1
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    run.refresh_from_db()
    assert _log_value(run, "greet") == "hi" and run.worker_losses == 1


def test_preview_delete_removes_the_environment(repo: Any, world: Any) -> None:
    from apps.tenancy.models import Environment

    Environment.objects.create(project=world.web, name="preview-feature-x")
    queued = push(repo, "a" * 40, branch="feature/x")
    run_services.preview_delete(repository=repo, branch="feature/x")
    assert not Environment.objects.filter(project=world.web, name="preview-feature-x").exists()
    queued.refresh_from_db()
    assert queued.state == Run.State.CANCELED
    run_services.preview_delete(repository=repo, branch="feature/x")  # twice: nothing to do


# --- execution ----------------------------------------------------------------------------


def _pgroup_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive


def _wait(predicate: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def live_world(transactional_db: None) -> Any:
    from tests.conftest import build_world

    return build_world()


def _pipeline_repo(git_repo: GitRepo, steps: str, trigger: str = "  - branch: main\n    environment: dev\n") -> str:
    text = (
        "functions:\n  - name: hello\n    path: functions/hello\n    runtime: python3.11\n    handler: main.handler\n"
        f"steps:\n{steps}triggers:\n{trigger}"
    )
    sha = git_repo.commit("c", {"functions/hello/main.py": HELLO % "x", "stratus.yaml": text})
    git_repo.push("main")
    return sha


def test_cancel_kills_the_steps_process_group(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "  - name: slow\n    run: sleep 30; echo never\n")
    repository = make_repository(live_world.web, str(git_repo.origin))
    run = push(repository, sha)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("state", runner.run_execute(run.pk)))
    thread.start()
    pgid = _wait(lambda: running_steps.pgid(run.pk))
    _wait(lambda: len(_pgroup_alive(pgid)) >= 2)  # bash and its sleep
    started = time.monotonic()
    run_services.run_cancel(actor=live_world.alice, run=Run.objects.get(pk=run.pk))
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert _pgroup_alive(pgid) == []
    run.refresh_from_db()
    assert run.state == Run.State.CANCELED and run.reason == "canceled by alice"
    steps = {s.name: s for s in run.steps.all()}
    assert steps["slow"].state == RunStep.State.FAILED and steps["slow"].exit_code == -9
    assert steps["package"].state == RunStep.State.SKIPPED
    assert not Function.objects.filter(project=live_world.web, name="hello").exists()


def test_timeout_kills_the_step_and_fails_the_run(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "  - name: slow\n    run: sleep 30 & sleep 20\n    timeout_s: 1\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == "step slow timed out after 1 s"


def test_background_leftovers_of_a_step_are_killed_when_it_ends(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "  - name: bg\n    run: sleep 30 & echo started\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    started = time.monotonic()
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED
    assert time.monotonic() - started < 10
    assert "started" in run.log_lines.values_list("text", flat=True)


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before, or between open and read
        return False
    return state != "Z"


def _log_value(run: Run, key: str) -> str:
    for text in run.log_lines.values_list("text", flat=True):
        if text.startswith(f"{key}="):
            return text.split("=", 1)[1]
    raise AssertionError(f"no {key}= line in the log")


needs_cgroups = needs(
    step_cgroup.available(), "this host lets this user make no cgroup (steps keep their process group)"
)


@needs_cgroups
def test_a_daemon_that_left_the_steps_process_group_dies_with_the_step(live_world: Any, git_repo: GitRepo) -> None:
    # setsid: a new session and process group, which killing the step's group misses.
    steps = "  - name: daemon\n    run: setsid sleep 300 >/dev/null 2>&1 </dev/null & echo pid=$!; sleep 0.2\n"
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, steps))
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    daemon = int(_log_value(run, "pid"))
    assert not _alive(daemon), f"the daemon {daemon} outlived its step"
    assert step_cgroup.kill_run(run.pk) == 0  # and its cgroup is gone


@needs_cgroups
def test_the_reaper_kills_what_a_vanished_workers_steps_left(repo: Any) -> None:
    a = push(repo, "a" * 40)
    claim(a.pk, "w1")
    group = step_cgroup.StepCgroup.create(f"run-{a.pk}-1")
    assert group is not None
    fd = group.enter_fd()
    try:
        orphan = subprocess.Popen(  # noqa: S603 - a stand-in for a step the dead worker left
            ["sleep", "300"],  # noqa: S607
            preexec_fn=lambda: os.write(fd, str(os.getpid()).encode()),  # noqa: PLW1509
            start_new_session=True,
        )
    finally:
        os.close(fd)
    assert group.pids() == [orphan.pid]
    Run.objects.filter(pk=a.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert runner.runs_reap_stale() == 1
    assert orphan.wait(5) == -9
    assert not any(d.exists() for d in group.group.dirs)


def test_step_memory_is_limited_without_breaking_node(live_world: Any, git_repo: GitRepo) -> None:
    # RLIMIT_AS would kill Node/V8 at start (it reserves address space by the gigabyte); the
    # step limit counts only memory written to, so node runs and a 512 MB allocation fails.
    steps = (
        "  - name: node\n    run: node -e \"console.log('node=' + (1 + 1))\"\n    memory_mb: 256\n"
        '  - name: hog\n    run: python3 -c "bytearray(512 * 1024 * 1024)"\n    memory_mb: 256\n'
    )
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, steps))
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert _log_value(run, "node") == "2"
    assert run.reason == "step hog exited with code 1"
    assert "MemoryError" in run.log_lines.values_list("text", flat=True)


@needs_root
def test_steps_run_as_the_runs_own_uid_and_cannot_read_the_data_dir(
    live_world: Any, git_repo: GitRepo, settings: Any
) -> None:
    secret = Path(settings.DATA_DIR) / "pretend-secret.txt"
    secret.write_text("top secret")
    secret.chmod(0o644)
    mirrors = Path(settings.DATA_DIR) / "pipelines" / "mirrors"
    steps = (
        f"  - name: who\n    run: id -u; cat {secret} || echo no-secret; ls {mirrors} || echo no-mirrors;"
        " touch ok-here && echo wrote\n"
    )
    sha = _pipeline_repo(git_repo, steps)
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    out = list(run.log_lines.filter(stream="stdout").values_list("text", flat=True))
    if os.geteuid() == 0:
        assert out[0] == str(settings.STRATUS_PIPELINE_UID_BASE + run.pk)
    assert "top secret" not in out and "no-secret" in out and "no-mirrors" in out and "wrote" in out


def test_a_step_cannot_point_packaging_outside_the_workspace(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "  - name: swap\n    run: rm -rf functions/hello && ln -s /etc functions/hello\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == "package: functions hello: 'functions/hello' leads outside the workspace."
    assert not Function.objects.filter(project=live_world.web, name="hello").exists()


def test_retry_runs_the_same_commit_again(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "  - name: fail\n    run: echo boom >&2; exit 3\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == "step fail exited with code 3"
    assert [line.text for line in run.log_lines.filter(stream="stdout")] == ["boom"]
    retry = run_services.run_retry(actor=live_world.bob, run=run)
    assert (retry.commit_sha, retry.retry_of_id, retry.trigger, retry.state) == (sha, run.pk, "retry", "queued")
    assert retry.number == run.number + 1
    with pytest.raises(Forbidden):
        run_services.run_retry(actor=live_world.carol, run=run)


def test_secrets_only_reach_steps_that_ask(live_world: Any, git_repo: GitRepo) -> None:
    from apps.tenancy.environment_services import environment_secret_set, environment_var_set
    from apps.tenancy.models import Environment

    dev = Environment.objects.get(project=live_world.web, name="dev")
    environment_var_set(actor=live_world.alice, environment=dev, name="COLOR", value="blue")
    environment_secret_set(actor=live_world.alice, environment=dev, name="API_KEY", value="s3cret")
    steps = (
        '  - name: plain\n    run: echo "plain=${API_KEY:-none} ${COLOR:-none} $HOME"\n'
        '  - name: asks\n    run: echo "asks=$API_KEY $COLOR"\n    secrets: true\n'
    )
    sha = _pipeline_repo(git_repo, steps)
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED
    texts = list(run.log_lines.filter(stream="stdout").values_list("text", flat=True))
    assert texts[0].startswith("plain=none none ") and texts[0].endswith("/.home")
    assert texts[1] == "asks=*** blue"  # the step had the secret; the log masks it
    assert "s3cret" not in " ".join(run.log_lines.values_list("text", flat=True))


def test_protected_environment_waits_for_an_approver_who_is_not_the_pusher(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(
        git_repo, "  - name: ok\n    run: 'true'\n", trigger="  - branch: main\n    environment: prod\n"
    )
    repository = make_repository(live_world.web, str(git_repo.origin))
    run = push(repository, sha, pusher="adam@example.com")
    assert runner.run_execute(run.pk) == Run.State.WAITING_APPROVAL
    run.refresh_from_db()
    assert run.environment == "prod" and run.reason == "waiting for approval to deploy to prod"
    with pytest.raises(Forbidden, match="other than its pusher"):
        run_services.run_approve(actor=live_world.adam, run=run)  # admin, but the pusher
    with pytest.raises(Forbidden, match="deploy right"):
        run_services.run_approve(actor=live_world.carol, run=run)  # viewer
    with pytest.raises(Forbidden, match="deploy right"):
        run_services.run_approve(actor=live_world.bob, run=run)  # developer: not on protected
    run_services.run_approve(actor=live_world.alice, run=run)
    assert runner.run_resume(run.pk) == Run.State.SUCCEEDED
    run.refresh_from_db()
    assert run.state == Run.State.SUCCEEDED and run.approved_by == live_world.alice
    binding = Binding.objects.get(function__name="hello", environment__name="prod")
    version = binding.function.versions.get()
    assert binding.traffic == [{"version": version.number, "weight": 100}]
    assert version.source == "git" and version.source_info["commit"] == sha


def test_reject_cancels_the_deploy(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(git_repo, "", trigger="  - branch: main\n    environment: prod\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.WAITING_APPROVAL
    run_services.run_reject(actor=live_world.alice, run=Run.objects.get(pk=run.pk))
    run.refresh_from_db()
    assert run.state == Run.State.CANCELED and "rejected by alice" in run.reason
    assert run.steps.get(kind="deploy").state == RunStep.State.SKIPPED
    assert not Binding.objects.filter(environment__name="prod").exists()


def test_no_matching_trigger_runs_the_checks_and_deploys_nothing(live_world: Any, git_repo: GitRepo) -> None:
    sha = _pipeline_repo(
        git_repo, "  - name: ok\n    run: echo checked\n", trigger="  - tag: 'v*'\n    environment: prod\n"
    )
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED
    run.refresh_from_db()
    assert run.reason == "no trigger matches branch main"
    assert [s.name for s in run.steps.all()] == ["checkout", "ok"]
    assert not Function.objects.filter(project=live_world.web).exists()


def test_a_broken_pipeline_fails_the_run_with_the_line(live_world: Any, git_repo: GitRepo) -> None:
    git_repo.commit("bad", {"stratus.yaml": "steps:\n  - name: a\n    run: x\n    timeout_s: 0\n"})
    git_repo.push()
    run = push(make_repository(live_world.web, str(git_repo.origin)), git_repo.git("rev-parse", "HEAD"))
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == "stratus.yaml line 4: steps[0].timeout_s must be between 1 and 3600"


# --- API ----------------------------------------------------------------------------------


def test_runs_api(live_world: Any, hello_repo: GitRepo, client_for: Any) -> None:
    make_repository(live_world.web, str(hello_repo.origin))
    bob = client_for(live_world.bob, scopes=["read", "deploy"])
    reader = client_for(live_world.bob, scopes=["read"])
    created = bob.post(f"/api/v1/projects/{live_world.web.pk}/runs/", {"branch": "main"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    head = hello_repo.git("rev-parse", "HEAD")
    assert (body["number"], body["commit_sha"], body["trigger"], body["created_by"]) == (1, head, "manual", "bob")
    assert body["websocket"] == f"/ws/runs/{body['id']}/"
    assert runner.run_execute(body["id"]) == Run.State.SUCCEEDED

    listed = reader.get(f"/api/v1/projects/{live_world.web.pk}/runs/?branch=main&state=succeeded").json()
    assert [r["number"] for r in listed["results"]] == [1]
    detail = reader.get(f"/api/v1/runs/{body['id']}/").json()
    assert [s["name"] for s in detail["steps"]] == ["checkout", "test", "package", "deploy to dev"]
    assert all(s["state"] == "succeeded" for s in detail["steps"])

    log = reader.get(f"/api/v1/runs/{body['id']}/log?limit=2").json()
    assert [line["seq"] for line in log["lines"]] == [1, 2] and log["more"] is True
    rest = reader.get(f"/api/v1/runs/{body['id']}/log?after={log['next_after']}").json()
    assert rest["lines"][0]["seq"] == 3 and rest["more"] is False
    assert "testing" in [line["text"] for line in rest["lines"]]

    assert reader.post(f"/api/v1/runs/{body['id']}/retry").status_code == 403  # read scope
    retried = bob.post(f"/api/v1/runs/{body['id']}/retry")
    assert retried.status_code == 201 and retried.json()["retry_of"] == 1
    canceled = bob.post(f"/api/v1/runs/{retried.json()['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    assert bob.post(f"/api/v1/runs/{retried.json()['id']}/cancel").status_code == 409
    assert bob.post(f"/api/v1/runs/{body['id']}/approve").status_code == 409  # not waiting

    by_commit = bob.post(f"/api/v1/projects/{live_world.web.pk}/runs/", {"commit": head[:12]}, format="json")
    assert by_commit.status_code == 201 and by_commit.json()["commit_sha"] == head
    missing = bob.post(f"/api/v1/projects/{live_world.web.pk}/runs/", {"branch": "nope"}, format="json")
    assert missing.status_code == 400

    carol = client_for(live_world.carol, scopes=["read", "deploy"])
    assert carol.get(f"/api/v1/runs/{body['id']}/").status_code == 200
    assert carol.post(f"/api/v1/runs/{body['id']}/retry").status_code == 403  # viewer
    charlie = client_for(live_world.charlie, scopes=["read", "deploy"])
    assert charlie.get(f"/api/v1/runs/{body['id']}/").status_code == 404
    assert charlie.get(f"/api/v1/runs/{body['id']}/log").status_code == 404
    assert charlie.post(f"/api/v1/runs/{body['id']}/cancel").status_code == 404
    assert charlie.get(f"/api/v1/projects/{live_world.web.pk}/runs/").status_code == 404


def test_mirror_keeps_credentials_out_of_its_config(live_world: Any, hello_repo: GitRepo) -> None:
    from apps.core import crypto
    from apps.pipelines import mirror

    repository = make_repository(
        live_world.web,
        str(hello_repo.origin),
        credentials_kind="token",
        credentials_ciphertext=crypto.encrypt("tok-very-secret"),
    )
    repo = mirror.mirror_fetch(repository)
    head = hello_repo.git("rev-parse", "HEAD")
    assert repo.bare and mirror.has_commit(repository, head)
    assert b"tok-very-secret" not in (mirror.mirror_path(repository) / "config").read_bytes()
    with mirror._git_env(repository) as env:
        assert env["STRATUS_GIT_TOKEN"] == "tok-very-secret" and env["GIT_ASKPASS"].endswith("askpass.sh")
        assert "tok-very-secret" not in Path(env["GIT_ASKPASS"]).read_text()
    assert mirror.read_file_at(repository, head, "stratus.yaml").startswith(b"functions:")
    assert mirror.read_file_at(repository, head, "missing.txt") is None
    new = hello_repo.commit("second", {"README": "x"})
    hello_repo.push()
    mirror.mirror_fetch(repository)  # fetch --prune on the existing mirror
    assert mirror.resolve_commit(repository, "refs/heads/main")["sha"] == new


def test_the_embedded_worker_runs_a_pushed_run(live_world: Any, hello_repo: GitRepo, settings: Any) -> None:
    """run_for_push queues run_execute after commit; the in-process Celery worker runs it, on
    the in-memory broker (the embedded default) or, where the suite runs on Redis (CI), on a
    private redis-server of its own: the shared queue holds other processes' tasks, whose rows
    are not in this test's database."""
    from apps.core import worker
    from console.celery import app
    from tests.broker import PrivateRedis, celery_broker

    settings.STRATUS_EMBEDDED_WORKER = True
    repository = make_repository(live_world.web, str(hello_repo.origin))
    private = None if settings.CELERY_BROKER_URL.startswith("memory://") else PrivateRedis()
    try:
        with celery_broker(private.url) if private else contextlib.nullcontext():
            app.control.purge()  # tasks other tests queued on the in-memory broker (their rows are gone)
            worker.start()
            try:
                run = push(repository, hello_repo.git("rev-parse", "HEAD"))
                _wait(lambda: Run.objects.get(pk=run.pk).state not in Run.ACTIVE_STATES, timeout=60)
                run.refresh_from_db()
                assert run.state == Run.State.SUCCEEDED, run.reason
                assert run.worker and run.started_at is not None and run.finished_at is not None
            finally:
                worker.stop()
    finally:
        if private is not None:
            private.stop()


# --- credentials against a real git server ------------------------------------------------------


@pytest.fixture
def git_server(hello_repo: GitRepo) -> Any:
    from tests.pipelines.git_http import GitHttpServer

    server = GitHttpServer(hello_repo.origin.parent, user="x-access-token", password="tok-very-secret")
    yield server
    server.close()


def _token_repository(project: Any, url: str, credentials: str) -> Any:
    from apps.core import crypto

    return make_repository(project, url, credentials_kind="token", credentials_ciphertext=crypto.encrypt(credentials))


def test_a_token_fetches_from_a_server_that_demands_it(live_world: Any, hello_repo: GitRepo, git_server: Any) -> None:
    from apps.pipelines import mirror

    repository = _token_repository(live_world.web, git_server.url("origin.git"), "tok-very-secret")
    run = push(repository, hello_repo.git("rev-parse", "HEAD"))
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    assert ("x-access-token", "tok-very-secret") in git_server.seen  # sent by the askpass helper
    config = (mirror.mirror_path(repository) / "config").read_bytes()
    assert b"tok-very-secret" not in config and git_server.url("origin.git").encode() in config
    assert "tok-very-secret" not in " ".join(run.log_lines.values_list("text", flat=True))

    new = hello_repo.commit("second", {"README": "x"})  # a fetch into the existing mirror
    hello_repo.push()
    mirror.mirror_fetch(repository)
    assert mirror.resolve_commit(repository, "refs/heads/main")["sha"] == new


def test_a_user_and_token_pair_sends_that_user(live_world: Any, hello_repo: GitRepo, git_server: Any) -> None:
    from apps.pipelines import mirror

    git_server.user = "deploy-bot"
    repository = _token_repository(live_world.web, git_server.url("origin.git"), "deploy-bot:tok-very-secret")
    mirror.mirror_fetch(repository)
    assert set(git_server.seen) == {("deploy-bot", "tok-very-secret")}  # on every request


def test_a_wrong_token_fails_the_run_with_the_servers_answer_and_never_prompts(
    live_world: Any, hello_repo: GitRepo, git_server: Any
) -> None:
    repository = _token_repository(live_world.web, git_server.url("origin.git"), "tok-wrong")
    run = push(repository, hello_repo.git("rev-parse", "HEAD"))
    started = time.monotonic()
    assert runner.run_execute(run.pk) == Run.State.FAILED
    assert time.monotonic() - started < 30  # no prompt waiting for a terminal
    run.refresh_from_db()
    assert run.reason.startswith(f"Fetching {git_server.url('origin.git')} failed: ")
    assert "Authentication failed" in run.reason and "tok-wrong" not in run.reason
    assert git_server.seen == [("x-access-token", "tok-wrong")]


def _keypair(directory: Path, name: str) -> tuple[str, str]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)  # noqa: S607
    return key.read_text(), (directory / f"{name}.pub").read_text()


@needs_sshd
def test_a_deploy_key_fetches_over_ssh_and_leaves_no_key_file(
    live_world: Any, hello_repo: GitRepo, tmp_path: Path
) -> None:
    from apps.core import crypto
    from apps.pipelines import mirror
    from tests.pipelines.git_http import SshServer

    private, public = _keypair(tmp_path, "deploy")
    other, _ = _keypair(tmp_path, "other")
    server = SshServer(tmp_path / "sshd", authorized_key=public)
    try:
        url = server.url(hello_repo.origin)
        good = make_repository(
            live_world.web, url, credentials_kind="ssh_key", credentials_ciphertext=crypto.encrypt(private)
        )
        run = push(good, hello_repo.git("rev-parse", "HEAD"))
        assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
        assert list(mirror.pipelines_dir().glob("key-*")) == []  # the key file lived for the fetch only
        assert b"PRIVATE KEY" not in (mirror.mirror_path(good) / "config").read_bytes()

        good.delete()
        wrong = make_repository(
            live_world.web, url, credentials_kind="ssh_key", credentials_ciphertext=crypto.encrypt(other)
        )
        failed = push(wrong, hello_repo.git("rev-parse", "HEAD"))
        assert runner.run_execute(failed.pk) == Run.State.FAILED
        failed.refresh_from_db()
        assert failed.reason.startswith(f"Fetching {url} failed: ") and "Permission denied" in failed.reason
        assert list(mirror.pipelines_dir().glob("key-*")) == []
    finally:
        server.close()


# --- what packaging and the deploy must not skip (issue 21: each survived a mutation) ----------


def test_packaging_leaves_out_symlinks_a_step_made_to_host_files(live_world: Any, git_repo: GitRepo) -> None:
    # Given a step that links a host file and a host directory into the function's directory
    steps = "  - name: link\n    run: ln -s /etc/passwd functions/hello/passwd.txt && ln -s /etc functions/hello/etc\n"
    sha = _pipeline_repo(git_repo, steps)
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)

    # When the run packages the function
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason

    # Then its version holds the committed file only: neither link, nor what they point at
    from apps.functions.version_selectors import version_files

    version = Function.objects.get(project=live_world.web, name="hello").versions.get()
    assert sorted(version_files(version=version)) == ["main.py"]


def test_a_triggers_release_plan_starts_a_release_from_the_serving_version(live_world: Any, git_repo: GitRepo) -> None:
    from apps.releases.models import Release

    trigger = "  - branch: main\n    environment: dev\n    release: {steps: [50, 100], advance: manual}\n"
    repository = make_repository(live_world.web, str(git_repo.origin))
    # Given v1 serving dev (a first deploy has no stable version to release from: it deploys)
    first = push(repository, _pipeline_repo(git_repo, "", trigger=trigger))
    assert runner.run_execute(first.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=first.pk).reason
    binding = Binding.objects.get(function__name="hello", environment__name="dev")
    assert binding.traffic == [{"version": 1, "weight": 100}]

    # When a new commit is pushed
    git_repo.commit("v2", {"functions/hello/main.py": HELLO % "v2"})
    git_repo.push("main")
    second = push(repository, git_repo.git("rev-parse", "HEAD"))
    assert runner.run_execute(second.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=second.pk).reason

    # Then v2 goes out by the trigger's plan: a release at its first step, not 100% at once
    release = Release.objects.get(binding=binding)
    assert (release.state, release.step_index, release.steps) == (Release.State.RUNNING, 0, [50, 100])
    binding.refresh_from_db()
    assert sorted((e["version"], e["weight"]) for e in binding.traffic) == [(1, 50), (2, 50)]
    second.refresh_from_db()
    assert f"release {release.pk} running in dev" in second.reason


@needs_root
def test_a_step_holds_no_supplementary_groups_after_the_uid_drop(
    supplementary_groups: tuple[int, ...], live_world: Any, git_repo: GitRepo, settings: Any
) -> None:
    # Given a worker holding supplementary groups, and a step that stays up to be looked at
    sha = _pipeline_repo(git_repo, "  - name: stay\n    run: sleep 60\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)

    def execute() -> None:
        try:
            runner.run_execute(run.pk)
        finally:
            connection.close()  # this thread's own

    thread = threading.Thread(target=execute)
    thread.start()
    try:
        pgid = _wait(lambda: running_steps.pgid(run.pk))

        def sleeper() -> int | None:
            for pid in _pgroup_alive(pgid):
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                        return pid
                except OSError:
                    continue
            return None

        pid = _wait(sleeper, timeout=30)
        # Then the step's process runs as the run's uid with no group but its own
        ids = process_ids(pid)
        uid = settings.STRATUS_PIPELINE_UID_BASE + run.pk
        assert ids["Uid"] == [uid] * 4
        assert ids["Gid"] == [uid] * 4
        assert ids["Groups"] == []
    finally:
        run_services.run_cancel(actor=live_world.alice, run=Run.objects.get(pk=run.pk))
        thread.join(30)
