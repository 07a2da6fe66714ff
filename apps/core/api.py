"""Base view for the API: thin views that parse input with a serializer, call one service or
selector, and serialize the result."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response


class ApiView(generics.GenericAPIView):
    # Per-HTTP-method token scope overrides (see apps.tenancy.authentication.required_scope).
    scope_map: dict[str, str] = {}

    def parse(self, serializer_class: type[serializers.Serializer], request: Request, **kwargs: Any) -> dict[str, Any]:
        ser = serializer_class(data=request.data, context=self.get_serializer_context(), **kwargs)
        ser.is_valid(raise_exception=True)
        return dict(ser.validated_data)

    def render(self, serializer_class: type[serializers.BaseSerializer], obj: Any, status: int = 200) -> Response:
        return Response(serializer_class(obj, context=self.get_serializer_context()).data, status=status)

    def render_page(self, serializer_class: type[serializers.BaseSerializer], queryset: Any) -> Response:
        page = self.paginate_queryset(queryset)
        self.prefetch_for_page(page or [])
        data = serializer_class(page, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)

    def prefetch_for_page(self, page: list[Any]) -> None:
        """Hook: load per-row facts for a whole page in one go (no query per row)."""

    def get_object(self) -> Any:
        """Views look objects up through the caller-scoped selectors, never a queryset.
        DRF's OPTIONS metadata probes get_object() for PUT; without this it crashed (500)."""
        raise Http404
