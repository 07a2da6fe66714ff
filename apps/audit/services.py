from __future__ import annotations

from typing import Any

from django.db import models

from apps.audit.models import AuditEvent
from apps.core import context
from apps.core.actors import Actor


def audit_record(
    *,
    actor: Actor | None,
    action: str,
    target: models.Model | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    target_repr: str | None = None,
    org: Any = None,
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one write. Call it inside the service's transaction so the event and the
    change commit (or roll back) together."""
    ctx = context.current()
    if target is not None:
        target_type = target_type or target._meta.label_lower.split(".")[-1]
        target_id = target.pk if target_id is None else target_id
        target_repr = target_repr or str(target)
    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEvent.objects.create(
        org=org,
        actor=user,
        actor_repr=user.get_username() if user is not None else "system",
        action=action,
        target_type=target_type or "",
        target_id="" if target_id is None else str(target_id),
        target_repr=(target_repr or "")[:200],
        changes=changes or {},
        source_ip=ctx.source_ip,
        request_id=ctx.request_id,
    )
