"""Asynchronous events: their state, the retry configuration, the dead-letter queue.

The 202 itself comes from the invoke API (apps.engine.api, ``invocation_type`` event) and the
gateway (``X-Stratus-Invocation-Type: Event``). Viewers read; developers and up write (and
redriving needs the right to invoke in the event's environment); outsiders get 404."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import DomainError
from apps.functions import selectors as function_selectors
from apps.functions.models import Function
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Environment
from apps.triggers import async_services, selectors
from apps.triggers.api import serializers as s
from apps.triggers.models import AsyncEvent

FILTERS = ("environment", "error_type", "version", "since", "until")
FILTER_PARAMS = [OpenApiParameter(name, str, required=False) for name in ("state", *FILTERS)]


def _body(request: Request) -> dict[str, Any]:
    if request.data in (None, "") or request.data == {}:
        return {}
    if not isinstance(request.data, dict):
        raise DomainError("The body must be a JSON object.", code="invalid")
    return dict(request.data)


def _environment(request: Request, function: Function) -> Environment:
    name = request.query_params.get("environment")
    if not name:
        raise DomainError(
            "environment: the environment's name is required (?environment=).",
            fields={"environment": ["This field is required."]},
        )
    return tenancy_selectors.environment_get(project=function.project, name=name)


def _detail(event: AsyncEvent) -> dict[str, Any]:
    event.attempt_list = selectors.async_attempts(event=event)  # type: ignore[attr-defined]
    return dict(s.AsyncEventDetailSerializer(event).data)


class AsyncEventDetailView(ApiView):
    """One event: its state, payload and every attempt (status, error, duration, request id;
    its log lines at logs_url). The status URL of a 202."""

    serializer_class = s.AsyncEventDetailSerializer

    def get(self, request: Request, request_id: str) -> Response:
        return Response(_detail(selectors.async_event_get(user=request.user, request_id=request_id)))


class AsyncEventRedriveView(ApiView):
    """Queue a dead event again now, optionally with an edited payload or for another version:
    {"payload": {...}, "version": 4} (both optional)."""

    serializer_class = s.AsyncEventDetailSerializer

    @extend_schema(request=s.RedriveSerializer, responses=s.AsyncEventDetailSerializer)
    def post(self, request: Request, request_id: str) -> Response:
        event = selectors.async_event_get(user=request.user, request_id=request_id)
        data = _body(request)
        unknown = sorted(set(data) - {"payload", "version"})
        if unknown:
            raise DomainError(
                f"{unknown[0]}: unknown field; known: payload, version.", fields={unknown[0]: ["Unknown."]}
            )
        version = data.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise DomainError("version: a version number.", fields={"version": ["A version number."]})
        event = async_services.async_event_redrive(
            actor=request.user,
            event=event,
            payload=data.get("payload"),
            replace_payload="payload" in data,
            version_number=version,
        )
        return Response(_detail(event))


def _list_filters(request: Request) -> dict[str, Any]:
    return {name: request.query_params.get(name) or None for name in FILTERS}


class AsyncEventListView(ApiView):
    """A function's asynchronous events, newest first: ?state=queued,running (in flight),
    &environment=&error_type=&version=&since=&until=."""

    serializer_class = s.AsyncEventSerializer

    @extend_schema(parameters=FILTER_PARAMS)
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        qs = selectors.async_event_list(
            function=function, state=request.query_params.get("state") or None, **_list_filters(request)
        )
        return self.render_page(s.AsyncEventSerializer, qs)


class DeadLetterListView(ApiView):
    """The function's dead-letter queue (events whose retries or age ran out), newest first:
    ?environment=&error_type=&version=&since=&until=."""

    serializer_class = s.AsyncEventSerializer

    @extend_schema(parameters=FILTER_PARAMS[1:])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        qs = selectors.async_event_list(function=function, state="dead", **_list_filters(request))
        return self.render_page(s.AsyncEventSerializer, qs)


def _selection_args(function: Function, data: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DomainError(
            f"{unknown[0]}: unknown field; known: {', '.join(sorted(allowed))}.", fields={unknown[0]: ["Unknown."]}
        )
    if "request_ids" in data:
        return {"request_ids": data["request_ids"]}
    filters = data.get("filters")
    if not isinstance(filters, dict):
        raise DomainError(
            "request_ids: name the events (request_ids), or give filters ({} for the whole queue).",
            fields={"request_ids": ["Required without filters."]},
        )
    bad = sorted(set(filters) - set(FILTERS))
    if bad:
        raise DomainError(
            f"filters.{bad[0]}: unknown filter; known: {', '.join(FILTERS)}.", fields={"filters": [bad[0]]}
        )
    strings = {k: (str(v) if v is not None else None) for k, v in filters.items()}
    return {"filtered": selectors.async_event_list(function=function, state="dead", **strings)}


class DeadLetterRedriveView(ApiView):
    """Redrive a selection of dead events at a rate: {"request_ids": [...]} or {"filters":
    {...}} (at most 1000), "rate_per_s" (default 10): answered with how many were queued."""

    serializer_class = s.CountSerializer

    @extend_schema(request=s.RedriveManySerializer, responses=s.CountSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        data = _body(request)
        args = _selection_args(function, data, {"request_ids", "filters", "rate_per_s"})
        count = async_services.async_events_redrive(
            actor=request.user,
            function=function,
            rate_per_s=data.get("rate_per_s", async_services.DEFAULT_REDRIVE_RATE),
            **args,
        )
        return Response({"count": count})


class DeadLetterPurgeView(ApiView):
    """Delete dead events: {"request_ids": [...]} or {"filters": {...}} ({} for all)."""

    serializer_class = s.CountSerializer

    @extend_schema(request=s.RedriveManySerializer, responses=s.CountSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        data = _body(request)
        args = _selection_args(function, data, {"request_ids", "filters"})
        return Response({"count": async_services.async_events_purge(actor=request.user, function=function, **args)})


class AsyncConfigView(ApiView):
    """Retries for asynchronous events in one environment (?environment=): max_retries 0-10
    (default 2), max_event_age_s 60-86400 (default 21600)."""

    serializer_class = s.AsyncConfigSerializer

    @extend_schema(parameters=[OpenApiParameter("environment", str, required=True)])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        config = async_services.async_config_get(function=function, environment=_environment(request, function))
        return self.render(s.AsyncConfigSerializer, config)

    @extend_schema(
        parameters=[OpenApiParameter("environment", str, required=True)],
        request=s.AsyncConfigSerializer,
        responses=s.AsyncConfigSerializer,
    )
    def put(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        environment = _environment(request, function)
        data = _body(request)
        data.pop("environment", None)
        config = async_services.async_config_set(
            actor=request.user, function=function, environment=environment, fields=data
        )
        return self.render(s.AsyncConfigSerializer, config)


class AsyncStatsView(ApiView):
    """Queue depth per environment (queued, running), the oldest waiting event's age, and the
    dead-letter count."""

    serializer_class = s.AsyncQueueStatsSerializer

    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        return self.render(s.AsyncQueueStatsSerializer, selectors.async_queue_stats(function=function))
