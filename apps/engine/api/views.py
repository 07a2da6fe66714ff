from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.engine import services
from apps.engine.api import serializers as s
from apps.engine.engine import Outcome
from apps.functions import selectors
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken

# Both invoke operations answer alike: the outcome, or 429 with the same body when throttled.
INVOKE_RESPONSES = {
    200: s.InvocationResultSerializer,
    429: OpenApiResponse(
        s.InvocationResultSerializer, description="Throttled: the same body, with status 'throttled'."
    ),
}


class AcceptedSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    status_url = serializers.CharField()


class InvokeView(ApiView):
    """Run a function once with an event and answer its result, error, logs and timings:
    {"environment": "dev", "event": {...}, "version": 3 (optional)}. A throttled call answers
    429 with the same body. With "invocation_type": "event" the event is stored and 202
    answers its request id and status URL at once (apps.triggers.async_services); an
    Idempotency-Key header makes a repeat within 24 h answer the first's 202."""

    serializer_class = s.InvocationResultSerializer
    scope_map = {"POST": ApiToken.Scope.INVOKE}

    @extend_schema(
        request=s.InvokeSerializer,
        responses={**INVOKE_RESPONSES, 202: AcceptedSerializer},
    )
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.InvokeSerializer, request)
        environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        if data["invocation_type"] == "event":
            from apps.triggers import async_services

            event, created = async_services.async_event_enqueue(
                actor=request.user,
                function=function,
                environment=environment,
                payload=data.get("event"),
                version_number=data.get("version"),
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
            body = async_services.accepted_body(event)
            headers = {"Location": body["status_url"]}
            if not created:
                headers["Idempotent-Replayed"] = "true"
            return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)
        outcome = services.function_invoke(
            actor=request.user,
            function=function,
            environment=environment,
            event=data.get("event"),
            version_number=data.get("version"),
        )
        return _outcome_response(outcome)


class DraftInvokeView(ApiView):
    """Run the draft's saved files once, without publishing them: {"environment": "dev",
    "event": {...}}. They run as they would in that environment once deployed (its variables
    and secrets, the same sandbox and limits); refused in a protected environment. The
    answer is the invoke API's, with "draft": true and "version": null."""

    serializer_class = s.InvocationResultSerializer
    scope_map = {"POST": ApiToken.Scope.INVOKE}

    @extend_schema(
        request=s.DraftInvokeSerializer,
        responses=INVOKE_RESPONSES,
    )
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DraftInvokeSerializer, request)
        environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        outcome = services.draft_invoke(
            actor=request.user, function=function, environment=environment, event=data.get("event")
        )
        return _outcome_response(outcome)


def _outcome_response(outcome: Outcome) -> Response:
    payload = s.InvocationResultSerializer(services.outcome_payload(outcome)).data
    code = status.HTTP_429_TOO_MANY_REQUESTS if outcome.status == "throttled" else status.HTTP_200_OK
    return Response(payload, status=code)
