from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.functions import (
    binding_services,
    deploy_services,
    import_services,
    rollback_services,
    selectors,
    services,
    version_selectors,
)
from apps.functions.api import serializers as s
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import ApiToken


class FunctionListView(ApiView):
    serializer_class = s.FunctionSerializer

    def get(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        return self.render_page(s.FunctionSerializer, selectors.function_list(project=project))

    @extend_schema(request=s.FunctionCreateSerializer, responses=s.FunctionSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.FunctionCreateSerializer, request)
        function = services.function_create(actor=request.user, project=project, **data)
        return self.render(s.FunctionSerializer, function, status.HTTP_201_CREATED)


class FunctionImportView(ApiView):
    """POST an AWS SAM template.yaml or a serverless.yml: its functions are created (or updated
    by name); what could not be carried over is listed by name in the answer."""

    serializer_class = s.TemplateImportSerializer

    @extend_schema(
        request=s.TemplateImportSerializer,
        responses={
            200: OpenApiResponse(dict, description="dry_run: what the import would create and update; nothing changed"),
            201: OpenApiResponse(dict, description="The functions created and updated, and what was not carried over"),
        },
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = tenancy_selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.TemplateImportSerializer, request)
        answer = import_services.project_import_template(
            actor=request.user, project=project, template=data["template"], dry_run=data["dry_run"]
        )
        return Response(answer, status=status.HTTP_200_OK if data["dry_run"] else status.HTTP_201_CREATED)


class FunctionDetailView(ApiView):
    serializer_class = s.FunctionSerializer

    def get(self, request: Request, function_id: int) -> Response:
        return self.render(s.FunctionSerializer, selectors.function_get(user=request.user, function_id=function_id))

    @extend_schema(request=s.FunctionConfigSerializer, responses=s.FunctionSerializer)
    def patch(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.FunctionConfigSerializer, request)
        return self.render(
            s.FunctionSerializer, services.function_update(actor=request.user, function=function, **data)
        )

    def delete(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        services.function_delete(actor=request.user, function=function)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeployView(ApiView):
    """Deploy a version to an environment at 100%: {"environment": "dev", "version": 3}."""

    serializer_class = s.BindingSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}

    @extend_schema(request=s.DeploySerializer, responses=s.BindingSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DeploySerializer, request)
        environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        version = version_selectors.version_get(function=function, number=data["version"])
        binding = deploy_services.deploy(
            actor=request.user,
            function=function,
            environment=environment,
            version=version,
            auth_mode=data.get("auth_mode"),
        )
        return self.render(s.BindingSerializer, binding)


class BindingListView(ApiView):
    serializer_class = s.BindingSerializer

    def get(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return self.render_page(s.BindingSerializer, selectors.binding_list(function=function))


class RollbackView(ApiView):
    """Back to the previous stable version, or to a chosen one, at 100%:
    {"environment": "prod"} or {"environment": "prod", "version": 2}. An active release on
    the binding is marked rolled back."""

    serializer_class = s.BindingSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}

    @extend_schema(request=s.RollbackSerializer, responses=s.BindingSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.RollbackSerializer, request)
        environment = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        binding = rollback_services.function_rollback(
            actor=request.user, function=function, environment=environment, version_number=data.get("version")
        )
        return self.render(s.BindingSerializer, binding)


class PromoteView(ApiView):
    """Deploy the version serving 100% in one environment to another at 100%:
    {"from_environment": "staging", "environment": "prod"}."""

    serializer_class = s.BindingSerializer
    scope_map = {"POST": ApiToken.Scope.DEPLOY}

    @extend_schema(request=s.PromoteSerializer, responses=s.BindingSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.PromoteSerializer, request)
        source = tenancy_selectors.environment_get(project=function.project, name=data["from_environment"])
        target = tenancy_selectors.environment_get(project=function.project, name=data["environment"])
        binding = rollback_services.function_promote(
            actor=request.user, function=function, from_environment=source, to_environment=target
        )
        return self.render(s.BindingSerializer, binding)


class BindingDetailView(ApiView):
    """One binding (GET) and its routing rules (PATCH: header_rules, sticky_key, auth_mode)."""

    serializer_class = s.BindingSerializer
    scope_map = {"PATCH": ApiToken.Scope.DEPLOY}

    def get(self, request: Request, function_id: int, environment: str) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return self.render(s.BindingSerializer, selectors.binding_get(function=function, environment_name=environment))

    @extend_schema(request=s.BindingRulesSerializer, responses=s.BindingSerializer)
    def patch(self, request: Request, function_id: int, environment: str) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        binding = selectors.binding_get(function=function, environment_name=environment)
        data = self.parse(s.BindingRulesSerializer, request)
        binding = binding_services.binding_rules_set(actor=request.user, binding=binding, **data)
        return self.render(s.BindingSerializer, binding)


class BindingHistoryView(ApiView):
    """The binding's timeline, newest first: every traffic change, who, why, from → to."""

    serializer_class = s.TrafficChangeSerializer

    @extend_schema(responses=s.TrafficChangeSerializer(many=True))  # a page of changes (render_page)
    def get(self, request: Request, function_id: int, environment: str) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        binding = selectors.binding_get(function=function, environment_name=environment)
        return self.render_page(s.TrafficChangeSerializer, selectors.binding_history(binding=binding))
