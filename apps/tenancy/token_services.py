"""Writes for personal API tokens: create (shown once), import, revoke with every token
minted from it, and record use."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import DomainError, Forbidden, NotFound
from apps.tenancy import announcements
from apps.tenancy.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TOKEN_PREFIX = "stt_"


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def held_scopes(token: ApiToken) -> set[str]:
    """The token's scopes; the deploy scope implies invoke: whoever may ship a function may call it.
    One rule for the API (apps.tenancy.authentication), the function gateway and minting."""
    held = set(token.scopes)
    if ApiToken.Scope.DEPLOY in held:
        held.add(ApiToken.Scope.INVOKE)
    return held


@transaction.atomic
def token_create(
    *,
    user: Actor,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    actor_token: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """Create a personal access token; returns it with the plaintext, shown only once.

    A token minted by a token (``actor_token``: the API with Bearer auth) is its child: it may
    hold only scopes its parent holds (403 otherwise, so a leaked read token cannot escalate
    itself), must expire no later than its parent (400 otherwise: a child of an expiring token
    needs an ``expires_at``, which is refused rather than silently shortened), and is revoked
    with it (token_revoke). The parent's row is locked while the child is made, so a revocation
    running at the same time either sees the child or is seen by this check."""
    if not scopes:
        raise DomainError("A token needs at least one scope.", fields={"scopes": ["Give at least one scope."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError("expires_at must be in the future.", fields={"expires_at": ["Must be in the future."]})
    parent = None
    if actor_token is not None:
        parent = ApiToken.objects.select_for_update().get(pk=actor_token.pk)
        if not parent.is_active():
            raise Forbidden("The token making this request has been revoked or has expired.")
        extra = sorted(set(scopes) - held_scopes(parent))
        if extra:
            raise Forbidden(
                f"A token cannot create a token with scopes it does not have itself ({', '.join(extra)}).",
                fields={"scopes": [f"Not held by the token making this request: {', '.join(extra)}."]},
            )
        if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
            limit = parent.expires_at.isoformat()
            raise DomainError(
                f"A token created by a token cannot outlive it: the token making this request expires at {limit}, "
                "so expires_at must be given and be no later than that.",
                code="token_outlives_parent",
                fields={"expires_at": [f"Must be at or before {limit}."]},
            )
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = token_import(
        user=signed_in(user), name=name, scopes=scopes, plaintext=plaintext, expires_at=expires_at, parent=parent
    )
    return token, plaintext


def token_import(
    *,
    user: User,
    name: str,
    scopes: list[str],
    plaintext: str,
    expires_at: datetime | None = None,
    parent: ApiToken | None = None,
) -> ApiToken:
    """Store a token whose plaintext the caller made (token_create; seed_demo's derived tokens)."""
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=plaintext[:12],
        token_hash=token_hash(plaintext),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        parent=parent,
    )
    changes: dict[str, Any] = {"name": name, "scopes": token.scopes}
    if parent is not None:
        changes["parent"] = parent.pk
    audit_record(actor=user, action="token.create", target=token, changes=changes)
    return token


@transaction.atomic
def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke ``token`` and every token minted from it, its children's children included.

    Rows are locked level by level before the next level is read, so a child being minted
    from any of them at the same time (token_create locks its parent) either commits first
    and is found here, or waits and then finds its parent revoked. After commit the function
    gateway of every process forgets them (announcements.tokens_revoked, which the engine
    hears): the very next call with any of them fails."""
    if token.user_id != actor.pk:
        raise NotFound("Token not found.")
    now = timezone.now()
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is None:
        locked.revoked_at = now
        locked.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="token.revoke", target=locked)
    # Every hash, also of tokens revoked before: announcing them again costs nothing.
    digests = [locked.token_hash]
    level = [locked.pk]
    while level:
        children = list(ApiToken.objects.select_for_update().filter(parent_id__in=level).order_by("pk"))
        for child in children:
            digests.append(child.token_hash)
            if child.revoked_at is None:
                child.revoked_at = now
                child.save(update_fields=["revoked_at"])
                audit_record(actor=actor, action="token.revoke", target=child, changes={"with_parent": child.parent_id})
        level = [child.pk for child in children]
    announcements.tokens_revoked.after_commit(digests)
    return locked


def token_touch(*, token: ApiToken) -> None:
    """Record use, at most once per TOKEN_LAST_USED_RESOLUTION_S, with a conditional update
    (no read-modify-write race, no write on most requests)."""
    now = timezone.now()
    threshold = now - timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_S)
    if token.last_used_at is not None and token.last_used_at > threshold:
        return
    from django.db.models import Q

    ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold), pk=token.pk).update(
        last_used_at=now
    )
    token.last_used_at = now
