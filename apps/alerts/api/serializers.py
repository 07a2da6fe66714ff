"""Alert rules, history, deliveries and silences as the API shows them. Input fields are
checked by the services (apps.alerts.services.validate_rule_fields): one set of rules and
messages for the API and the console; the write serializers here document them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.alerts.models import AlertEvent, AlertRule, Comparison, DeliveryAttempt, Metric, Notification, Severity
from apps.alerts.models import Silence as SilenceModel


class AlertRuleWriteSerializer(serializers.Serializer):
    """POST (environment, name, metric, comparison, threshold, window_s required) and PATCH."""

    environment = serializers.CharField(required=False, help_text="POST only: the environment's name.")
    name = serializers.CharField(required=False)
    metric = serializers.ChoiceField(choices=Metric.choices, required=False)
    comparison = serializers.ChoiceField(choices=Comparison.choices, required=False)
    threshold = serializers.FloatField(required=False, help_text="error_rate: 0..1; others: 0 or more.")
    window_s = serializers.IntegerField(required=False, help_text="60..3600 seconds.")
    min_invocations = serializers.IntegerField(required=False, help_text="Below it: not enough data, no firing.")
    for_s = serializers.IntegerField(required=False, help_text="How long pending lasts before firing (0..86400).")
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    enabled = serializers.BooleanField(required=False)
    notify_email = serializers.BooleanField(required=False)
    email_to = serializers.ListField(child=serializers.EmailField(), required=False)
    webhook_url = serializers.CharField(required=False, allow_blank=True)
    rotate_webhook_secret = serializers.BooleanField(required=False, help_text="PATCH only: a new secret (shown once).")


class AlertRuleSerializer(serializers.ModelSerializer):
    function = serializers.IntegerField(source="function_id", read_only=True)
    function_name = serializers.CharField(source="function.name", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    condition = serializers.CharField(read_only=True)
    has_webhook_secret = serializers.SerializerMethodField()
    silenced_until = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "function",
            "function_name",
            "environment",
            "name",
            "metric",
            "comparison",
            "threshold",
            "window_s",
            "min_invocations",
            "for_s",
            "severity",
            "enabled",
            "notify_email",
            "email_to",
            "webhook_url",
            "has_webhook_secret",
            "condition",
            "state",
            "state_since",
            "last_value",
            "last_invocations",
            "last_note",
            "last_evaluated_at",
            "silenced_until",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.BooleanField())
    def get_has_webhook_secret(self, rule: AlertRule) -> bool:
        return bool(rule.webhook_secret)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_silenced_until(self, rule: AlertRule) -> Any:
        until = self.context.get("silenced_until", {}).get(rule.pk)
        return serializers.DateTimeField().to_representation(until) if until else None


class AlertRuleCreatedSerializer(AlertRuleSerializer):
    webhook_secret = serializers.SerializerMethodField(help_text="Shown once, when made or rotated.")

    class Meta(AlertRuleSerializer.Meta):
        fields = [*AlertRuleSerializer.Meta.fields, "webhook_secret"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_webhook_secret(self, rule: AlertRule) -> str | None:
        return self.context.get("webhook_secret") or None


class AlertEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertEvent
        fields = ["id", "from_state", "to_state", "value", "threshold", "invocations", "note", "silenced", "at"]


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["attempt", "at", "status_code", "error", "duration_ms", "target"]


class NotificationSerializer(serializers.ModelSerializer):
    event = serializers.IntegerField(source="event_id", read_only=True)
    state = serializers.CharField(source="event.to_state", read_only=True)
    delivery_attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "event",
            "state",
            "channel",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "delivered_at",
            "delivery_attempts",
        ]


class SilenceWriteSerializer(serializers.Serializer):
    ends_at = serializers.DateTimeField(required=False, help_text="When it ends; or give duration_s.")
    duration_s = serializers.IntegerField(required=False, min_value=1)
    environment = serializers.CharField(required=False, allow_blank=True, help_text="Empty: every environment.")
    rule = serializers.IntegerField(required=False, allow_null=True, help_text="One rule of this function.")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("ends_at" in attrs) == ("duration_s" in attrs):
            raise serializers.ValidationError({"ends_at": ["Give either ends_at or duration_s."]})
        return attrs


class SilenceSerializer(serializers.ModelSerializer):
    function = serializers.IntegerField(source="function_id", read_only=True)
    environment = serializers.SerializerMethodField()
    rule = serializers.IntegerField(source="rule_id", read_only=True, allow_null=True)
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = SilenceModel
        fields = ["id", "function", "environment", "rule", "starts_at", "ends_at", "comment", "created_by"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_environment(self, silence: SilenceModel) -> str | None:
        return silence.environment.name if silence.environment else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, silence: SilenceModel) -> str | None:
        return silence.created_by.get_username() if silence.created_by else None
