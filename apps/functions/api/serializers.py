from __future__ import annotations

from rest_framework import serializers

from apps.functions.knobs import CONFIG_FIELDS, KNOB
from apps.functions.models import Binding, EventFormat, Function, Kind, Runtime, TrafficChange
from apps.tenancy.models import slug_validator


class FunctionSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True)
    org = serializers.CharField(source="project.org.slug", read_only=True)

    class Meta:
        model = Function
        fields = ["id", "org", "project", "name", *CONFIG_FIELDS, "created_at", "updated_at"]


def knob_field(name: str) -> serializers.IntegerField:
    """A knob as an optional integer input (apps/functions/knobs.py: its range and words)."""
    knob = KNOB[name]
    out_of_range = knob.range_message
    return serializers.IntegerField(
        required=False,
        min_value=knob.min,
        max_value=knob.max,
        help_text=f"{knob.help}; {knob.min}..{knob.max}{' ' + knob.unit if knob.unit else ''}, default {knob.default}",
        error_messages={"min_value": out_of_range, "max_value": out_of_range},
    )


class FunctionConfigSerializer(serializers.Serializer):
    """Input for create (name, runtime and handler required) and update (all optional)."""

    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    runtime = serializers.ChoiceField(choices=Runtime.choices, required=False)
    handler = serializers.CharField(max_length=200, required=False)
    kind = serializers.ChoiceField(choices=Kind.choices, required=False)
    event_format = serializers.ChoiceField(
        choices=EventFormat.choices,
        required=False,
        help_text="the event an event function receives: apigw-v1 (default), apigw-v2 or scf",
    )
    routes = serializers.ListField(
        child=serializers.CharField(max_length=200, trim_whitespace=False),
        required=False,
        max_length=50,
        help_text='path templates, e.g. ["/article/{id}", "/{proxy+}"]; [] serves every path',
    )
    memory_mb = knob_field("memory_mb")
    timeout_s = knob_field("timeout_s")
    ephemeral_storage_mb = knob_field("ephemeral_storage_mb")
    env = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=4096), required=False)
    min_instances = knob_field("min_instances")
    max_instances = knob_field("max_instances")
    instance_concurrency = knob_field("instance_concurrency")
    idle_timeout_s = knob_field("idle_timeout_s")


class FunctionCreateSerializer(FunctionConfigSerializer):
    name = serializers.CharField(max_length=50, validators=[slug_validator])
    runtime = serializers.ChoiceField(choices=Runtime.choices)
    handler = serializers.CharField(max_length=200)


class TemplateImportSerializer(serializers.Serializer):
    # An AWS SAM template.yaml or a Serverless Framework serverless.yml, as text.
    template = serializers.CharField(max_length=512 * 1024, trim_whitespace=False)
    dry_run = serializers.BooleanField(default=False)


class BindingSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Binding
        fields = [
            "environment",
            "traffic",
            "header_rules",
            "sticky_key",
            "auth_mode",
            "backend",
            "url",
            "status",
            "status_message",
            "revision",
            "applied_revision",
            "updated_at",
        ]

    def get_url(self, binding: Binding) -> str:
        from apps.functions.deploy_services import binding_url

        return binding_url(binding)


class DeploySerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=63)
    version = serializers.IntegerField(min_value=1)
    auth_mode = serializers.ChoiceField(choices=Binding.AuthMode.choices, required=False)


class RollbackSerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=63)
    version = serializers.IntegerField(min_value=1, required=False, help_text="default: the previous stable version")


class PromoteSerializer(serializers.Serializer):
    from_environment = serializers.CharField(max_length=63, help_text="where the version serves 100% now")
    environment = serializers.CharField(max_length=63, help_text="where to deploy it")


class BindingRulesSerializer(serializers.Serializer):
    """Any of the three; the service validates each rule and names the bad ones."""

    header_rules = serializers.JSONField(
        required=False,
        help_text='[{"source": "header" | "cookie", "name": "X-Beta", "match": "equals" | "regex", '
        '"value": "1", "version": 3}], at most 20',
    )
    sticky_key = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="'', 'header:<Name>' or 'cookie:<name>'"
    )
    auth_mode = serializers.ChoiceField(choices=Binding.AuthMode.choices, required=False)


class TrafficChangeSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()
    release = serializers.IntegerField(source="release_id", read_only=True, allow_null=True)

    class Meta:
        model = TrafficChange
        fields = ["id", "created_at", "actor", "reason", "from_traffic", "to_traffic", "version", "release", "note"]

    def get_actor(self, change: TrafficChange) -> str | None:
        return change.actor.username if change.actor is not None else None

    def get_version(self, change: TrafficChange) -> int | None:
        return change.version.number if change.version is not None else None
