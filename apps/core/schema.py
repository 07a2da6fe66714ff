"""OpenAPI details for drf-spectacular: our views are plain GenericAPIViews, so say which
GETs return pages of objects, and describe the Bearer token scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as _AutoSchema


class AutoSchema(_AutoSchema):
    def _is_list_view(self, serializer: Any = None) -> bool:
        # Convention: `<Thing>ListView.get` answers a paginated list; other GETs one object.
        if self.method == "GET" and type(self.view).__name__.endswith("ListView"):
            return getattr(self.view, "paginated", True)
        return super()._is_list_view(serializer)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.tenancy.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token (stt_...) created at /api/v1/tokens/.",
        }
