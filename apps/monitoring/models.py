"""Function logs and invocation records, written in batches by sink.RecordSink and pruned
by services.records_prune (age and lines per function)."""

from __future__ import annotations

from django.db import models

from apps.functions.models import Function
from apps.monitoring import levels
from apps.monitoring.histogram import BUCKET_COLUMNS

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
        EVENT = "event", "event: an asynchronous invocation's attempt (apps.triggers)"

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
    # Requests in flight in the engine's pool of this (binding, version) when this one was
    # admitted, itself included (or refused: the busy ones). Per engine process: with several
    # hosts serving one version, the rollups' peak is the busiest host's. NULL for records
    # written before the engine reported it.
    concurrency = models.PositiveIntegerField(null=True, blank=True)
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


class MetricRollup(models.Model):
    """Counts of one (function, environment, version) over one time bucket, built from the
    invocation records as the sink writes them (rollups.rollups_apply, in the write's
    transaction) and rebuilt from them on demand (rollups.rollups_rebuild). Draft runs are
    not counted. Durations (sum, max, histogram) count the requests that ran: throttled ones
    never did. The histogram is cumulative: see histogram.py for its edges and error bound."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="+", db_index=False)
    # 0 in the aggregate rows (ALL_ENVIRONMENTS): no database constraint, so the sentinel can
    # stand in the unique key (NULLs would not conflict in ON CONFLICT); Django still cascades
    # an environment's deletion to its rows.
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    version = models.PositiveIntegerField()  # 0 in the aggregate rows (ALL_VERSIONS)
    # Start of the bucket, Unix seconds (UTC): step arithmetic stays integer SQL on both
    # databases.
    bucket = models.BigIntegerField()
    invocations = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)  # error + timeout + crashed
    throttles = models.BigIntegerField(default=0)
    timeouts = models.BigIntegerField(default=0)
    crashes = models.BigIntegerField(default=0)
    cold_starts = models.BigIntegerField(default=0)
    duration_count = models.BigIntegerField(default=0)  # requests that ran (not throttled)
    duration_sum = models.FloatField(default=0.0)
    duration_max = models.FloatField(null=True, blank=True)
    init_count = models.BigIntegerField(default=0)
    init_sum = models.FloatField(default=0.0)
    peak_memory_kb = models.BigIntegerField(null=True, blank=True)
    peak_concurrency = models.IntegerField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"f{self.function_id} e{self.environment_id} v{self.version} @{self.bucket}: {self.invocations}"


# Aggregate rows of the minute and hour tables: besides each (function, environment, version)
# row the rollups keep, per bucket, one "all versions" row (environment, version 0) and one
# "all environments" row (environment 0, version 0), so that the usual charts read one row
# per point (rollups.py).
ALL_ENVIRONMENTS = 0
ALL_VERSIONS = 0
BASE_ROWS = models.Q(environment_id__gt=ALL_ENVIRONMENTS, version__gt=ALL_VERSIONS)


class MetricWindow(MetricRollup):
    """A rollup over one minute or hour, with its percentiles (ms) stored: recomputed from the
    row's histogram in the write that changed it (rollups._upsert), so reads do no bucket
    math. NULL while no request of the row ran."""

    duration_p50 = models.FloatField(null=True, blank=True)
    duration_p90 = models.FloatField(null=True, blank=True)
    duration_p99 = models.FloatField(null=True, blank=True)

    class Meta:
        abstract = True


def _with_histogram(model: type[MetricRollup], field_class: type[models.IntegerField]) -> type[MetricRollup]:
    """Add the cumulative histogram columns (histogram.BUCKET_COLUMNS). 32-bit in the minute
    and hour rows (PostgreSQL's SUM of an integer is a bigint, of a bigint a slow numeric),
    64-bit in the running totals."""
    for column in BUCKET_COLUMNS:
        model.add_to_class(column, field_class(default=0))
    return model


@lambda model: _with_histogram(model, models.IntegerField)
class MetricMinute(MetricWindow):
    """Per-minute rollups, kept STRATUS_METRICS_MINUTE_RETENTION_DAYS (7)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function", "environment", "version", "bucket"], name="metricminute_key")
        ]
        indexes = [
            models.Index(fields=["function", "bucket"], name="metricminute_function_bucket"),
            models.Index(fields=["bucket"], name="metricminute_bucket"),  # retention
        ]


@lambda model: _with_histogram(model, models.IntegerField)
class MetricHour(MetricWindow):
    """Per-hour rollups, built alongside the minutes (so a 7-day chart reads 168 rows, and
    the minutes can go after 7 days), kept STRATUS_METRICS_RETENTION_DAYS (90)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function", "environment", "version", "bucket"], name="metrichour_key")
        ]
        indexes = [
            models.Index(fields=["function", "bucket"], name="metrichour_function_bucket"),
            models.Index(fields=["bucket"], name="metrichour_bucket"),
        ]


@lambda model: _with_histogram(model, models.BigIntegerField)
class MetricTotal(MetricRollup):
    """Running totals per (function, environment, version) since its first invocation: the
    monotonic counters /metrics exposes to Prometheus (the windows above get pruned, a counter
    must never go down). ``bucket`` is the last minute counted."""

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "environment", "version"], name="metrictotal_key")]
        indexes = [models.Index(fields=["bucket"], name="metrictotal_bucket")]
