"""Test events: named event bodies stored per function, shared by the WebIDE, the API and
the VS Code extension.

Who may do what (apps/functions/test_event_services.py holds the rules):
- anyone who sees the function (viewers and up) lists and reads the shared events and
  their own private ones; someone else's private event answers 404, as a missing one;
- developers and up create events, and change or delete their own and the shared ones;
  viewers get 403 on every write; only an event's creator may change ``shared``;
- outside the function's organization: 404 for everything.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.functions import selectors, test_event_selectors, test_event_services
from apps.functions.api import test_event_serializers as s
from apps.functions.models import TestEvent
from apps.functions.test_event_templates import template_list


class TestEventListView(ApiView):
    __test__ = False
    serializer_class = s.TestEventSerializer

    def get(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return self.render_page(
            s.TestEventSerializer, test_event_selectors.test_event_list(user=request.user, function=function)
        )

    @extend_schema(request=s.TestEventCreateSerializer, responses=s.TestEventSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.TestEventCreateSerializer, request)
        test_event = test_event_services.test_event_create(actor=request.user, function=function, **data)
        return self.render(s.TestEventSerializer, test_event, status.HTTP_201_CREATED)


class TestEventDetailView(ApiView):
    __test__ = False
    serializer_class = s.TestEventSerializer

    def test_event(self, request: Request, function_id: int, test_event_id: int) -> TestEvent:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return test_event_selectors.test_event_get(user=request.user, function=function, test_event_id=test_event_id)

    def get(self, request: Request, function_id: int, test_event_id: int) -> Response:
        return self.render(s.TestEventSerializer, self.test_event(request, function_id, test_event_id))

    @extend_schema(request=s.TestEventUpdateSerializer, responses=s.TestEventSerializer)
    def patch(self, request: Request, function_id: int, test_event_id: int) -> Response:
        test_event = self.test_event(request, function_id, test_event_id)
        data = self.parse(s.TestEventUpdateSerializer, request)
        test_event = test_event_services.test_event_update(actor=request.user, test_event=test_event, **data)
        return self.render(s.TestEventSerializer, test_event)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, function_id: int, test_event_id: int) -> Response:
        test_event = self.test_event(request, function_id, test_event_id)
        test_event_services.test_event_delete(actor=request.user, test_event=test_event)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TestEventTemplateListView(ApiView):
    """Starting points for a new test event: HTTP GET and POST as the gateway sends them to an
    event function, an SCF API gateway event, a scheduled event and custom JSON. The same
    for every signed-in caller."""

    __test__ = False
    serializer_class = s.TestEventTemplateSerializer
    paginated = False

    @extend_schema(operation_id="test_event_templates_list", responses=s.TestEventTemplateSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(s.TestEventTemplateSerializer(template_list(), many=True).data)
