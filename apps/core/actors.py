"""Who acts: the type of the ``actor`` / ``user`` a service or selector is called with.

``Actor`` is what ``request.user`` is: a signed-in user or Django's anonymous user. Stratus
keeps Django's own user model (``AUTH_USER_MODEL`` is not set), so this is the type
django-stubs gives ``request.user`` and ``get_user_model()``. Permission checks accept an
``Actor`` (an anonymous one holds no role and is refused there); a service that stores the
actor on a row (a membership, a token, an invitation's inviter) narrows it with
``signed_in`` first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from apps.core.errors import Forbidden

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

Actor: TypeAlias = "User | AnonymousUser"


def signed_in(actor: Actor) -> User:
    """``actor`` as a signed-in user; Forbidden for an anonymous one (the API and the pages
    already require signing in, so this only holds the rule where the row needs a user)."""
    if not actor.is_authenticated:
        raise Forbidden("This needs a signed-in user.")
    return actor
