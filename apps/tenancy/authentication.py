"""Bearer personal access tokens and their scopes."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.tenancy.models import ApiToken
from apps.tenancy.token_services import held_scopes, token_hash, token_touch

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def active_token(digest: str) -> tuple[ApiToken | None, str]:
    """The token with this SHA-256 if it may be used now, else None and the rule it breaks.
    One set of rules for the API, the function gateway and websockets."""
    token = ApiToken.objects.select_related("user").filter(token_hash=digest).first()
    if token is None:
        return None, "Invalid token."
    if token.revoked_at is not None:
        return None, "This token has been revoked."
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None, "This token has expired."
    if not token.user.is_active:
        return None, "The token's user is inactive."
    return token, ""


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        token, problem = active_token(token_hash(parts[1]))
        if token is None:
            raise exceptions.AuthenticationFailed(problem)
        token_touch(token=token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def required_scope(request: Request, view: Any) -> str:
    """The scope a request needs: the view's ``scope_map`` entry for the HTTP method, else
    read for safe methods and write otherwise."""
    scope_map = getattr(view, "scope_map", {})
    if request.method in scope_map:
        return scope_map[request.method]
    return ApiToken.Scope.READ if request.method in SAFE_METHODS else ApiToken.Scope.WRITE


class TokenScopePermission(permissions.BasePermission):
    """A token request needs the action's scope; a browser session holds every scope."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        scope = required_scope(request, view)
        if scope not in held_scopes(token):
            self.message = f"This token lacks the '{scope}' scope this request needs."
            return False
        return True
