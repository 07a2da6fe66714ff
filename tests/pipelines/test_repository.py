"""Repository API (connect, change, disconnect; secrets shown once, credentials never) and
the deliveries API (list, detail, redeliver)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from apps.audit.models import AuditEvent
from apps.core import crypto
from apps.pipelines import run_services
from apps.pipelines.models import Delivery, Repository, Run
from apps.pipelines.repository_services import repository_set
from tests.pipelines.hooks import SHA, body_of, push_payload, sign_headers

TOKEN_VALUE = "ghp_s3cretTokenValue42"
REPO_URL = "https://git.example/alpha/web.git"


@pytest.fixture(autouse=True)
def _no_run_execution(monkeypatch: Any) -> None:
    try:
        import apps.pipelines.tasks  # noqa: F401
    except ImportError:
        monkeypatch.setattr(run_services, "_queue_execute", lambda run_id: None, raising=False)


def url_of(world: Any) -> str:
    return f"/api/v1/projects/{world.web.pk}/repository"


def put(client: Any, world: Any, **body: Any) -> Any:
    return client.put(url_of(world), {"url": REPO_URL, **body}, format="json")


# --- repository ---------------------------------------------------------------------------------


def test_connect_shows_webhooks_and_the_secret_once(world: Any, client_for: Any) -> None:
    client = client_for(world.alice)

    # When an owner connects a repository with a token
    response = put(client, world, default_branch="trunk", credentials={"kind": "token", "value": TOKEN_VALUE})

    # Then it is created, with a webhook URL per provider and the secret in plaintext
    assert response.status_code == 201, response.content
    body = response.json()
    repository = Repository.objects.get(project=world.web)
    assert body["url"] == REPO_URL and body["default_branch"] == "trunk"
    assert body["credentials_kind"] == "token" and body["has_credentials"] is True
    assert body["webhooks"] == {
        p: f"{settings.PUBLIC_URL}/hooks/{p}/{repository.hook_id}/" for p in ("github", "gitlab", "gitea", "generic")
    }
    secret = body["webhook_secret"]
    assert len(secret) >= 43  # 32 random bytes, urlsafe base64
    # And both secrets are stored encrypted, the token never shown
    assert TOKEN_VALUE not in response.content.decode()
    assert crypto.decrypt(repository.webhook_secret_ciphertext) == secret
    assert crypto.decrypt(repository.credentials_ciphertext) == TOKEN_VALUE
    assert secret.encode() not in bytes(repository.webhook_secret_ciphertext)
    assert TOKEN_VALUE.encode() not in bytes(repository.credentials_ciphertext)

    # And afterwards neither GET nor an update shows the secret or the token again
    for again in (client.get(url_of(world)), put(client, world, default_branch="main")):
        assert again.status_code == 200, again.content
        text = again.content.decode()
        assert "webhook_secret" not in again.json()
        assert secret not in text and TOKEN_VALUE not in text
        assert again.json()["has_credentials"] is True
    # And the audit log names what changed, never the values
    events = AuditEvent.objects.filter(action__startswith="repository.")
    assert [e.action for e in events.order_by("id")] == ["repository.create", "repository.update"]
    audit_text = json.dumps([e.changes for e in events])
    assert secret not in audit_text and TOKEN_VALUE not in audit_text


def test_rotating_the_secret_shows_the_new_one_once(world: Any, client_for: Any) -> None:
    client = client_for(world.alice)
    first = put(client, world).json()["webhook_secret"]
    rotated = put(client, world, rotate_secret=True)
    assert rotated.status_code == 200
    second = rotated.json()["webhook_secret"]
    assert second and second != first
    assert crypto.decrypt(Repository.objects.get().webhook_secret_ciphertext) == second
    assert AuditEvent.objects.filter(action="repository.update", changes__webhook_secret="rotated").exists()


def test_omitted_fields_keep_their_values_and_null_credentials_remove_them(world: Any, client_for: Any) -> None:
    client = client_for(world.adam)  # org admin
    put(client, world, default_branch="trunk", credentials={"kind": "ssh_key", "value": "-----BEGIN KEY-----"})
    kept = put(client, world).json()
    assert kept["default_branch"] == "trunk" and kept["credentials_kind"] == "ssh_key"
    removed = put(client, world, credentials=None).json()
    assert removed["credentials_kind"] == "" and removed["has_credentials"] is False
    assert Repository.objects.get().credentials_ciphertext is None


def test_console_pipeline_and_approver_setting(world: Any, client_for: Any) -> None:
    client = client_for(world.alice)
    yaml_text = "steps:\n  - name: test\n    run: pytest\n"
    body = put(client, world, pipeline_source="console", pipeline_yaml=yaml_text, approver_not_pusher=False).json()
    assert (body["pipeline_source"], body["pipeline_yaml"], body["approver_not_pusher"]) == (
        "console",
        yaml_text,
        False,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://user:tok@git.example/a.git"}, "url"),
        ({"url": "/srv/git/secret.git"}, "url"),
        ({"url": "file:///etc"}, "url"),
        ({"url": "ftp://git.example/a.git"}, "url"),
        ({"url": ""}, "url"),
        ({"default_branch": "../main"}, "default_branch"),
        ({"credentials": {"kind": "password", "value": "x"}}, "credentials"),
        ({"pipeline_source": "console"}, "pipeline_yaml"),
        ({"pipeline_yaml": "steps: [\n  - a\n  b: c"}, "pipeline_yaml"),
    ],
)
def test_invalid_input_is_400_with_the_field(
    world: Any, client_for: Any, body: dict[str, Any], field: str, settings: Any
) -> None:
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = False  # as by default: local paths are refused
    response = client_for(world.alice).put(url_of(world), {"url": REPO_URL, **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Repository.objects.exists()


def test_bad_yaml_names_the_line(world: Any, client_for: Any) -> None:
    response = put(client_for(world.alice), world, pipeline_yaml="steps:\n  - name: a\n   run: [x\n")
    assert "line" in response.json()["error"]["fields"]["pipeline_yaml"][0]


def test_local_paths_only_when_allowed(world: Any, client_for: Any, settings: Any) -> None:
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True
    response = client_for(world.alice).put(url_of(world), {"url": "/srv/git/web.git"}, format="json")
    assert response.status_code == 201


def test_ssh_and_scp_urls_are_accepted(world: Any, client_for: Any) -> None:
    client = client_for(world.alice)
    for url in ("git@github.com:alpha/web.git", "ssh://git@git.example:2222/alpha/web.git"):
        assert client.put(url_of(world), {"url": url}, format="json").status_code in (200, 201)


def test_rights_on_the_repository(world: Any, client_for: Any) -> None:
    owner = client_for(world.alice)
    assert put(owner, world).status_code == 201
    # A developer and a viewer of the project can read it, not change or remove it
    for name in ("bob", "carol"):
        client = client_for(world.user(name))
        assert client.get(url_of(world)).status_code == 200
        assert put(client, world, rotate_secret=True).status_code == 403
        assert client.delete(url_of(world)).status_code == 403
    # An outsider gets 404 for everything, like for a project that does not exist
    charlie = client_for(world.charlie)
    for response in (charlie.get(url_of(world)), put(charlie, world), charlie.delete(url_of(world))):
        assert response.status_code == 404
    # A token needs the admin scope to change it
    writer = client_for(world.alice, scopes=["read", "write", "deploy"])
    assert writer.get(url_of(world)).status_code == 200
    assert put(writer, world).status_code == 403
    assert put(client_for(world.alice, scopes=["admin"]), world).status_code == 200


def test_delete_disconnects(world: Any, client_for: Any) -> None:
    client = client_for(world.alice)
    assert client.get(url_of(world)).status_code == 404
    put(client, world)
    assert client.delete(url_of(world)).status_code == 204
    assert client.get(url_of(world)).status_code == 404
    assert client.delete(url_of(world)).status_code == 404
    assert AuditEvent.objects.filter(action="repository.delete").count() == 1


# --- deliveries ---------------------------------------------------------------------------------


@pytest.fixture
def deliveries(world: Any) -> dict[str, Any]:
    """A connected repository with three deliveries: accepted push (gitlab), rejected
    (github), ignored ping (github)."""
    result = repository_set(actor=world.alice, project=world.web, url=REPO_URL)
    hook_id, secret = result.repository.hook_id, result.webhook_secret
    made: dict[str, Any] = {"secret": secret}
    for name, provider, body, key, event in (
        ("push", "gitlab", body_of(push_payload("gitlab")), secret, None),
        ("rejected", "github", body_of(push_payload("github")), "forged", None),
        ("ping", "github", body_of({"zen": "hi"}), secret, "ping"),
    ):
        headers = sign_headers(provider, body, key, event=event, delivery=f"id-{name}")
        response = Client().post(
            f"/hooks/{provider}/{hook_id}/", data=body, content_type="application/json", headers=headers
        )
        made[name] = Delivery.objects.get(pk=response["X-Stratus-Delivery"])
    return made


def test_list_newest_first_and_filters(world: Any, client_for: Any, deliveries: dict[str, Any]) -> None:
    client = client_for(world.carol)  # a viewer may read deliveries
    url = f"/api/v1/projects/{world.web.pk}/deliveries/"
    body = client.get(url).json()
    assert [d["id"] for d in body["results"]] == [deliveries[n].pk for n in ("ping", "rejected", "push")]
    assert body["count"] == 3
    assert "payload" not in body["results"][0]
    assert [d["id"] for d in client.get(url + "?outcome=rejected").json()["results"]] == [deliveries["rejected"].pk]
    assert [d["id"] for d in client.get(url + "?provider=gitlab").json()["results"]] == [deliveries["push"].pk]
    assert client.get(url + "?outcome=bogus").status_code == 400
    # An outsider: 404
    assert client_for(world.charlie).get(url).status_code == 404


def test_list_is_paginated_without_a_query_per_row(
    world: Any, client_for: Any, deliveries: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    repository = Repository.objects.get()
    Delivery.objects.bulk_create(
        [Delivery(repository=repository, provider="github", outcome="ignored", verified=True) for _ in range(30)]
    )
    client = client_for(world.alice)
    url = f"/api/v1/projects/{world.web.pk}/deliveries/?limit=20"
    with django_assert_max_num_queries(12):
        body = client.get(url).json()
    assert body["count"] == 33 and len(body["results"]) == 20


def test_detail_has_payload_and_redacted_headers(world: Any, client_for: Any, deliveries: dict[str, Any]) -> None:
    client = client_for(world.bob)
    push = client.get(f"/api/v1/deliveries/{deliveries['push'].pk}/").json()
    assert json.loads(push["payload"])["after"] == SHA
    assert push["headers"]["X-Gitlab-Token"] == "[redacted]"
    assert deliveries["secret"] not in json.dumps(push)
    rejected = client.get(f"/api/v1/deliveries/{deliveries['rejected'].pk}/").json()
    assert (rejected["outcome"], rejected["verified"], rejected["payload"]) == ("rejected", False, "")
    assert client_for(world.charlie).get(f"/api/v1/deliveries/{deliveries['push'].pk}/").status_code == 404
    assert client.get("/api/v1/deliveries/987654/").status_code == 404


def test_redeliver_processes_the_payload_again(world: Any, client_for: Any, deliveries: dict[str, Any]) -> None:
    client = client_for(world.bob)  # developer: may deploy to unprotected environments
    original = deliveries["push"]

    response = client.post(f"/api/v1/deliveries/{original.pk}/redeliver")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != original.pk
    assert body["redelivery_of"] == original.pk
    assert (body["outcome"], body["provider"], body["delivery_id"]) == ("accepted", "gitlab", "id-push")
    assert body["payload"] == original.payload
    assert body["run"] is not None
    assert Run.objects.filter(pk=body["run"]).exists()
    assert AuditEvent.objects.filter(action="delivery.redeliver", actor=world.bob).count() == 1
    # A ping redelivered is ignored again
    assert client.post(f"/api/v1/deliveries/{deliveries['ping'].pk}/redeliver").json()["outcome"] == "ignored"


def test_redeliver_rules(world: Any, client_for: Any, deliveries: dict[str, Any]) -> None:
    rejected = client_for(world.alice).post(f"/api/v1/deliveries/{deliveries['rejected'].pk}/redeliver")
    assert rejected.status_code == 409
    assert rejected.json()["error"]["code"] == "delivery_rejected"
    push = f"/api/v1/deliveries/{deliveries['push'].pk}/redeliver"
    assert client_for(world.carol).post(push).status_code == 403  # viewer
    assert client_for(world.charlie).post(push).status_code == 404  # outsider
    assert client_for(world.bob, scopes=["read", "write"]).post(push).status_code == 403  # no deploy scope
    assert client_for(world.bob, scopes=["deploy"]).post(push).status_code == 201
    assert Delivery.objects.count() == 4
