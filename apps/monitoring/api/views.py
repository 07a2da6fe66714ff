from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.functions import selectors as function_selectors
from apps.functions.models import Function
from apps.monitoring import selectors
from apps.monitoring.api import serializers as s
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Environment


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    # A plain dict, not the QueryDict: DRF reads an absent boolean in form-style input as False.
    ser = serializer_class(data=request.query_params.dict())
    ser.is_valid(raise_exception=True)
    return dict(ser.validated_data)


def _environment(function: Function, name: str | None) -> Environment | None:
    return tenancy_selectors.environment_get(project=function.project, name=name) if name else None


class LogLineListView(ApiView):
    """A function's log lines, newest first; filter with ?environment=&request_id=&q=&stream=
    &level=&version=&since=&until= (ISO 8601)."""

    serializer_class = s.LogLineSerializer

    @extend_schema(parameters=[s.LogFilterSerializer])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        filters = _query(s.LogFilterSerializer, request)
        environment = _environment(function, filters.pop("environment", None))
        return self.render_page(
            s.LogLineSerializer, selectors.log_line_list(function=function, environment=environment, filters=filters)
        )


class InvocationListView(ApiView):
    """A function's invocations, newest first; filter with ?environment=&status=&request_id=
    &version=&cold_start=&since=&until=."""

    serializer_class = s.InvocationSerializer

    @extend_schema(parameters=[s.InvocationFilterSerializer])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        filters = _query(s.InvocationFilterSerializer, request)
        environment = _environment(function, filters.pop("environment", None))
        return self.render_page(
            s.InvocationSerializer,
            selectors.invocation_list(function=function, environment=environment, filters=filters),
        )


class InvocationSummaryView(ApiView):
    """Counts and p50/p95/p99 durations of a function's invocations over the last
    ?window_s= seconds (default 3600), optionally in one ?environment=."""

    serializer_class = s.InvocationSummarySerializer

    @extend_schema(parameters=[s.InvocationSummaryQuerySerializer])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        query = _query(s.InvocationSummaryQuerySerializer, request)
        environment = _environment(function, query.get("environment"))
        summary = selectors.invocation_summary(function=function, environment=environment, window_s=query["window_s"])
        return self.render(s.InvocationSummarySerializer, summary)
