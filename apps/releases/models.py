"""A release moves one version into one binding (function x environment), in steps.

State lives here, not in task arguments: the workers that advance a release read it under
a row lock, so a restart or a duplicated task never skips, repeats or reverses a step.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


class Release(models.Model):
    class State(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval"  # a protected environment that asks for a second person
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"  # the canary took 100% and is now the stable version
        ABORTED = "aborted"  # by a person, or by a failing gate (see ``failure``)
        ROLLED_BACK = "rolled_back"  # a rollback happened while it ran
        REJECTED = "rejected"  # the approval was refused

    ACTIVE_STATES = (State.AWAITING_APPROVAL, State.RUNNING, State.PAUSED)

    binding = models.ForeignKey("functions.Binding", on_delete=models.CASCADE, related_name="releases")
    # RESTRICT: a released version cannot be deleted alone, but the function goes with its releases.
    version = models.ForeignKey("functions.Version", on_delete=models.RESTRICT, related_name="+")
    # What served 100% when the release started (None for a first release: nothing to go back to).
    stable_version = models.ForeignKey("functions.Version", null=True, on_delete=models.RESTRICT, related_name="+")
    # {"steps": [10, 50, 100], "advance": "manual" | "auto", "dwell_s": 60, "gate": {...} | null}
    plan = models.JSONField()
    state = models.CharField(max_length=20, choices=State.choices)
    # Index into plan["steps"] of the step now serving; -1 before the first step.
    step_index = models.IntegerField(default=-1)
    step_started_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    approval_required = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # Why it stopped: {"by": "gate", "step": 1, "figure": "error_rate", "canary": ..., "limit": ...}
    failure = models.JSONField(default=dict, blank=True)
    # The last gate evaluation: {"passed": true|false|null, "at": ..., "figures": {...}, "failed": {...}}
    gate_result = models.JSONField(default=dict, blank=True)
    # When the next release_advance task is due (auto releases): a task that finds a later
    # one already scheduled does not queue another, so duplicated tasks never multiply.
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One active release per binding: a second start answers 409 naming the first.
            models.UniqueConstraint(
                fields=["binding"],
                condition=models.Q(state__in=["awaiting_approval", "running", "paused"]),
                name="release_one_active_per_binding",
            )
        ]

    def __str__(self) -> str:
        return f"release {self.pk} of {self.version} ({self.state})"

    @property
    def steps(self) -> list[int]:
        return list(self.plan.get("steps", []))

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def next_step_at(self) -> datetime | None:
        """When an auto release may take its next step (its gate permitting)."""
        if self.plan.get("advance") != "auto" or self.state != self.State.RUNNING or self.step_started_at is None:
            return None
        if self.step_index >= len(self.steps) - 1:
            return None
        return self.step_started_at + timedelta(seconds=int(self.plan.get("dwell_s") or 0))

    @property
    def canary_percent(self) -> int:
        return self.steps[self.step_index] if 0 <= self.step_index < len(self.steps) else 0
