"""Announcements: how a lower app tells a higher one that something changed without importing it.

The app that owns a fact defines the announcement (apps/functions/routes.py: a binding's
routes changed; apps/tenancy/announcements.py: tokens revoked, an environment's instance
config changed); the app that must react subscribes in its AppConfig.ready() (the engine:
apps/engine/apps.py). The owner never imports the subscriber, so the control plane reaches
the engine only through the backend interface and these.

Why not a Django signal: listeners here are held strongly (a signal drops a lambda or a bound
method silently unless ``weak=False``), the message is one typed value that mypy checks at
both ends, and a failing listener is logged instead of failing the write that already
committed (``send_robust`` would do that, but every caller would have to remember it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import transaction

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Announcement(Generic[T]):
    """One kind of news, its listeners, and delivery now or after the current commit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[[T], None]] = []

    def subscribe(self, listener: Callable[[T], None]) -> None:
        """Call ``listener(message)`` on every announcement (once, however often subscribed:
        AppConfig.ready() may run again in tests)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[T], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def listeners(self) -> tuple[Callable[[T], None], ...]:
        return tuple(self._listeners)

    def announce(self, message: T) -> None:
        """Tell every listener, in the order they subscribed, in this thread. A listener that
        raises is logged and the others still hear it: the change has committed, and each
        listener has its own safety net (the engine's periodic resync, the cache TTL)."""
        for listener in tuple(self._listeners):
            try:
                listener(message)
            except Exception:
                logger.exception("a listener of %r failed", self.name)

    def after_commit(self, message: T) -> None:
        """Announce once the current transaction commits (at once outside one), so nobody
        hears of a change it cannot read yet, or of one that rolled back."""
        transaction.on_commit(lambda: self.announce(message))
