from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.pipelines.models import Run, RunLogLine, RunStep


class RunCreateSerializer(serializers.Serializer):
    """{"branch": "main"} runs the branch head ("redeploy latest"); {"commit": sha} that
    commit (on "branch", default the repository's default branch)."""

    branch = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    commit = serializers.RegexField(r"^[0-9a-fA-F]{4,64}$", required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("branch") and not attrs.get("commit"):
            raise serializers.ValidationError({"branch": ["Give a branch or a commit."]})
        return attrs


class RunStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunStep
        fields = ["index", "name", "kind", "command", "state", "exit_code", "started_at", "finished_at", "duration_ms"]


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


class RunSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()
    approved_by = serializers.SerializerMethodField()
    retry_of = serializers.SerializerMethodField()
    superseded_by = serializers.SerializerMethodField()
    websocket = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "project",
            "number",
            "branch",
            "tag",
            "commit_sha",
            "commit_message",
            "commit_author",
            "pusher",
            "trigger",
            "environment",
            "preview",
            "state",
            "reason",
            "superseded_by",
            "retry_of",
            "created_by",
            "approved_by",
            "worker",
            "heartbeat_at",
            "created_at",
            "started_at",
            "finished_at",
            "websocket",
        ]

    def get_created_by(self, run: Run) -> str | None:
        return _username(run.created_by)

    def get_approved_by(self, run: Run) -> str | None:
        return _username(run.approved_by)

    def get_retry_of(self, run: Run) -> int | None:
        return run.retry_of.number if run.retry_of_id and run.retry_of else None

    def get_superseded_by(self, run: Run) -> int | None:
        return run.superseded_by.number if run.superseded_by_id and run.superseded_by else None

    def get_websocket(self, run: Run) -> str:
        return f"/ws/runs/{run.pk}/"


class RunDetailSerializer(RunSerializer):
    steps = RunStepSerializer(many=True, read_only=True)
    pipeline = serializers.JSONField(read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "steps", "pipeline"]


class RunLogLineSerializer(serializers.ModelSerializer):
    step = serializers.IntegerField(source="step_id", allow_null=True, read_only=True)

    class Meta:
        model = RunLogLine
        fields = ["seq", "ts", "stream", "text", "step"]
