from __future__ import annotations

from typing import Any

from apps.releases.models import Release


def active_release(*, binding: Any) -> Release | None:
    """The binding's release that is awaiting approval, running or paused, if any."""
    return Release.objects.filter(binding=binding, state__in=Release.ACTIVE_STATES).first()
