"""Schedules (a Trigger per function and environment) and the record of their fires.

A trigger's ``next_fire_at`` is the one fact the scheduler reads: due triggers are those
enabled with ``next_fire_at <= now``. It is recomputed whenever the trigger is saved
(services), so an edit applies at the next tick without a restart, and advanced in the
same transaction as the claim of an occurrence (apps.triggers.scheduler). A fire of a
scheduled occurrence is unique per (trigger, scheduled_at): even a scheduler bug could
not record the same occurrence twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.functions.models import Function
from apps.tenancy.models import Environment


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "skip: record the occurrence as skipped"
    QUEUE = "queue", "queue: run it when the previous run ends"
    ALLOW = "allow", "allow: run it alongside"


class MisfirePolicy(models.TextChoices):
    SKIP = "skip", "skip the occurrences missed while no scheduler ran"
    RUN_ONCE = "run_once", "run once for all the missed occurrences"


class Trigger(models.Model):
    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="triggers")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=100)
    expression = models.CharField(max_length=200)
    kind = models.CharField(max_length=8)  # cron | rate | at (from the expression)
    timezone = models.CharField(max_length=64, default="UTC")
    payload = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    overlap_policy = models.CharField(max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP)
    misfire_policy = models.CharField(max_length=8, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE)
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    # The next occurrence to fire; NULL when there is none (an at() that fired, past end_at).
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_scheduled_at = models.DateTimeField(null=True, blank=True)  # the occurrence last fired
    last_fired_at = models.DateTimeField(null=True, blank=True)  # when that fire started
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="trigger_function_name")]
        indexes = [models.Index(fields=["enabled", "next_fire_at"], name="trigger_due")]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"


class FireStatus(models.TextChoices):
    QUEUED = "queued", "queued: waits for the previous run"
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    CRASHED = "crashed"
    FAILED = "failed", "failed: could not start (not deployed, refused)"
    SKIPPED = "skipped", "skipped: the previous run was still going"
    MISSED = "missed", "missed: no scheduler ran at the time (misfire policy skip)"
    LOST = "lost", "lost: the scheduler running it stopped"


FINISHED = {FireStatus.OK, FireStatus.ERROR, FireStatus.TIMEOUT, FireStatus.THROTTLED, FireStatus.CRASHED}


class TriggerFire(models.Model):
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="fires")
    scheduled_at = models.DateTimeField()
    manual = models.BooleanField(default=False)  # "Run now"
    # The trigger's previous fire when this one was claimed: the event's last_run_time.
    last_run_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=FireStatus.choices)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    fired_at = models.DateTimeField(null=True, blank=True)  # the invocation started
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Which scheduler took it (host:pid), so a stale "running" can be told from a live one.
    runner = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "scheduled_at"],
                condition=models.Q(manual=False),
                name="trigger_fire_once_per_occurrence",
            )
        ]
        indexes = [
            models.Index(fields=["trigger", "-created_at"], name="trigger_fire_recent"),
            models.Index(fields=["trigger", "status"], name="trigger_fire_status"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.trigger_id} @ {self.scheduled_at.isoformat()} {self.status}"


# --- asynchronous invocation ---------------------------------------------------------------------


class AsyncState(models.TextChoices):
    QUEUED = "queued", "queued: waits for its (next) attempt"
    RUNNING = "running", "running: an attempt holds its lease"
    SUCCEEDED = "succeeded"
    FAILED = "failed", "failed: retries exhausted, no dead-letter queue kept it (purged)"
    DEAD = "dead", "dead: in the dead-letter queue"


class AsyncEvent(models.Model):
    """One event accepted for asynchronous invocation (202 before it runs).

    Stored before the 202 is sent, so a restart loses none. A dispatcher claims it when
    ``next_attempt_at`` is due (state queued), or when the lease of a running attempt has
    expired (the worker died mid-attempt): delivery is at least once. ``request_id`` is the
    event's id, the same for every attempt (the handler's ``context.aws_request_id``: what a
    handler dedupes on); each attempt's invocation record and log lines carry the attempt's
    own request id (AsyncAttempt.request_id)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="async_events")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="async_events")
    request_id = models.CharField(max_length=64, unique=True)
    # "event": the invoke API's JSON event; "request": an HTTP request the gateway accepted
    # (method, path, headers, body_b64 …), shaped for the version when it runs.
    kind = models.CharField(max_length=8, default="event")
    source = models.CharField(max_length=8, default="api")  # api | gateway
    payload = models.JSONField(null=True, blank=True)
    version = models.PositiveIntegerField()  # the version it runs (picked at enqueue, or redriven to)
    idempotency_key = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=10, choices=AsyncState.choices, default=AsyncState.QUEUED)
    attempts = models.PositiveIntegerField(default=0)  # attempts started (throttles and lost ones too)
    failures = models.PositiveIntegerField(default=0)  # attempts that count against max_retries
    next_attempt_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    runner = models.CharField(max_length=100, blank=True)
    error_type = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    redrives = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    # Where the maximum event age counts from: the acceptance, or the last redrive.
    enqueued_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["function", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="async_event_idempotency",
            )
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="async_event_due"),
            models.Index(fields=["state", "lease_expires_at"], name="async_event_lease"),
            models.Index(fields=["function", "state", "-created_at"], name="async_event_function_state"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.request_id} {self.state}"


class AttemptStatus(models.TextChoices):
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    CRASHED = "crashed"
    FAILED = "failed", "failed: could not start (not deployed, version gone)"
    LOST = "lost", "lost: the worker running it stopped (lease expired)"


class AsyncAttempt(models.Model):
    event = models.ForeignKey(AsyncEvent, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    request_id = models.CharField(max_length=64)  # the invocation record's and log lines' id
    status = models.CharField(max_length=10, choices=AttemptStatus.choices, default=AttemptStatus.RUNNING)
    version = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    error_type = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    runner = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "number"], name="async_attempt_number")]
        ordering = ["event", "number"]

    def __str__(self) -> str:
        return f"{self.event_id}#{self.number} {self.status}"


class AsyncConfig(models.Model):
    """Retries per function and environment; absent means the defaults."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="async_configs")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="async_configs")
    max_retries = models.PositiveSmallIntegerField(default=2)
    max_event_age_s = models.PositiveIntegerField(default=6 * 3600)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "environment"], name="async_config_key")]

    def __str__(self) -> str:
        return f"{self.function_id}/{self.environment_id}: retries {self.max_retries}"
