"""Reads of webhook deliveries, scoped to the caller: deliveries of projects outside their
reach answer 404. The writes (intake, processing, redelivery) are delivery_services."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.pipelines.models import Delivery, Repository
from apps.tenancy import permissions
from apps.tenancy.models import Project


def bad_signatures(*, project: Project) -> dict[str, Any]:
    """The project's hook's count of bad-signature POSTs (all of them, stored or not)."""
    row = Repository.objects.filter(project=project).values("bad_signature_count", "bad_signature_last_at").first()
    return {
        "count": row["bad_signature_count"] if row else 0,
        "last_at": row["bad_signature_last_at"] if row else None,
        "stored_per_minute": settings.STRATUS_WEBHOOK_REJECTED_PER_MINUTE,
    }


def delivery_list(*, project: Project, outcome: str | None = None, provider: str | None = None) -> QuerySet[Delivery]:
    qs = Delivery.objects.filter(repository__project=project).select_related("repository")
    if outcome:
        qs = qs.filter(outcome=outcome)
    if provider:
        qs = qs.filter(provider=provider)
    return qs.order_by("-received_at", "-id")


def delivery_get(*, user: Actor, delivery_id: int | str) -> Delivery:
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
