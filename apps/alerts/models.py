"""Alert rules per (function, environment), their state and history, silences, and the
notifications a transition owes (with a log of every delivery attempt).

State machine (apps.alerts.services.alert_rule_evaluate): ok → pending → firing → resolved
→ ok. Every transition writes an AlertEvent; firing and resolved also write one
Notification per channel (email, webhook) unless a silence covers the rule then.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.functions.models import Function
from apps.tenancy.models import Environment


class Metric(models.TextChoices):
    """The shared metric names (see the metrics rollups): per (function, environment), draft
    runs excluded."""

    INVOCATIONS = "invocations"
    ERRORS = "errors", "errors (error + timeout + crashed)"
    THROTTLES = "throttles"
    TIMEOUTS = "timeouts"
    COLD_STARTS = "cold_starts", "cold starts"
    ERROR_RATE = "error_rate", "error rate (0..1)"
    DURATION_P50 = "duration_p50", "duration p50 (ms)"
    DURATION_P90 = "duration_p90", "duration p90 (ms)"
    DURATION_P99 = "duration_p99", "duration p99 (ms)"
    DURATION_AVG = "duration_avg", "average duration (ms)"
    INIT_DURATION_AVG = "init_duration_avg", "average init duration (ms, cold starts)"
    PEAK_MEMORY_KB = "peak_memory_kb", "peak memory (KB)"
    PEAK_CONCURRENCY = "peak_concurrency", "peak concurrency"


class Comparison(models.TextChoices):
    GT = ">", "above (>)"
    GTE = ">=", "at or above (>=)"
    LT = "<", "below (<)"
    LTE = "<=", "at or below (<=)"


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(models.TextChoices):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertRule(models.Model):
    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="alert_rules")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    comparison = models.CharField(max_length=2, choices=Comparison.choices)
    threshold = models.FloatField()
    window_s = models.PositiveIntegerField()
    # Below this many invocations in the window the rule does not fire ("not enough data").
    min_invocations = models.PositiveIntegerField(default=1)
    # How long the condition must hold before pending becomes firing (0: fires at once).
    for_s = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)
    # Email: to these addresses, or (empty) to the project's members; off with notify_email.
    notify_email = models.BooleanField(default=True)
    email_to = models.JSONField(default=list, blank=True)
    # Webhook: a signed POST (HMAC-SHA256, secret encrypted at rest, shown once).
    webhook_url = models.CharField(max_length=2000, blank=True)
    webhook_secret = models.BinaryField(blank=True, default=b"")

    # Evaluation state (written only by services.alert_rule_evaluate, under the row's lock).
    state = models.CharField(max_length=10, choices=AlertState.choices, default=AlertState.OK)
    state_since = models.DateTimeField(null=True, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_invocations = models.PositiveIntegerField(null=True, blank=True)
    last_note = models.CharField(max_length=200, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    # When the rule is next due: the sweep takes due rules oldest first, a bounded batch.
    next_evaluation_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function", "environment", "name"], name="alertrule_unique_name"),
        ]
        indexes = [
            # The sweep: enabled rules that are due.
            models.Index(fields=["enabled", "next_evaluation_at"], name="alertrule_due"),
            # The banner: firing rules of a project's functions.
            models.Index(fields=["state", "function"], name="alertrule_state_function"),
        ]
        ordering = ["function_id", "environment_id", "name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.metric} {self.comparison} {self.threshold:g}"

    @property
    def condition(self) -> str:
        """The rule in words: ``error_rate > 0.05 over 5 min``."""
        window = f"{self.window_s // 60} min" if self.window_s % 60 == 0 else f"{self.window_s} s"
        return f"{self.metric} {self.comparison} {self.threshold:g} over {window}"


class AlertEvent(models.Model):
    """One transition of a rule: from → to, the value and threshold it was decided on."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=10, choices=AlertState.choices)
    to_state = models.CharField(max_length=10, choices=AlertState.choices)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    invocations = models.PositiveIntegerField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)
    # A silence covered the rule: the transition is recorded, nothing is sent.
    silenced = models.BooleanField(default=False)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["rule", "-at"], name="alertevent_rule_at")]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state} at {self.at.isoformat()}"


class Silence(models.Model):
    """Mutes notifications until ``ends_at``: of one rule, or of every rule of a function
    (in one environment, or in all of them when ``environment`` is empty)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="alert_silences")
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_silences"
    )
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="silences")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    comment = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["function", "ends_at"], name="silence_function_ends")]
        ordering = ["-ends_at", "-id"]

    def __str__(self) -> str:
        return f"silence until {self.ends_at.isoformat()}"


class Notification(models.Model):
    """What a transition owes one channel; delivered (with retries) by tasks.notification_deliver."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    class Status(models.TextChoices):
        PENDING = "pending"  # not sent yet, or waiting for a retry
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up: a permanent refusal or out of attempts

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.channel} {self.status}"


class DeliveryAttempt(models.Model):
    """The delivery log: one row per try (status code for webhooks, the error if any)."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="delivery_attempts")
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.FloatField(default=0)
    target = models.CharField(max_length=2000, blank=True)  # the URL or the recipients

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "attempt"], name="deliveryattempt_unique_attempt"),
        ]
        ordering = ["notification_id", "attempt"]

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.status_code or self.error}"
