"""What every console page view does the same way (apps/<app>/pages.py): read through a
selector that scopes to the caller (another org's object is a 404, as in the API), validate
input with the API's own serializer (the same messages next to the same fields), call the
service, and turn a refusal into words on the page it came from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect

from apps.core.errors import DomainError, NotFound

T = TypeVar("T")


def or_404(read: Callable[..., T], **kwargs: Any) -> T:
    """A selector's NotFound (outside the caller's orgs, or no such object) as Django's 404."""
    try:
        return read(**kwargs)
    except NotFound:
        raise Http404 from None


def refused(request: HttpRequest, exc: DomainError, back: str) -> HttpResponseRedirect:
    """A service's refusal as an error message on the page the action came from. A 404 of the
    service (an object outside the caller's orgs) stays a 404."""
    if isinstance(exc, NotFound):
        raise Http404 from None
    messages.error(request, exc.message)
    return redirect(back)


def field_errors(errors: Any) -> dict[str, list[str]]:
    """DRF serializer errors or DomainError.fields as {field: [message, ...]} for templates;
    errors not about one field go under "__all__"."""
    out: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            name = "__all__" if key in ("non_field_errors", "detail") else str(key)
            out.setdefault(name, []).extend(_messages_of(value))
    elif errors:
        out["__all__"] = _messages_of(errors)
    return out


def _messages_of(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages_of(v)]
    if isinstance(value, (list, tuple)):
        return [m for item in value for m in _messages_of(item)]
    return [str(value)]


def domain_field_errors(exc: DomainError) -> dict[str, list[str]]:
    """A service refusal as field errors: its fields when it names some, else its message."""
    errors = field_errors(exc.fields) if exc.fields else {}
    if not errors:
        errors["__all__"] = [exc.message]
    return errors
