"""Small readers for settings from the environment that fail loudly on bad values.

Each reader also accepts ``NAME_FILE`` pointing at a file holding the value, so secrets
can come from a mounted file (Docker/Kubernetes secrets) instead of the environment.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            with open(file_path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = env_str(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def redis_database_number(url: str) -> int:
    """The database number a Redis URL selects (the path, else ``?db=``, else 0; ``unix://``
    URLs only ``?db=``)."""
    parts = urlsplit(url)
    path = parts.path.strip("/") if parts.scheme != "unix" else ""
    raw = path or dict(parse_qsl(parts.query)).get("db", "0")
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"REDIS_URL has a database that is not a number: {raw!r}") from None


def without_query_option(url: str, name: str) -> str:
    """The URL without the query option ``name``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit(parts._replace(query=urlencode(query)))
