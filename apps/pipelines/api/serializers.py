from __future__ import annotations

from rest_framework import serializers

from apps.pipelines.models import Delivery, Repository
from apps.pipelines.repository_services import webhook_urls

CREDENTIAL_KINDS = [(c.value, c.label) for c in (Repository.Credentials.TOKEN, Repository.Credentials.SSH_KEY)]


class CredentialsSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CREDENTIAL_KINDS)
    value = serializers.CharField(max_length=16384, trim_whitespace=False, write_only=True)


class RepositorySetSerializer(serializers.Serializer):
    """PUT body. Omitted optional fields keep their value; "credentials": null removes them."""

    url = serializers.CharField(max_length=500)
    default_branch = serializers.CharField(max_length=200, required=False)
    credentials = CredentialsSerializer(required=False, allow_null=True)
    pipeline_source = serializers.ChoiceField(choices=Repository.PipelineSource.choices, required=False)
    pipeline_yaml = serializers.CharField(max_length=200_000, required=False, allow_blank=True, trim_whitespace=False)
    approver_not_pusher = serializers.BooleanField(required=False)
    rotate_secret = serializers.BooleanField(required=False, default=False)


class RepositorySerializer(serializers.ModelSerializer):
    """A repository as shown: credentials only as their kind, never the value."""

    project = serializers.IntegerField(source="project_id", read_only=True)
    has_credentials = serializers.SerializerMethodField()
    webhooks = serializers.SerializerMethodField()

    class Meta:
        model = Repository
        fields = [
            "project",
            "url",
            "default_branch",
            "credentials_kind",
            "has_credentials",
            "pipeline_source",
            "pipeline_yaml",
            "approver_not_pusher",
            "hook_id",
            "webhooks",
            "bad_signature_count",
            "bad_signature_last_at",
            "last_fetched_at",
            "created_at",
            "updated_at",
        ]

    def get_has_credentials(self, obj: Repository) -> bool:
        return bool(obj.credentials_ciphertext)

    def get_webhooks(self, obj: Repository) -> dict[str, str]:
        return webhook_urls(obj)


class RepositoryWithSecretSerializer(RepositorySerializer):
    """The answer to the PUT that created the repository or rotated its secret: the webhook
    secret in plaintext, shown this once."""

    webhook_secret = serializers.SerializerMethodField()

    class Meta(RepositorySerializer.Meta):
        fields = [*RepositorySerializer.Meta.fields, "webhook_secret"]

    def get_webhook_secret(self, obj: Repository) -> str | None:
        secret: str | None = self.context.get("webhook_secret")
        return secret


class DeliverySerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="repository.project_id", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "project",
            "provider",
            "delivery_id",
            "event",
            "verified",
            "outcome",
            "reason",
            "ref",
            "commit_sha",
            "run",
            "redelivery_of",
            "received_at",
            "processed_at",
        ]


class DeliveryDetailSerializer(DeliverySerializer):
    """One delivery with its stored headers (secrets redacted) and raw payload."""

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "headers", "payload"]


class BadSignaturesSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=0)
    last_at = serializers.DateTimeField(allow_null=True)
    stored_per_minute = serializers.IntegerField(min_value=0)


class DeliveryFilterSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Delivery.Outcome.choices, required=False)
    provider = serializers.ChoiceField(choices=Delivery.Provider.choices, required=False)
