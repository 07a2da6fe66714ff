"""Function logs and invocation records, written in batches by sink.RecordSink and pruned
by services.records_prune (age and lines per function)."""

from __future__ import annotations

from django.db import models

from apps.functions.models import Function
from apps.monitoring import levels

# Longest text stored for one line (bytes of UTF-8); longer lines are cut and marked.
LOG_TEXT_MAX_BYTES = 16 * 1024


class Stream(models.TextChoices):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system", "system: platform lines (START/END/REPORT, timeouts)"


class Level(models.TextChoices):
    NONE = "", "none"
    DEBUG = levels.DEBUG
    INFO = levels.INFO
    WARNING = levels.WARNING
    ERROR = levels.ERROR
    CRITICAL = levels.CRITICAL


class LogLine(models.Model):
    # Indexed by the (function, ...) composites below: no single-column index to maintain on
    # every insert (these tables take a row per log line / request).
    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="log_lines", db_index=False)
    environment = models.ForeignKey("tenancy.Environment", on_delete=models.CASCADE, related_name="+")
    # No FK: a binding can be removed while its lines are kept for the retention period.
    binding_id = models.BigIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField()
    request_id = models.CharField(max_length=64, blank=True)
    ts = models.DateTimeField()
    stream = models.CharField(max_length=8, choices=Stream.choices)
    level = models.CharField(max_length=8, choices=Level.choices, blank=True)
    text = models.TextField()
    # Which sink took the record (a random id per sink start) and its number there: unique, so
    # a record written again (a journal replayed after a crash between the write and the
    # journal's cleanup, a retried commit whose answer was lost) is skipped, not duplicated.
    # NULL for rows written without a key (before this column existed).
    sink_id = models.BigIntegerField(null=True, blank=True)
    sink_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sink_id", "sink_seq"], name="logline_sink_key")]
        indexes = [
            models.Index(fields=["function", "-ts"], name="logline_function_ts"),
            models.Index(fields=["function", "request_id"], name="logline_function_request"),
            models.Index(fields=["ts"], name="logline_ts"),  # age pruning across functions
        ]
        ordering = ["-ts", "-id"]

    def __str__(self) -> str:
        return f"{self.ts.isoformat()} {self.stream} {self.text[:80]}"


class Invocation(models.Model):
    class Trigger(models.TextChoices):
        HTTP = "http", "http: through the gateway"
        INVOKE = "invoke", "invoke: the invoke API"
        DRAFT = "draft", "draft: a draft run (version 0: the draft's saved files)"
        SCHEDULE = "schedule", "schedule: a trigger's schedule (apps.triggers)"

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        TIMEOUT = "timeout"
        THROTTLED = "throttled"
        CRASHED = "crashed"

    request_id = models.CharField(max_length=64)
    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="invocations", db_index=False)
    environment = models.ForeignKey("tenancy.Environment", on_delete=models.CASCADE, related_name="+")
    binding_id = models.BigIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField()
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    init_duration_ms = models.FloatField(null=True, blank=True)
    cold_start = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices)
    error_type = models.CharField(max_length=200, blank=True)
    peak_rss_kb = models.BigIntegerField(null=True, blank=True)
    # As LogLine's: one row per request, whatever the sink replays (see LogLine.sink_id).
    sink_id = models.BigIntegerField(null=True, blank=True)
    sink_seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sink_id", "sink_seq"], name="invocation_sink_key")]
        indexes = [
            models.Index(fields=["function", "-started_at"], name="invocation_function_started"),
            models.Index(fields=["function", "request_id"], name="invocation_function_request"),
            models.Index(fields=["started_at"], name="invocation_started"),  # age pruning
        ]
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status} {self.duration_ms:.1f} ms"
