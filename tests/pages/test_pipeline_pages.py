"""The pipeline pages: a project's runs and deliveries, one run with its live log.

Browser tests drive Debian's chromium against the console served by uvicorn (websockets
included), signed in through the login page; the run executes in another thread, as the
worker runs it. Client tests cover tenancy (another org's run answers 404) and refusals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from apps.pipelines import delivery_services, run_services, runner
from apps.pipelines.models import Delivery, Run
from tests.conftest import build_world, serving_console
from tests.pipelines.conftest import HELLO, WEBHOOK_SECRET, GitRepo, make_repository
from tests.pipelines.hooks import body_of, push_payload, sign_headers

STEPS = 'steps:\n  - name: test\n    run: for i in 1 2 3; do echo "tick $i"; sleep 0.8; done; echo oops >&2\n'
TRIGGERS = "triggers:\n  - branch: main\n    environment: dev\n"
FUNCTIONS = (
    "functions:\n  - name: hello\n    path: functions/hello\n    runtime: python3.11\n    handler: main.handler\n"
)


@pytest.fixture
def pipeline(transactional_db: None, tmp_path: Path, settings: Any) -> Any:
    """alpha/web with a repository pushed to main (a three-tick test step) and a queued run."""
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True  # the repository is a local path
    world = build_world()
    repo = GitRepo(tmp_path)
    sha = repo.commit(
        "Add hello", {"functions/hello/main.py": HELLO % "v1", "stratus.yaml": FUNCTIONS + STEPS + TRIGGERS}
    )
    repo.push("main")
    repository = make_repository(world.web, str(repo.origin))
    run = run_services.run_for_push(
        repository=repository,
        ref="refs/heads/main",
        commit_sha=sha,
        commit_message="Add hello",
        author="Ann",
        pusher="pat",
    )
    world.repository, world.run, world.git = repository, run, repo
    return world


@pytest.fixture
def console(pipeline: Any) -> Iterator[str]:
    with serving_console() as address:
        yield f"http://{address}"


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


@pytest.mark.browser
def test_the_run_page_shows_the_log_live_in_order_and_the_state_as_it_changes(browser, pipeline, console) -> None:
    page = browser.new_page()
    try:
        sign_in(page, console, "bob")
        page.click(f"a[href='/projects/{pipeline.web.pk}/pipeline/']")
        page.click(f"a[href='/runs/{pipeline.run.pk}/']")
        assert page.get_by_test_id("run-state").inner_text() == "queued"
        page.get_by_test_id("live").filter(has_text="live").wait_for()
        assert page.locator("form[data-action=cancel]").is_visible()
        assert not page.locator("form[data-action=retry]").is_visible()

        worker = threading.Thread(target=runner.run_execute, args=(pipeline.run.pk,))
        worker.start()
        # Live: the first tick shows while the step still runs (the step takes > 2.4 s).
        page.locator("#log .line", has_text="tick 1").wait_for(timeout=10_000)
        assert Run.objects.get(pk=pipeline.run.pk).state == Run.State.RUNNING
        page.get_by_test_id("run-state").filter(has_text="succeeded").wait_for(timeout=30_000)
        worker.join(30)

        lines = page.locator("#log .line").all_inner_texts()
        assert [line for line in lines if line.startswith("tick")] == ["tick 1", "tick 2", "tick 3"]
        assert "oops" in lines  # stderr too (steps write both to one stream, in order)
        seqs = [int(s) for s in page.locator("#log .line").evaluate_all("els => els.map(e => e.dataset.seq)")]
        assert seqs == list(range(1, len(seqs) + 1))  # each line once, in order
        expected = list(Run.objects.get(pk=pipeline.run.pk).log_lines.order_by("seq").values_list("text", flat=True))
        assert lines == expected  # the same text the API and a later visit show
        steps = page.get_by_test_id("steps")
        steps.locator("tr[data-step='deploy to dev'] .state-succeeded").wait_for()
        assert steps.locator("tr[data-step='test'] .state").inner_text() == "succeeded"
        assert page.locator("form[data-action=retry]").is_visible()
        assert not page.locator("form[data-action=cancel]").is_visible()

        # A finished run shows the same log on a fresh visit.
        page.reload()
        page.locator("#log .line", has_text="tick 3").wait_for()
        assert page.locator("#log .line").all_inner_texts() == expected

        # Retry starts a new run of the same commit and opens it.
        page.click("form[data-action=retry] button")
        page.wait_for_url(f"{console}/runs/*/")
        retried = Run.objects.get(retry_of=pipeline.run)
        assert page.url == f"{console}/runs/{retried.pk}/"
        assert page.get_by_test_id("run-state").inner_text() == "queued"
    finally:
        page.close()


@pytest.mark.browser
def test_the_pipeline_page_lists_runs_and_deliveries_and_redelivers(browser, pipeline, console) -> None:
    client = Client()
    body = body_of(push_payload("github", after=pipeline.git.git("rev-parse", "HEAD")))
    response = client.post(
        f"/hooks/github/{pipeline.repository.hook_id}/",
        data=body,
        content_type="application/json",
        headers=sign_headers("github", body, WEBHOOK_SECRET, delivery="gh-7"),
    )
    assert response.status_code == 202
    delivery = Delivery.objects.get(delivery_id="gh-7")

    page = browser.new_page()
    try:
        sign_in(page, console, "bob")
        page.goto(f"{console}/projects/{pipeline.web.pk}/pipeline/")
        assert str(pipeline.repository.url) in page.get_by_test_id("repository").inner_text()
        assert f"/hooks/github/{pipeline.repository.hook_id}/" in page.get_by_test_id("repository").inner_text()
        row = page.get_by_test_id("run-1")
        assert row.locator(".state").inner_text() == "queued"
        assert "Add hello" in row.inner_text()
        delivered = page.get_by_test_id(f"delivery-{delivery.pk}")
        assert "accepted" in delivered.inner_text() and "#1" in delivered.inner_text()

        delivered.locator("button", has_text="Redeliver").click()
        page.get_by_role("status").wait_for()
        assert page.get_by_role("status").inner_text() == "Delivery gh-7 redelivered: accepted, run #1."
        again = Delivery.objects.get(redelivery_of=delivery)
        assert again.run_id == pipeline.run.pk  # the same commit: the same run, nothing new

        page.fill("[data-testid=run-branch] input[name=branch]", "no-such-branch")
        page.click("[data-testid=run-branch] button")
        assert "no-such-branch" in page.get_by_role("alert").inner_text()
    finally:
        page.close()


def test_another_orgs_runs_and_pipeline_answer_404(pipeline: Any) -> None:
    run, web = pipeline.run, pipeline.web
    delivery = delivery_services.delivery_reject(
        repository=pipeline.repository, provider="github", headers={}, reason="bad signature"
    )
    charlie = Client()
    charlie.force_login(pipeline.charlie)
    for path in (f"/projects/{web.pk}/pipeline/", f"/runs/{run.pk}/"):
        assert charlie.get(path).status_code == 404
    for path in (
        f"/projects/{web.pk}/pipeline/run",
        f"/runs/{run.pk}/cancel",
        f"/runs/{run.pk}/retry",
        f"/runs/{run.pk}/approve",
        f"/deliveries/{delivery.pk}/redeliver",
    ):
        assert charlie.post(path, {"branch": "main"}).status_code == 404
    assert Run.objects.get(pk=run.pk).state == Run.State.QUEUED
    assert Run.objects.count() == 1
    # Anonymous visitors are sent to sign in.
    response = Client().get(f"/runs/{run.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_viewer_sees_the_run_but_is_refused_its_actions_with_the_reason(pipeline: Any) -> None:
    carol = Client()
    carol.force_login(pipeline.carol)  # viewer on alpha/web
    assert carol.get(f"/runs/{pipeline.run.pk}/").status_code == 200
    response = carol.post(f"/runs/{pipeline.run.pk}/cancel", follow=True)
    assert response.redirect_chain[-1][0] == f"/runs/{pipeline.run.pk}/"
    assert "Canceling a run" in response.content.decode()
    assert Run.objects.get(pk=pipeline.run.pk).state == Run.State.QUEUED
    assert carol.post(f"/runs/{pipeline.run.pk}/explode").status_code == 404


def test_an_admin_connects_a_repository_from_the_page_and_sees_the_secret_once(transactional_db: None) -> None:
    from apps.core import crypto
    from apps.pipelines.models import Repository

    world = build_world()
    alice = Client()
    alice.force_login(world.alice)
    page = f"/projects/{world.web.pk}/pipeline/"
    assert "Connect a repository" in alice.get(page).content.decode()

    response = alice.post(
        page + "repository",
        {
            "url": "https://git.example/alpha/web.git",
            "default_branch": "trunk",
            "credentials": "token",
            "credentials_value": "ghp-very-secret-token",
        },
    )
    html = response.content.decode()
    assert response.status_code == 200
    repository = Repository.objects.get(project=world.web)
    secret = crypto.decrypt(repository.webhook_secret_ciphertext)
    assert secret in html and f"/hooks/github/{repository.hook_id}/" in html
    assert (repository.url, repository.default_branch, repository.credentials_kind) == (
        "https://git.example/alpha/web.git",
        "trunk",
        "token",
    )
    assert crypto.decrypt(repository.credentials_ciphertext) == "ghp-very-secret-token"
    assert "ghp-very-secret-token" not in html

    later = alice.get(page).content.decode()  # the secret is gone; the token never shows
    assert secret not in later and "ghp-very-secret-token" not in later
    assert "Change the repository" in later

    # Changing the branch keeps the stored credentials and the secret.
    saved = alice.post(
        page + "repository",
        {"url": repository.url, "default_branch": "main", "credentials": "keep"},
        follow=True,
    )
    assert "Repository saved." in saved.content.decode()
    repository.refresh_from_db()
    assert repository.default_branch == "main" and repository.credentials_kind == "token"
    assert crypto.decrypt(repository.webhook_secret_ciphertext) == secret


def test_the_repository_form_names_what_it_refuses(transactional_db: None) -> None:
    from apps.pipelines.models import Repository

    world = build_world()
    page = f"/projects/{world.web.pk}/pipeline/"
    alice, bob, charlie = Client(), Client(), Client()
    alice.force_login(world.alice)
    bob.force_login(world.bob)  # developer: may run, may not connect repositories
    charlie.force_login(world.charlie)  # another org
    body = {"url": "https://git.example/alpha/web.git", "default_branch": "main", "credentials": "keep"}

    refused = bob.post(page + "repository", body, follow=True).content.decode()
    assert "Connecting a repository" in refused
    assert charlie.post(page + "repository", body).status_code == 404

    bad_url = alice.post(page + "repository", {**body, "url": "ftp://x/y"}, follow=True).content.decode()
    assert "Use an https://, ssh:// or git@host:path URL." in bad_url
    no_token = alice.post(page + "repository", {**body, "credentials": "token"}, follow=True).content.decode()
    assert "credentials_value: Paste the token or the private key." in no_token
    assert not Repository.objects.filter(project=world.web).exists()
