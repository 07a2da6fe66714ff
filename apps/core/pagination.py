"""The API's one paginator: ?limit=&offset= over every list.

DRF's LimitOffsetPagination quietly falls back to the default page on a limit or offset that
is not a number (``?limit=abc`` answered 50 rows, ``?offset=-5`` the first page). Here such a
value is the caller's mistake: 400 in the error envelope naming the parameter, by the rules the
OpenAPI schema publishes (integers with a minimum and a maximum). A limit over the maximum is
still capped to it, as before: asking for "as many as you give" is not a mistake."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination as _LimitOffsetPagination
from rest_framework.request import Request

# The largest offset: an index no list reaches, and an integer every database takes.
MAX_OFFSET = 2**31 - 1


class LimitOffsetPagination(_LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        return self._integer(request, self.limit_query_param, self.default_limit, 1, self.max_limit, cap=True)

    def get_offset(self, request: Request) -> int:
        return self._integer(request, self.offset_query_param, 0, 0, MAX_OFFSET, cap=False)

    def _integer(self, request: Request, name: str, default: int, minimum: int, maximum: int, *, cap: bool) -> int:
        """The parameter as an integer from minimum to maximum (its default when absent); over
        the maximum it is capped (``cap``) or refused."""
        raw = request.query_params.get(name)
        if raw is None:
            return default
        rule = f"Must be a whole number from {minimum} to {maximum}"
        # Only ASCII digits (a leading minus is refused by the minimum): int() would also take
        # " 7", "+7", "7_0" or other scripts' digits, none of which the schema allows; and the
        # length is checked before int(), so a 5,000-digit value costs nothing.
        text = raw[1:] if raw.startswith("-") else raw
        if not (text.isascii() and text.isdigit()):
            raise ValidationError({name: [f"{rule}, got {raw[:40]!r}."]})
        value = int(raw) if len(text) <= len(str(maximum)) else maximum + 1
        if value < minimum or (value > maximum and not cap):
            raise ValidationError({name: [f"{rule}, got {raw[:40]}."]})
        return min(value, maximum)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit_schema = {"type": "integer", "minimum": 1, "maximum": self.max_limit, "default": self.default_limit}
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Number of results per page, 1 to {self.max_limit} (default {self.default_limit}; "
                f"a larger limit is capped to {self.max_limit}); anything else answers 400.",
                "schema": limit_schema,
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": f"Index of the first result, 0 (default) to {MAX_OFFSET}; anything else answers 400.",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
            },
        ]
