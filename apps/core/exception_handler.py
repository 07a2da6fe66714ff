"""Turns every API error into the one envelope (see apps.core.errors)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

from apps.core.errors import DomainError, envelope


def _flatten(detail: Any) -> Any:
    """DRF's nested ErrorDetail structures → plain strings/lists/dicts."""
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        flat = [_flatten(v) for v in detail]
        return flat
    return str(detail)


def _validation_message(fields: dict[str, Any]) -> str:
    parts = []
    for name, msgs in fields.items():
        first = msgs[0] if isinstance(msgs, list) and msgs else msgs
        if isinstance(first, dict):
            first = "invalid entry"
        label = "request" if name == "non_field_errors" else name
        parts.append(f"{label}: {first}")
    return "; ".join(parts) or "Invalid input."


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ParseError: "malformed_request",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(envelope(exc.code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        from django.conf import settings

        return Response(
            envelope(
                "request_too_large",
                f"Request body exceeds the limit of {settings.STRATUS_MAX_REQUEST_BYTES} bytes.",
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, IntegrityError):
        # Services check uniqueness first; this is the race where two requests passed that
        # check at once and the database's constraint refused the second. The transaction
        # rolled back, so nothing was half-written.
        return Response(
            envelope("conflict", "The change conflicts with a concurrent change (a unique rule); retry."),
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DjangoValidationError):
        # A model validator that ran outside a serializer: still the caller's bad input (400).
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_default_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling (and our 500 view) take it

    if isinstance(exc, drf_exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        response.data = envelope("invalid", _validation_message(fields), fields)
        return response

    code = "error"
    for cls, name in _DRF_CODES.items():
        if isinstance(exc, cls):
            code = name
            break
    message = str(getattr(exc, "detail", exc))
    if isinstance(exc, drf_exceptions.ParseError):
        code = "malformed_json" if "JSON" in message else "malformed_request"
    response.data = envelope(code, message)
    return response
