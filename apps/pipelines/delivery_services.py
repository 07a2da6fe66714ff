"""Webhook deliveries: record every one, turn verified pushes into runs, redeliver.

The intake view verifies the signature, then calls ``delivery_reject`` or
``delivery_receive``. Processing only writes rows: ``run_services.run_for_push`` queues
the run's work after commit, so the git host gets its answer within milliseconds.

Bad signatures: every one is counted on the repository (``bad_signature_count``), and a
rejection record is kept for at most STRATUS_WEBHOOK_REJECTED_PER_MINUTE of them per
repository and minute: whoever knows a hook's URL can POST to it, so what an unsigned request
may write is bounded (one counter), not a row each.

Duplicates: a delivery id already seen on this repository by a delivery that was processed
(accepted or ignored) starts nothing and is recorded as ``duplicate``. A delivery that
failed may be sent again with the same id (the git host's "redeliver" button does that).
A verified delivery without its provider's delivery id is refused (400, recorded as failed):
every provider sends one, and without it a retry cannot be told from a replay.
Intake for one project is serialised by a row lock on the project (the lock run_services takes), so two copies of
one delivery arriving together cannot both start work.

Replays: the signature covers the body only, so a captured push body verifies again later
under a new delivery id. A push whose commit looks older than what its branch last ran
(``run_services.push_needs_check``: an earlier run's commit, or an ancestor of the newest
run's in the mirror) starts nothing at intake: it is recorded as ``pending`` and
``delivery_check_head`` (a task, after commit) fetches and decides. The commit is the branch
head (a force-push back to it) → its run starts, ``accepted``; otherwise ``stale``, with the
reason. The runner checks again after its own fetch (runner/checkout.py, ``behind_branch``),
for what intake could not see.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor
from apps.core.errors import Conflict, DomainError
from apps.core.outbox import enqueue_after_commit
from apps.pipelines import webhooks
from apps.pipelines.models import Delivery, Repository
from apps.tenancy import permissions, roles
from apps.tenancy.models import Project

log = logging.getLogger("stratus.pipelines.intake")

SEEN_OUTCOMES = (Delivery.Outcome.ACCEPTED, Delivery.Outcome.IGNORED)
REJECTED_WINDOW = timedelta(minutes=1)


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


def delivery_reject(
    *, repository: Repository, provider: str, headers: Mapping[str, str], reason: str
) -> Delivery | None:
    """A delivery whose signature did not verify: counted on the repository; a rejection
    record (no payload) only while this minute's budget of them lasts, else None.

    No lock and no transaction: conditional updates claim a place in the window (the
    healthchecks way), so concurrent rejections never store more than the budget."""
    now = timezone.now()
    limit = settings.STRATUS_WEBHOOK_REJECTED_PER_MINUTE
    rows = Repository.objects.filter(pk=repository.pk)
    counted = {"bad_signature_count": F("bad_signature_count") + 1, "bad_signature_last_at": now}
    # A place in the current window, or (when it is over) a new window with this as its first.
    store = limit > 0 and (
        rows.filter(bad_signature_window_start__gt=now - REJECTED_WINDOW, bad_signature_window_rows__lt=limit).update(
            bad_signature_window_rows=F("bad_signature_window_rows") + 1, **counted
        )
        or rows.filter(
            Q(bad_signature_window_start__isnull=True) | Q(bad_signature_window_start__lte=now - REJECTED_WINDOW)
        ).update(bad_signature_window_start=now, bad_signature_window_rows=1, **counted)
    )
    if not store:
        rows.update(**counted)  # over the budget: the counter only
        return None
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
        processed_at=now,
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
    if not delivery.delivery_id:
        names = " or ".join(webhooks.SPECS[provider].delivery_headers)
        reason = f"missing {names} header: a delivery needs its id (a retry and a replay are told apart by it)"
        raise DeliveryFailed(_finish(delivery, Delivery.Outcome.FAILED, reason), 400, "missing_delivery_id")
    if decode_error:
        raise DeliveryFailed(_finish(delivery, Delivery.Outcome.FAILED, decode_error), 400, "malformed_payload")
    return _process(delivery, check_duplicate=True)


@transaction.atomic
def delivery_redeliver(*, actor: Actor, delivery: Delivery) -> Delivery:
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
    suspect = run_services.push_needs_check(
        repository=repository, branch=push.branch, tag=push.tag, commit_sha=push.commit_sha
    )
    if suspect:
        # Nothing starts (nor supersedes a queued run) before a fetch shows the commit is
        # still the head: a replayed body would otherwise cancel the newer run.
        pending = _finish(delivery, Delivery.Outcome.PENDING, f"{suspect}: a fetch decides whether it is the head")
        delivery_id = pending.pk
        from apps.pipelines.tasks import delivery_check

        enqueue_after_commit(delivery_check, delivery_id)
        return pending
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


# --- pushes that looked old -----------------------------------------------------------------------


def delivery_check_head(delivery_id: int) -> Delivery | None:
    """A ``pending`` push (its commit looked older than what its branch last ran): fetch, then
    start its run if the commit is the branch (or tag) head now, as after a force-push back to
    it; otherwise record it as ``stale`` with the reason. Safe to run twice: only a delivery
    still pending changes. None when there was nothing to do."""
    from apps.pipelines import mirror, run_services

    delivery = Delivery.objects.filter(pk=delivery_id, outcome=Delivery.Outcome.PENDING).first()
    if delivery is None:
        return None
    repository = Repository.objects.select_related("project").get(pk=delivery.repository_id)
    content_type = str(delivery.headers.get("Content-Type", "")) if isinstance(delivery.headers, dict) else ""
    try:
        push = webhooks.parse_push(delivery.provider, webhooks.load_json(delivery.payload, content_type))
        mirror.mirror_fetch(repository)  # outside any transaction: it may take seconds
        problem = run_services.head_problem(
            repository=repository, branch=push.branch, tag=push.tag, commit_sha=push.commit_sha
        )
    except (DomainError, webhooks.PayloadError) as exc:
        return _settle(delivery, Delivery.Outcome.FAILED, f"checking the branch head failed: {exc}")
    if problem:
        return _settle(delivery, Delivery.Outcome.STALE, f"{problem}: nothing started")
    trigger = "redeliver" if delivery.redelivery_of_id else "push"
    with transaction.atomic():
        run_services.lock_project(repository.project_id)
        if not Delivery.objects.select_for_update().filter(pk=delivery.pk, outcome=Delivery.Outcome.PENDING).exists():
            return None  # settled meanwhile (this task ran twice)
        delivery.repository = repository
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
        return _finish(delivery, Delivery.Outcome.ACCEPTED, "the branch head after a fetch", run=run)


def _settle(delivery: Delivery, outcome: str, reason: str) -> Delivery | None:
    done = Delivery.objects.filter(pk=delivery.pk, outcome=Delivery.Outcome.PENDING).update(
        outcome=outcome, reason=reason[:500], processed_at=timezone.now()
    )
    if not done:
        return None
    delivery.refresh_from_db()
    return delivery


def deliveries_stale(*, run_id: int, reason: str) -> int:
    """The run of these deliveries ended without deploying: its commit was not the branch head
    after the runner's fetch. The delivery log says so."""
    return Delivery.objects.filter(run_id=run_id, outcome=Delivery.Outcome.ACCEPTED).update(
        outcome=Delivery.Outcome.STALE, reason=reason[:500]
    )
