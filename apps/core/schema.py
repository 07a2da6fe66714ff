"""OpenAPI details for drf-spectacular: our views are plain GenericAPIViews, so say which
GETs return pages of objects and which POSTs create, describe the Bearer token scheme, and
document the error envelope on every operation (one postprocessing hook instead of a
decorator on each of a hundred views)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as _AutoSchema
from drf_spectacular.utils import OpenApiResponse


class AutoSchema(_AutoSchema):
    def _is_list_view(self, serializer: Any = None) -> bool:
        # Convention: `<Thing>ListView.get` answers a paginated list; other GETs one object.
        # A ListView with ``paginated = False`` answers either one object (a fixed-shape
        # listing) or a plain array, as its response serializer says (many=True).
        is_list_get = self.method == "GET" and type(self.view).__name__.endswith("ListView")
        if is_list_get and getattr(self.view, "paginated", True):
            return True
        return super()._is_list_view(serializer)

    def _get_paginator(self) -> Any:
        if not getattr(self.view, "paginated", True):
            return None
        return super()._get_paginator()

    def _is_create_operation(self) -> bool:
        # Convention: POST to a `<Thing>ListView` creates a thing and answers 201.
        if self.method == "POST" and type(self.view).__name__.endswith("ListView"):
            return True
        return super()._is_create_operation()


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.tenancy.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token (stt_...) created at /api/v1/tokens/.",
        }


# --- the error envelope on every operation ----------------------------------------------------

ERROR_COMPONENT = "ErrorEnvelope"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every API error (apps/core/errors.py, apps/core/exception_handler.py).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable machine-readable code: invalid, malformed_json, not_authenticated, "
                    "authentication_failed, permission_denied, quota_exceeded, not_found, conflict, "
                    "request_too_large, … (a service may name a more specific rule).",
                    "example": "invalid",
                },
                "message": {
                    "type": "string",
                    "description": "What went wrong, naming the rule that was broken.",
                    "example": "name: This field is required.",
                },
                "fields": {
                    "type": "object",
                    "additionalProperties": {},
                    "description": "Per-field messages (a field name → a list of messages, or nested "
                    "messages for nested input); empty when the error is not about one field.",
                },
            },
            "required": ["code", "message", "fields"],
        }
    },
    "required": ["error"],
}

# Status → description. Which operations get which: see _error_statuses().
ERROR_DESCRIPTIONS = {
    "400": "Invalid input (a body field, a query parameter such as limit/offset, malformed JSON); "
    "the message names the rule and `fields` the fields. Nothing changed.",
    "401": "No credentials, or an invalid, revoked or expired token.",
    "403": "Authenticated, but the role, the token's scope or an organization quota does not allow this.",
    "404": "No such object, or it is outside the caller's organizations (the same answer either way).",
    "409": "Conflicts with the current state: a stale ETag (If-Match), an object that already exists, "
    "a command the object's state does not allow, or a concurrent change. Nothing changed.",
    "413": "The request body is larger than the API accepts.",
    "415": "The request body's Content-Type is not one this operation accepts.",
}

WRITE_METHODS = ("post", "put", "patch", "delete")


def error_response(description: str) -> OpenApiResponse:
    """An error answer particular to one view (say 410 for a used invitation), in the
    envelope, for its ``@extend_schema(responses={...})``; the common ones come from the hook."""
    return OpenApiResponse(response=ERROR_REF, description=description)


def _error_statuses(method: str, operation: dict[str, Any]) -> list[str]:
    """Every operation may answer 400 (bad input), 401 (no or bad credentials), 403 (role or
    scope) and 404 (object or route argument not found). A write may also conflict (409) and
    be sent a body over the limit (413: BodySizeLimitMiddleware refuses any write's body by
    its Content-Length, declared or not); an operation that reads a body refuses one of
    another type (415). GETs carry no body and change nothing, so neither 409 nor 413."""
    statuses = ["400", "401", "403", "404"]
    if method in WRITE_METHODS:
        statuses += ["409", "413"]
    if "requestBody" in operation:
        statuses.append("415")
    return statuses


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]):
    adds the ErrorEnvelope component and, on every operation, the error answers it may give,
    all in that envelope. A status a view documents itself (invoke's 429, say) is kept."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status in _error_statuses(method, operation):
                responses.setdefault(
                    status,
                    {
                        "description": ERROR_DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
    return result
