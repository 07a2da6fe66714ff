"""A fire through the real engine: the function runs in its environment with the scheduled
event, the fire and the invocation record name the same request."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.monitoring.models import Invocation
from apps.monitoring.sink import get_sink
from apps.tenancy.models import Environment
from apps.triggers import scheduler, services
from apps.triggers.models import Trigger, TriggerFire
from tests.engine.conftest import deploy_latest, make_function, wait_for

HANDLER = """
import json

def handler(event, context):
    print("scheduled", event["detail"]["trigger"]["name"], event["time"])
    return {"event": event, "request_id": context.aws_request_id}
"""


def test_a_scheduled_fire_and_run_now_invoke_the_deployed_function(world, engine, client_for):
    fn = make_function(world, "cronjob", {"main.py": HANDLER})
    deploy_latest(world, fn)
    env = Environment.objects.get(project=world.web, name="dev")
    trigger = services.trigger_create(
        actor=world.bob,
        function=fn,
        environment=env,
        fields={"name": "every-minute", "expression": "* * * * *", "payload": {"report": "daily"}},
    )
    # Given the occurrence is due now (as the 1 s tick would find it)
    due = timezone.now().replace(microsecond=0)
    Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=due)

    # When the scheduler ticks, running the fire in this thread
    claimed = scheduler.tick(now=due + timedelta(milliseconds=200), run=lambda fid: services.fire_run(fire_id=fid))

    # Then the function ran with the scheduled event, and the fire records its outcome
    fire = TriggerFire.objects.get(pk=claimed[0].fire_id)
    assert (fire.status, fire.version, fire.error) == ("ok", 1, "")
    assert fire.duration_ms is not None and fire.scheduled_at == due
    get_sink().flush()
    record = Invocation.objects.get(request_id=fire.request_id)
    assert (record.trigger, record.status, record.version) == ("schedule", "ok", 1)
    event = services.fire_event(Trigger.objects.get(pk=trigger.pk), fire)
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "stratus.triggers"
    assert event["time"] == due.isoformat().replace("+00:00", "Z")
    assert event["detail"]["payload"] == {"report": "daily"} and event["detail"]["last_run_time"] is None

    # And Run now answers 202 at once and runs in the background, with last_run_time set
    response = client_for(world.bob).post(f"/api/v1/triggers/{trigger.pk}/run")
    assert response.status_code == 202 and response.json()["status"] == "running"
    run_id = response.json()["id"]
    done = wait_for(lambda: TriggerFire.objects.filter(pk=run_id).exclude(status="running").first(), timeout=30)
    assert done.status == "ok" and done.manual is True and done.last_run_at is not None
    scheduler.executor_shutdown()


def test_a_fire_of_a_function_not_deployed_fails_with_the_reason(world, engine):
    fn = make_function(world, "undeployed", {"main.py": HANDLER})
    env = Environment.objects.get(project=world.web, name="dev")
    trigger = services.trigger_create(
        actor=world.bob, function=fn, environment=env, fields={"name": "t", "expression": "* * * * *"}
    )
    due = timezone.now().replace(microsecond=0)
    Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=due)
    claimed = scheduler.tick(now=due, run=lambda fid: services.fire_run(fire_id=fid))
    fire = TriggerFire.objects.get(pk=claimed[0].fire_id)
    assert fire.status == "failed" and "not deployed to 'dev'" in fire.error
