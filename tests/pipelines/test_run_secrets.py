"""Pipeline secrets (issue 11, "Isolation"): a protected environment's secrets reach a run's
steps only after the run is approved, and only where the environment's ``pipeline_secrets``
setting allows it (off by default when protected; stratus.yaml cannot turn it on). Secret
values are masked (``***``) in the stored log, the log API, the run's reason and every
websocket reader's messages.

Real parts: a git repository committed and pushed with the git CLI, the console served by
uvicorn with websocket clients of a viewer and an admin, the REST API for the environment's
setting, its secrets, the approval and the log."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apps.core.errors import DomainError, Forbidden
from apps.functions.models import Binding
from apps.pipelines import run_services, runner
from apps.pipelines.models import Run, RunLogLine, RunStep
from apps.pipelines.pipeline_config import parse_pipeline
from apps.pipelines.runner.claim import finish
from apps.pipelines.runner.environment import environment_values
from apps.pipelines.runner.logs import MAX_LINE
from apps.tenancy import environment_services, token_services
from apps.tenancy.models import Environment
from tests.conftest import build_world, serving_console
from tests.pipelines.conftest import GitRepo, make_repository
from tests.pipelines.test_runs import _pipeline_repo, push

SECRET = "pr0d-DB-pa55word-7f3c"
PROD = "  - branch: main\n    environment: prod\n"
# "build" asks for nothing, "deploy-db" for prod's secrets: the whole run waits for approval.
STEPS = (
    "  - name: build\n    run: echo build-ran\n"
    "  - name: deploy-db\n"
    "    run: |\n"
    '      echo "pw=$DB_PASSWORD"\n'
    "      env | grep '^DB_PASSWORD='\n"
    '      echo "twice $DB_PASSWORD/$DB_PASSWORD"\n'
    '      echo "sha=$(printf %s "$DB_PASSWORD" | sha256sum | cut -c1-16)"\n'
    "    secrets: true\n"
)
WAITING = (
    "waiting for approval to run steps with prod's secrets (step 'deploy-db' has secrets: true; "
    "the deploy to prod then needs no second approval)"
)
REFUSED = (
    "step 'deploy-db' asks for the secrets of environment '{env}' (secrets: true), but '{env}' does not let "
    "pipeline steps use its secrets (environment setting pipeline_secrets)"
)


@pytest.fixture
def console_url(transactional_db: None) -> Iterator[str]:
    with serving_console() as address:
        yield address


@pytest.fixture
def live_world(transactional_db: None) -> Any:
    return build_world()


class Watcher:
    """A websocket client on /ws/runs/<id>/ that keeps every frame it receives until the run
    ends (a final state) or the socket goes quiet."""

    def __init__(self, stack: ExitStack, address: str, run_id: int, token: str) -> None:
        url = f"ws://{address}/ws/runs/{run_id}/?token={token}"
        self.ws = stack.enter_context(connect(url, origin=f"http://{address}"))
        stack.callback(self.thread_join)
        self.frames: list[str] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                # After the final state, lines still come (the closing "run N succeeded").
                raw = self.ws.recv(timeout=1.0 if self.ended.is_set() else 60)
            except (TimeoutError, ConnectionClosed):
                return
            self.frames.append(str(raw))
            message = json.loads(raw)
            if message.get("type") == "state" and message.get("state") in ("succeeded", "failed", "canceled"):
                self.ended.set()

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in list(self.frames)]

    def texts(self) -> list[str]:
        return [line["text"] for m in self.messages() if m["type"] == "lines" for line in m["lines"]]

    def states(self) -> list[str]:
        return [m["state"] for m in self.messages() if m["type"] == "state"]

    def thread_join(self) -> None:
        self.thread.join(5)


def _texts(run: Run) -> list[str]:
    return list(RunLogLine.objects.filter(run=run).order_by("seq").values_list("text", flat=True))


def _stdout(run: Run, step: str) -> list[str]:
    return list(
        RunLogLine.objects.filter(run=run, step__name=step, stream="stdout")
        .order_by("seq")
        .values_list("text", flat=True)
    )


def _api_dump(client: Any, run: Run) -> str:
    """Everything the API says about the run: its detail and every page of its log."""
    detail = client.get(f"/api/v1/runs/{run.pk}/")
    assert detail.status_code == 200
    pages, after = [detail.content.decode()], 0
    while True:
        page = client.get(f"/api/v1/runs/{run.pk}/log?after={after}")
        assert page.status_code == 200
        pages.append(page.content.decode())
        body = page.json()
        after = body["next_after"]
        if not body["more"]:
            return "\n".join(pages)


def _api_texts(client: Any, run: Run) -> list[str]:
    return [line["text"] for line in client.get(f"/api/v1/runs/{run.pk}/log?after=0").json()["lines"]]


def _allow_prod_secrets(world: Any, client_for: Any) -> None:
    """As the project's admin, over the API: prod lets steps use its secrets; a developer may not."""
    base = f"/api/v1/projects/{world.web.pk}/environments/prod/"
    refused = client_for(world.bob).patch(base, {"pipeline_secrets": True}, format="json")
    assert refused.status_code == 403, refused.content
    assert Environment.objects.get(project=world.web, name="prod").pipeline_secrets is None
    alice = client_for(world.alice)
    allowed = alice.patch(base, {"pipeline_secrets": True}, format="json")
    assert allowed.status_code == 200 and allowed.json()["pipeline_secrets"] is True, allowed.content
    stored = alice.put(f"{base}secrets/DB_PASSWORD", {"value": SECRET}, format="json")
    assert stored.status_code in (200, 201), stored.content


def test_protected_run_waits_before_its_steps_and_shows_secrets_masked_to_every_reader(
    console_url: str, git_repo: GitRepo, client_for: Any
) -> None:
    world = build_world()
    _allow_prod_secrets(world, client_for)
    sha = _pipeline_repo(git_repo, STEPS, trigger=PROD)
    run = push(make_repository(world.web, str(git_repo.origin)), sha, pusher="bob")  # a developer's push
    _, viewer_token = token_services.token_create(user=world.carol, name="ws", scopes=["read"])
    _, admin_token = token_services.token_create(user=world.alice, name="ws", scopes=["read"])
    viewer_api = client_for(world.carol, scopes=["read"])
    with ExitStack() as stack:
        watchers = [Watcher(stack, console_url, run.pk, token) for token in (viewer_token, admin_token)]
        # Before approval: the run parks before its first step; nothing ran, nothing leaked.
        assert runner.run_execute(run.pk) == Run.State.WAITING_APPROVAL
        run.refresh_from_db()
        assert (run.state, run.reason) == (Run.State.WAITING_APPROVAL, WAITING)
        assert {s.name: s.state for s in run.steps.all()} == {
            "checkout": "succeeded",
            "build": "pending",
            "deploy-db": "pending",
            "package": "pending",
            "deploy to prod": "pending",
        }
        assert not RunLogLine.objects.filter(run=run, stream="stdout").exists()
        assert "build-ran" not in _texts(run)
        assert SECRET not in "\n".join(_texts(run)) + run.reason
        assert SECRET not in _api_dump(viewer_api, run)
        assert viewer_api.get(f"/api/v1/runs/{run.pk}/").json()["reason"] == WAITING

        # The pusher's peers without the deploy right on prod cannot let it through.
        with pytest.raises(Forbidden, match="deploy right"):
            run_services.run_approve(actor=world.bob, run=run)
        approved = client_for(world.alice, scopes=["read", "deploy"]).post(f"/api/v1/runs/{run.pk}/approve")
        assert approved.status_code == 200 and approved.json()["approved_by"] == "alice", approved.content

        # After approval: one resume runs the steps with the secrets, packages and deploys,
        # with no second wait.
        assert runner.run_resume(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
        for watcher in watchers:
            assert watcher.ended.wait(15), watcher.states()
            watcher.thread.join(15)

    run.refresh_from_db()
    assert run.state == Run.State.SUCCEEDED and run.approved_by == world.alice
    assert all(s.state == RunStep.State.SUCCEEDED for s in run.steps.all())
    binding = Binding.objects.get(function__name="hello", environment__name="prod")
    assert binding.traffic == [{"version": binding.function.versions.get().number, "weight": 100}]
    texts = _texts(run)
    assert texts.index("approved by alice") < texts.index("build-ran")  # no step before the approval
    assert sum("waiting for approval" in t for t in texts) == 1  # parked once, before the steps

    digest = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    masked = ["pw=***", "DB_PASSWORD=***", "twice ***/***", f"sha={digest}"]  # the step had the real value
    assert _stdout(run, "deploy-db") == masked
    assert SECRET not in "\n".join(texts) + run.reason
    assert SECRET not in _api_dump(viewer_api, run)
    for watcher in watchers:
        assert watcher.states().count("waiting_approval") == 1 and watcher.states()[-1] == "succeeded"
        seen = watcher.texts()
        assert seen == texts  # every line, once, in order
        assert [t for t in seen if t in masked] == masked
        assert not any(SECRET in frame for frame in watcher.frames)


def test_a_protected_environment_refuses_secrets_by_default(live_world: Any, git_repo: GitRepo) -> None:
    environment_services.environment_secret_set(
        actor=live_world.alice,
        environment=Environment.objects.get(project=live_world.web, name="prod"),
        name="DB_PASSWORD",
        value=SECRET,
    )
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, STEPS, trigger=PROD))
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == REFUSED.format(env="prod")
    assert {s.name: s.state for s in run.steps.all()} == {
        "checkout": "succeeded",
        "build": "skipped",
        "deploy-db": "skipped",
        "package": "skipped",
        "deploy to prod": "skipped",
    }
    assert "build-ran" not in _texts(run) and SECRET not in "\n".join(_texts(run))
    assert REFUSED.format(env="prod") in _texts(run)  # also in the log, where the reader looks


def test_an_environment_that_turned_pipeline_secrets_off_refuses_them(live_world: Any, git_repo: GitRepo) -> None:
    dev = Environment.objects.get(project=live_world.web, name="dev")
    environment_services.environment_update(actor=live_world.alice, environment=dev, pipeline_secrets=False)
    trigger = "  - branch: main\n    environment: dev\n"
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, STEPS, trigger=trigger))
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == REFUSED.format(env="dev")
    assert not RunLogLine.objects.filter(run=run, stream="stdout").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "pipeline_secrets: true\nsteps:\n  - name: a\n    run: 'true'\n",
            "stratus.yaml line 1: pipeline_secrets is not a known field; known: functions, steps, triggers",
        ),
        (
            "steps:\n  - name: a\n    run: 'true'\n    secrets: true\n    pipeline_secrets: true\n",
            "stratus.yaml line 5: steps[0].pipeline_secrets is not a known field; known: name, run, timeout_s, "
            "memory_mb, env, secrets",
        ),
        (
            "triggers:\n  - branch: main\n    environment: prod\n    pipeline_secrets: true\n",
            "stratus.yaml line 4: triggers[0].pipeline_secrets is not a known field; known: branch, tag, "
            "environment, preview, release",
        ),
    ],
)
def test_stratus_yaml_cannot_turn_pipeline_secrets_on(text: str, message: str) -> None:
    with pytest.raises(DomainError) as caught:
        parse_pipeline(text)
    assert (caught.value.code, caught.value.message) == ("pipeline_invalid", message)


def test_a_run_whose_yaml_tries_to_allow_secrets_fails_and_runs_nothing(live_world: Any, git_repo: GitRepo) -> None:
    steps = STEPS.replace("    secrets: true\n", "    secrets: true\n    pipeline_secrets: true\n")
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, steps, trigger=PROD))
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == (
        "stratus.yaml line 16: steps[1].pipeline_secrets is not a known field; known: name, run, timeout_s, "
        "memory_mb, env, secrets"
    )
    assert [s.name for s in run.steps.all()] == ["checkout"]
    assert not RunLogLine.objects.filter(run=run, stream="stdout").exists()


def _waiting_run(world: Any, git_repo: GitRepo, repository: Any = None) -> tuple[Run, Any]:
    prod = Environment.objects.get(project=world.web, name="prod")
    environment_services.environment_update(actor=world.alice, environment=prod, pipeline_secrets=True)
    environment_services.environment_secret_set(actor=world.alice, environment=prod, name="DB_PASSWORD", value=SECRET)
    repository = repository or make_repository(world.web, str(git_repo.origin))
    run = push(repository, _pipeline_repo(git_repo, STEPS, trigger=PROD), pusher="bob")
    assert runner.run_execute(run.pk) == Run.State.WAITING_APPROVAL
    return Run.objects.get(pk=run.pk), repository


def test_rejecting_or_superseding_a_waiting_run_runs_none_of_its_steps(live_world: Any, git_repo: GitRepo) -> None:
    run, repository = _waiting_run(live_world, git_repo)
    run_services.run_reject(actor=live_world.alice, run=run)
    run.refresh_from_db()
    assert (run.state, run.reason) == (Run.State.CANCELED, "steps with the secrets of 'prod' rejected by alice")
    assert [s.state for s in run.steps.exclude(kind="checkout")] == ["skipped"] * 4

    canceled = run_services.run_retry(actor=live_world.alice, run=run)
    assert runner.run_execute(canceled.pk) == Run.State.WAITING_APPROVAL
    run_services.run_cancel(actor=live_world.bob, run=Run.objects.get(pk=canceled.pk))
    assert [s.state for s in canceled.steps.exclude(kind="checkout")] == ["skipped"] * 4

    older = run_services.run_retry(actor=live_world.alice, run=run)
    assert runner.run_execute(older.pk) == Run.State.WAITING_APPROVAL
    newer_sha = git_repo.commit("next", {"README": "x"})
    git_repo.push("main")
    newer = push(repository, newer_sha, pusher="bob")
    older.refresh_from_db()
    assert (older.state, older.reason) == (Run.State.CANCELED, f"superseded by run {newer.number}")
    assert [s.state for s in older.steps.exclude(kind="checkout")] == ["skipped"] * 4
    assert not RunLogLine.objects.filter(run__in=[run, canceled, older], stream="stdout").exists()


def test_turning_pipeline_secrets_off_while_a_run_waits_stops_it_at_resume(live_world: Any, git_repo: GitRepo) -> None:
    run, _ = _waiting_run(live_world, git_repo)
    run_services.run_approve(actor=live_world.alice, run=run)
    prod = Environment.objects.get(project=live_world.web, name="prod")
    environment_services.environment_update(actor=live_world.alice, environment=prod, pipeline_secrets=False)
    assert runner.run_resume(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == REFUSED.format(env="prod")
    assert not RunLogLine.objects.filter(run=run, stream="stdout").exists()
    assert not Binding.objects.filter(environment=prod).exists()


def test_a_protected_run_without_secret_steps_runs_its_steps_and_waits_only_to_deploy(
    live_world: Any, git_repo: GitRepo
) -> None:
    prod = Environment.objects.get(project=live_world.web, name="prod")
    environment_services.environment_update(actor=live_world.alice, environment=prod, pipeline_secrets=True)
    steps = STEPS.replace("    secrets: true\n", "").replace("      env | grep '^DB_PASSWORD='\n", "")
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, steps, trigger=PROD))
    assert runner.run_execute(run.pk) == Run.State.WAITING_APPROVAL
    run.refresh_from_db()
    assert run.reason == "waiting for approval to deploy to prod"
    assert _stdout(run, "build") == ["build-ran"] and _stdout(run, "deploy-db")[0] == "pw="  # no secret asked
    run_services.run_approve(actor=live_world.alice, run=run)
    assert runner.run_resume(run.pk) == Run.State.SUCCEEDED
    assert "build-ran" in _texts(Run.objects.get(pk=run.pk))


# --- masking -----------------------------------------------------------------------------------

CERT = "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n  0Wq2bXl7c0ffee==\n-----END TEST KEY-----\n"


def test_multi_line_secrets_repeated_values_and_the_reason_are_masked(
    live_world: Any, git_repo: GitRepo, client_for: Any
) -> None:
    dev = Environment.objects.get(project=live_world.web, name="dev")
    for name, value in (("CERT", CERT), ("TOKEN", "tok-1234"), ("PIN", "42"), ("STEPNAME", "leaky-step-9911")):
        environment_services.environment_secret_set(actor=live_world.alice, environment=dev, name=name, value=value)
    steps = (
        "  - name: show\n"
        "    run: |\n"
        '      printf "%s" "$CERT"\n'
        '      echo "twice=$TOKEN:$TOKEN,end"\n'
        '      echo "pin=$PIN"\n'
        "    secrets: true\n"
        "  - name: leaky-step-9911\n"  # a value that also names a step: masked in the reason too
        "    run: exit 3\n"
    )
    run = push(make_repository(live_world.web, str(git_repo.origin)), _pipeline_repo(git_repo, steps))
    assert runner.run_execute(run.pk) == Run.State.FAILED  # unprotected: no approval needed
    run.refresh_from_db()
    assert _stdout(run, "show") == ["***", "***", "  ***", "***", "twice=***:***,end", "pin=42"]
    assert run.reason == "step *** exited with code 3"
    texts = _texts(run)
    assert "secret PIN is shorter than 4 characters: it is not masked in this log" in texts
    assert any(t.startswith("✘ *** failed in ") and t.endswith(" (exited with code 3)") for t in texts)
    for leaked in ("MIIBOgIBAAJBAKj34GkxFhD9", "0Wq2bXl7c0ffee==", "BEGIN TEST KEY", "tok-1234", "leaky-step-9911"):
        assert leaked not in "\n".join(texts) + run.reason
    viewer = client_for(live_world.carol, scopes=["read"])
    assert _api_texts(viewer, run) == texts
    api = _api_dump(viewer, run)  # the detail also names the steps, as stratus.yaml does
    assert not any(leaked in api for leaked in ("MIIBOgIBAAJBAKj34GkxFhD9", "0Wq2bXl7c0ffee==", "tok-1234"))


def test_log_writer_masks_before_storing_and_publishing(live_world: Any) -> None:
    repository = make_repository(live_world.web, "/nonexistent/origin.git")
    run = push(repository, "a" * 40)
    log = runner.LogWriter(run.pk)
    assert log.mask_secrets({"A": "abcd", "LONG": "abcdef-long", "ONE": "x", "EMPTY": ""}) == ["ONE"]
    log.add("abcdef-long and abcd and abc and x" + "y" * MAX_LINE)
    log.flush()
    stored = RunLogLine.objects.get(run=run).text
    assert stored.startswith("*** and *** and abc and x") and len(stored) == MAX_LINE
    assert finish(run, Run.State.FAILED, "boom abcdef-long", from_states=(Run.State.QUEUED,), log=log)
    assert Run.objects.get(pk=run.pk).reason == "boom ***"


def test_a_protected_environments_values_are_loaded_only_for_an_approved_run(live_world: Any) -> None:
    """The second lock behind the check before the steps: ``environment_values`` itself gives
    a protected environment's secrets to approved runs only, and never against its setting."""
    prod = Environment.objects.get(project=live_world.web, name="prod")
    environment_services.environment_secret_set(
        actor=live_world.alice, environment=prod, name="DB_PASSWORD", value=SECRET
    )
    environment_services.environment_var_set(actor=live_world.alice, environment=prod, name="COLOR", value="blue")
    run = push(make_repository(live_world.web, "/nonexistent/origin.git"), "a" * 40)
    asking = {"steps": [{"name": "deploy-db", "run": "true", "secrets": True}]}

    def values(approved: bool, pipeline: dict[str, Any] = asking) -> dict[str, str] | None:
        log = runner.LogWriter(run.pk)
        return environment_values(environment=prod, pipeline=pipeline, log=log, approved=approved)

    assert values(approved=True) is None  # pipeline_secrets unset: no for a protected environment
    environment_services.environment_update(actor=live_world.alice, environment=prod, pipeline_secrets=True)
    assert values(approved=False) is None
    assert values(approved=True) == {"DB_PASSWORD": SECRET, "COLOR": "blue"}
    assert values(approved=True, pipeline={"steps": [{"name": "x", "run": "true", "secrets": False}]}) is None
