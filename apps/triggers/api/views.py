from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import DomainError
from apps.functions import selectors as function_selectors
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken
from apps.triggers import selectors, services
from apps.triggers.api import serializers as s


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise DomainError("The body must be a JSON object.", code="invalid")
    return dict(request.data)


class TriggerListView(ApiView):
    """A function's triggers, and creating one."""

    serializer_class = s.TriggerSerializer

    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        return self.render_page(s.TriggerSerializer, selectors.trigger_list(function=function))

    @extend_schema(request=s.TriggerWriteSerializer, responses={201: s.TriggerSerializer})
    def post(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        data = _body(request)
        env_name = data.pop("environment", None)
        if not isinstance(env_name, str) or not env_name:
            raise DomainError(
                "environment: the environment's name is required.",
                fields={"environment": ["This field is required."]},
            )
        environment = tenancy_selectors.environment_get(project=function.project, name=env_name)
        trigger = services.trigger_create(actor=request.user, function=function, environment=environment, fields=data)
        return self.render(s.TriggerSerializer, trigger, status.HTTP_201_CREATED)


class TriggerDetailView(ApiView):
    serializer_class = s.TriggerSerializer

    def get(self, request: Request, trigger_id: int) -> Response:
        return self.render(s.TriggerSerializer, selectors.trigger_get(user=request.user, trigger_id=trigger_id))

    @extend_schema(request=s.TriggerWriteSerializer, responses=s.TriggerSerializer)
    def patch(self, request: Request, trigger_id: int) -> Response:
        trigger = selectors.trigger_get(user=request.user, trigger_id=trigger_id)
        data = _body(request)
        if "environment" in data:
            raise DomainError(
                "environment: a trigger's environment cannot change; create one in the other environment.",
                fields={"environment": ["Cannot change."]},
            )
        trigger = services.trigger_update(actor=request.user, trigger=trigger, fields=data)
        return self.render(s.TriggerSerializer, trigger)

    def delete(self, request: Request, trigger_id: int) -> Response:
        trigger = selectors.trigger_get(user=request.user, trigger_id=trigger_id)
        services.trigger_delete(actor=request.user, trigger=trigger)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TriggerRunView(ApiView):
    """Fire once now with the trigger's payload: 202 with the fire (running); its outcome
    shows in /fires and its logs under the request id."""

    serializer_class = s.TriggerFireSerializer

    @extend_schema(request=None, responses={202: s.TriggerFireSerializer})
    def post(self, request: Request, trigger_id: int) -> Response:
        trigger = selectors.trigger_get(user=request.user, trigger_id=trigger_id)
        fire = services.trigger_run_now(actor=request.user, trigger=trigger)
        return self.render(s.TriggerFireSerializer, fire, status.HTTP_202_ACCEPTED)


class TriggerPauseView(ApiView):
    serializer_class = s.TriggerSerializer

    @extend_schema(request=None, responses=s.TriggerSerializer)
    def post(self, request: Request, trigger_id: int) -> Response:
        trigger = selectors.trigger_get(user=request.user, trigger_id=trigger_id)
        return self.render(s.TriggerSerializer, services.trigger_pause(actor=request.user, trigger=trigger))


class TriggerResumeView(ApiView):
    serializer_class = s.TriggerSerializer

    @extend_schema(request=None, responses=s.TriggerSerializer)
    def post(self, request: Request, trigger_id: int) -> Response:
        trigger = selectors.trigger_get(user=request.user, trigger_id=trigger_id)
        return self.render(s.TriggerSerializer, services.trigger_resume(actor=request.user, trigger=trigger))


class TriggerFiresView(ApiView):
    """A trigger's fires, newest first (the last STRATUS_TRIGGER_FIRES_KEPT are kept)."""

    serializer_class = s.TriggerFireSerializer

    @extend_schema(responses=s.TriggerFireSerializer(many=True))  # a page of fires (render_page)
    def get(self, request: Request, trigger_id: int) -> Response:
        trigger = selectors.trigger_get(user=request.user, trigger_id=trigger_id)
        return self.render_page(s.TriggerFireSerializer, selectors.fire_list(trigger=trigger))


class TriggerPreviewView(ApiView):
    """The next 10 fire times of an expression (UTC and local) and a readable description:
    {"expression": "0 2 * * 1-5", "timezone": "Europe/Berlin", "start": optional}."""

    serializer_class = s.PreviewSerializer
    scope_map = {"POST": ApiToken.Scope.READ}  # computes, changes nothing

    @extend_schema(request=s.PreviewRequestSerializer, responses=s.PreviewSerializer)
    def post(self, request: Request) -> Response:
        data = _body(request)
        if not isinstance(data.get("expression"), str):
            raise DomainError("expression: this field is required.", fields={"expression": ["This field is required."]})
        result = services.preview(
            expression=data["expression"], timezone_name=data.get("timezone") or "UTC", start=data.get("start")
        )
        return Response(result)
