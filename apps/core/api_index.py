"""GET /api/v1/: where the API starts: its schema, its docs and the top collections, as links
(no token needed: it says nothing a caller could not read in the published schema)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

# name in the answer -> URL name (console/urls.py and the apps' api/urls.py)
COLLECTIONS = {
    "me": "me",
    "orgs": "org-list",
    "projects": "project-list",
    "tokens": "token-list",
    "test_event_templates": "test-event-templates",
}


class ApiIndexView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        summary="The API's index: links to its schema, docs and top collections",
        auth=[],
        responses=inline_serializer(
            "ApiIndex",
            {
                "name": serializers.CharField(),
                "version": serializers.CharField(),
                "schema": serializers.URLField(),
                "docs": serializers.URLField(),
                "collections": serializers.DictField(child=serializers.URLField()),
                "auth": serializers.CharField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "name": "Stratus API",
                "version": "1",
                "schema": reverse("schema", request=request),
                "docs": reverse("swagger-ui", request=request),
                "collections": {key: reverse(name, request=request) for key, name in COLLECTIONS.items()},
                "auth": "Authorization: Bearer <token> (create one at /account/tokens/ or POST tokens/)",
            }
        )
