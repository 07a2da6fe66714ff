"""End to end against the local engine: a canary that raises on every request takes 50% of
real traffic through the gateway, its gate fails and the release rolls itself back."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.functions import version_services
from apps.functions.deploy_services import binding_apply_revision
from apps.functions.models import Binding
from apps.monitoring.sink import get_sink
from apps.releases import tasks
from apps.releases.models import Release
from tests.conftest import build_world
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_routed
from tests.releases.conftest import timeline

STABLE = "def handler(event, context):\n    return {'ok': True}\n"
BROKEN = "def handler(event, context):\n    raise RuntimeError('canary is broken')\n"


@pytest.mark.django_db(transaction=True)
def test_failing_canary_is_aborted_by_its_gate_and_traffic_returns_to_stable(engine, served, client_for):
    world = build_world()
    fn = make_function(world, "flaky", {"main.py": STABLE})
    deploy_latest(world, fn)
    wait_routed(engine, fn, version=1)
    version_services.version_create(actor=world.alice, function=fn, files={"main.py": BROKEN.encode()}, source="files")

    # Given an auto release of the broken version at 50%, gated on its error rate
    plan = {
        "steps": [50, 100],
        "advance": "auto",
        "dwell_s": 60,
        "gate": {"min_requests": 5, "max_error_rate": 0.1},
    }
    response = client_for(world.alice).post(
        f"/api/v1/functions/{fn.pk}/releases/", {"environment": "dev", "version": 2, "plan": plan}, format="json"
    )
    assert response.status_code == 201, response.json()
    rid = response.json()["id"]
    binding = Binding.objects.get(function=fn)
    binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    wait_routed(engine, fn, version=2)

    # When real requests go through the gateway
    statuses = [served.get(url(fn)).status_code for _ in range(50)]
    assert statuses.count(502) >= 5, statuses  # the canary's share failed
    assert statuses.count(200) >= 5, statuses
    assert set(statuses) <= {200, 502}
    get_sink().flush()

    # And the release's task looks at its step (the dwell is not over: the gate acts anyway)
    tasks.release_advance(rid, 0)

    # Then the gate failed on the error rate and all traffic is back on version 1
    release = Release.objects.get(pk=rid)
    assert release.state == "aborted"
    assert release.failure["by"] == "gate" and release.failure["figure"] == "error_rate"
    assert release.failure["canary"] == 1.0 and release.failure["limit"] == 0.1
    assert Binding.objects.get(pk=binding.pk).traffic == [{"version": 1, "weight": 100}]
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "gate_failure"]
    body = client_for(world.alice).get(f"/api/v1/releases/{rid}/").json()
    assert body["state"] == "aborted" and body["gate"]["figures"]["canary"]["requests"] >= 5

    # And the gateway serves only the stable version again
    key = (fn.project.org.slug, fn.project.slug, "dev", fn.name)
    wait_for(lambda: engine.engine.routes.get(key) is not None and 2 not in engine.engine.routes[key].versions)
    assert {served.get(url(fn)).status_code for _ in range(20)} == {200}


GOOD_CANARY = "def handler(event, context):\n    return {'ok': True, 'canary': True}\n"


@pytest.mark.django_db(transaction=True)
def test_healthy_canary_is_advanced_by_its_gate_to_100_percent(engine, served, client_for):
    world = build_world()
    fn = make_function(world, "steady", {"main.py": STABLE})
    deploy_latest(world, fn)
    wait_routed(engine, fn, version=1)
    version_services.version_create(
        actor=world.alice, function=fn, files={"main.py": GOOD_CANARY.encode()}, source="files"
    )
    plan = {"steps": [50, 100], "advance": "auto", "dwell_s": 1, "gate": {"min_requests": 5, "max_error_rate": 0.1}}
    client = client_for(world.alice)
    rid = client.post(
        f"/api/v1/functions/{fn.pk}/releases/", {"environment": "dev", "version": 2, "plan": plan}, format="json"
    ).json()["id"]
    wait_routed(engine, fn, version=2)

    # When real requests reach both versions and the dwell has passed
    answers = [served.get(url(fn)) for _ in range(40)]
    assert {r.status_code for r in answers} == {200}
    assert {r.headers["X-Stratus-Version"] for r in answers} == {"1", "2"}
    get_sink().flush()
    wait_for(lambda: Release.objects.get(pk=rid).next_step_at <= timezone.now(), timeout=5)
    tasks.release_advance(rid, 0)

    # Then the gate passed and the canary took all the traffic
    body = client.get(f"/api/v1/releases/{rid}/").json()
    assert (body["state"], body["percent"]) == ("completed", 100), body
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "complete"]
    key = (fn.project.org.slug, fn.project.slug, "dev", fn.name)
    wait_for(lambda: engine.engine.routes.get(key) is not None and 1 not in engine.engine.routes[key].versions)
    assert {served.get(url(fn)).headers["X-Stratus-Version"] for _ in range(10)} == {"2"}
