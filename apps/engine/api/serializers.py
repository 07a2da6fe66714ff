from rest_framework import serializers


class InvokeSerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=63)
    event = serializers.JSONField(required=False, allow_null=True, default=dict)
    version = serializers.IntegerField(min_value=1, required=False)
    invocation_type = serializers.ChoiceField(
        choices=["request_response", "event"],
        default="request_response",
        help_text="event: accept the event (up to 256 KB) and answer 202 with its request id and status "
        "URL at once; it runs soon, with retries (an Idempotency-Key header dedupes for 24 h).",
    )


class DraftInvokeSerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=63, help_text="Whose variables and secrets the draft runs with.")
    event = serializers.JSONField(required=False, allow_null=True, default=dict)


class InvokeErrorSerializer(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    stack = serializers.ListField(child=serializers.CharField(allow_blank=True))


class InvokeLogSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()
    stream = serializers.CharField()
    text = serializers.CharField(allow_blank=True)


class InvocationResultSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    version = serializers.IntegerField(allow_null=True, help_text="null for a draft run")
    draft = serializers.BooleanField(help_text="true: the draft's saved files ran (POST draft/invoke)")
    status = serializers.ChoiceField(choices=["ok", "error", "timeout", "throttled", "crashed"])
    result = serializers.JSONField(allow_null=True)
    error = InvokeErrorSerializer(allow_null=True)
    logs = InvokeLogSerializer(many=True)
    duration_ms = serializers.FloatField()
    init_duration_ms = serializers.FloatField(allow_null=True)
    cold_start = serializers.BooleanField()
    peak_rss_kb = serializers.IntegerField(allow_null=True)
