"""Triggers and fires as the API shows them. Input is checked by the services
(apps.triggers.services.validate_fields): one set of rules and messages for the API and the
console; the write serializers here document them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.triggers.models import (
    AsyncAttempt,
    AsyncConfig,
    AsyncEvent,
    AsyncState,
    AttemptStatus,
    FireStatus,
    MisfirePolicy,
    OverlapPolicy,
    Trigger,
    TriggerFire,
)


class TriggerWriteSerializer(serializers.Serializer):
    """POST (environment, name, expression required) and PATCH (any subset, no environment)."""

    environment = serializers.CharField(required=False, help_text="POST only: the environment's name.")
    name = serializers.CharField(required=False)
    expression = serializers.CharField(
        required=False,
        help_text="5-field cron ('0 2 * * 1-5'), AWS cron(0 2 ? * MON-FRI *), rate(5 minutes) or at(2026-12-01T09:00).",
    )
    timezone = serializers.CharField(required=False, help_text="IANA name; default UTC.")
    payload = serializers.JSONField(required=False, help_text="Up to 256 KB of JSON, in the event's detail.payload.")
    enabled = serializers.BooleanField(required=False)
    overlap_policy = serializers.ChoiceField(choices=OverlapPolicy.choices, required=False)
    misfire_policy = serializers.ChoiceField(choices=MisfirePolicy.choices, required=False)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    end_at = serializers.DateTimeField(required=False, allow_null=True)


class TriggerSerializer(serializers.ModelSerializer):
    function = serializers.IntegerField(source="function_id", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Trigger
        fields = [
            "id",
            "function",
            "environment",
            "name",
            "expression",
            "kind",
            "timezone",
            "payload",
            "enabled",
            "status",
            "overlap_policy",
            "misfire_policy",
            "start_at",
            "end_at",
            "next_fire_at",
            "last_scheduled_at",
            "last_fired_at",
            "created_at",
            "updated_at",
        ]

    def get_status(self, trigger: Trigger) -> str:
        """active | paused | finished (no occurrence left: an at() that fired, past end_at)."""
        if not trigger.enabled:
            return "paused"
        return "active" if trigger.next_fire_at else "finished"


class TriggerFireSerializer(serializers.ModelSerializer):
    trigger = serializers.IntegerField(source="trigger_id", read_only=True)
    status = serializers.ChoiceField(choices=FireStatus.choices)

    class Meta:
        model = TriggerFire
        fields = [
            "id",
            "trigger",
            "scheduled_at",
            "manual",
            "status",
            "request_id",
            "created_at",
            "fired_at",
            "finished_at",
            "duration_ms",
            "version",
            "error",
            "last_run_at",
        ]


class PreviewRequestSerializer(serializers.Serializer):
    expression = serializers.CharField()
    timezone = serializers.CharField(required=False, help_text="IANA name; default UTC.")
    start = serializers.DateTimeField(required=False, help_text="Count from here (default now).")


class FireTimeSerializer(serializers.Serializer):
    utc = serializers.CharField()
    local = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    expression = serializers.CharField()
    kind = serializers.CharField()
    timezone = serializers.CharField()
    description = serializers.CharField()
    fire_times = FireTimeSerializer(many=True)


# --- asynchronous events ------------------------------------------------------------------------


class AsyncAcceptedSerializer(serializers.Serializer):
    request_id = serializers.CharField(help_text="The event's id: the handler's request id on every attempt.")
    status_url = serializers.CharField(help_text="GET it for the event's state and attempts.")


class AsyncAttemptSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=AttemptStatus.choices)

    class Meta:
        model = AsyncAttempt
        fields = [
            "number",
            "status",
            "request_id",
            "version",
            "started_at",
            "finished_at",
            "duration_ms",
            "error_type",
            "error",
        ]


class AsyncEventSerializer(serializers.ModelSerializer):
    """An event in lists: no payload (it may be 256 KB), no attempts."""

    function = serializers.IntegerField(source="function_id", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    state = serializers.ChoiceField(choices=AsyncState.choices)
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = AsyncEvent
        fields = [
            "request_id",
            "function",
            "environment",
            "source",
            "kind",
            "version",
            "state",
            "attempts",
            "failures",
            "redrives",
            "next_attempt_at",
            "error_type",
            "error",
            "idempotency_key",
            "created_at",
            "enqueued_at",
            "finished_at",
            "status_url",
        ]

    def get_status_url(self, event: AsyncEvent) -> str:
        from apps.triggers.async_services import status_url

        return status_url(event.request_id)


class AsyncEventDetailSerializer(AsyncEventSerializer):
    payload = serializers.JSONField()
    attempt_history = AsyncAttemptSerializer(many=True, source="attempt_list")
    logs_url = serializers.SerializerMethodField()

    class Meta(AsyncEventSerializer.Meta):
        fields = [*AsyncEventSerializer.Meta.fields, "payload", "attempt_history", "logs_url"]

    def get_logs_url(self, event: AsyncEvent) -> str:
        """Every attempt's log lines (they share the request id; each attempt's times tell
        them apart)."""
        return f"/api/v1/functions/{event.function_id}/logs?request_id={event.request_id}"


class AsyncConfigSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)
    max_retries = serializers.IntegerField(min_value=0, max_value=10, help_text="0 to 10; default 2.")
    max_event_age_s = serializers.IntegerField(
        min_value=60, max_value=86400, help_text="60 s to 24 h; default 6 h. Older events go to the DLQ unrun."
    )

    class Meta:
        model = AsyncConfig
        fields = ["environment", "max_retries", "max_event_age_s"]


class RedriveSerializer(serializers.Serializer):
    payload = serializers.JSONField(required=False, help_text="An edited payload (an invoke API event's).")
    version = serializers.IntegerField(required=False, min_value=1, help_text="Run another version.")


class RedriveManySerializer(serializers.Serializer):
    request_ids = serializers.ListField(child=serializers.CharField(), required=False)
    filters = serializers.DictField(
        required=False, help_text="The DLQ list's filters (environment, error_type, version, since, until)."
    )
    rate_per_s = serializers.FloatField(required=False, help_text="Events started per second (default 10).")


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class AsyncEnvironmentStatsSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="events waiting (the queue depth)")
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    dead = serializers.IntegerField(help_text="in the dead-letter queue")
    oldest_age_s = serializers.FloatField(allow_null=True, help_text="age of the oldest waiting event")


class AsyncQueueStatsSerializer(serializers.Serializer):
    environments = serializers.DictField(child=AsyncEnvironmentStatsSerializer(), help_text="per environment name")

    def to_representation(self, instance: Any) -> Any:
        return instance  # built by selectors.async_queue_stats; the fields above document it

