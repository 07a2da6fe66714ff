from __future__ import annotations

import hashlib

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import DomainError, NotFound
from apps.core.parsers import JSONParser
from apps.functions import selectors, version_selectors, version_services
from apps.functions.api import version_serializers as s
from apps.functions.artifacts import artifact_bytes
from apps.functions.models import Version


class VersionListView(ApiView):
    serializer_class = s.VersionSerializer
    parser_classes = [JSONParser, parsers.MultiPartParser]

    def get(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return self.render_page(s.VersionSerializer, version_selectors.version_list(function=function))

    @extend_schema(
        request={"application/json": s.VersionFilesCreateSerializer, "multipart/form-data": s.VersionUploadSerializer},
        responses=s.VersionSerializer,
    )
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        if request.content_type.startswith("multipart/form-data"):
            data = self.parse(s.VersionUploadSerializer, request)
            version, _ = version_services.version_create_from_zip(
                actor=request.user, function=function, upload=data["archive"], message=data["message"]
            )
        else:
            data = self.parse(s.VersionFilesCreateSerializer, request)
            files = {path: text.encode("utf-8") for path, text in data["files"].items()}
            version, _ = version_services.version_create(
                actor=request.user, function=function, files=files, source=Version.Source.FILES, message=data["message"]
            )
        return self.render(s.VersionSerializer, version, status.HTTP_201_CREATED)


class VersionView(ApiView):
    serializer_class = s.VersionSerializer

    def version(self, request: Request, function_id: int, number: int) -> Version:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return version_selectors.version_get(function=function, number=number)


class VersionDetailView(VersionView):
    def get(self, request: Request, function_id: int, number: int) -> Response:
        return self.render(s.VersionSerializer, self.version(request, function_id, number))


class VersionFileListView(VersionView):
    serializer_class = s.VersionFileEntrySerializer  # type: ignore[assignment]
    paginated = False

    @extend_schema(operation_id="functions_versions_files_list", responses=s.VersionFileEntrySerializer(many=True))
    def get(self, request: Request, function_id: int, number: int) -> Response:
        files = version_selectors.version_files(version=self.version(request, function_id, number))
        return Response(
            [{"path": p, "size": len(c), "sha256": hashlib.sha256(c).hexdigest()} for p, c in sorted(files.items())]
        )


class VersionFileView(VersionView):
    serializer_class = s.FileContentSerializer  # type: ignore[assignment]

    def get(self, request: Request, function_id: int, number: int, path: str) -> Response:
        files = version_selectors.version_files(version=self.version(request, function_id, number))
        if path not in files:
            raise NotFound(f"File '{path}' not found in version {number}.")
        response = Response(s.file_payload(path, files[path]))
        response["ETag"] = f'"{hashlib.sha256(files[path]).hexdigest()}"'
        return response


class VersionArchiveView(VersionView):
    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(response=OpenApiTypes.BINARY, description="the canonical zip")
        }
    )
    def get(self, request: Request, function_id: int, number: int) -> HttpResponse:
        version = self.version(request, function_id, number)
        response = HttpResponse(artifact_bytes(artifact=version.artifact), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{version.function.name}-v{number}.zip"'
        response["ETag"] = f'"{version.artifact.sha256}"'
        return response


class DiffQuerySerializer(serializers.Serializer):
    from_ = serializers.IntegerField(min_value=1)
    to = serializers.IntegerField(min_value=1)

    def to_internal_value(self, data):
        data = {"from_": data.get("from"), "to": data.get("to")}
        return super().to_internal_value(data)


class VersionDiffView(ApiView):
    """Files and config that differ between two versions: ?from=1&to=2."""

    serializer_class = s.VersionSerializer

    @extend_schema(
        parameters=[OpenApiParameter("from", int, required=True), OpenApiParameter("to", int, required=True)],
        responses={
            200: OpenApiResponse(
                response=OpenApiTypes.OBJECT, description="added/removed/modified files and config changes"
            )
        },
    )
    def get(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        query = DiffQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise DomainError("Give two version numbers: ?from=<n>&to=<m>.", fields={"from": ["Required."]})
        old = version_selectors.version_get(function=function, number=query.validated_data["from_"])
        new = version_selectors.version_get(function=function, number=query.validated_data["to"])
        return Response(version_selectors.version_diff(old=old, new=new))
