from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import selectors, services
from apps.alerts.api import serializers as s
from apps.core.api import ApiView
from apps.core.errors import DomainError
from apps.functions import selectors as function_selectors
from apps.tenancy import selectors as tenancy_selectors


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise DomainError("The body must be a JSON object.", code="invalid")
    return dict(request.data)


class AlertRuleListView(ApiView):
    """A function's alert rules (?environment=prod to filter), and creating one."""

    serializer_class = s.AlertRuleSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), **getattr(self, "extra_context", {})}

    def prefetch_for_page(self, page: list[Any]) -> None:
        self.extra_context: dict[str, Any] = {"silenced_until": selectors.silenced_until(rules=page)}

    @extend_schema(parameters=[OpenApiParameter("environment", str, required=False)])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        rules = selectors.alert_rule_list(function=function)
        if request.query_params.get("environment"):
            rules = rules.filter(environment__name=request.query_params["environment"])
        return self.render_page(s.AlertRuleSerializer, rules)

    @extend_schema(request=s.AlertRuleWriteSerializer, responses={201: s.AlertRuleCreatedSerializer})
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
        rule, secret = services.alert_rule_create(
            actor=request.user, function=function, environment=environment, fields=data
        )
        self.extra_context = {"webhook_secret": secret}
        return self.render(s.AlertRuleCreatedSerializer, rule, status.HTTP_201_CREATED)


class AlertRuleDetailView(ApiView):
    serializer_class = s.AlertRuleSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), **getattr(self, "extra_context", {})}

    def _rule(self, request: Request, alert_rule_id: int) -> Any:
        rule = selectors.alert_rule_get(user=request.user, alert_rule_id=alert_rule_id)
        self.extra_context: dict[str, Any] = {"silenced_until": selectors.silenced_until(rules=[rule])}
        return rule

    def get(self, request: Request, alert_rule_id: int) -> Response:
        return self.render(s.AlertRuleSerializer, self._rule(request, alert_rule_id))

    @extend_schema(request=s.AlertRuleWriteSerializer, responses=s.AlertRuleCreatedSerializer)
    def patch(self, request: Request, alert_rule_id: int) -> Response:
        rule = self._rule(request, alert_rule_id)
        data = _body(request)
        if "environment" in data:
            raise DomainError(
                "environment: a rule's environment cannot change; create a rule in the other environment.",
                fields={"environment": ["Cannot change."]},
            )
        rotate = data.pop("rotate_webhook_secret", False)
        if not isinstance(rotate, bool):
            raise DomainError(
                "rotate_webhook_secret: must be true or false.", fields={"rotate_webhook_secret": ["true or false."]}
            )
        rule, secret = services.alert_rule_update(
            actor=request.user, rule=rule, fields=data, rotate_webhook_secret=rotate
        )
        self.extra_context["webhook_secret"] = secret
        return self.render(s.AlertRuleCreatedSerializer, rule)

    def delete(self, request: Request, alert_rule_id: int) -> Response:
        services.alert_rule_delete(actor=request.user, rule=self._rule(request, alert_rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertRuleHistoryView(ApiView):
    """A rule's transitions, newest first: from → to, the value and threshold, when."""

    serializer_class = s.AlertEventSerializer

    @extend_schema(responses=s.AlertEventSerializer(many=True))  # a page of them (render_page)
    def get(self, request: Request, alert_rule_id: int) -> Response:
        rule = selectors.alert_rule_get(user=request.user, alert_rule_id=alert_rule_id)
        return self.render_page(s.AlertEventSerializer, selectors.alert_event_list(rule=rule))


class AlertRuleNotificationsView(ApiView):
    """A rule's notifications with their delivery log (every attempt: status code, error)."""

    serializer_class = s.NotificationSerializer

    @extend_schema(responses=s.NotificationSerializer(many=True))  # a page of them (render_page)
    def get(self, request: Request, alert_rule_id: int) -> Response:
        rule = selectors.alert_rule_get(user=request.user, alert_rule_id=alert_rule_id)
        return self.render_page(s.NotificationSerializer, selectors.notification_list(rule=rule))


class SilenceListView(ApiView):
    """A function's silences (past ones too, newest end first), and creating one."""

    serializer_class = s.SilenceSerializer

    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        return self.render_page(s.SilenceSerializer, selectors.silence_list(function=function))

    @extend_schema(request=s.SilenceWriteSerializer, responses={201: s.SilenceSerializer})
    def post(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.SilenceWriteSerializer, request)
        now = timezone.now()
        ends_at = data.get("ends_at") or now + timedelta(seconds=data["duration_s"])
        environment = None
        if data.get("environment"):
            environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        rule = None
        if data.get("rule") is not None:
            rule = selectors.alert_rule_list(function=function).filter(pk=data["rule"]).first()
            if rule is None:
                raise DomainError("rule: no such alert rule of this function.", fields={"rule": ["Not found."]})
        silence = services.silence_create(
            actor=request.user,
            function=function,
            ends_at=ends_at,
            environment=environment,
            rule=rule,
            comment=data.get("comment", ""),
            now=now,
        )
        return self.render(s.SilenceSerializer, silence, status.HTTP_201_CREATED)


class SilenceExpireView(ApiView):
    """End a silence now."""

    serializer_class = s.SilenceSerializer

    @extend_schema(request=None, responses=s.SilenceSerializer)
    def post(self, request: Request, silence_id: int) -> Response:
        silence = selectors.silence_get(user=request.user, silence_id=silence_id)
        return self.render(s.SilenceSerializer, services.silence_expire(actor=request.user, silence=silence))
