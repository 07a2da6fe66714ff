from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.tenancy import permissions, quotas
from apps.tenancy.models import (
    ApiToken,
    Environment,
    Invitation,
    Membership,
    Organization,
    Project,
    ProjectGrant,
    Team,
    env_name_validator,
    slug_validator,
    var_name_validator,
)
from apps.tenancy.roles import PROJECT_ROLE_CHOICES, Role

User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class OrgSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["slug", "name", "role", "created_at"]

    def get_role(self, org: Organization) -> str | None:
        return permissions.org_role(self.context["request"].user, org)


class QuotaUsedSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    used = serializers.IntegerField()


class QuotaReservedSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    reserved = serializers.IntegerField()


class OrgQuotasSerializer(serializers.Serializer):
    """Limits (the org's quota fields or the platform's defaults) and what is in use:
    functions, and the instances and memory (MB) its bindings keep reserved."""

    functions = QuotaUsedSerializer()
    instances = QuotaReservedSerializer()
    memory_mb = QuotaReservedSerializer()


class OrgDetailSerializer(OrgSerializer):
    """One organization, with its quotas (a few queries: only on the detail, never per row)."""

    quotas = serializers.SerializerMethodField()

    class Meta(OrgSerializer.Meta):
        fields = [*OrgSerializer.Meta.fields, "quotas"]

    @extend_schema_field(OrgQuotasSerializer)
    def get_quotas(self, org: Organization) -> dict[str, dict[str, int]]:
        return quotas.org_quota_usage(org).as_json()


class OrgCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=100)


class OrgUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)


class MemberSerializer(serializers.ModelSerializer):
    user = UserSerializer()

    class Meta:
        model = Membership
        fields = ["user", "role", "created_at"]


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class TeamSerializer(serializers.ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["slug", "name", "members", "created_at"]

    def get_members(self, team: Team) -> list[str]:
        return [u.username for u in team.group.user_set.all()]


class TeamCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=100)


class UsernameSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=150)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.CharField(source="invited_by.username", default=None, read_only=True)
    expired = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "invited_by", "expires_at", "expired", "accepted_at", "created_at"]

    def get_expired(self, inv: Invitation) -> bool:
        return inv.is_expired()


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationAcceptSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=500)


class EnvironmentSerializer(serializers.ModelSerializer):
    pipeline_secrets = serializers.SerializerMethodField()

    class Meta:
        model = Environment
        fields = [
            "name",
            "protected",
            "execution_backend",
            "requires_release_approval",
            "pipeline_secrets",
            "egress_allow",
            "created_at",
            "updated_at",
        ]

    def get_pipeline_secrets(self, environment: Environment) -> bool:
        """Effective: unset means yes for unprotected environments, no for protected ones."""
        return environment.allows_pipeline_secrets()


class EnvironmentCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63, validators=[env_name_validator])
    protected = serializers.BooleanField(default=False)
    # '' is the installation's default (STRATUS_DEFAULT_BACKEND); the service checks the name.
    execution_backend = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")


class EnvironmentUpdateSerializer(serializers.Serializer):
    protected = serializers.BooleanField(required=False)
    execution_backend = serializers.CharField(max_length=32, required=False, allow_blank=True)
    requires_release_approval = serializers.BooleanField(required=False)
    pipeline_secrets = serializers.BooleanField(required=False)
    egress_allow = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=64)


class ProjectSerializer(serializers.ModelSerializer):
    org = serializers.CharField(source="org.slug", read_only=True)
    role = serializers.SerializerMethodField()
    environments = EnvironmentSerializer(many=True, read_only=True)

    class Meta:
        model = Project
        fields = ["id", "org", "slug", "name", "description", "role", "environments", "created_at", "updated_at"]

    def get_role(self, project: Project) -> str | None:
        return permissions.project_role(self.context["request"].user, project)


class ProjectCreateSerializer(serializers.Serializer):
    org = serializers.CharField(max_length=50)
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class GrantSerializer(serializers.ModelSerializer):
    # A grant names a user or a team: the other is null.
    user = serializers.CharField(source="user.username", default=None, allow_null=True, read_only=True)
    team = serializers.CharField(source="team.slug", default=None, allow_null=True, read_only=True)

    class Meta:
        model = ProjectGrant
        fields = ["id", "user", "team", "role", "created_at"]


class GrantCreateSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=150, required=False)
    team = serializers.CharField(max_length=50, required=False)
    role = serializers.ChoiceField(choices=PROJECT_ROLE_CHOICES)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("team" in attrs):
            raise serializers.ValidationError("Give exactly one of 'user' or 'team'.")
        return attrs


class PrincipalSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=150, required=False)
    team = serializers.CharField(max_length=50, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("team" in attrs):
            raise serializers.ValidationError("Give exactly one of 'user' or 'team'.")
        return attrs


class DeployersSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField())
    teams = serializers.ListField(child=serializers.CharField())


class GrantUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=PROJECT_ROLE_CHOICES)


class VariableSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()


class ValueSerializer(serializers.Serializer):
    value = serializers.CharField(max_length=32768, allow_blank=True, trim_whitespace=False)


class SecretSerializer(serializers.Serializer):
    """Names and times only: a secret's value is never serialized."""

    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def validate_var_name(name: str) -> str:
    """The name comes from the URL: a bad one is a 400 naming ``name`` (a bare Django
    ValidationError would escape DRF's handler as a 500)."""
    try:
        var_name_validator(name)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({"name": exc.messages})
    return name


class TokenSerializer(serializers.ModelSerializer):
    expired = serializers.SerializerMethodField()
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "expires_at",
            "last_used_at",
            "created_at",
            "revoked_at",
            "expired",
            "revoked",
            "parent",
        ]
        # parent: the id of the token that minted this one through the API (null: made in a
        # browser session). A child never outlives its parent nor holds more scopes, and is
        # revoked with it.
        read_only_fields = ["parent"]

    def get_expired(self, token: ApiToken) -> bool:
        from django.utils import timezone

        return token.expires_at is not None and token.expires_at <= timezone.now()

    def get_revoked(self, token: ApiToken) -> bool:
        return token.revoked_at is not None


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField()

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiToken.Scope.choices), min_length=1)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
