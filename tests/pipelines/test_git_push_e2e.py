"""git push → signed GitHub webhook → run (clone, build, test, package, deploy) → the new
version answers through the gateway. Also: a failing test step stops the deploy, and a branch
push creates (and a branch delete removes) a preview environment."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.functions.models import Binding, Function
from apps.pipelines import runner
from apps.pipelines.models import Delivery, Run
from apps.tenancy import token_services
from apps.tenancy.models import Environment
from tests.conftest import build_world
from tests.engine.conftest import wait_for
from tests.pipelines.conftest import HELLO, PIPELINE, WEBHOOK_SECRET, GitRepo, make_repository
from tests.pipelines.hooks import body_of, push_payload, sign_headers


@pytest.fixture
def live_world(engine: Any) -> Any:
    return build_world()


def deliver(served: Any, repository: Any, ref: str, sha: str, delivery: str, deleted: bool = False) -> dict[str, Any]:
    body = body_of(push_payload("github", ref=ref, after=sha, deleted=deleted))
    headers = sign_headers("github", body, WEBHOOK_SECRET, delivery=delivery)
    response = served.post(
        f"/hooks/github/{repository.hook_id}/", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


def invoke_until(served: Any, path: str, token: str, expected: str, timeout: float = 15) -> float:
    """Seconds until the gateway answers ``expected`` at ``path``."""
    start = time.monotonic()

    def answered() -> bool:
        response = served.get(path, headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200 and response.text == expected

    wait_for(answered, timeout=timeout, interval=0.02)
    return time.monotonic() - start


def test_push_to_main_deploys_and_the_new_version_answers(live_world: Any, served: Any, git_repo: GitRepo) -> None:
    world = live_world
    repository = make_repository(world.web, str(git_repo.origin))
    _, token = token_services.token_create(user=world.alice, name="invoke", scopes=["invoke"])
    path = "/fn/alpha/web/dev/hello/"
    timings = []
    for n, tag in enumerate(("v1", "v2"), start=1):
        sha = git_repo.commit(f"hello {tag}", {"functions/hello/main.py": HELLO % tag, "stratus.yaml": PIPELINE})
        git_repo.push("main")
        started = time.monotonic()
        answer = deliver(served, repository, "refs/heads/main", sha, delivery=f"gh-{n}")
        run = Run.objects.get(pk=answer["run"])
        assert run.commit_sha == sha and run.trigger == "push" and run.pusher == "pat"
        assert Delivery.objects.get(pk=answer["delivery"]).run_id == run.pk
        assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
        invoke_until(served, path, token, f"hello from git {tag}")
        timings.append(time.monotonic() - started)
        run.refresh_from_db()
        assert run.environment == "dev" and not run.preview
        assert [s.state for s in run.steps.all()] == ["succeeded"] * 4
        version = Function.objects.get(project=world.web, name="hello").versions.order_by("-number").first()
        assert version is not None and version.number == n and version.source == "git"
        assert version.source_info["commit"] == sha and version.source_info["branch"] == "main"
        assert version.source_info["message"] == f"hello {tag}"
        texts = list(run.log_lines.values_list("text", flat=True))
        assert "testing" in texts
    # Same delivery again: nothing new; same commit pushed again: the same run.
    again = deliver(served, repository, "refs/heads/main", sha, delivery="gh-2")
    assert again["run"] == run.pk
    print(f"\nwebhook-to-live: first push {timings[0]:.2f} s, second push {timings[1]:.2f} s")


def test_failing_test_step_stops_the_deploy(live_world: Any, served: Any, git_repo: GitRepo) -> None:
    world = live_world
    failing = PIPELINE.replace("sys.exit(0)", "sys.exit(1)")
    sha = git_repo.commit("broken", {"functions/hello/main.py": HELLO % "bad", "stratus.yaml": failing})
    git_repo.push("main")
    repository = make_repository(world.web, str(git_repo.origin))
    answer = deliver(served, repository, "refs/heads/main", sha, delivery="gh-f")
    assert runner.run_execute(answer["run"]) == Run.State.FAILED
    run = Run.objects.get(pk=answer["run"])
    assert run.reason == "step test exited with code 1"
    assert {s.name: s.state for s in run.steps.all()} == {
        "checkout": "succeeded",
        "test": "failed",
        "package": "skipped",
        "deploy to dev": "skipped",
    }
    assert not Function.objects.filter(project=world.web).exists()
    assert not Binding.objects.exists()


def test_branch_push_creates_a_preview_environment(live_world: Any, served: Any, git_repo: GitRepo) -> None:
    world = live_world
    git_repo.commit("base", {"functions/hello/main.py": HELLO % "main", "stratus.yaml": PIPELINE})
    git_repo.push("main")
    git_repo.checkout("feature/Shiny", create=True)
    sha = git_repo.commit("shiny", {"functions/hello/main.py": HELLO % "preview"})
    git_repo.push("feature/Shiny")
    repository = make_repository(world.web, str(git_repo.origin))
    _, token = token_services.token_create(user=world.bob, name="invoke", scopes=["invoke"])

    answer = deliver(served, repository, "refs/heads/feature/Shiny", sha, delivery="gh-p")
    assert runner.run_execute(answer["run"]) == Run.State.SUCCEEDED
    run = Run.objects.get(pk=answer["run"])
    assert run.preview and run.environment == "preview-feature-shiny"
    environment = Environment.objects.get(project=world.web, name="preview-feature-shiny")
    assert not environment.protected
    invoke_until(served, "/fn/alpha/web/preview-feature-shiny/hello/", token, "hello from git preview")
    assert not Binding.objects.filter(environment__name="dev").exists()  # main was not deployed

    deleted = deliver(served, repository, "refs/heads/feature/Shiny", "0" * 40, delivery="gh-d", deleted=True)
    assert deleted["outcome"] == "accepted"
    assert not Environment.objects.filter(project=world.web, name="preview-feature-shiny").exists()
    # The gateways drop the route when they hear of it (in-process, or Redis pub/sub).
    wait_for(
        lambda: (
            served.get(
                "/fn/alpha/web/preview-feature-shiny/hello/", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 404
        )
    )
