"""The webhook endpoint: POST /hooks/{provider}/{hook_id}/ (a plain Django view, no DRF,
no session, no CSRF: the signature is the authentication).

Order of work: find the repository by its hook id (unknown → 404), read the raw body up to
STRATUS_WEBHOOK_MAX_BYTES (over → 413), verify the signature in constant time on those
bytes (bad or missing → 401, counted on the repository, and a rejection record while this
minute's budget of them lasts: STRATUS_WEBHOOK_REJECTED_PER_MINUTE), then require the
provider's delivery id (missing → 400), and only then parse and act. Acting only writes rows;
runs are queued after commit, so the answer comes in milliseconds.

Answers: ``{"delivery": id, "outcome": "...", "run": id | null}`` with 202 (accepted,
pending — a push whose commit looks older than what its branch last ran, decided after a
fetch — or ignored event), 200 (ping, duplicate); errors in the API envelope. Every answer
that stored a delivery carries ``X-Stratus-Delivery: <id>`` naming it.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from apps.core.errors import json_error
from apps.pipelines import delivery_services, repository_services, webhooks
from apps.pipelines.models import Delivery, Repository

log = logging.getLogger("stratus.pipelines.intake")

_CHUNK = 256 * 1024
STATUS_BY_OUTCOME = {
    Delivery.Outcome.ACCEPTED: 202,
    Delivery.Outcome.IGNORED: 202,
    Delivery.Outcome.PENDING: 202,
    Delivery.Outcome.DUPLICATE: 200,
}


class BodyTooLarge(Exception):
    pass


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes (also when no Content-Length was sent)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = request.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _with_id(response: HttpResponse, delivery: Delivery) -> HttpResponse:
    response["X-Stratus-Delivery"] = str(delivery.pk)
    return response


@csrf_exempt
def webhook(request: HttpRequest, provider: str, hook_id: str) -> HttpResponse:
    started = time.perf_counter()
    if provider not in webhooks.PROVIDERS:
        return json_error(404, "not_found", "Webhook endpoint not found.")
    repository = Repository.objects.filter(hook_id=hook_id).select_related("project").first()
    if repository is None:
        return json_error(404, "not_found", "Webhook endpoint not found.")
    if request.method != "POST":
        response = json_error(405, "method_not_allowed", f"Method '{request.method}' not allowed; send POST.")
        response["Allow"] = "POST"
        return response

    limit = settings.STRATUS_WEBHOOK_MAX_BYTES
    try:
        body = read_body(request, limit)
    except BodyTooLarge:
        return json_error(413, "request_too_large", f"Webhook body exceeds the limit of {limit} bytes.")

    ok, reason = webhooks.verify(provider, request.headers, body, repository_services.webhook_secret(repository))
    if not ok:
        rejected = delivery_services.delivery_reject(
            repository=repository, provider=provider, headers=request.headers, reason=reason
        )
        stored = rejected.pk if rejected is not None else None
        log.info("webhook rejected", extra={"delivery": stored, "provider": provider, "reason": reason})
        response = json_error(401, "invalid_signature", f"Signature check failed: {reason}.")
        return _with_id(response, rejected) if rejected is not None else response

    try:
        delivery = delivery_services.delivery_receive(
            repository=repository, provider=provider, headers=request.headers, body=body
        )
    except delivery_services.DeliveryFailed as exc:
        failed = exc.delivery
        log.info("webhook failed", extra={"delivery": failed.pk, "provider": provider, "reason": failed.reason})
        return _with_id(json_error(exc.status, exc.code, failed.reason or "Delivery failed."), failed)

    status = 200 if delivery.reason == "ping" else STATUS_BY_OUTCOME.get(delivery.outcome, 200)  # type: ignore[call-overload]
    log.info(
        "webhook",
        extra={
            "delivery": delivery.pk,
            "provider": provider,
            "outcome": delivery.outcome,
            "run": delivery.run_id,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    payload = {"delivery": delivery.pk, "outcome": delivery.outcome, "run": delivery.run_id}
    return _with_id(JsonResponse(payload, status=status), delivery)
