"""Webhook deliveries: record every one, turn verified pushes into runs, redeliver.

The intake view verifies the signature, then calls ``delivery_reject`` or
``delivery_receive``. Processing only writes rows: ``run_services.run_for_push`` queues
the run's work after commit, so the git host gets its answer within milliseconds.

Duplicates: a delivery id already seen on this repository by a delivery that was processed
(accepted or ignored) starts nothing and is recorded as ``duplicate``. A delivery that
failed may be sent again with the same id (the git host's "redeliver" button does that).
Intake for one project is serialised by a row lock on the project (the lock run_services takes), so two copies of
one delivery arriving together cannot both start work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.errors import Conflict, DomainError, NotFound
from apps.pipelines import webhooks
from apps.pipelines.models import Delivery, Repository
from apps.tenancy import permissions, roles
from apps.tenancy.models import Project

log = logging.getLogger("stratus.pipelines.intake")

SEEN_OUTCOMES = (Delivery.Outcome.ACCEPTED, Delivery.Outcome.IGNORED)


class DeliveryFailed(Exception):
    """Processing a verified delivery failed; the failed row is saved (``delivery.reason``
    says why). ``status``/``code`` are what the git host is told: 400 for a malformed
    payload, 422 when a rule said no, 500 for an unexpected error."""

    def __init__(self, delivery: Delivery, status: int, code: str) -> None:
        super().__init__(delivery.reason)
        self.delivery = delivery
        self.status = status
        self.code = code


# --- intake -------------------------------------------------------------------------------------


def delivery_reject(*, repository: Repository, provider: str, headers: Mapping[str, str], reason: str) -> Delivery:
    """A delivery whose signature did not verify: only a rejection record, no payload."""
    return Delivery.objects.create(
        repository=repository,
        provider=provider,
        delivery_id=webhooks.delivery_id_of(provider, headers),
        event=webhooks.event_of(provider, headers),
        headers=webhooks.redacted_headers(headers),
        payload="",
        verified=False,
        outcome=Delivery.Outcome.REJECTED,
        reason=reason[:500],
        processed_at=timezone.now(),
    )


def delivery_receive(*, repository: Repository, provider: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    """A verified delivery: record it and act on it. Raises DeliveryFailed (with the
    failed row saved) when processing raised something unexpected."""
    try:
        payload = body.decode("utf-8")
        decode_error = ""
    except UnicodeDecodeError:
        payload = body.decode("utf-8", errors="replace")
        decode_error = "the body is not UTF-8"
    delivery = Delivery(
        repository=repository,
        provider=provider,
        delivery_id=webhooks.delivery_id_of(provider, headers),
        event=webhooks.event_of(provider, headers),
        headers=webhooks.redacted_headers(headers),
        payload=payload,
        verified=True,
    )
    if decode_error:
        raise DeliveryFailed(_finish(delivery, Delivery.Outcome.FAILED, decode_error), 400, "malformed_payload")
    return _process(delivery, check_duplicate=True)


@transaction.atomic
def delivery_redeliver(*, actor: Any, delivery: Delivery) -> Delivery:
    """Process a stored delivery again, as a new delivery (no duplicate check)."""
    project = delivery.repository.project
    permissions.require_project_permission(actor, project, roles.DEPLOY_UNPROTECTED, "Redelivering a webhook")
    if delivery.outcome == Delivery.Outcome.REJECTED or not delivery.verified:
        raise Conflict(
            "A rejected delivery cannot be redelivered: its signature did not verify and its payload was not kept.",
            code="delivery_rejected",
        )
    again = Delivery(
        repository=delivery.repository,
        provider=delivery.provider,
        delivery_id=delivery.delivery_id,
        event=delivery.event,
        headers=delivery.headers,
        payload=delivery.payload,
        verified=True,
        redelivery_of=delivery,
    )
    try:
        again = _process(again, check_duplicate=False, trigger="redeliver")
    except DeliveryFailed as exc:  # recorded as failed, with the reason: the answer shows it
        again = exc.delivery
    audit_record(
        actor=actor,
        org=project.org,
        action="delivery.redeliver",
        target=again,
        changes={"redelivery_of": delivery.pk, "outcome": again.outcome, "run": again.run_id},
    )
    return again


# --- processing ---------------------------------------------------------------------------------


def _finish(delivery: Delivery, outcome: str, reason: str = "", **fields: Any) -> Delivery:
    delivery.outcome = outcome
    delivery.reason = reason[:500]
    for name, value in fields.items():
        setattr(delivery, name, value)
    delivery.processed_at = timezone.now()
    delivery.save()
    return delivery


def _reset(delivery: Delivery) -> None:
    """After a rollback: the row may have been inserted inside it; insert it afresh."""
    delivery.pk = None
    delivery._state.adding = True
    delivery.run = None


def _process(delivery: Delivery, *, check_duplicate: bool, trigger: str = "push") -> Delivery:
    try:
        with transaction.atomic():
            # One intake at a time per project: the duplicate check and the run it starts
            # are one step. The project row, as run_services locks it (same lock order).
            Project.objects.select_for_update().filter(pk=delivery.repository.project_id).values_list("pk").first()
            return _act(delivery, check_duplicate=check_duplicate, trigger=trigger)
    except webhooks.PayloadError as exc:
        _reset(delivery)
        raise DeliveryFailed(_finish(delivery, Delivery.Outcome.FAILED, str(exc)), 400, "malformed_payload") from None
    except DomainError as exc:
        # A rule of the run services said no: the push is logged as failed with the
        # reason, and can be redelivered once fixed.
        _reset(delivery)
        raise DeliveryFailed(_finish(delivery, Delivery.Outcome.FAILED, exc.message), 422, exc.code) from None
    except Exception as exc:
        log.exception("webhook delivery processing failed", extra={"repository_id": delivery.repository_id})
        _reset(delivery)
        reason = f"internal error while processing: {type(exc).__name__}"
        raise DeliveryFailed(_finish(delivery, Delivery.Outcome.FAILED, reason), 500, "internal_error") from exc


def _act(delivery: Delivery, *, check_duplicate: bool, trigger: str) -> Delivery:
    provider = delivery.provider
    kind = webhooks.event_kind(provider, delivery.event)
    if check_duplicate and delivery.delivery_id:
        seen = Delivery.objects.filter(
            repository_id=delivery.repository_id, delivery_id=delivery.delivery_id, outcome__in=SEEN_OUTCOMES
        ).first()
        if seen is not None:
            return _finish(
                delivery,
                Delivery.Outcome.DUPLICATE,
                f"delivery id seen before (delivery {seen.pk}); nothing started",
                ref=seen.ref,
                commit_sha=seen.commit_sha,
                run=seen.run,
            )
    if kind == "ping":
        return _finish(delivery, Delivery.Outcome.IGNORED, "ping")
    if kind != "push":
        return _finish(delivery, Delivery.Outcome.IGNORED, f"event '{delivery.event or '(none)'}' is not handled")

    content_type = str(delivery.headers.get("Content-Type", "")) if isinstance(delivery.headers, dict) else ""
    push = webhooks.parse_push(provider, webhooks.load_json(delivery.payload, content_type))  # PayloadError → 400
    delivery.ref, delivery.commit_sha = push.ref, push.commit_sha

    from apps.pipelines import run_services  # written alongside; imported late to keep intake light

    repository = delivery.repository
    if push.deleted:
        if push.branch:
            run_services.preview_delete(repository=repository, branch=push.branch)
            return _finish(delivery, Delivery.Outcome.ACCEPTED, f"branch '{push.branch}' deleted")
        return _finish(delivery, Delivery.Outcome.IGNORED, f"ref '{push.ref}' deleted")
    if not (push.branch or push.tag):
        return _finish(delivery, Delivery.Outcome.IGNORED, f"ref '{push.ref}' is neither a branch nor a tag")
    # Saved first so the run can point back at the delivery that started it.
    delivery.outcome = Delivery.Outcome.ACCEPTED
    delivery.save()
    run = run_services.run_for_push(
        repository=repository,
        ref=push.ref,
        commit_sha=push.commit_sha,
        commit_message=push.commit_message,
        author=push.author,
        pusher=push.pusher,
        trigger=trigger,
        delivery=delivery,
    )
    return _finish(delivery, Delivery.Outcome.ACCEPTED, "", run=run)


# --- reads --------------------------------------------------------------------------------------


def delivery_list(*, project: Any, outcome: str | None = None, provider: str | None = None) -> QuerySet[Delivery]:
    qs = Delivery.objects.filter(repository__project=project).select_related("repository")
    if outcome:
        qs = qs.filter(outcome=outcome)
    if provider:
        qs = qs.filter(provider=provider)
    return qs.order_by("-received_at", "-id")


def delivery_get(*, user: Any, delivery_id: int | str) -> Delivery:
    """A delivery of a project the caller can see; NotFound otherwise."""
    try:
        pk = int(delivery_id)
    except (TypeError, ValueError):
        raise NotFound("Delivery not found.") from None
    delivery = (
        Delivery.objects.filter(pk=pk, repository__project__in=permissions.visible_projects(user))
        .select_related("repository__project__org")
        .first()
    )
    if delivery is None:
        raise NotFound("Delivery not found.")
    return delivery
