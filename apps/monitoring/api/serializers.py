from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.monitoring.levels import LEVELS
from apps.monitoring.models import Invocation, LogLine, Stream

MAX_WINDOW_S = 30 * 24 * 3600  # the default invocation retention


class LogLineSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)
    level = serializers.CharField(
        read_only=True, help_text=f"one of {', '.join(LEVELS)}, or '' when the line says none"
    )

    class Meta:
        model = LogLine
        fields = ["id", "ts", "stream", "level", "request_id", "version", "environment", "text"]
        extra_kwargs = {"id": {"help_text": "the live tail's cursor (?after= on the websocket, Last-Event-ID)"}}


class InvocationSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)

    class Meta:
        model = Invocation
        fields = [
            "request_id",
            "environment",
            "version",
            "trigger",
            "started_at",
            "duration_ms",
            "init_duration_ms",
            "cold_start",
            "status",
            "error_type",
            "peak_rss_kb",
        ]


class LowercaseChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(data.lower() if isinstance(data, str) else data)


class LogFilterSerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, help_text="environment name, e.g. prod")
    request_id = serializers.CharField(required=False, max_length=64)
    q = serializers.CharField(required=False, max_length=200, help_text="text contains (case-insensitive)")
    stream = serializers.ChoiceField(choices=Stream.values, required=False)
    level = LowercaseChoiceField(choices=LEVELS, required=False)
    version = serializers.IntegerField(required=False, min_value=1)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; lines at or after")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; lines before")


class InvocationFilterSerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, help_text="environment name, e.g. prod")
    status = serializers.ChoiceField(choices=Invocation.Status.values, required=False)
    request_id = serializers.CharField(required=False, max_length=64)
    version = serializers.IntegerField(required=False, min_value=1)
    cold_start = serializers.BooleanField(required=False, allow_null=True, default=None)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; started at or after")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; started before")


class InvocationSummaryQuerySerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, help_text="environment name, e.g. prod")
    window_s = serializers.IntegerField(required=False, default=3600, min_value=1, max_value=MAX_WINDOW_S)


class InvocationSummarySerializer(serializers.Serializer):
    window_s = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    count = serializers.IntegerField()
    # The metaclass moves declared fields into _declared_fields, so this does not shadow
    # Serializer.errors at runtime; the type checker only sees the class body.
    errors = serializers.IntegerField(help_text="status error, timeout or crashed")  # type: ignore[assignment]
    throttles = serializers.IntegerField()
    timeouts = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    p50_duration_ms = serializers.FloatField(allow_null=True, help_text="nearest rank, throttled requests excluded")
    p95_duration_ms = serializers.FloatField(allow_null=True)
    p99_duration_ms = serializers.FloatField(allow_null=True)


class LogTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="single use; valid for expires_in seconds")
    expires_in = serializers.IntegerField(help_text="seconds")
    websocket = serializers.CharField(
        help_text="the path to open with it: /ws/functions/{id}/logs/?ticket=... (add the filters to the query)"
    )


class LogStreamQuerySerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, help_text="environment name, e.g. prod")
    version = serializers.IntegerField(required=False, min_value=1)
    level = serializers.CharField(required=False, help_text=f"one of {', '.join(LEVELS)}, or a comma list")
    stream = serializers.ChoiceField(choices=Stream.values, required=False)
    request_id = serializers.CharField(required=False, max_length=64)
    q = serializers.CharField(
        required=False, max_length=200, help_text="text contains (case-insensitive); a regex with regex=1 or /.../"
    )
    regex = serializers.BooleanField(required=False, help_text="q is a regular expression (RE2 syntax)")
    backlog = serializers.IntegerField(required=False, min_value=0, max_value=5000, help_text="lines, default 200")
    after = serializers.IntegerField(
        required=False, min_value=0, help_text="resume after this cursor (a line id); Last-Event-ID does the same"
    )
