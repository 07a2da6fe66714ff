"""Webhook intake (/hooks/{provider}/{hook_id}/), through Django's test Client with raw
bodies: signatures, replays, oversize and malformed payloads for every provider."""

from __future__ import annotations

import hmac
import inspect
import json
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone

from apps.core.errors import DomainError
from apps.pipelines import intake, run_services, webhooks
from apps.pipelines.models import Delivery, Repository, Run
from apps.pipelines.repository_services import RepositoryResult, repository_set
from tests.pipelines.hooks import OTHER_EVENT, SHA, SHA2, TAG_EVENT, ZEROS, body_of, push_payload, sign_headers

PROVIDERS = ("github", "gitlab", "gitea", "generic")
LIMIT = 25 * 1024 * 1024


@pytest.fixture(autouse=True)
def _no_run_execution(monkeypatch: Any) -> None:
    """Intake only writes rows; the run's execution is queued after commit (and tests never
    commit). If the task module is not there, queueing is a no-op."""
    try:
        import apps.pipelines.tasks  # noqa: F401
    except ImportError:
        monkeypatch.setattr(run_services, "_queue_execute", lambda run_id: None, raising=False)


@pytest.fixture
def connected(world: Any) -> RepositoryResult:
    return repository_set(actor=world.alice, project=world.web, url="https://git.example/alpha/web.git")


@pytest.fixture
def calls(monkeypatch: Any) -> dict[str, list[dict[str, Any]]]:
    """Spies on run_services.run_for_push / preview_delete (the real ones still run)."""
    seen: dict[str, list[dict[str, Any]]] = {"run_for_push": [], "preview_delete": []}
    real_run, real_delete = run_services.run_for_push, run_services.preview_delete

    def run_for_push(**kwargs: Any) -> Run:
        seen["run_for_push"].append(kwargs)
        return real_run(**kwargs)

    def preview_delete(**kwargs: Any) -> None:
        seen["preview_delete"].append(kwargs)
        real_delete(**kwargs)

    monkeypatch.setattr(run_services, "run_for_push", run_for_push)
    monkeypatch.setattr(run_services, "preview_delete", preview_delete)
    return seen


def hook_url(connected: RepositoryResult, provider: str) -> str:
    return f"/hooks/{provider}/{connected.repository.hook_id}/"


def post(
    connected: RepositoryResult,
    provider: str,
    body: bytes,
    *,
    secret: Any = "default",
    event: str | None = None,
    delivery: str | None = "d-1",
    content_type: str = "application/json",
) -> Any:
    key = connected.webhook_secret if secret == "default" else secret
    headers = sign_headers(provider, body, key, event=event, delivery=delivery)
    return Client().post(hook_url(connected, provider), data=body, content_type=content_type, headers=headers)


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- valid pushes ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_push_starts_a_run_and_is_logged(provider: str, connected: RepositoryResult, calls: Any) -> None:
    # Given a push of main signed with the repository's secret
    body = body_of(push_payload(provider))

    # When the git host delivers it
    response = post(connected, provider, body)

    # Then it is accepted and a run is queued for that commit on main
    assert response.status_code == 202, response.content
    answer = response.json()
    run = Run.objects.get()
    assert answer == {"delivery": answer["delivery"], "outcome": "accepted", "run": run.pk}
    assert (run.branch, run.tag, run.commit_sha, run.trigger) == ("main", "", SHA, "push")
    # And run_for_push got what the payload says
    (kwargs,) = calls["run_for_push"]
    assert kwargs["ref"] == "refs/heads/main"
    assert kwargs["commit_sha"] == SHA
    assert kwargs["commit_message"] == "Fix the thing\n"
    assert kwargs["author"] in ("ann", "Ann Author")
    assert kwargs["pusher"] == "pat"
    assert kwargs["trigger"] == "push"
    assert kwargs["repository"] == connected.repository
    # And the delivery is stored verified, with the raw payload and no secret in its headers
    delivery = Delivery.objects.get(pk=answer["delivery"])
    assert kwargs["delivery"] == delivery
    assert response["X-Stratus-Delivery"] == str(delivery.pk)
    assert (delivery.provider, delivery.delivery_id, delivery.verified) == (provider, "d-1", True)
    assert (delivery.outcome, delivery.ref, delivery.commit_sha, delivery.run) == (
        "accepted",
        "refs/heads/main",
        SHA,
        run,
    )
    assert delivery.payload == body.decode()
    assert delivery.processed_at is not None
    stored = json.dumps(delivery.headers)
    assert connected.webhook_secret not in stored
    assert webhooks.hmac_hex(connected.webhook_secret or "", body) not in stored


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tag_push_runs_the_tag(provider: str, connected: RepositoryResult) -> None:
    body = body_of(push_payload(provider, ref="refs/tags/v1.2.0"))
    response = post(connected, provider, body, event=TAG_EVENT[provider])
    assert response.status_code == 202, response.content
    run = Run.objects.get()
    assert (run.branch, run.tag) == ("", "v1.2.0")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_branch_deletion_removes_the_preview_and_starts_nothing(
    provider: str, connected: RepositoryResult, calls: Any
) -> None:
    body = body_of(push_payload(provider, ref="refs/heads/feature-x", after=ZEROS, deleted=True))
    response = post(connected, provider, body)
    assert response.status_code == 202, response.content
    assert response.json()["run"] is None
    assert calls["preview_delete"] == [{"repository": connected.repository, "branch": "feature-x"}]
    assert calls["run_for_push"] == []
    assert not Run.objects.exists()


def test_github_form_encoded_payload_is_accepted(connected: RepositoryResult) -> None:
    body = urlencode({"payload": json.dumps(push_payload("github"))}).encode()
    response = post(connected, "github", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202, response.content
    assert Run.objects.get().commit_sha == SHA


def test_a_signed_payload_nested_too_deep_is_refused_not_a_500(connected: RepositoryResult) -> None:
    body = ('{"ref": "refs/heads/main", "x": ' + "[" * 5000 + "]" * 5000 + "}").encode()
    response = post(connected, "github", body)
    assert response.status_code == 400, response.content
    assert "nests 5001 levels deep: JSON may nest at most 64 levels" in response.json()["error"]["message"]
    assert not Run.objects.exists()


# --- signatures -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("secret", ["wrong-secret", None], ids=["bad", "missing"])
def test_bad_or_missing_signature_is_rejected_and_only_recorded(
    provider: str, secret: str | None, connected: RepositoryResult, calls: Any
) -> None:
    # Given a push signed with another secret, or not signed at all
    body = body_of(push_payload(provider))

    # When it arrives
    response = post(connected, provider, body, secret=secret)

    # Then 401 in the envelope
    assert response.status_code == 401, response.content
    assert error_of(response)["code"] == "invalid_signature"
    # And only a rejection record is kept: not verified, no payload, no run
    delivery = Delivery.objects.get()
    assert (delivery.outcome, delivery.verified, delivery.payload) == ("rejected", False, "")
    assert delivery.run is None and delivery.ref == "" and delivery.commit_sha == ""
    assert ("missing" if secret is None else "bad") in delivery.reason
    assert calls["run_for_push"] == [] and not Run.objects.exists()
    if secret is not None:  # the wrong secret or its HMAC is not kept either
        assert "wrong-secret" not in json.dumps(delivery.headers)
        assert webhooks.hmac_hex("wrong-secret", body) not in json.dumps(delivery.headers)


def test_a_flood_of_bad_signatures_is_counted_and_stored_at_a_bounded_rate(
    settings: Any, world: Any, client_for: Any, connected: RepositoryResult
) -> None:
    # Given a budget of 10 rejection records a minute
    settings.STRATUS_WEBHOOK_REJECTED_PER_MINUTE = 10
    body = body_of(push_payload("github"))

    # When 100 POSTs with a bad signature arrive (an unauthenticated flood)
    responses = [post(connected, "github", body, secret="forged", delivery=f"f-{n}") for n in range(100)]

    # Then each is refused with 401 in the envelope
    assert {r.status_code for r in responses} == {401}
    assert {error_of(r)["code"] for r in responses} == {"invalid_signature"}
    # And all 100 are counted, but only the first 10 stored (the rest carry no delivery id)
    repository = connected.repository
    repository.refresh_from_db()
    assert repository.bad_signature_count == 100
    rejected = Delivery.objects.filter(outcome="rejected")
    assert sorted(rejected.values_list("delivery_id", flat=True)) == sorted(f"f-{n}" for n in range(10))
    assert [r.has_header("X-Stratus-Delivery") for r in responses] == [True] * 10 + [False] * 90
    assert not Run.objects.exists()
    # And the deliveries API shows the counter beside the list
    listed = client_for(world.carol).get(f"/api/v1/projects/{world.web.pk}/deliveries/").json()
    assert listed["count"] == 10
    assert listed["bad_signatures"]["count"] == 100
    assert listed["bad_signatures"]["stored_per_minute"] == 10
    assert listed["bad_signatures"]["last_at"] is not None
    shown = client_for(world.carol).get(f"/api/v1/projects/{world.web.pk}/repository").json()
    assert shown["bad_signature_count"] == 100
    # And so does the pipeline page
    page = Client()
    page.force_login(world.carol)
    html = page.get(f"/projects/{world.web.pk}/pipeline/").content.decode()
    assert "100 POSTs with a bad signature, the last at " in html
    assert "at most 10 a minute are listed below." in html

    # When the minute is over, the next one is stored again
    Repository.objects.filter(pk=repository.pk).update(
        bad_signature_window_start=timezone.now() - timedelta(seconds=61)
    )
    assert post(connected, "github", body, secret="forged", delivery="f-late").has_header("X-Stratus-Delivery")
    assert rejected.count() == 11
    # And a genuine delivery goes through as ever
    assert post(connected, "github", body, delivery="real").json()["outcome"] == "accepted"
    repository.refresh_from_db()
    assert repository.bad_signature_count == 101


@pytest.mark.django_db(transaction=True)
def test_concurrent_bad_signatures_never_store_more_than_the_budget(settings: Any) -> None:
    from django.db import connection

    from apps.pipelines import delivery_services
    from tests.conftest import build_world

    if connection.vendor == "sqlite":
        pytest.skip("SQLite runs one writer at a time: there is no race to lose (PostgreSQL runs this)")
    settings.STRATUS_WEBHOOK_REJECTED_PER_MINUTE = 5
    world = build_world()
    repository = repository_set(actor=world.alice, project=world.web, url="https://git.example/a.git").repository
    start = threading.Barrier(24)

    def reject(n: int) -> None:
        try:
            start.wait()
            delivery_services.delivery_reject(
                repository=repository, provider="github", headers={"X-GitHub-Delivery": f"c-{n}"}, reason="bad"
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=reject, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    repository.refresh_from_db()
    assert repository.bad_signature_count == 24
    assert Delivery.objects.filter(outcome="rejected").count() == 5


def test_no_rejection_record_at_all_with_a_budget_of_zero(settings: Any, connected: RepositoryResult) -> None:
    settings.STRATUS_WEBHOOK_REJECTED_PER_MINUTE = 0
    body = body_of(push_payload("github"))
    assert post(connected, "github", body, secret="forged").status_code == 401
    assert not Delivery.objects.exists()
    assert Repository.objects.get().bad_signature_count == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_delivery_without_its_delivery_id_is_refused(provider: str, connected: RepositoryResult, calls: Any) -> None:
    # Given a correctly signed push sent without the provider's delivery id header
    body = body_of(push_payload(provider))

    # When it arrives
    response = post(connected, provider, body, delivery=None)

    # Then 400 in the envelope, naming the header; recorded as failed; nothing started
    assert response.status_code == 400, response.content
    error = error_of(response)
    header = " or ".join(webhooks.SPECS[provider].delivery_headers)
    assert error["code"] == "missing_delivery_id"
    assert (
        error["message"]
        == f"missing {header} header: a delivery needs its id (a retry and a replay are told apart by it)"
    )
    delivery = Delivery.objects.get(pk=response["X-Stratus-Delivery"])
    assert (delivery.outcome, delivery.verified, delivery.reason) == ("failed", True, error["message"])
    assert calls["run_for_push"] == [] and not Run.objects.exists()


@pytest.mark.parametrize("provider", ["github", "generic"])
def test_signature_with_another_scheme_is_rejected(provider: str, connected: RepositoryResult) -> None:
    body = body_of(push_payload(provider))
    header = "X-Hub-Signature-256" if provider == "github" else "X-Stratus-Signature"
    headers = sign_headers(provider, body, connected.webhook_secret)
    headers[header] = headers[header].replace("sha256=", "sha1=")
    response = Client().post(hook_url(connected, provider), data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401


def test_signature_checked_on_the_raw_body(connected: RepositoryResult) -> None:
    # Given a body signed, then re-serialised (same JSON, different bytes)
    data = push_payload("github")
    headers = sign_headers("github", body_of(data), connected.webhook_secret)
    reformatted = json.dumps(data, indent=2).encode()
    response = Client().post(
        hook_url(connected, "github"), data=reformatted, content_type="application/json", headers=headers
    )
    assert response.status_code == 401


def test_verification_uses_constant_time_compare(monkeypatch: Any) -> None:
    # Every provider's check goes through hmac.compare_digest
    used: list[str] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        used.append("x")
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body = b"{}"
    for provider in PROVIDERS:
        used.clear()
        assert webhooks.verify(provider, sign_headers(provider, body, "s3cret"), body, "s3cret")[0]
        assert not webhooks.verify(provider, sign_headers(provider, body, "other"), body, "s3cret")[0]
        assert len(used) == 2, provider
    # And no plain equality on a signature in the module
    assert "== expected" not in inspect.getsource(webhooks)


def test_rotated_secret_invalidates_the_old_one(world: Any, connected: RepositoryResult) -> None:
    rotated = repository_set(
        actor=world.alice, project=world.web, url=connected.repository.url, rotate_secret=True
    ).webhook_secret
    body = body_of(push_payload("github"))
    assert post(connected, "github", body).status_code == 401
    assert post(connected, "github", body, secret=rotated, delivery="d-2").status_code == 202


# --- replays --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_replayed_delivery_id_starts_nothing(provider: str, connected: RepositoryResult, calls: Any) -> None:
    # Given a delivered push
    body = body_of(push_payload(provider))
    first = post(connected, provider, body)
    assert first.status_code == 202

    # When the same delivery arrives again (a replay, or the host's retry)
    again = post(connected, provider, body)

    # Then it is recorded as a duplicate pointing at the same run, and nothing new starts
    assert again.status_code == 200, again.content
    answer = again.json()
    assert answer["outcome"] == "duplicate"
    assert answer["run"] == first.json()["run"]
    assert len(calls["run_for_push"]) == 1
    assert Run.objects.count() == 1
    assert Delivery.objects.filter(outcome="duplicate").count() == 1


def test_gitlab_idempotency_key_is_the_delivery_id(connected: RepositoryResult) -> None:
    body = body_of(push_payload("gitlab"))
    headers = sign_headers("gitlab", body, connected.webhook_secret, delivery=None)
    headers["Idempotency-Key"] = "idem-1"
    url = hook_url(connected, "gitlab")
    assert Client().post(url, data=body, content_type="application/json", headers=headers).status_code == 202
    again = Client().post(url, data=body, content_type="application/json", headers=headers)
    assert again.json()["outcome"] == "duplicate"
    assert Delivery.objects.filter(delivery_id="idem-1").count() == 2


def test_a_rejected_delivery_does_not_block_the_real_one(connected: RepositoryResult) -> None:
    # A forged request reusing a delivery id cannot make the genuine delivery a "duplicate"
    body = body_of(push_payload("github"))
    assert post(connected, "github", body, secret="forged").status_code == 401
    assert post(connected, "github", body).json()["outcome"] == "accepted"


def test_same_commit_with_a_new_delivery_id_joins_the_run(connected: RepositoryResult) -> None:
    body = body_of(push_payload("github"))
    first = post(connected, "github", body, delivery="d-1").json()
    second = post(connected, "github", body, delivery="d-2").json()
    assert second["outcome"] == "accepted"
    assert second["run"] == first["run"]
    assert Run.objects.count() == 1


def test_a_newer_push_starts_a_new_run(connected: RepositoryResult) -> None:
    first = post(connected, "github", body_of(push_payload("github"))).json()
    second = post(connected, "github", body_of(push_payload("github", after=SHA2)), delivery="d-2").json()
    assert second["run"] != first["run"]
    assert Run.objects.get(pk=second["run"]).commit_sha == SHA2


# --- size, payload, events --------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_oversize_body_is_refused_with_413(provider: str, connected: RepositoryResult) -> None:
    body = bytes(LIMIT + 1)  # zero-filled: cheap to make
    headers = sign_headers(provider, b"", connected.webhook_secret)
    response = Client().post(hook_url(connected, provider), data=body, content_type="application/json", headers=headers)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in error["message"]
    assert not Delivery.objects.exists()


def test_body_at_the_limit_passes_the_size_check(settings: Any, connected: RepositoryResult) -> None:
    settings.STRATUS_WEBHOOK_MAX_BYTES = 64
    body = b'{"zen": "' + b"x" * (64 - 11) + b'"}'
    assert len(body) == 64
    assert post(connected, "github", body, event="ping").status_code == 200
    assert post(connected, "github", body + b" ", event="ping", delivery="d-2").status_code == 413


def test_view_caps_bodies_without_a_content_length(connected: RepositoryResult) -> None:
    # The middleware cannot see the size of a body sent without Content-Length; the view
    # stops reading past the limit.
    request = RequestFactory().post("/hooks/github/x/", data=b"y" * 100, content_type="application/json")
    del request.META["CONTENT_LENGTH"]
    with pytest.raises(intake.BodyTooLarge):
        intake.read_body(request, 99)
    request = RequestFactory().post("/hooks/github/x/", data=b"y" * 100, content_type="application/json")
    del request.META["CONTENT_LENGTH"]
    assert intake.read_body(request, 100) == b"y" * 100


def test_api_routes_keep_their_own_limit(world: Any, client_for: Any) -> None:
    response = client_for(world.alice).generic(
        "PUT", f"/api/v1/projects/{world.web.pk}/repository", b"x" * (2 * 1024 * 1024 + 1), "application/json"
    )
    assert response.status_code == 413


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_json_is_400_and_recorded_as_failed(provider: str, connected: RepositoryResult) -> None:
    response = post(connected, provider, b'{"ref": "refs/heads/main", ')
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "malformed_payload"
    delivery = Delivery.objects.get()
    assert (delivery.outcome, delivery.verified) == ("failed", True)
    assert "malformed JSON" in delivery.reason
    assert not Run.objects.exists()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("missing", ["ref", "after"])
def test_push_without_ref_or_after_is_400(provider: str, missing: str, connected: RepositoryResult) -> None:
    data = push_payload(provider)
    del data[missing]
    response = post(connected, provider, body_of(data))
    assert response.status_code == 400, response.content
    delivery = Delivery.objects.get()
    assert delivery.outcome == "failed" and missing in delivery.reason


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"ref": "refs/heads/main", "after": "not a sha"}', b"\xff\xfe"])
def test_other_unusable_payloads_are_400(body: bytes, connected: RepositoryResult) -> None:
    response = post(connected, "github", body)
    assert response.status_code == 400, response.content
    assert Delivery.objects.get().outcome == "failed"


@pytest.mark.parametrize("provider", ["github", "generic"])
def test_ping_is_answered_and_ignored(provider: str, connected: RepositoryResult, calls: Any) -> None:
    response = post(connected, provider, body_of({"zen": "Keep it logically awesome."}), event="ping")
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "ignored"
    delivery = Delivery.objects.get()
    assert (delivery.outcome, delivery.reason, delivery.verified) == ("ignored", "ping", True)
    assert calls["run_for_push"] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_other_events_are_acknowledged_and_ignored(provider: str, connected: RepositoryResult, calls: Any) -> None:
    response = post(connected, provider, body_of({"action": "opened"}), event=OTHER_EVENT[provider])
    assert response.status_code == 202, response.content
    assert response.json() == {"delivery": Delivery.objects.get().pk, "outcome": "ignored", "run": None}
    assert calls["run_for_push"] == []


def test_ref_that_is_neither_branch_nor_tag_is_ignored(connected: RepositoryResult) -> None:
    response = post(connected, "github", body_of(push_payload("github", ref="refs/notes/commits")))
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    assert not Run.objects.exists()


# --- routing and failures ---------------------------------------------------------------------


def test_unknown_hook_or_provider_is_404(connected: RepositoryResult) -> None:
    body = body_of(push_payload("github"))
    headers = sign_headers("github", body, connected.webhook_secret)
    for url in ("/hooks/github/no-such-hook/", f"/hooks/bitbucket/{connected.repository.hook_id}/"):
        response = Client().post(url, data=body, content_type="application/json", headers=headers)
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
    assert not Delivery.objects.exists()


def test_only_post_is_allowed(connected: RepositoryResult) -> None:
    response = Client().get(hook_url(connected, "github"))
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_a_rule_refusing_the_run_is_422_and_the_delivery_kept(monkeypatch: Any, connected: RepositoryResult) -> None:
    def refuse(**kwargs: Any) -> Run:
        raise DomainError("No pipeline.", code="no_pipeline")

    monkeypatch.setattr(run_services, "run_for_push", refuse)
    response = post(connected, "github", body_of(push_payload("github")))
    assert response.status_code == 422
    assert error_of(response)["code"] == "no_pipeline"
    delivery = Delivery.objects.get()
    assert (delivery.outcome, delivery.reason, delivery.commit_sha) == ("failed", "No pipeline.", SHA)
    assert delivery.payload  # kept: it can be redelivered once fixed


def test_an_unexpected_error_keeps_the_delivery_and_allows_a_retry(
    monkeypatch: Any, connected: RepositoryResult
) -> None:
    real = run_services.run_for_push

    def boom(**kwargs: Any) -> Run:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(run_services, "run_for_push", boom)
    body = body_of(push_payload("github"))
    response = post(connected, "github", body)
    assert response.status_code == 500
    assert Delivery.objects.get().outcome == "failed"
    assert not Run.objects.exists()
    # The git host's retry with the same delivery id is processed, not a duplicate
    monkeypatch.setattr(run_services, "run_for_push", real)
    assert post(connected, "github", body).json()["outcome"] == "accepted"


def test_intake_is_csrf_exempt_and_needs_no_session(connected: RepositoryResult) -> None:
    body = body_of(push_payload("github"))
    headers = sign_headers("github", body, connected.webhook_secret)
    client = Client(enforce_csrf_checks=True)
    response = client.post(hook_url(connected, "github"), data=body, content_type="application/json", headers=headers)
    assert response.status_code == 202
