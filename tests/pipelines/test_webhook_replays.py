"""Replayed webhooks: a push body signed by the git host verifies again later (the signature
covers the body, not the delivery id), so an old body replayed with a new delivery id must not
redeploy an old commit over a newer one. Real git repositories, real signed deliveries to the
served console, runs executed as the worker runs them, the function answering through the
gateway; the fetch-and-decide task (``delivery_check``) is called as the worker calls it.

And the legitimate cases that look alike: pushes delivered out of order, a force-push to a
commit that is older-looking but not an ancestor, a force-push back to an earlier commit."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from apps.functions.models import Binding, Function
from apps.pipelines import delivery_services, mirror, run_services, runner
from apps.pipelines.models import Delivery, Repository, Run
from apps.tenancy import token_services
from tests.conftest import build_world
from tests.engine.conftest import wait_for
from tests.pipelines.conftest import GIT_ENV, HELLO, PIPELINE, WEBHOOK_SECRET, GitRepo, make_repository
from tests.pipelines.hooks import body_of, push_payload, sign_headers

PATH = "/fn/alpha/web/dev/hello/"


@pytest.fixture
def live_world(engine: Any) -> Any:
    return build_world()


@pytest.fixture
def repository(live_world: Any, git_repo: GitRepo) -> Repository:
    repository = make_repository(live_world.web, str(git_repo.origin))
    shutil.rmtree(mirror.mirror_path(repository), ignore_errors=True)  # ids are reused across tests
    return repository


@pytest.fixture
def token(live_world: Any) -> str:
    return token_services.token_create(user=live_world.alice, name="invoke", scopes=["invoke"])[1]


def push_body(sha: str, *, forced: bool = False) -> bytes:
    data = push_payload("github", after=sha)
    data["forced"] = forced
    return body_of(data)


def deliver(served: Any, repository: Repository, body: bytes, delivery: str | None) -> Any:
    headers = sign_headers("github", body, WEBHOOK_SECRET, delivery=delivery)
    return served.post(
        f"/hooks/github/{repository.hook_id}/", content=body, headers={**headers, "Content-Type": "application/json"}
    )


def commit(git_repo: GitRepo, tag: str, **env: str) -> str:
    git_repo.write({"functions/hello/main.py": HELLO % tag, "stratus.yaml": PIPELINE})
    git_repo.git("add", "-A")
    subprocess.run(["git", "commit", "-q", "-m", f"hello {tag}"], cwd=git_repo.work, check=True, env={**GIT_ENV, **env})
    return git_repo.git("rev-parse", "HEAD")


def push_and_run(served: Any, repository: Repository, git_repo: GitRepo, tag: str, delivery: str) -> tuple[str, Run]:
    sha = commit(git_repo, tag)
    git_repo.push("main")
    response = deliver(served, repository, push_body(sha), delivery)
    assert response.status_code == 202, response.text
    run = Run.objects.get(pk=response.json()["run"])
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    return sha, run


def answers(served: Any, token: str, expected: str) -> None:
    def ok() -> bool:
        response = served.get(PATH, headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200 and response.text == expected

    wait_for(ok, timeout=15)


def served_version() -> int:
    traffic = Binding.objects.get(function__name="hello", environment__name="dev").traffic
    assert len(traffic) == 1 and traffic[0]["weight"] == 100, traffic
    return int(traffic[0]["version"])


def test_a_replayed_old_push_starts_nothing_and_the_newer_commit_stays_deployed(
    live_world: Any, served: Any, git_repo: GitRepo, repository: Repository, token: str, client_for: Any
) -> None:
    # Given commit A pushed and deployed, then commit B pushed and deployed
    a, run_a = push_and_run(served, repository, git_repo, "v1", "gh-1")
    b, run_b = push_and_run(served, repository, git_repo, "v2", "gh-2")
    answers(served, token, "hello from git v2")
    assert served_version() == 2

    # When A's signed push body is replayed under a new delivery id
    replay = deliver(served, repository, push_body(a), "gh-replay")

    # Then nothing starts at once: the delivery waits for a fetch, saying why
    assert replay.status_code == 202, replay.text
    answer = replay.json()
    assert (answer["outcome"], answer["run"]) == ("pending", None)
    delivery = Delivery.objects.get(pk=answer["delivery"])
    assert delivery.reason == (
        f"commit {a[:12]} ran before (run {run_a.number}) and branch main has run {b[:12]} since "
        f"(run {run_b.number}): a fetch decides whether it is the head"
    )
    # And the fetch (the delivery_check task, as the worker runs it) finds B at the head:
    # stale, nothing started
    settled = delivery_services.delivery_check_head(delivery.pk)
    assert settled is not None
    assert (settled.outcome, settled.run_id) == ("stale", None)
    assert settled.reason == f"superseded: branch main is at {b[:12]} (this push was for {a[:12]}): nothing started"
    assert delivery_services.delivery_check_head(delivery.pk) is None  # a second copy of the task: nothing
    assert list(Run.objects.order_by("number").values_list("pk", flat=True)) == [run_a.pk, run_b.pk]
    # And B's version still serves
    answers(served, token, "hello from git v2")
    assert served_version() == 2
    # And the deliveries API shows why
    listed = client_for(live_world.alice).get(f"/api/v1/projects/{live_world.web.pk}/deliveries/").json()
    assert (listed["results"][0]["outcome"], listed["results"][0]["reason"]) == ("stale", settled.reason)

    # When the same body comes without a delivery id: refused, nothing starts
    missing = deliver(served, repository, push_body(a), None)
    assert missing.status_code == 400, missing.text
    assert missing.json()["error"]["code"] == "missing_delivery_id"
    assert Run.objects.count() == 2

    # And the legitimate re-runs of the head still work: redelivering B's delivery joins B's
    # run; "Run branch head" runs B again
    again = delivery_services.delivery_redeliver(
        actor=live_world.alice, delivery=Delivery.objects.get(delivery_id="gh-2")
    )
    assert (again.outcome, again.run_id) == ("accepted", run_b.pk)
    head_run = run_services.run_create_manual(actor=live_world.alice, project=live_world.web, branch="main")
    assert head_run.commit_sha == b
    assert runner.run_execute(head_run.pk) == Run.State.SUCCEEDED
    answers(served, token, "hello from git v2")


def test_pushes_delivered_out_of_order_deploy_the_newest_and_never_the_older(
    live_world: Any, served: Any, git_repo: GitRepo, repository: Repository, token: str
) -> None:
    # Given A and then B pushed together, their webhooks arriving B first, then A
    a = commit(git_repo, "v1")
    b = commit(git_repo, "v2")
    git_repo.push("main")
    run_b = Run.objects.get(pk=deliver(served, repository, push_body(b), "gh-b").json()["run"])
    late = deliver(served, repository, push_body(a), "gh-a").json()
    # (nothing told intake that A is older: no run had A, no fetch had seen B yet)
    assert late["outcome"] == "accepted"
    run_a = Run.objects.get(pk=late["run"])
    run_b.refresh_from_db()
    assert (run_b.state, run_b.reason) == ("canceled", f"superseded by run {run_a.number}")

    # When A's run executes: after its fetch, main is at B
    assert runner.run_execute(run_a.pk) == Run.State.CANCELED

    # Then it deployed nothing, says why, and so does its delivery
    run_a.refresh_from_db()
    why = f"superseded: branch main is at {b[:12]} (this push was for {a[:12]})"
    assert run_a.reason == why
    assert {s.name: s.state for s in run_a.steps.all()} == {"checkout": "skipped"}
    assert not Function.objects.filter(project=live_world.web).exists()
    stale = Delivery.objects.get(delivery_id="gh-a")
    assert (stale.outcome, stale.reason) == ("stale", f"{why}: nothing deployed (run {run_a.number})")
    # And B, which A's run had superseded, runs again and deploys
    run_b2 = Run.objects.get(number=run_a.number + 1)
    assert (run_b2.commit_sha, run_b2.retry_of_id, run_b2.state) == (b, run_b.pk, "queued")
    assert runner.run_execute(run_b2.pk) == Run.State.SUCCEEDED
    answers(served, token, "hello from git v2")
    versions = Function.objects.get(project=live_world.web, name="hello").versions.all()
    assert [v.source_info["commit"] for v in versions] == [b]


def test_a_force_push_to_an_older_looking_commit_that_is_no_ancestor_runs(
    live_world: Any, served: Any, git_repo: GitRepo, repository: Repository, token: str
) -> None:
    # Given A then B deployed
    a, _ = push_and_run(served, repository, git_repo, "v1", "gh-1")
    push_and_run(served, repository, git_repo, "v2", "gh-2")
    # When main is force-pushed to C: on top of A, dated years before both, not in B's history
    git_repo.git("reset", "-q", "--hard", a)
    old = {"GIT_AUTHOR_DATE": "2001-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2001-01-01T00:00:00Z"}
    c = commit(git_repo, "v3", **old)
    git_repo.git("push", "-q", "--force", "origin", "HEAD:refs/heads/main")
    response = deliver(served, repository, push_body(c, forced=True), "gh-3")

    # Then it runs at once and deploys C
    assert response.status_code == 202 and response.json()["outcome"] == "accepted", response.text
    assert runner.run_execute(response.json()["run"]) == Run.State.SUCCEEDED
    answers(served, token, "hello from git v3")
    version = Function.objects.get(project=live_world.web, name="hello").versions.get(number=served_version())
    assert version.source_info["commit"] == c


def test_a_force_push_back_to_an_earlier_commit_runs_after_the_fetch(
    live_world: Any, served: Any, git_repo: GitRepo, repository: Repository, token: str
) -> None:
    # Given A then B deployed
    a, run_a = push_and_run(served, repository, git_repo, "v1", "gh-1")
    push_and_run(served, repository, git_repo, "v2", "gh-2")
    # When main is force-pushed back to A (A's push body looks like a replay of it)
    git_repo.git("reset", "-q", "--hard", a)
    git_repo.git("push", "-q", "--force", "origin", "HEAD:refs/heads/main")
    response = deliver(served, repository, push_body(a, forced=True), "gh-back")
    assert response.json()["outcome"] == "pending", response.text

    # Then the fetch shows A is the head: its run starts and deploys A again
    settled = delivery_services.delivery_check_head(response.json()["delivery"])
    assert settled is not None and settled.outcome == "accepted", settled and settled.reason
    run = Run.objects.get(pk=settled.run_id)
    assert (run.commit_sha, run.trigger, run.number) == (a, "push", run_a.number + 2)
    assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    answers(served, token, "hello from git v1")
    version = Function.objects.get(project=live_world.web, name="hello").versions.get(number=served_version())
    assert version.source_info["commit"] == a
