"""The alerts API: CRUD with roles (developers write, viewers read, outsiders 404), validation
errors that name the rule broken, history, deliveries and silences."""

from __future__ import annotations

from typing import Any

import pytest

from apps.alerts.models import AlertRule

RULE = {
    "environment": "prod",
    "name": "p99 slow",
    "metric": "duration_p99",
    "comparison": ">",
    "threshold": 800,
    "window_s": 300,
    "min_invocations": 20,
    "for_s": 120,
    "severity": "critical",
}


def test_developer_creates_reads_updates_and_deletes_a_rule(world: Any, fn: Any, client_for: Any) -> None:
    bob = client_for(world.bob)
    created = bob.post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["condition"] == "duration_p99 > 800 over 5 min"
    assert body["state"] == "ok" and body["environment"] == "prod" and body["webhook_secret"] is None
    rule_id = body["id"]

    listed = client_for(world.carol).get(f"/api/v1/functions/{fn.pk}/alert-rules/?environment=prod").json()
    assert [r["id"] for r in listed["results"]] == [rule_id]

    patched = bob.patch(
        f"/api/v1/alert-rules/{rule_id}",
        {"threshold": 500, "webhook_url": "https://hooks.example.net/x"},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["threshold"] == 500 and patched.json()["webhook_secret"].startswith("whsec_")
    assert bob.get(f"/api/v1/alert-rules/{rule_id}").json()["has_webhook_secret"] is True
    assert "webhook_secret" not in bob.get(f"/api/v1/alert-rules/{rule_id}").json()

    assert bob.get(f"/api/v1/alert-rules/{rule_id}/history").json()["results"] == []
    assert bob.get(f"/api/v1/alert-rules/{rule_id}/notifications").json()["results"] == []
    assert bob.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 204
    assert not AlertRule.objects.filter(pk=rule_id).exists()


def test_viewer_reads_but_cannot_write(world: Any, fn: Any, client_for: Any) -> None:
    rule_id = client_for(world.bob).post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE, format="json").json()["id"]
    carol = client_for(world.carol)
    assert carol.get(f"/api/v1/alert-rules/{rule_id}").status_code == 200
    refused = carol.post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE | {"name": "x"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert carol.patch(f"/api/v1/alert-rules/{rule_id}", {"threshold": 1}, format="json").status_code == 403
    assert carol.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 403
    assert carol.post(f"/api/v1/functions/{fn.pk}/silences/", {"duration_s": 60}, format="json").status_code == 403
    assert AlertRule.objects.get(pk=rule_id).threshold == 800


def test_outsider_gets_404_and_nothing_changes(world: Any, fn: Any, client_for: Any) -> None:
    rule_id = client_for(world.bob).post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE, format="json").json()["id"]
    charlie = client_for(world.charlie)
    for method, path in (
        ("get", f"/api/v1/alert-rules/{rule_id}"),
        ("patch", f"/api/v1/alert-rules/{rule_id}"),
        ("delete", f"/api/v1/alert-rules/{rule_id}"),
        ("get", f"/api/v1/alert-rules/{rule_id}/history"),
        ("post", f"/api/v1/functions/{fn.pk}/alert-rules/"),
        ("post", f"/api/v1/functions/{fn.pk}/silences/"),
    ):
        response = getattr(charlie, method)(path, {"threshold": 1, "duration_s": 60}, format="json")
        assert response.status_code == 404, (method, path, response.content)
    assert AlertRule.objects.get(pk=rule_id).threshold == 800


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"metric": "latency"}, "metric", "must be one of invocations"),
        ({"comparison": "=="}, "comparison", "must be one of >, >=, <, <="),
        ({"threshold": "high"}, "threshold", "finite number"),
        ({"metric": "error_rate", "threshold": 5}, "threshold", "from 0 to 1"),
        ({"window_s": 30}, "window_s", "60 to 3600 seconds"),
        ({"window_s": 7200}, "window_s", "60 to 3600 seconds"),
        ({"min_invocations": -1}, "min_invocations", "whole number"),
        ({"for_s": 90000}, "for_s", "up to a day"),
        ({"severity": "page"}, "severity", "must be one of info"),
        ({"email_to": ["not-an-email"]}, "email_to", "'not-an-email' is not an email address"),
        ({"webhook_url": "http://127.0.0.1:6379/"}, "webhook_url", "loopback"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"name": ""}, "name", "1 to 100 printable characters"),
        ({"environment": "ghost"}, None, "ghost"),
    ],
)
def test_validation_names_the_rule_broken(
    world: Any, fn: Any, client_for: Any, change: Any, field: Any, words: str
) -> None:
    response = client_for(world.bob).post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE | change, format="json")
    assert response.status_code in (400, 404), response.content
    error = response.json()["error"]
    assert words in error["message"]
    if field:
        assert response.status_code == 400 and field in error["fields"]
    assert not AlertRule.objects.exists()


def test_duplicate_name_is_a_409(world: Any, fn: Any, client_for: Any) -> None:
    bob = client_for(world.bob)
    assert bob.post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE, format="json").status_code == 201
    again = bob.post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_exists"


def test_silences_are_created_shown_on_the_rule_and_expired(world: Any, fn: Any, client_for: Any) -> None:
    bob = client_for(world.bob)
    rule_id = bob.post(f"/api/v1/functions/{fn.pk}/alert-rules/", RULE, format="json").json()["id"]
    created = bob.post(
        f"/api/v1/functions/{fn.pk}/silences/",
        {"rule": rule_id, "duration_s": 3600, "comment": "deploy"},
        format="json",
    )
    assert created.status_code == 201, created.content
    silence = created.json()
    assert silence["environment"] == "prod" and silence["rule"] == rule_id and silence["created_by"] == "bob"
    assert bob.get(f"/api/v1/alert-rules/{rule_id}").json()["silenced_until"] == silence["ends_at"]
    expired = bob.post(f"/api/v1/silences/{silence['id']}/expire")
    assert expired.status_code == 200
    assert bob.get(f"/api/v1/alert-rules/{rule_id}").json()["silenced_until"] is None
    bad = bob.post(f"/api/v1/functions/{fn.pk}/silences/", {"duration_s": 60 * 86400}, format="json")
    assert bad.status_code == 400 and "at most 30 days" in bad.json()["error"]["message"]
    neither = bob.post(f"/api/v1/functions/{fn.pk}/silences/", {"comment": "x"}, format="json")
    assert neither.status_code == 400 and "ends_at" in neither.json()["error"]["fields"]
