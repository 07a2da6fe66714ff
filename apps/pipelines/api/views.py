from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.pagination import LimitOffsetPagination
from apps.pipelines import delivery_selectors, delivery_services, repository_services
from apps.pipelines.api import serializers as s
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken


class RepositoryView(ApiView):
    """The project's git repository. PUT connects or changes it (project admins); the answer
    holds the webhook URLs per provider and, when the repository was just connected or
    ``rotate_secret`` was set, the webhook secret: shown this once, never again."""

    serializer_class = s.RepositorySerializer
    scope_map = {"PUT": ApiToken.Scope.ADMIN, "DELETE": ApiToken.Scope.ADMIN}

    def get(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        return self.render(s.RepositorySerializer, repository_services.repository_get(project=project))

    @extend_schema(
        request=s.RepositorySetSerializer,
        responses={
            201: s.RepositoryWithSecretSerializer,
            200: OpenApiResponse(
                s.RepositorySerializer, description="Changed; with `webhook_secret` too when rotate_secret was set."
            ),
        },
    )
    def put(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.RepositorySetSerializer, request)
        result = repository_services.repository_set(actor=request.user, project=project, **data)
        serializer = s.RepositoryWithSecretSerializer if result.webhook_secret else s.RepositorySerializer
        context = {**self.get_serializer_context(), "webhook_secret": result.webhook_secret}
        return Response(
            serializer(result.repository, context=context).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    def delete(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        repository_services.repository_delete(actor=request.user, project=project)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryPagination(LimitOffsetPagination):
    """A page of deliveries with the hook's bad-signature counter beside it: every POST whose
    signature failed is counted, and only STRATUS_WEBHOOK_REJECTED_PER_MINUTE of them a minute
    are listed as ``rejected`` deliveries."""

    bad_signatures: dict[str, Any] | None = None

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data["bad_signatures"] = s.BadSignaturesSerializer(self.bad_signatures).data
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        page = super().get_paginated_response_schema(schema)
        page["properties"]["bad_signatures"] = {
            "type": "object",
            "description": "POSTs to the project's webhook whose signature did not verify: all of them are "
            "counted; at most `stored_per_minute` a minute are kept as `rejected` deliveries.",
            "required": ["count", "last_at", "stored_per_minute"],
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "last_at": {"type": "string", "format": "date-time", "nullable": True},
                "stored_per_minute": {"type": "integer", "minimum": 0},
            },
        }
        page["required"] = [*page["required"], "bad_signatures"]
        return page


class DeliveryListView(ApiView):
    """The project's webhook deliveries, newest first; filter with ?outcome=&provider=. Beside
    the page, ``bad_signatures``: how many POSTs failed the signature check (counted even when
    no rejection record was kept for them)."""

    serializer_class = s.DeliverySerializer
    pagination_class = DeliveryPagination

    def get(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        query = s.DeliveryFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        cast(DeliveryPagination, self.paginator).bad_signatures = delivery_selectors.bad_signatures(project=project)
        return self.render_page(
            s.DeliverySerializer, delivery_selectors.delivery_list(project=project, **query.validated_data)
        )


class DeliveryDetailView(ApiView):
    """One delivery with its headers (secrets redacted) and raw payload."""

    serializer_class = s.DeliveryDetailSerializer

    def get(self, request: Request, delivery_id: int) -> Response:
        delivery = delivery_selectors.delivery_get(user=request.user, delivery_id=delivery_id)
        return self.render(s.DeliveryDetailSerializer, delivery)


class DeliveryRedeliverView(ApiView):
    """Process a stored delivery again as a new delivery (skips the duplicate-id check).
    A rejected delivery (bad signature, no payload kept) cannot be redelivered: 409."""

    serializer_class = s.DeliveryDetailSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}

    @extend_schema(request=None, responses={201: s.DeliveryDetailSerializer})
    def post(self, request: Request, delivery_id: int) -> Response:
        delivery = delivery_selectors.delivery_get(user=request.user, delivery_id=delivery_id)
        again = delivery_services.delivery_redeliver(actor=request.user, delivery=delivery)
        return self.render(s.DeliveryDetailSerializer, again, status.HTTP_201_CREATED)
