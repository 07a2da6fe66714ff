"""Git host webhooks: signature checks on the raw body and push payload parsing.

Pure functions, no database: the intake view (apps.pipelines.intake) verifies with
``verify`` before anything parses the body, and apps.pipelines.delivery_services turns a
verified delivery into a push with ``parse_push``.

Providers and their headers:

========  ==========================================  ===================  =======================================
provider  signature                                   event                delivery id
========  ==========================================  ===================  =======================================
github    X-Hub-Signature-256: sha256=<hex HMAC>      X-GitHub-Event       X-GitHub-Delivery
gitlab    X-Gitlab-Token: <secret>                    X-Gitlab-Event       X-Gitlab-Event-UUID, Idempotency-Key
gitea     X-Gitea-Signature: <hex HMAC>               X-Gitea-Event        X-Gitea-Delivery
generic   X-Stratus-Signature: sha256=<hex HMAC>      X-Stratus-Event      X-Stratus-Delivery
========  ==========================================  ===================  =======================================

HMACs are HMAC-SHA256(secret, raw body). Every comparison is hmac.compare_digest. The
delivery id is required of every provider, the generic one too (a fresh UUID per delivery):
a signed delivery without it is refused (delivery_services.delivery_receive), since the
signature does not cover it and only the id tells a retry from a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from apps.core.errors import DomainError
from apps.core.parsers import loads_bounded

PROVIDERS = ("github", "gitlab", "gitea", "generic")
ZERO_SHA = re.compile(r"^0+$")
_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")

# Headers whose values prove knowledge of the secret (or carry credentials): never stored.
REDACTED_HEADERS = frozenset(
    {
        "x-hub-signature",
        "x-hub-signature-256",
        "x-gitlab-token",
        "x-gitea-signature",
        "x-gogs-signature",
        "x-stratus-signature",
        "authorization",
        "proxy-authorization",
        "cookie",
    }
)
REDACTED = "[redacted]"
_MAX_HEADER_VALUE = 500


@dataclass(frozen=True)
class ProviderSpec:
    event_header: str
    delivery_headers: tuple[str, ...]
    push_events: frozenset[str]
    ping_events: frozenset[str]


SPECS: dict[str, ProviderSpec] = {
    "github": ProviderSpec("X-GitHub-Event", ("X-GitHub-Delivery",), frozenset({"push"}), frozenset({"ping"})),
    "gitlab": ProviderSpec(
        "X-Gitlab-Event",
        ("X-Gitlab-Event-UUID", "Idempotency-Key"),
        frozenset({"Push Hook", "Tag Push Hook"}),
        frozenset(),
    ),
    "gitea": ProviderSpec("X-Gitea-Event", ("X-Gitea-Delivery",), frozenset({"push"}), frozenset()),
    "generic": ProviderSpec("X-Stratus-Event", ("X-Stratus-Delivery",), frozenset({"push"}), frozenset({"ping"})),
}


class PayloadError(ValueError):
    """A verified body that is not a usable payload (malformed JSON, missing fields)."""


# --- signatures ---------------------------------------------------------------------------------


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name) or ""


def _prefixed_hmac_ok(given: str, secret: str, body: bytes) -> bool:
    scheme, sep, digest = given.partition("=")
    if not sep or scheme.strip().lower() != "sha256":
        return False
    expected = hmac_hex(secret, body)
    return hmac.compare_digest(digest.strip().lower().encode("ascii", "replace"), expected.encode("ascii"))


def verify(provider: str, headers: Mapping[str, str], body: bytes, secret: str) -> tuple[bool, str]:
    """Whether ``body`` was sent by someone holding ``secret``: (ok, reason when not ok).

    ``headers`` is case-insensitive (Django's request.headers). Runs before any parsing; all
    comparisons are constant-time."""
    if provider == "github":
        given = _header(headers, "X-Hub-Signature-256")
        if not given:
            return False, "missing X-Hub-Signature-256 header"
        return (True, "") if _prefixed_hmac_ok(given, secret, body) else (False, "bad X-Hub-Signature-256 signature")
    if provider == "generic":
        given = _header(headers, "X-Stratus-Signature")
        if not given:
            return False, "missing X-Stratus-Signature header"
        return (True, "") if _prefixed_hmac_ok(given, secret, body) else (False, "bad X-Stratus-Signature signature")
    if provider == "gitea":
        given = _header(headers, "X-Gitea-Signature")
        if not given:
            return False, "missing X-Gitea-Signature header"
        expected = hmac_hex(secret, body)
        ok = hmac.compare_digest(given.strip().lower().encode("ascii", "replace"), expected.encode("ascii"))
        return (True, "") if ok else (False, "bad X-Gitea-Signature signature")
    if provider == "gitlab":
        given = _header(headers, "X-Gitlab-Token")
        if not given:
            return False, "missing X-Gitlab-Token header"
        ok = hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode("utf-8"))
        return (True, "") if ok else (False, "bad X-Gitlab-Token")
    return False, f"unknown provider '{provider}'"


# --- headers ------------------------------------------------------------------------------------


def event_of(provider: str, headers: Mapping[str, str]) -> str:
    return _header(headers, SPECS[provider].event_header).strip()[:50]


def delivery_id_of(provider: str, headers: Mapping[str, str]) -> str:
    for name in SPECS[provider].delivery_headers:
        value = _header(headers, name).strip()
        if value:
            return value[:100]
    return ""


def redacted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers as stored on a Delivery: secrets replaced, long values cut."""
    stored = {}
    for name, value in headers.items():
        stored[name] = REDACTED if name.lower() in REDACTED_HEADERS else str(value)[:_MAX_HEADER_VALUE]
    return stored


def event_kind(provider: str, event: str) -> str:
    """push | ping | other."""
    spec = SPECS[provider]
    if event in spec.push_events:
        return "push"
    if event in spec.ping_events:
        return "ping"
    return "other"


# --- payloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Push:
    ref: str  # refs/heads/main, refs/tags/v1
    branch: str  # "" for a tag push
    tag: str  # "" for a branch push
    commit_sha: str
    deleted: bool
    commit_message: str
    author: str
    pusher: str


def load_json(payload: str, content_type: str = "") -> dict[str, Any]:
    """The payload as a JSON object. GitHub and Gitea may send it form-encoded (payload=...)."""
    text = payload
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        values = parse_qs(payload).get("payload")
        if not values:
            raise PayloadError("form-encoded body without a 'payload' field")
        text = values[0]
    try:
        data = loads_bounded(text)
    except DomainError as exc:  # nested deeper than STRATUS_MAX_JSON_DEPTH: no RecursionError
        raise PayloadError(exc.message) from None
    except ValueError as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("the payload is not a JSON object")
    return data


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _person(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("username", "login", "name", "email"):
            if _str(value.get(key)):
                return str(value[key])
    return ""


def parse_push(provider: str, data: dict[str, Any]) -> Push:
    """A push payload (GitHub's format for github/gitea/generic, GitLab's for gitlab)."""
    ref = data.get("ref")
    after = data.get("after")
    if not isinstance(ref, str) or not ref:
        raise PayloadError("push payload has no 'ref'")
    if not isinstance(after, str) or not after:
        raise PayloadError("push payload has no 'after' commit")
    if not _SHA_RE.match(after):
        raise PayloadError(f"push payload 'after' is not a commit sha: {after[:80]!r}")
    after = after.lower()
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else ""
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else ""
    deleted = bool(data.get("deleted")) or bool(ZERO_SHA.match(after))

    raw_commits = data.get("commits")
    commits: list[Any] = raw_commits if isinstance(raw_commits, list) else []
    head: Any = data.get("head_commit")
    if not isinstance(head, dict):
        head = next((c for c in commits if isinstance(c, dict) and c.get("id") == after), None)
        if head is None and commits and isinstance(commits[-1], dict):
            head = commits[-1]
    head = head if isinstance(head, dict) else {}
    message = _str(head.get("message"))
    author = _person(head.get("author"))

    if provider == "gitlab":
        pusher = _str(data.get("user_username")) or _str(data.get("user_name"))
        if not message and tag:
            message = _str(data.get("message"))
    else:
        pusher = _person(data.get("pusher")) or _person(data.get("sender"))
    return Push(
        ref=ref[:300],
        branch=branch[:200],
        tag=tag[:200],
        commit_sha=after,
        deleted=deleted,
        commit_message=message,
        author=author[:200],
        pusher=pusher[:200],
    )
