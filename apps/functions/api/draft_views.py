"""The draft API: the tree, one file (read/write/delete), rename, publish, the whole draft as a zip,
the Python check.

Every view first scopes the function to the caller (``selectors.function_get``): another
org's function is 404 whatever the method. ETags are sent quoted (RFC 9110) and accepted
quoted or bare in If-Match / If-None-Match.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import parsers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.schema import error_response
from apps.functions import code_checks, draft_selectors, draft_services, selectors
from apps.functions.api import draft_serializers as s
from apps.functions.api.version_serializers import FileContentSerializer, VersionSerializer, file_payload
from apps.functions.archives import build_canonical_zip
from apps.functions.models import DraftFile, Function
from apps.tenancy.models import ApiToken

IF_MATCH = OpenApiParameter(
    "If-Match", str, OpenApiParameter.HEADER, description="The file's ETag (sha256) or the draft's 'rev-<n>'."
)
IF_MATCH_TREE = OpenApiParameter(
    "If-Match", str, OpenApiParameter.HEADER, description="The draft's ETag 'rev-<n>': 409 if the draft changed since."
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match", str, OpenApiParameter.HEADER, description="'*': create only, 409 if the file exists."
)


def _etag_header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def _tree_response(function: Function) -> Response:
    # function.draft_revision was read before the tree: if a write lands in between, the
    # revision is older than the tree and a write with it is refused (never the reverse).
    etag = draft_services.revision_etag(function.draft_revision)
    tree = draft_selectors.draft_tree(function=function)
    response = Response(s.DraftTreeSerializer({"revision": function.draft_revision, "etag": etag, "files": tree}).data)
    response["ETag"] = _quoted(etag)
    return response


class DraftView(ApiView):
    serializer_class = s.DraftTreeSerializer

    def get(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        return _tree_response(function)


class DraftFileView(ApiView):
    serializer_class = FileContentSerializer

    @extend_schema(
        parameters=[OpenApiParameter("raw", bool, description="1: the file's bytes instead of JSON")],
        responses={
            200: FileContentSerializer,
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="the raw bytes (?raw=1)"
            ),
        },
    )
    def get(self, request: Request, function_id: int, path: str) -> HttpResponse:
        function = selectors.function_get(user=request.user, function_id=function_id)
        draft_file = draft_selectors.draft_file_get(function=function, path=path)
        content = bytes(draft_file.content)
        if request.query_params.get("raw") in ("1", "true"):
            content_type = mimetypes.guess_type(draft_file.path)[0] or "application/octet-stream"
            raw = HttpResponse(content, content_type=content_type)
            # Draft files are user content served from the console's origin: never let a
            # browser render one as a page (an .html or .svg file would run in our origin).
            raw["Content-Disposition"] = "attachment"
            raw["X-Content-Type-Options"] = "nosniff"
            raw["Content-Security-Policy"] = "sandbox; default-src 'none'"
            raw["ETag"] = _quoted(draft_file.sha256)
            return raw
        response = Response(file_payload(draft_file.path, content))
        response["ETag"] = _quoted(draft_file.sha256)
        return response

    @extend_schema(
        request=s.DraftFileWriteSerializer,
        parameters=[IF_MATCH, IF_NONE_MATCH],
        responses={200: s.DraftFileMetaSerializer, 201: s.DraftFileMetaSerializer},
    )
    def put(self, request: Request, function_id: int, path: str) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DraftFileWriteSerializer, request)
        # Only decides 200 vs 201; the write itself is guarded by the lock and the ETags.
        existed = draft_selectors.draft_file_exists(function=function, path=path)
        draft_file = draft_services.draft_file_write(
            actor=request.user,
            function=function,
            path=path,
            content=data["data"],
            if_match=_etag_header(request, "If-Match"),
            if_none_match=_etag_header(request, "If-None-Match"),
        )
        response = Response(
            s.DraftFileMetaSerializer(_meta(draft_file, function)).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )
        response["ETag"] = _quoted(draft_file.sha256)
        return response

    @extend_schema(parameters=[IF_MATCH], responses={204: None})
    def delete(self, request: Request, function_id: int, path: str) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        draft_services.draft_file_delete(
            actor=request.user, function=function, path=path, if_match=_etag_header(request, "If-Match")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _meta(draft_file: DraftFile, function: Function) -> dict[str, Any]:
    return {
        "path": draft_file.path,
        "size": len(draft_file.content),
        "sha256": draft_file.sha256,
        "updated_at": draft_file.updated_at,
        "revision": function.draft_revision,
    }


class DraftRenameView(ApiView):
    serializer_class = s.DraftTreeSerializer

    @extend_schema(request=s.DraftRenameSerializer, parameters=[IF_MATCH], responses=s.DraftTreeSerializer)
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DraftRenameSerializer, request)
        draft_services.draft_rename(
            actor=request.user,
            function=function,
            source=data["from"],
            target=data["to"],
            if_match=_etag_header(request, "If-Match"),
        )
        return _tree_response(function)


class DraftPublishView(ApiView):
    serializer_class = VersionSerializer

    @extend_schema(request=s.DraftPublishSerializer, responses={201: VersionSerializer, 200: VersionSerializer})
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DraftPublishSerializer, request)
        version, created = draft_services.draft_publish(actor=request.user, function=function, message=data["message"])
        return self.render(VersionSerializer, version, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DraftArchiveView(ApiView):
    """The whole draft as one zip: download it, or replace the draft's files with an uploaded one."""

    serializer_class = s.DraftTreeSerializer
    parser_classes = [parsers.MultiPartParser]

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="the draft's files as a zip (<function>-draft.zip)"
            )
        }
    )
    def get(self, request: Request, function_id: int) -> HttpResponse:
        function = selectors.function_get(user=request.user, function_id=function_id)
        # Read before the files, as in _tree_response: a write in between makes the ETag older
        # than the zip, so an upload guarded by it is refused rather than overwriting that write.
        etag = draft_services.revision_etag(function.draft_revision)
        archive = build_canonical_zip(draft_selectors.draft_files(function=function))
        response = HttpResponse(archive, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{function.name}-draft.zip"'
        response["ETag"] = _quoted(etag)
        return response

    @extend_schema(
        request={"multipart/form-data": s.DraftArchiveUploadSerializer},
        parameters=[IF_MATCH_TREE],
        responses=s.DraftTreeSerializer,
        description="Replace the draft's files with a zip's (multipart field `file`). Files not in the zip leave "
        "the draft. Refused, changing nothing: unsafe entries (zip slip, absolute paths, symlinks), over 2,000 "
        "files (400), over 20 MB unzipped or a file over 10 MB (413), a stale If-Match (409).",
    )
    def put(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DraftArchiveUploadSerializer, request)
        draft_services.draft_replace_from_zip(
            actor=request.user, function=function, upload=data["file"], if_match=_etag_header(request, "If-Match")
        )
        return _tree_response(function)


class DraftCheckView(ApiView):
    serializer_class = s.DraftCheckResultSerializer
    # Analysis that changes nothing: whoever may read the code may check it (viewers, and a
    # token with the read scope), although it is a POST (the buffer is the body).
    scope_map = {"POST": ApiToken.Scope.READ}

    @extend_schema(
        request=s.DraftCheckSerializer,
        responses={
            200: s.DraftCheckResultSerializer,
            503: error_response("Every slot of the Python check is taken: try again in a moment."),
        },
        description="Syntax errors, undefined names, unused imports and variables (pyflakes; the code is "
        "parsed, never run) of a Python file of the draft: of `content` if sent (the editor's unsaved "
        "buffer, at most 1 MB, else 413), else of the saved file. Other files answer no diagnostics.",
    )
    def post(self, request: Request, function_id: int) -> Response:
        function = selectors.function_get(user=request.user, function_id=function_id)
        data = self.parse(s.DraftCheckSerializer, request)
        path, diagnostics = code_checks.draft_diagnostics(
            function=function, path=data["path"], content=data.get("content")
        )
        return self.render(s.DraftCheckResultSerializer, {"path": path, "diagnostics": diagnostics})
