"""The one announcement that a binding's routes changed (a deploy, a traffic or rule change, a
binding removed). Owned here, where the writes happen; the engine subscribes to it in its
AppConfig.ready() (apps/engine/apps.py: reload this process's routing table and publish on
Redis ``stratus:<instance>:routes`` for the other processes and the supervisor). Nothing in the control
plane calls the engine directly.

The message is the ids of the bindings whose routes changed; empty means "any binding may
have" (the engine reloads its whole table either way).
"""

from __future__ import annotations

from apps.core.announcements import Announcement

routes_changed: Announcement[tuple[int, ...]] = Announcement("routes changed")

# A function was deleted (its id), after the delete commits: monitoring closes the function's
# live-tail watchers (apps/monitoring/apps.py).
function_deleted: Announcement[int] = Announcement("function deleted")
