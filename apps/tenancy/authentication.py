"""Bearer personal access tokens and their scopes."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.tenancy.models import ApiToken
from apps.tenancy.services import token_hash, token_touch

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


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
        token = ApiToken.objects.select_related("user").filter(token_hash=token_hash(parts[1])).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token has been revoked.")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
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
        # The deploy scope implies invoke: whoever may ship a function may call it.
        held = set(token.scopes) | ({ApiToken.Scope.INVOKE} if ApiToken.Scope.DEPLOY in token.scopes else set())
        if scope not in held:
            self.message = f"This token lacks the '{scope}' scope this request needs."
            return False
        return True
