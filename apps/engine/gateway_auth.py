"""Bearer tokens on `token`-mode function URLs, checked without a query per request.

A token's verdict for a project (allowed, or the reason it is not) is cached in memory for
STRATUS_GATEWAY_AUTH_CACHE_S seconds, keyed by the token's SHA-256: the first request of a
token pays one lookup (in a worker thread, off the event loop), the rest a dict read. A
revoked token therefore stops working within that many seconds on every process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 allowed; 401 bad token; 403 missing scope; 404 no access to the project
    message: str = ""


ALLOWED = Verdict(200)


def _lookup(digest: str, project_id: int) -> Verdict:
    try:
        return _verdict(digest, project_id)
    finally:
        connection.close()  # a worker thread of the event loop: hold no idle connection


def _verdict(digest: str, project_id: int) -> Verdict:
    from apps.tenancy import permissions
    from apps.tenancy.authentication import active_token, held_scopes
    from apps.tenancy.models import ApiToken

    token, problem = active_token(digest)
    if token is None:
        return Verdict(401, problem)
    if not permissions.visible_projects(token.user).filter(pk=project_id).exists():
        return Verdict(404, "No function is deployed at this URL.")
    if ApiToken.Scope.INVOKE not in held_scopes(token):
        return Verdict(403, "This token lacks the 'invoke' (or 'deploy') scope that calling a function needs.")
    return ALLOWED


class TokenCache:
    def __init__(self, ttl_s: float | None = None) -> None:
        self.ttl_s = float(settings.STRATUS_GATEWAY_AUTH_CACHE_S if ttl_s is None else ttl_s)
        self._entries: dict[tuple[str, int], tuple[float, Verdict]] = {}

    async def check(self, authorization: str | None, project_id: int) -> Verdict:
        if not authorization:
            return Verdict(401, "This function needs 'Authorization: Bearer <token>' (its auth mode is token).")
        scheme, _, raw = authorization.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw or " " in raw:
            return Verdict(401, "Authorization header must be 'Bearer <token>'.")
        from apps.tenancy.services import token_hash

        key = (token_hash(raw), project_id)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        verdict = await asyncio.to_thread(_lookup, key[0], project_id)
        if len(self._entries) > 10_000:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[key] = (now + self.ttl_s, verdict)
        return verdict

    def clear(self) -> None:
        self._entries.clear()
