"""Template tags of the console's shared components (../shared/notes/console-design.md): the
status badge, times, shortened ids, the copy field, the traffic bar and the disabled action
with its reason. One vocabulary for every page: a state reads the same on a binding, a
release, a run or a delivery."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

# Words users read, not enum names.
STATE_WORDS = {
    "waiting_approval": "waiting for approval",
    "rolled_back": "rolled back",
    "in_progress": "in progress",
    "not_deployed": "not deployed",
}
# One colour per kind of state across bindings, releases, runs and deliveries.
TONES = {
    "ok": {
        "ok",
        "resolved",
        "delivered",
        "ready",
        "succeeded",
        "completed",
        "accepted",
        "active",
        "live",
        "stable",
        "passed",
        "healthy",
    },
    "busy": {"pending", "running", "queued", "in_progress", "deploying", "progressing", "canary", "applying"},
    "wait": {"waiting", "waiting_approval", "paused", "expiring"},
    "bad": {"firing", "failed", "aborted", "rolled_back", "rejected", "error", "unhealthy", "revoked", "expired"},
    "off": {"superseded", "cancelled", "canceled", "skipped", "ignored", "duplicate", "not_deployed", "inactive"},
}
_TONE_OF = {state: tone for tone, states in TONES.items() for state in states}


@register.filter
def state_words(value: Any) -> str:
    text = str(value or "")
    return STATE_WORDS.get(text, text.replace("_", " "))


@register.filter
def state_tone(value: Any) -> str:
    return _TONE_OF.get(str(value or ""), "off")


@register.simple_tag
def badge(state: Any, testid: str = "") -> SafeString:
    """``{% badge binding.status %}``: the status badge, words and colour by state."""
    if testid:
        return format_html(
            '<span class="badge tone-{}" data-state="{}" data-testid="{}">{}</span>',
            state_tone(state),
            state,
            testid,
            state_words(state),
        )
    return format_html(
        '<span class="badge tone-{}" data-state="{}">{}</span>', state_tone(state), state, state_words(state)
    )


@register.simple_tag
def when(value: datetime | None, empty: str = "never") -> SafeString:
    """A time: relative words, turned into the viewer's local time by console.js; UTC on hover."""
    if value is None:
        return format_html('<span class="muted">{}</span>', empty)
    utc = value.astimezone(UTC) if timezone.is_aware(value) else value
    return format_html(
        '<time datetime="{}" title="{} UTC">{} ago</time>',
        utc.isoformat(),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
        _ago(timezone.now() - value if timezone.is_aware(value) else datetime.now() - value),  # noqa: DTZ005
    )


def _ago(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@register.simple_tag
def short(value: Any, length: int = 12) -> SafeString:
    """An id or a sha in monospace, shortened, the full value on hover and in the copy button."""
    text = str(value or "")
    if len(text) <= length:
        return format_html("<code>{}</code>", text)
    return format_html('<code title="{}" data-copy="{}">{}…</code>', text, text, text[:length])


@register.inclusion_tag("components/copy_field.html")
def copy_field(value: Any, label: str = "", testid: str = "") -> dict[str, Any]:
    return {"value": value, "label": label, "testid": testid}


@register.inclusion_tag("components/traffic_bar.html")
def traffic_bar(segments: Iterable[Mapping[str, Any]], testid: str = "") -> dict[str, Any]:
    """``segments``: dicts with ``version`` (number), ``weight`` (0-100) and ``role``
    ("stable", "canary" or ""), as traffic_segments() in the function pages builds them."""
    rows = [dict(s) for s in segments]
    for row in rows:
        row["weight"] = max(0, min(100, round(float(row.get("weight") or 0))))
    return {"segments": rows, "testid": testid}


@register.inclusion_tag("components/action.html")
def action(
    url: str,
    label: str,
    allowed: bool = True,
    reason: str = "",
    confirm: str = "",
    style: str = "",
    testid: str = "",
    name: str = "",
    value: str = "",
    csrf_token: str = "",
) -> dict[str, Any]:
    """A one-button POST form. Not allowed: the button is disabled and the reason is shown as
    text next to it (``title`` alone is not enough). ``confirm``: the text of a confirm dialog
    (console.js) shown before the POST; without JavaScript the POST goes straight through."""
    return {
        "url": url,
        "label": label,
        "allowed": allowed,
        "reason": reason,
        "confirm": confirm,
        "style": style,
        "testid": testid,
        "name": name,
        "value": value,
        "csrf_token": csrf_token,
    }
