"""Triggers and fires as the API shows them. Input is checked by the services
(apps.triggers.services.validate_fields): one set of rules and messages for the API and the
console; the write serializers here document them."""

from __future__ import annotations

from rest_framework import serializers

from apps.triggers.models import FireStatus, MisfirePolicy, OverlapPolicy, Trigger, TriggerFire


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
