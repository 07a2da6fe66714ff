from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.models import AuditEvent
from apps.core.api import ApiView
from apps.tenancy import selectors


class AuditEventSerializer(serializers.ModelSerializer):
    # Null for events that belong to no organization (a token created or revoked, an org
    # deleted: the event outlives the row), so the schema must say so.
    org = serializers.CharField(source="org.slug", default=None, allow_null=True, read_only=True)
    actor = serializers.CharField(source="actor_repr", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "org",
            "actor",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "changes",
            "source_ip",
            "request_id",
            "created_at",
        ]


class AuditFilterSerializer(serializers.Serializer):
    org = serializers.CharField(required=False)
    action = serializers.CharField(required=False)
    actor = serializers.CharField(required=False)
    target_type = serializers.CharField(required=False)
    target_id = serializers.CharField(required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class AuditEventListView(ApiView):
    """Audit events of the orgs the caller administers, newest first; filter with
    ?org=&action=&actor=&target_type=&target_id=&since=&until= (ISO 8601)."""

    serializer_class = AuditEventSerializer

    @extend_schema(parameters=[AuditFilterSerializer])
    def get(self, request: Request) -> Response:
        ser = AuditFilterSerializer(data=request.query_params)
        ser.is_valid(raise_exception=True)
        if ser.validated_data.get("org"):
            selectors.org_get(user=request.user, slug=ser.validated_data["org"])  # 404 outside the caller's orgs
        return self.render_page(
            AuditEventSerializer, selectors.audit_event_list(user=request.user, filters=ser.validated_data)
        )
