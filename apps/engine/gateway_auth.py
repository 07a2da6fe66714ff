"""Bearer tokens on `token`-mode function URLs, checked without a query per request.

A token's verdict for a project (allowed, or the reason it is not) is cached in memory for
STRATUS_GATEWAY_AUTH_CACHE_S seconds, never past the token's own expiry, keyed by the token's
SHA-256: the first request of a token pays one lookup (in a worker thread, off the event
loop), the rest a dict read. Revoking a token (and with it the tokens it minted) drops it
from every cache at once: ``apps.engine.host.tokens_changed`` tells this process's caches
directly and every other web process over Redis (``stratus:<instance>:tokens``). Other changes to what a
token reaches (a grant removed, a user deactivated) take effect within the TTL.

What a caller without the right token learns: nothing. No Authorization header, a malformed
one, an unknown, revoked or expired token, and a token of someone who cannot see the project
all get the answer of a URL where no function is deployed, and a URL where none is deployed
costs a request carrying a token the same lookup as one where a function is (``NO_PROJECT``),
so neither the answer nor the work tells them apart. Only a token of someone who can see the
project learns more: 403 when its scopes do not allow calling functions.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

# The gateway's one answer for "nothing here" and "not for you" (see the module docstring).
NO_FUNCTION = (
    "No function is deployed at this URL (a function whose auth mode is token answers only to "
    "'Authorization: Bearer <token>' of someone who can see its project)."
)
# The project id checked for a URL where no function is deployed: no project has it, and the
# lookup does the same queries as for a real one.
NO_PROJECT = 0
# Entries kept before expired ones are pruned (and, if still over, all are dropped).
_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 allowed; 403 missing scope; 404 no function for this caller
    message: str = ""


ALLOWED = Verdict(200)
HIDDEN = Verdict(404, NO_FUNCTION)


def _lookup(digest: str, project_id: int) -> tuple[Verdict, datetime | None]:
    try:
        return _verdict(digest, project_id)
    finally:
        connection.close()  # a worker thread of the event loop: hold no idle connection


def _verdict(digest: str, project_id: int) -> tuple[Verdict, datetime | None]:
    """The verdict and the token's expiry (None: none, or nothing to expire)."""
    from apps.tenancy import permissions
    from apps.tenancy.authentication import active_token, held_scopes
    from apps.tenancy.models import ApiToken

    token, _ = active_token(digest)
    if token is None:
        return HIDDEN, None
    # Asked for NO_PROJECT too: the same query whether or not a function is there.
    if not permissions.visible_projects(token.user).filter(pk=project_id).exists():
        return HIDDEN, token.expires_at
    if ApiToken.Scope.INVOKE not in held_scopes(token):
        message = "This token lacks the 'invoke' (or 'deploy') scope that calling a function needs."
        return Verdict(403, message), token.expires_at
    return ALLOWED, token.expires_at


_caches: weakref.WeakSet[TokenCache] = weakref.WeakSet()
_caches_lock = threading.Lock()


def forget_tokens(digests: Iterable[str]) -> None:
    """Drop these tokens (SHA-256 hex digests) from every gateway cache of this process."""
    digests = list(digests)
    with _caches_lock:
        caches = list(_caches)
    for cache in caches:
        cache.forget(digests)


def forget_all_tokens() -> None:
    """Drop every cached verdict of this process (announcements may have been missed)."""
    with _caches_lock:
        caches = list(_caches)
    for cache in caches:
        cache.clear()


class TokenCache:
    def __init__(self, ttl_s: float | None = None) -> None:
        self.ttl_s = float(settings.STRATUS_GATEWAY_AUTH_CACHE_S if ttl_s is None else ttl_s)
        # digest → project id → (monotonic deadline, verdict). Written from the gateway's loop,
        # forgotten from whichever thread hears of a revocation: every change holds the lock.
        self._entries: dict[str, dict[int, tuple[float, Verdict]]] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a lookup that started before one is not cached (it may have
        # read the token just before the revocation committed).
        self._epoch = 0
        with _caches_lock:
            _caches.add(self)

    async def check(self, authorization: str | None, project_id: int) -> Verdict:
        if not authorization:
            return HIDDEN
        scheme, _, raw = authorization.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw or " " in raw:
            return HIDDEN
        from apps.tenancy.token_services import token_hash

        digest = token_hash(raw)
        now = time.monotonic()
        entry = self._entries.get(digest, {}).get(project_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        epoch = self._epoch
        verdict, expires_at = await asyncio.to_thread(_lookup, digest, project_id)
        ttl = self.ttl_s
        if expires_at is not None:  # the token expires sooner than the entry would
            ttl = min(ttl, (expires_at - timezone.now()).total_seconds())
        now = time.monotonic()
        with self._lock:
            if epoch == self._epoch and ttl > 0:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._prune(now)
                self._entries.setdefault(digest, {})[project_id] = (now + ttl, verdict)
        return verdict

    def _prune(self, now: float) -> None:
        kept = {}
        for digest, projects in self._entries.items():
            live = {pid: entry for pid, entry in projects.items() if entry[0] > now}
            if live:
                kept[digest] = live
        # Still full of live entries (a flood of distinct tokens): start over rather than grow.
        self._entries = kept if len(kept) < _MAX_ENTRIES else {}

    def forget(self, digests: Iterable[str]) -> None:
        with self._lock:
            self._epoch += 1
            for digest in digests:
                self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()
