"""Personal API tokens (/account/tokens/): create with scopes and an expiry, the plaintext
shown once on the answer to the creation (rendered, never stored in the session), the list
with last use, and revoke (which revokes the tokens minted from it too)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError
from apps.core.page_utils import or_404, refused
from apps.tenancy import selectors, token_services
from apps.tenancy.api import serializers as s
from apps.tenancy.models import ApiToken
from apps.tenancy.pages.common import domain_errors, parse

EXPIRY_CHOICES = [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("never", "No expiry")]
SCOPE_HELP: dict[str, str] = {
    ApiToken.Scope.READ: "read everything you can see",
    ApiToken.Scope.WRITE: "change functions, drafts, configuration",
    ApiToken.Scope.DEPLOY: "deploy and release (implies invoke)",
    ApiToken.Scope.ADMIN: "members, teams, grants, tokens, deletes",
    ApiToken.Scope.INVOKE: "call token-mode function URLs only",
}


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    tokens = list(selectors.token_list(user=request.user)[:200])
    now = timezone.now()
    for token in tokens:
        if token.revoked_at is not None:
            token.state = "revoked"  # type: ignore[attr-defined]
        elif token.expires_at is not None and token.expires_at <= now:
            token.state = "expired"  # type: ignore[attr-defined]
        else:
            token.state = "active"  # type: ignore[attr-defined]
    context = {
        "tokens": tokens,
        "scopes": [(value, label, SCOPE_HELP.get(value, "")) for value, label in ApiToken.Scope.choices],
        "expiry_choices": EXPIRY_CHOICES,
        **extra,
    }
    context.setdefault("create", {"values": {"scopes": ["read"], "expires": "30"}, "errors": {}})
    return context


@login_required
@require_GET
def tokens_page(request: HttpRequest) -> HttpResponse:
    return render(request, "tenancy/tokens.html", _context(request))


@never_cache
@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    expires = request.POST.get("expires", "30")
    values: dict[str, Any] = {
        "name": request.POST.get("name", "").strip(),
        "scopes": request.POST.getlist("scopes"),
        "expires": expires,
    }
    errors: dict[str, list[str]] = {}
    expires_at = None
    if expires != "never":
        try:
            expires_at = timezone.now() + timedelta(days=int(expires))
        except ValueError:
            errors["expires"] = ["Pick one of the durations."]
    expiry = expires_at.isoformat() if expires_at else None
    body = {"name": values["name"], "scopes": values["scopes"], "expires_at": expiry}
    data, serializer_errors = parse(s.TokenCreateSerializer, body)
    errors.update(serializer_errors)
    if not errors:
        try:
            token, plaintext = token_services.token_create(user=request.user, **data)
        except DomainError as exc:
            errors = domain_errors(exc)
        else:
            # Rendered, not redirected: the plaintext is in this answer only (never_cache).
            return render(request, "tenancy/tokens.html", _context(request, created=token, plaintext=plaintext))
    context = _context(request, create={"values": values, "errors": errors, "open": True})
    return render(request, "tenancy/tokens.html", context, status=400)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = or_404(selectors.token_get, user=request.user, token_id=token_id)
    try:
        token_services.token_revoke(actor=request.user, token=token)
    except DomainError as exc:
        return refused(request, exc, "/account/tokens/")
    messages.success(request, f"Token {token.name} ({token.prefix}…) revoked; it is refused from now on.")
    return redirect("/account/tokens/")


urlpatterns: list[URLPattern] = [
    path("account/tokens/", tokens_page, name="account-tokens"),
    path("account/tokens/new", token_create, name="account-token-create"),
    path("account/tokens/<int:token_id>/revoke", token_revoke, name="account-token-revoke"),
]
