"""Deploy checks (`manage.py check --deploy`) of the connections to PostgreSQL and Redis.

Tenant code runs on the hosts that run the engine and the pipeline steps, next to these
services. The engine's egress firewall keeps function instances and steps off private and
loopback addresses; a password on each service is the second wall, for the day that one
fails or a host is shared; TLS keeps the password and the data off the wire when the service
is on another machine. Each warning names what to set. Registered from CoreConfig.ready().

ids: stratus.W011 database without a password, stratus.W012 database on another host without
TLS, stratus.W013 Redis without a password, stratus.W014 Redis on another host without TLS.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dj_database_url
from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning

_PG_TLS_MODES = {"require", "verify-ca", "verify-full"}
_MYSQL_TLS_MODES = {"REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"}


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redacted(url: str) -> str:
    """The URL without its password, for messages (they end up in logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def database_problems(url: str | None) -> list[tuple[str, str]]:
    """(check id, message) for DATABASE_URL: PostgreSQL or MySQL over TCP needs a password,
    and TLS when the server is not on this machine. SQLite and Unix sockets are left alone."""
    if not url:
        return []
    config = dj_database_url.parse(url)
    engine = str(config.get("ENGINE", ""))
    postgres, mysql = "postgresql" in engine, "mysql" in engine
    options = config.get("OPTIONS") or {}
    host = str(config.get("HOST") or options.get("host") or "")
    if not (postgres or mysql) or not host or host.startswith("/"):
        return []
    problems = []
    # Client certificates (PostgreSQL sslcert) or a passfile also authenticate.
    if not (config.get("PASSWORD") or options.get("password") or options.get("passfile") or options.get("sslcert")):
        example = (
            "postgres://stratus:<password>@db.internal:5432/stratus" if postgres else "mysql://stratus:<password>@db"
        )
        problems.append(
            (
                "stratus.W011",
                f"DATABASE_URL ({_redacted(url)}) connects to {host} without a password. Tenant code runs on these "
                f"hosts: give the database user a password and put it in DATABASE_URL ({example}), or in "
                "DATABASE_URL_FILE.",
            )
        )
    if not _is_loopback(host):
        if postgres:
            tls = str(options.get("sslmode", "")) in _PG_TLS_MODES
            how = "add ?sslmode=require (or verify-full with the server's CA in sslrootcert)"
        else:
            mode = str(options.get("ssl-mode") or options.get("ssl_mode") or "").upper()
            tls = mode in _MYSQL_TLS_MODES or bool(options.get("ssl"))
            how = "add ?ssl-mode=REQUIRED (or ssl-ca=<CA file> to verify the server)"
        if not tls:
            problems.append(
                (
                    "stratus.W012",
                    f"DATABASE_URL ({_redacted(url)}) reaches {host}, another machine, without TLS: its password "
                    f"and data cross the network in clear. Enable TLS on the server and {how} to DATABASE_URL.",
                )
            )
    return problems


def redis_problems(url: str | None, setting: str = "REDIS_URL") -> list[tuple[str, str]]:
    """(check id, message) for a redis:// URL: a password, and rediss:// (TLS) when the server
    is not on this machine. unix:// sockets are left alone."""
    if not url:
        return []
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return []
    host = parts.hostname or "localhost"
    problems = []
    if not (parts.password or parse_qs(parts.query).get("password")):
        address = f"[{host}]" if ":" in host else host
        address += f":{parts.port}" if parts.port else ""
        problems.append(
            (
                "stratus.W013",
                f"{setting} ({url}) connects to {host} without a password. Tenant code runs on these hosts: set "
                "requirepass (or an ACL user) on the Redis server and put it in the URL, "
                f"{parts.scheme}://:<password>@{address}{parts.path or '/0'} (or in {setting}_FILE).",
            )
        )
    if parts.scheme == "redis" and not _is_loopback(host):
        problems.append(
            (
                "stratus.W014",
                f"{setting} ({_redacted(url)}) reaches {host}, another machine, without TLS: its password, the "
                "channel layer's messages and the task queue cross the network in clear. Enable TLS on the "
                f"server and use rediss:// in {setting}.",
            )
        )
    return problems


@register(Tags.security, deploy=True)
def check_service_credentials(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems = database_problems(getattr(settings, "DATABASE_URL", None))
    redis_url = getattr(settings, "REDIS_URL", None)
    problems += redis_problems(redis_url)
    broker = getattr(settings, "CELERY_BROKER_URL", None)
    if broker and broker != redis_url:  # a broker of its own (CELERY_BROKER_URL)
        problems += redis_problems(broker, "CELERY_BROKER_URL")
    return [CheckWarning(message, id=check_id) for check_id, message in problems]
