"""What tenancy announces to the apps above it (apps/core/announcements.py). The engine subscribes
in its AppConfig.ready() (apps/engine/apps.py); tenancy never imports the engine.

- ``tokens_revoked``: SHA-256 hex digests of API tokens just revoked (after commit). The
  engine's listener makes every process's gateway forget them before it returns, so the very
  next call with any of them fails.
- ``environment_changed``: the id of an environment whose instance configuration changed (its
  egress allow-list, part of each instance's spec); the engine reloads its routes and updates
  the firewall now rather than at its next periodic resync.
"""

from __future__ import annotations

from apps.core.announcements import Announcement

tokens_revoked: Announcement[list[str]] = Announcement("tokens revoked")
environment_changed: Announcement[int] = Announcement("environment changed")
