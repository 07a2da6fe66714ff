"""The triggers API: CRUD, roles, validation naming the field, preview, run/pause/resume."""

from __future__ import annotations

import pytest

from apps.triggers.models import Trigger
from tests.triggers.conftest import plain_function

pytestmark = pytest.mark.django_db


def create(client, fn, **body):
    body.setdefault("environment", "dev")
    return client.post(f"/api/v1/functions/{fn.pk}/triggers/", body, format="json")


def test_developer_creates_reads_edits_pauses_and_deletes(world, client_for):
    fn = plain_function(world)
    bob = client_for(world.bob)

    created = create(bob, fn, name="nightly", expression="0 2 * * 1-5", timezone="Europe/Berlin", payload={"k": 1})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["environment"], body["kind"], body["status"], body["payload"]) == ("dev", "cron", "active", {"k": 1})
    assert body["next_fire_at"].endswith(("T01:00:00Z", "T00:00:00Z"))  # 02:00 Berlin in UTC

    listed = bob.get(f"/api/v1/functions/{fn.pk}/triggers/").json()
    assert [t["name"] for t in listed["results"]] == ["nightly"]

    patched = bob.patch(f"/api/v1/triggers/{body['id']}", {"expression": "rate(5 minutes)"}, format="json")
    assert (patched.status_code, patched.json()["kind"]) == (200, "rate")
    paused = bob.post(f"/api/v1/triggers/{body['id']}/pause").json()
    assert (paused["status"], paused["next_fire_at"]) == ("paused", None)
    resumed = bob.post(f"/api/v1/triggers/{body['id']}/resume").json()
    assert resumed["status"] == "active" and resumed["next_fire_at"]
    assert bob.get(f"/api/v1/triggers/{body['id']}/fires").json()["results"] == []

    assert bob.delete(f"/api/v1/triggers/{body['id']}").status_code == 204
    assert not Trigger.objects.exists()


def test_viewer_reads_but_cannot_write_and_outsider_gets_404(world, client_for):
    fn = plain_function(world)
    created = create(client_for(world.bob), fn, name="n", expression="@daily").json()
    carol, charlie = client_for(world.carol), client_for(world.charlie)

    assert carol.get(f"/api/v1/triggers/{created['id']}").status_code == 200
    assert create(carol, fn, name="x", expression="@daily").status_code == 403
    assert carol.patch(f"/api/v1/triggers/{created['id']}", {"enabled": False}, format="json").status_code == 403
    assert carol.post(f"/api/v1/triggers/{created['id']}/run").status_code == 403
    assert carol.delete(f"/api/v1/triggers/{created['id']}").status_code == 403
    for method, path in [("get", ""), ("patch", ""), ("post", "/run"), ("post", "/pause"), ("get", "/fires")]:
        assert getattr(charlie, method)(f"/api/v1/triggers/{created['id']}{path}").status_code == 404
    assert Trigger.objects.get().enabled is True


def test_a_protected_environment_needs_the_deploy_right(world, client_for):
    from apps.tenancy.models import Environment

    fn = plain_function(world)
    Environment.objects.filter(project=world.web, name="prod").update(protected=True)
    refused = create(client_for(world.bob), fn, environment="prod", name="p", expression="@daily")
    assert refused.status_code == 403
    assert create(client_for(world.alice), fn, environment="prod", name="p", expression="@daily").status_code == 201


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "x", "expression": "0 0 31 2 *"}, "expression", "never fires"),
        ({"name": "x", "expression": "@daily", "timezone": "Europe/Nowhere"}, "timezone", "not an IANA timezone"),
        ({"name": "x", "expression": "@daily", "payload": {"b": "x" * (256 * 1024)}}, "payload", "256 KB"),
        ({"name": "x", "expression": "@daily", "overlap_policy": "sometimes"}, "overlap_policy", "skip, queue, allow"),
        ({"name": "x", "expression": "@daily", "start_at": "2030-01-01"}, "start_at", "offset"),
        ({"name": "x", "expression": "at(2020-01-01T00:00)"}, "expression", "in the past"),
        ({"expression": "@daily"}, "name", "required"),
        ({"name": "x", "expression": "@daily", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_input_answers_400_naming_the_field(world, client_for, body, field, words):
    fn = plain_function(world)
    response = create(client_for(world.bob), fn, **body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"] and words in error["message"], error
    assert not Trigger.objects.exists()


def test_preview_lists_ten_times_and_a_description(world, client_for):
    client = client_for(world.carol)
    ok = client.post(
        "/api/v1/triggers/preview",
        {"expression": "30 1 * * *", "timezone": "America/New_York", "start": "2026-10-31T12:00:00Z"},
        format="json",
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["description"] == "at 01:30, America/New_York"
    assert len(body["fire_times"]) == 10
    assert body["fire_times"][:2] == [
        {"utc": "2026-11-01T05:30:00Z", "local": "2026-11-01T01:30:00-04:00"},
        {"utc": "2026-11-02T06:30:00Z", "local": "2026-11-02T01:30:00-05:00"},
    ]
    bad = client.post("/api/v1/triggers/preview", {"expression": "0 25 * * *"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"expression": ["hour: '25' is outside 0-23."]}
