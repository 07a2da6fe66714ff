"""A deploy while the broker is down (issue 20, item 4): the change commits, the API answers
200 with the binding pending (never a 500 after a commit), and the binding_apply task the
deploy owes goes out of the outbox as soon as the broker is back: the binding becomes ready
without anyone waiting for a periodic resync. Real parts: a private redis-server as the
broker, killed and started again, and the in-process Celery worker consuming it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.core import worker
from apps.core.models import Outbox
from apps.functions import services, version_services
from apps.functions.models import Binding
from tests.broker import celery_broker, private_redis, wait_until  # noqa: F401
from tests.conftest import build_world

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_deploy_with_the_broker_down_answers_200_and_applies_once_it_is_back(
    private_redis: Any,  # noqa: F811
    client_for: Any,
) -> None:
    world = build_world()
    fn = services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    version_services.version_create(actor=world.alice, function=fn, files={"main.py": b"V = 1\n"}, source="files")
    bob = client_for(world.bob)

    with celery_broker(private_redis.url):
        started_here = not worker.is_running()
        worker.start()
        try:
            # Given the broker goes away
            private_redis.stop()

            # When bob deploys
            response = bob.post(
                f"/api/v1/functions/{fn.pk}/deploy", {"environment": "dev", "version": 1}, format="json"
            )

            # Then the deploy answers as committed, with its binding pending
            assert response.status_code == 200, response.content
            assert response.json()["status"] == "pending"
            binding = Binding.objects.get(function=fn)
            assert (binding.status, binding.revision) == ("pending", 1)
            # and the task it owes waits in the outbox, with the reason it could not go
            [owed] = Outbox.objects.filter(task="apps.functions.tasks.binding_apply")
            assert owed.sent_at is None and owed.args == [binding.pk, 1] and owed.last_error
            report = bob.get("/readyz").json()["outbox"]
            assert report["pending"] >= 1 and report["oldest_age_s"] >= 0

            # When the broker comes back, the binding is applied within seconds (nobody else
            # deploys, no worker restarts: this process's reconciler sends what it owes)
            back = time.monotonic()
            private_redis.start()
            wait_until(
                lambda: Binding.objects.get(pk=binding.pk).status == "ready",
                timeout=20,
                what="the binding ready after the broker came back",
            )
            print(f"\nbinding ready {time.monotonic() - back:.1f} s after the broker came back")
            owed.refresh_from_db()
            assert owed.sent_at is not None and owed.attempts >= 2
            assert Binding.objects.get(pk=binding.pk).applied_revision == 1
        finally:
            if started_here:
                worker.stop()
