"""`check --deploy` warns when PostgreSQL or Redis have no password, or are reached on
another host without TLS (apps/core/service_checks.py)."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

from tests.core.test_settings import PRODUCTION_ENV, manage

OURS = ("stratus.W011", "stratus.W012", "stratus.W013", "stratus.W014")


def warnings(settings, *, database: str | None, redis: str | None, broker: str | None = None) -> dict[str, str]:
    settings.DATABASE_URL = database
    settings.REDIS_URL = redis
    settings.CELERY_BROKER_URL = broker or redis or "memory://"
    return {m.id: m.msg for m in run_checks(include_deployment_checks=True) if m.id in OURS}


def test_credentials_and_tls_on_another_host_are_clean(settings):
    assert (
        warnings(
            settings,
            database="postgres://stratus:s3cret@db.internal:5432/stratus?sslmode=verify-full",
            redis="rediss://:s3cret@redis.internal:6379/0",
        )
        == {}
    )


def test_the_embedded_default_and_unix_sockets_are_left_alone(settings):
    assert warnings(settings, database=None, redis=None) == {}
    assert warnings(settings, database="postgres:///stratus?host=/var/run/postgresql", redis="unix:///run/r.sock") == {}


def test_a_database_without_a_password_warns_w011(settings):
    found = warnings(settings, database="postgres://stratus@127.0.0.1:5432/stratus", redis=None)

    assert found == {
        "stratus.W011": "DATABASE_URL (postgres://stratus@127.0.0.1:5432/stratus) connects to 127.0.0.1 without a "
        "password. Tenant code runs on these hosts: give the database user a password and put it in DATABASE_URL "
        "(postgres://stratus:<password>@db.internal:5432/stratus), or in DATABASE_URL_FILE."
    }
    assert warnings(settings, database="postgres://stratus:pw@127.0.0.1:5432/stratus", redis=None) == {}


def test_a_database_on_another_host_without_tls_warns_w012(settings):
    found = warnings(settings, database="postgres://stratus:s3cret@db.internal/stratus", redis=None)

    assert found == {
        "stratus.W012": "DATABASE_URL (postgres://stratus:***@db.internal/stratus) reaches db.internal, another "
        "machine, without TLS: its password and data cross the network in clear. Enable TLS on the server and add "
        "?sslmode=require (or verify-full with the server's CA in sslrootcert) to DATABASE_URL."
    }
    assert "s3cret" not in found["stratus.W012"]
    for mode in ("require", "verify-ca", "verify-full"):
        url = f"postgres://stratus:s3cret@db.internal/stratus?sslmode={mode}"
        assert warnings(settings, database=url, redis=None) == {}
    prefer = "postgres://stratus:s3cret@db.internal/stratus?sslmode=prefer"  # falls back to clear text
    assert list(warnings(settings, database=prefer, redis=None)) == ["stratus.W012"]


def test_mysql_is_checked_the_same_way(settings):
    assert sorted(warnings(settings, database="mysql://stratus@10.0.0.5/stratus", redis=None)) == [
        "stratus.W011",
        "stratus.W012",
    ]
    assert warnings(settings, database="mysql://stratus:pw@10.0.0.5/stratus?ssl-mode=REQUIRED", redis=None) == {}


def test_redis_without_a_password_warns_w013(settings):
    found = warnings(settings, database=None, redis="redis://127.0.0.1:6379/0")

    assert found == {
        "stratus.W013": "REDIS_URL (redis://127.0.0.1:6379/0) connects to 127.0.0.1 without a password. Tenant code "
        "runs on these hosts: set requirepass (or an ACL user) on the Redis server and put it in the URL, "
        "redis://:<password>@127.0.0.1:6379/0 (or in REDIS_URL_FILE)."
    }
    assert warnings(settings, database=None, redis="redis://:s3cret@127.0.0.1:6379/0") == {}
    assert warnings(settings, database=None, redis="redis://default:s3cret@localhost:6379/0") == {}


def test_redis_on_another_host_without_tls_warns_w014(settings):
    found = warnings(settings, database=None, redis="redis://:s3cret@redis.internal:6379/0")

    assert found == {
        "stratus.W014": "REDIS_URL (redis://:***@redis.internal:6379/0) reaches redis.internal, another machine, "
        "without TLS: its password, the channel layer's messages and the task queue cross the network in clear. "
        "Enable TLS on the server and use rediss:// in REDIS_URL."
    }
    assert warnings(settings, database=None, redis="rediss://:s3cret@redis.internal:6379/0") == {}


def test_a_broker_of_its_own_is_checked_under_its_name(settings):
    found = warnings(
        settings, database=None, redis="rediss://:s3cret@redis.internal:6379/0", broker="redis://10.0.0.9:6379/1"
    )

    assert sorted(found) == ["stratus.W013", "stratus.W014"]
    assert found["stratus.W013"].startswith("CELERY_BROKER_URL (redis://10.0.0.9:6379/1) connects to 10.0.0.9")


@pytest.mark.parametrize(
    ("database", "redis", "expected"),
    [
        (
            "postgres://stratus:s3cret@db.internal:5432/stratus?sslmode=verify-full",
            "rediss://:s3cret@redis.internal:6379/0",
            [],
        ),
        ("postgres://stratus@db.internal/stratus", "redis://redis.internal:6379/0", list(OURS)),
    ],
)
def test_manage_check_deploy_reads_them_from_the_environment(tmp_path, database, redis, expected):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION_ENV, "DATABASE_URL": database, "REDIS_URL": redis},
        tmp_path=tmp_path,
    )

    output = result.stdout + result.stderr
    assert [check_id for check_id in OURS if f"({check_id})" in output] == expected, output
    assert (result.returncode == 0) == (not expected), output
