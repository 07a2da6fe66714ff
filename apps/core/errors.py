"""One error type for the domain and one envelope for every API error.

Services raise ``DomainError`` (or a subclass) with a stable ``code``, a message that
names the rule that was broken, and optional per-field messages; the DRF exception
handler (apps.core.exception_handler) turns it, and every DRF/Django error, into::

    {"error": {"code": "...", "message": "...", "fields": {...}}}
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.fields = fields or {}


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Forbidden(DomainError):
    status_code = 403
    code = "permission_denied"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Gone(DomainError):
    status_code = 410
    code = "gone"


class QuotaExceeded(DomainError):
    """An organization quota refuses the change (apps/tenancy/quotas.py). 403: the request is
    understood and well formed, the organization is not allowed more; ``fields`` names the quota."""

    status_code = 403
    code = "quota_exceeded"


def envelope(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def json_error(status_code: int, code: str, message: str, fields: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(envelope(code, message, fields), status=status_code)


def already_exists(what: str, value: str) -> Conflict:
    """409 for a name that is taken: ``Organization 'acme' already exists.``"""
    return Conflict(f"{what} '{value}' already exists.", code="already_exists")
