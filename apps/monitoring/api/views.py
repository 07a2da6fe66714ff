from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.functions import selectors as function_selectors
from apps.functions.models import Function
from apps.monitoring import selectors, tail
from apps.monitoring.api import serializers as s
from apps.monitoring.api.stream import event_stream
from apps.monitoring.tickets import TICKET_TTL_S, ticket_issue
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken, Environment


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


class LogTicketView(ApiView):
    """A single-use ticket (valid TICKET_TTL_S = 60 s) to open the function's live-tail
    websocket without a session or an Authorization header:
    ``/ws/functions/{id}/logs/?ticket=<ticket>&environment=...`` (the filters as on the
    websocket). Needs what reading the logs needs (the read scope for a token)."""

    serializer_class = s.LogTicketSerializer
    scope_map = {"POST": ApiToken.Scope.READ}

    @extend_schema(request=None, responses={201: s.LogTicketSerializer})
    def post(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        ticket = ticket_issue(user=request.user, function_id=function.pk)
        data = {"ticket": ticket, "expires_in": TICKET_TTL_S, "websocket": f"/ws/functions/{function.pk}/logs/"}
        return self.render(s.LogTicketSerializer, data, status=201)


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets a client that asks for text/event-stream through DRF's content negotiation; an
    error before the stream starts is still the JSON error envelope."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        import json

        return json.dumps(data).encode()


_SSE_DESCRIPTION = (
    "Server-Sent Events: events backlog, lines, dropped and closing, each data: a JSON object "
    "(as on the websocket /ws/functions/{id}/logs/); the event id is the cursor. Reconnect with "
    "Last-Event-ID (or ?after=) to resume with no gap and no duplicate. A ': heartbeat' comment "
    "comes every 15 s while quiet."
)


class LogStreamView(ApiView):
    """The live tail of a function's lines as Server-Sent Events (filters as the websocket's:
    ?environment=&version=&level=&stream=&request_id=&q=&regex=&backlog= or ?after=)."""

    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=[
            s.LogStreamQuerySerializer,
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False, description="a cursor"),
        ],
        responses={(200, "text/event-stream"): OpenApiResponse(description=_SSE_DESCRIPTION)},
    )
    def get(self, request: Request, function_id: int) -> StreamingHttpResponse:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        query = request.query_params.dict()
        try:
            filters = tail.parse_filters({k: v for k, v in query.items() if k not in ("after", "backlog")})
            backlog = tail.parse_backlog(query.get("backlog"))
            after = tail.parse_cursor(query.get("after"))
            last_event = request.headers.get("Last-Event-ID", "").strip()
            if last_event:
                after = tail.parse_cursor(last_event, "Last-Event-ID")
            filters = tail.resolve_environment(function.project_id, filters)
        except tail.FilterError as exc:
            raise ValidationError(exc.fields or {"non_field_errors": [exc.message]}) from None
        log_tail = tail.LogTail(function_id=function.pk, project_id=function.project_id)
        response = StreamingHttpResponse(
            event_stream(log_tail=log_tail, filters=filters, backlog=backlog, after=after),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
        return response
