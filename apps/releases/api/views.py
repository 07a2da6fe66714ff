from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.functions import selectors as function_selectors
from apps.functions import version_selectors
from apps.releases import selectors, services
from apps.releases.api import serializers as s
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken


class ReleaseListView(ApiView):
    """Releases of a function (newest first; ?environment=prod to filter), and starting one."""

    serializer_class = s.ReleaseSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}

    @extend_schema(parameters=[OpenApiParameter("environment", str, required=False)])
    def get(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        releases = selectors.release_list(function=function, environment=request.query_params.get("environment"))
        return self.render_page(s.ReleaseSerializer, releases)

    @extend_schema(request=s.ReleaseStartSerializer, responses=s.ReleaseSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = function_selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.ReleaseStartSerializer, request)
        environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        version = version_selectors.version_get(function=function, number=data["version"])
        release = services.release_start(
            actor=request.user, function=function, environment=environment, version=version, plan=data["plan"]
        )
        return self.render(s.ReleaseSerializer, release, status.HTTP_201_CREATED)


class ReleaseDetailView(ApiView):
    serializer_class = s.ReleaseSerializer

    def get(self, request: Request, release_id: int) -> Response:
        return self.render(s.ReleaseSerializer, selectors.release_get(user=request.user, release_id=release_id))


class ReleaseActionView(ApiView):
    """POST /releases/{id}/<action>: answers the release in its new state."""

    serializer_class = s.ReleaseSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}
    service: Callable[..., Any] = staticmethod(services.release_promote)

    @extend_schema(request=None, responses=s.ReleaseSerializer)
    def post(self, request: Request, release_id: int) -> Response:
        release = selectors.release_get(user=request.user, release_id=release_id)
        release = type(self).service(actor=request.user, release=release)
        return self.render(s.ReleaseSerializer, selectors.release_get(user=request.user, release_id=release.pk))


class ReleasePromoteView(ReleaseActionView):
    """Next step now."""

    service = staticmethod(services.release_promote)


class ReleasePromoteAllView(ReleaseActionView):
    """Straight to 100%: the release completes."""

    service = staticmethod(services.release_promote_all)


class ReleasePauseView(ReleaseActionView):
    service = staticmethod(services.release_pause)


class ReleaseResumeView(ReleaseActionView):
    service = staticmethod(services.release_resume)


class ReleaseAbortView(ReleaseActionView):
    """All traffic back to the stable version."""

    service = staticmethod(services.release_abort)


class ReleaseApproveView(ReleaseActionView):
    """A second person (not the requester) with the deploy right approves: the first step runs."""

    service = staticmethod(services.release_approve)


class ReleaseRejectView(ReleaseActionView):
    service = staticmethod(services.release_reject)
