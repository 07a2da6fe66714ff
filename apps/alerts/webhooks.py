"""Outbound alert webhooks: where they may go, how they are signed, how one POST is made.

A webhook URL is a request this server makes on a tenant's behalf, so it follows the rule of
repository URLs (apps/pipelines/remote.py): no loopback, link-local (cloud metadata), private,
shared (CGNAT), multicast or unspecified address, nor an address of this server. The operator
may allow some back with ``STRATUS_ALERT_WEBHOOK_ALLOW`` (entries in the egress rule syntax of
apps/core/isolation/egress.py: ``10.0.3.7``, ``10.0.0.0/8:8000-8099``, ``127.0.0.1``).

Checked when the rule is saved (400 naming the rule) and again before every POST, after
resolving the name anew (a DNS answer may change in between); the POST then connects to the
address just checked (not to a second answer), and redirects are not followed.

Signature: ``Stratus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(the timestamp is signed with the body, so a captured request cannot be replayed later than
the receiver's tolerance). ``verify_signature`` is the receiver's side, for tests and docs.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from apps.core.errors import DomainError
from apps.core.isolation.egress import parse_egress_rule
from apps.pipelines.remote import refused_kind, resolve

SIGNATURE_HEADER = "Stratus-Signature"
TIMEOUT_S = 5.0
RULE = (
    "alert webhooks may not lead to loopback, link-local, private, shared (CGNAT), multicast or "
    "unspecified addresses, nor to an address of this server (STRATUS_ALERT_WEBHOOK_ALLOW allows some)"
)


class WebhookNotAllowed(DomainError):
    code = "address_not_allowed"


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]  # checked; the POST connects to the first that answers


def _allowed(address: str, port: int) -> bool:
    ip = ipaddress.ip_address(address)
    for entry in getattr(settings, "STRATUS_ALERT_WEBHOOK_ALLOW", []):
        if parse_egress_rule(entry).covers(ip, port):
            return True
    return False


def _refuse(message: str) -> WebhookNotAllowed:
    return WebhookNotAllowed(message, fields={"webhook_url": [message]})


def check_url(url: str, *, at_delivery: bool) -> Target | None:
    """The checked target of ``url`` or WebhookNotAllowed naming the rule. When saving, a name
    that does not resolve yet is accepted (None: nothing to check); at delivery it is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("A webhook URL is an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise _refuse("A webhook URL may not carry a user name or password: the signature authenticates it.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _refuse("The webhook URL's port must be a number from 1 to 65535.") from None
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = resolve(host, port)
    if not addresses:
        if at_delivery:
            raise DomainError(f"The webhook host '{host}' does not resolve.", code="webhook_unresolved")
        return None
    for address in addresses:
        kind = refused_kind(address)
        if kind and not _allowed(address, port):
            where = f"'{host}' is" if address == host else f"'{host}' resolves to {address},"
            raise _refuse(f"The webhook host {where} {kind}: {RULE}.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, tuple(addresses))


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """The receiver's check: the header's HMAC matches and its timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST to the checked address of ``url``; never raises (a refusal or a network error
    comes back as ``error``)."""
    try:
        target = check_url(url, at_delivery=True)
    except DomainError as exc:
        return Answer(None, exc.message)
    assert target is not None
    last_error = ""
    for address in target.addresses:
        conn_class: Any = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        # The host name stays the connection's (Host header, TLS SNI and certificate check);
        # only the socket goes to the address checked above.
        conn = conn_class(target.host, target.port, timeout=TIMEOUT_S)

        def pinned(addr: Any, timeout: Any = TIMEOUT_S, source: Any = None, _ip: str = address) -> socket.socket:
            return socket.create_connection((_ip, addr[1]), timeout, source)

        conn._create_connection = pinned
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)
            return Answer(response.status, "")
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            conn.close()
    return Answer(None, last_error or "no address answered")
