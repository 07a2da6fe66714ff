"""Runs: list/start per project, detail with steps, log lines, and the commands
(cancel, retry, approve, reject). Reads need the read scope, commands the deploy scope;
runs outside the caller's projects answer 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import DomainError
from apps.pipelines import run_selectors, run_services
from apps.pipelines.api import run_serializers as s
from apps.pipelines.models import Run
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken

LOG_PAGE = 1000


class RunListView(ApiView):
    """Runs of a project, newest first (?branch=, ?state=), and starting one:
    {"branch": "main"} runs the branch head ("redeploy latest"), {"commit": sha} a commit."""

    serializer_class = s.RunSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}

    @extend_schema(
        parameters=[OpenApiParameter("branch", str, required=False), OpenApiParameter("state", str, required=False)]
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        state = request.query_params.get("state")
        if state and state not in Run.State.values:
            raise DomainError(f"state: use one of {', '.join(Run.State.values)}.", fields={"state": ["Unknown state."]})
        runs = run_selectors.run_list(project=project, branch=request.query_params.get("branch"), state=state)
        return self.render_page(s.RunSerializer, runs)

    @extend_schema(request=s.RunCreateSerializer, responses=s.RunDetailSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.RunCreateSerializer, request)
        run = run_services.run_create_manual(
            actor=request.user, project=project, branch=data.get("branch", ""), commit=data.get("commit", "")
        )
        return self.render(
            s.RunDetailSerializer, run_selectors.run_get(user=request.user, run_id=run.pk), status.HTTP_201_CREATED
        )


class RunDetailView(ApiView):
    serializer_class = s.RunDetailSerializer

    def get(self, request: Request, run_id: int) -> Response:
        return self.render(s.RunDetailSerializer, run_selectors.run_get(user=request.user, run_id=run_id))


class RunLogView(ApiView):
    """Log lines after ?after=<seq> (default 0), up to ?limit= (≤ 1000) per page; ``next_after``
    is the seq to ask from next, ``more`` whether lines remain now."""

    serializer_class = s.RunLogLineSerializer

    @extend_schema(
        parameters=[OpenApiParameter("after", int, required=False), OpenApiParameter("limit", int, required=False)],
        responses=inline_serializer(
            "RunLogPage",
            {
                "run": serializers.IntegerField(),
                "state": serializers.ChoiceField(choices=Run.State.choices),
                "lines": s.RunLogLineSerializer(many=True),
                "next_after": serializers.IntegerField(),
                "more": serializers.BooleanField(),
            },
        ),
    )
    def get(self, request: Request, run_id: int) -> Response:
        run = run_selectors.run_get(user=request.user, run_id=run_id)
        try:
            after = max(0, int(request.query_params.get("after", 0)))
            limit = min(LOG_PAGE, max(1, int(request.query_params.get("limit", LOG_PAGE))))
        except ValueError:
            raise DomainError("after and limit must be integers.", fields={"after": ["Integer."]}) from None
        lines = list(run_selectors.run_log(run=run, after=after)[: limit + 1])
        more = len(lines) > limit
        lines = lines[:limit]
        return Response(
            {
                "run": run.pk,
                "state": run.state,
                "lines": s.RunLogLineSerializer(lines, many=True).data,
                "next_after": lines[-1].seq if lines else after,
                "more": more,
            }
        )


class RunActionView(ApiView):
    """POST /runs/{id}/<action>: answers the run (retry: the new run, 201)."""

    serializer_class = s.RunDetailSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}
    service: Callable[..., Any] = staticmethod(run_services.run_cancel)
    created = False

    @extend_schema(request=None, responses=s.RunDetailSerializer)
    def post(self, request: Request, run_id: int) -> Response:
        run = run_selectors.run_get(user=request.user, run_id=run_id)
        result = type(self).service(actor=request.user, run=run)
        fresh = run_selectors.run_get(user=request.user, run_id=result.pk)
        return self.render(
            s.RunDetailSerializer, fresh, status.HTTP_201_CREATED if self.created else status.HTTP_200_OK
        )


class RunCancelView(RunActionView):
    service = staticmethod(run_services.run_cancel)


@extend_schema_view(post=extend_schema(request=None, responses={201: s.RunDetailSerializer}))
class RunRetryView(RunActionView):
    service = staticmethod(run_services.run_retry)
    created = True


class RunApproveView(RunActionView):
    service = staticmethod(run_services.run_approve)


class RunRejectView(RunActionView):
    service = staticmethod(run_services.run_reject)
