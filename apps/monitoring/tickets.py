"""Short-lived, single-use tickets that open a function's live-tail websocket
(``/ws/functions/{id}/logs/?ticket=...``) for clients that cannot send the console's session
or an Authorization header (a browser's WebSocket, a script handing a URL to another tool).

A ticket is signed (django.core.signing, SECRET_KEY) and names the user, the function, a
random nonce and its time: any console process can check it without a lookup, and it is
refused after TICKET_TTL_S. Single use: redeeming marks the nonce spent, in Redis
(``SET NX`` with an expiry, shared by every process of the installation) or, on the embedded
default (one process), in this process's memory. The user must still see the function when
the socket opens (the websocket checks it again)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

TICKET_TTL_S = 60
_SALT = "stratus.monitoring.log-tail-ticket"

_spent_lock = threading.Lock()
_spent: dict[str, float] = {}  # nonce -> monotonic expiry (embedded default only)


def ticket_issue(*, user: Any, function_id: int) -> str:
    """A ticket for ``user`` to open ``function_id``'s live tail once within TICKET_TTL_S.
    The caller has checked that the user sees the function."""
    return signing.dumps({"u": user.pk, "f": function_id, "n": secrets.token_urlsafe(16)}, salt=_SALT, compress=True)


def _spend(nonce: str) -> bool:
    """Mark the nonce used; False when it already was."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(str(settings.REDIS_URL), socket_connect_timeout=2, socket_timeout=2)
        try:
            key = f"{settings.STRATUS_REDIS_PREFIX}logticket:{nonce}"
            return bool(client.set(key, b"1", nx=True, ex=TICKET_TTL_S * 2))
        finally:
            client.close()
    now = time.monotonic()
    with _spent_lock:
        for old in [n for n, until in _spent.items() if until < now]:
            del _spent[old]
        if nonce in _spent:
            return False
        _spent[nonce] = now + TICKET_TTL_S * 2
        return True


def ticket_redeem(*, ticket: str, function_id: int) -> Any | None:
    """The user of a valid, unexpired, unused ticket for this function (spending it), else None."""
    try:
        data = signing.loads(ticket, salt=_SALT, max_age=TICKET_TTL_S)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(data, dict) or data.get("f") != function_id or not isinstance(data.get("n"), str):
        return None
    if not isinstance(data.get("u"), int):
        return None
    if not _spend(data["n"]):
        return None
    return get_user_model().objects.filter(pk=int(data["u"]), is_active=True).first()
