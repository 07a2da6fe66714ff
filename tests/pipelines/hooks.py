"""Helpers for webhook tests: push payloads in each provider's format, signed headers."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SHA = "a" * 40
SHA2 = "b" * 40
ZEROS = "0" * 40

PUSH_EVENT = {"github": "push", "gitlab": "Push Hook", "gitea": "push", "generic": "push"}
TAG_EVENT = {"github": "push", "gitlab": "Tag Push Hook", "gitea": "push", "generic": "push"}
OTHER_EVENT = {"github": "issues", "gitlab": "Merge Request Hook", "gitea": "pull_request", "generic": "release"}


def push_payload(provider: str, *, ref: str = "refs/heads/main", after: str = SHA, deleted: bool = False) -> dict:
    if provider == "gitlab":
        return {
            "object_kind": "tag_push" if ref.startswith("refs/tags/") else "push",
            "ref": ref,
            "before": ZEROS,
            "after": after,
            "user_name": "Pat Pusher",
            "user_username": "pat",
            "commits": [{"id": after, "message": "Fix the thing\n", "author": {"name": "Ann Author", "email": "a@x"}}],
        }
    data: dict[str, Any] = {
        "ref": ref,
        "before": ZEROS,
        "after": after,
        "deleted": deleted,
        "head_commit": None
        if deleted
        else {"id": after, "message": "Fix the thing\n", "author": {"name": "Ann Author", "username": "ann"}},
        "pusher": {"name": "pat", "email": "pat@example.com"},
    }
    if provider == "gitea":
        data["pusher"] = {"login": "pat", "username": "pat", "full_name": "Pat Pusher"}
    return data


def sign_headers(
    provider: str, body: bytes, secret: str | None, *, event: str | None = None, delivery: str | None = "d-1"
) -> dict[str, str]:
    """Headers as the git host sends them; ``secret=None`` leaves the signature out."""
    event = PUSH_EVENT[provider] if event is None else event
    mac = hmac.new((secret or "").encode(), body, hashlib.sha256).hexdigest()
    headers: dict[str, str] = {}
    if provider == "github":
        headers["X-GitHub-Event"] = event
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
        if secret is not None:
            headers["X-Hub-Signature-256"] = f"sha256={mac}"
    elif provider == "gitlab":
        headers["X-Gitlab-Event"] = event
        if delivery:
            headers["X-Gitlab-Event-UUID"] = delivery
        if secret is not None:
            headers["X-Gitlab-Token"] = secret
    elif provider == "gitea":
        headers["X-Gitea-Event"] = event
        if delivery:
            headers["X-Gitea-Delivery"] = delivery
        if secret is not None:
            headers["X-Gitea-Signature"] = mac
    else:
        headers["X-Stratus-Event"] = event
        if delivery:
            headers["X-Stratus-Delivery"] = delivery
        if secret is not None:
            headers["X-Stratus-Signature"] = f"sha256={mac}"
    return headers


def body_of(data: Any) -> bytes:
    return json.dumps(data).encode()
