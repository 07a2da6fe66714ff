"""The console layout's context: the organizations the signed-in user belongs to (the
organization switcher). Lazy: a page that does not render the switcher runs no query."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.tenancy import selectors


def console_nav(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"nav_orgs": SimpleLazyObject(lambda: list(selectors.org_list(user=user)))}
