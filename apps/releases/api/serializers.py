from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.releases.models import Release


class ReleaseStartSerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=63)
    version = serializers.IntegerField(min_value=1)
    # "direct", or {"steps": [10, 50, 100], "advance": "manual" | "auto", "dwell_s": 60,
    # "gate": {"min_requests": 5, "max_error_rate": 0.1, ...}}; validated by the service.
    plan = serializers.JSONField()


class ReleaseSerializer(serializers.ModelSerializer):
    function = serializers.IntegerField(source="binding.function_id", read_only=True)
    environment = serializers.CharField(source="binding.environment.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    stable_version = serializers.SerializerMethodField()
    percent = serializers.IntegerField(source="canary_percent", read_only=True)
    steps = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    next_step_at = serializers.DateTimeField(read_only=True, allow_null=True)
    gate = serializers.JSONField(source="gate_result", read_only=True)
    requested_by = serializers.SerializerMethodField()
    approved_by = serializers.SerializerMethodField()

    class Meta:
        model = Release
        fields = [
            "id",
            "function",
            "environment",
            "version",
            "stable_version",
            "plan",
            "state",
            "step_index",
            "percent",
            "steps",
            "step_started_at",
            "next_step_at",
            "gate",
            "failure",
            "approval_required",
            "requested_by",
            "approved_by",
            "approved_at",
            "created_at",
            "finished_at",
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_stable_version(self, release: Release) -> int | None:
        return release.stable_version.number if release.stable_version is not None else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_requested_by(self, release: Release) -> Any:
        return release.requested_by.get_username() if release.requested_by is not None else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_approved_by(self, release: Release) -> Any:
        return release.approved_by.get_username() if release.approved_by is not None else None
