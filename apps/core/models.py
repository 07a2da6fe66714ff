"""The ground floor's one table: the outbox of tasks that state changes queue (apps/core/outbox.py)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Outbox(models.Model):
    """One Celery task that a committed change still owes the broker. Written in the change's
    own transaction, sent after commit; a failed send stays here (``last_error``) and the
    reconciler sends it again once the broker answers. Sent rows are kept a while for the
    record (``sent_at``) and pruned by the drain."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    # When the task should run (a countdown asked for at enqueue time); none: at once.
    eta = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When a sender may try (again): a claim pushes it ahead, a failure backs it off.
    next_attempt_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(sent_at__isnull=True), name="core_outbox_pending"),
            models.Index(fields=["sent_at"], condition=Q(sent_at__isnull=False), name="core_outbox_sent"),
        ]

    def __str__(self) -> str:
        return f"{self.task}({self.args}, {self.kwargs})"
