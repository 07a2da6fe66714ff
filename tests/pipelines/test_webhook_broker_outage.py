"""A signed push while the broker is down (issue 20, item 4): the webhook answers 202 with
its run created (the run_execute task it owes waits in the outbox, never a 500 after the
commit), and the run executes once the broker is back. Real parts: a git push to a bare
origin, a GitHub-signed delivery, a private redis-server as the broker killed and started
again, and the in-process Celery worker consuming it."""

from __future__ import annotations

from typing import Any

from django.test import Client

from apps.core import worker
from apps.core.models import Outbox
from apps.pipelines.models import Run
from tests.broker import celery_broker, private_redis, wait_until  # noqa: F401
from tests.conftest import build_world
from tests.pipelines.conftest import WEBHOOK_SECRET, GitRepo, make_repository
from tests.pipelines.hooks import body_of, push_payload, sign_headers


def test_a_push_with_the_broker_down_answers_202_and_its_run_executes_once_the_broker_is_back(
    transactional_db: None,
    private_redis: Any,  # noqa: F811
    hello_repo: GitRepo,
) -> None:
    world = build_world()
    repository = make_repository(world.web, str(hello_repo.origin))
    sha = hello_repo.git("rev-parse", "HEAD")
    body = body_of(push_payload("github", ref="refs/heads/main", after=sha))
    headers = sign_headers("github", body, WEBHOOK_SECRET, delivery="outage-1")

    with celery_broker(private_redis.url):
        started_here = not worker.is_running()
        worker.start()
        try:
            # Given the broker goes away
            private_redis.stop()

            # When the git host delivers the push
            response = Client().post(
                f"/hooks/github/{repository.hook_id}/", data=body, content_type="application/json", headers=headers
            )

            # Then the webhook answers as accepted, with its run created and queued
            assert response.status_code in (200, 202), response.content
            run = Run.objects.get(pk=response.json()["run"])
            assert run.state == Run.State.QUEUED and run.commit_sha == sha
            [owed] = Outbox.objects.filter(task="apps.pipelines.tasks.run_execute")
            assert owed.sent_at is None and owed.args == [run.pk] and owed.last_error

            # When the broker comes back, the run executes (no redelivery, no worker restart)
            private_redis.start()
            wait_until(
                lambda: Run.objects.get(pk=run.pk).state not in Run.ACTIVE_STATES,
                timeout=90,
                what="the run finished after the broker came back",
            )
            run.refresh_from_db()
            assert run.state == Run.State.SUCCEEDED, run.reason
            owed.refresh_from_db()
            assert owed.sent_at is not None
        finally:
            if started_here:
                worker.stop()
