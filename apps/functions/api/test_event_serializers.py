from __future__ import annotations

from rest_framework import serializers

from apps.functions.models import TestEvent
from apps.functions.test_event_services import MAX_BODY_BYTES, MAX_NAME_LENGTH

BODY_HELP = f"the event: any JSON value but null, at most {MAX_BODY_BYTES} bytes as JSON"


class TestEventSerializer(serializers.ModelSerializer):
    __test__ = False

    function = serializers.IntegerField(source="function_id", read_only=True)
    body = serializers.JSONField(help_text=BODY_HELP)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = TestEvent
        fields = ["id", "function", "name", "body", "shared", "created_by", "created_at", "updated_at"]


class TestEventCreateSerializer(serializers.Serializer):
    __test__ = False

    # The service holds the rules (length, characters, size, depth) and names them; the
    # serializer only bounds what reaches it.
    name = serializers.CharField(max_length=MAX_NAME_LENGTH, trim_whitespace=False)
    body = serializers.JSONField(help_text=BODY_HELP)
    shared = serializers.BooleanField(default=False, help_text="visible to the whole project, not only to you")


class TestEventUpdateSerializer(serializers.Serializer):
    """Any of the three; only the creator may change ``shared``."""

    __test__ = False

    name = serializers.CharField(max_length=MAX_NAME_LENGTH, trim_whitespace=False, required=False)
    body = serializers.JSONField(help_text=BODY_HELP, required=False)
    shared = serializers.BooleanField(required=False)


class TestEventTemplateSerializer(serializers.Serializer):
    __test__ = False

    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=["event", "http"], help_text="the function kind it is for")
    name = serializers.CharField()
    description = serializers.CharField()
    body = serializers.JSONField()
