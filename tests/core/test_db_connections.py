"""A web process holds a bounded number of database connections, whatever the load (issue 20).

ASGI runs each sync view in a thread of its own; with persistent connections (the old
DB_CONN_MAX_AGE=60) every thread kept one, and 300 API requests at concurrency 60 went past
PostgreSQL's max_connections (500 "too many clients already") and left the connections open.
Here the console is served by `manage.py serve` (uvicorn) in a process of its own on the test
database, loaded the same way, and its connections (by application_name) counted meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import connection

from bench.procs import free_port, wait_listening
from tests.conftest import make_user
from tests.prerequisites import needs

ROOT = Path(__file__).resolve().parents[2]
POOL_MAX = 8
REQUESTS = 300
CONCURRENCY = 60

pytestmark = needs(
    (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://")),
    "needs PostgreSQL (DATABASE_URL): the bound is on PostgreSQL's pool and connection count",
)


def _connections(application_name: str) -> int:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchone()
    return int(row[0]) if row else 0


async def _load(base_url: str, token: str) -> Counter[int]:
    statuses: Counter[int] = Counter()
    remaining = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits
    ) as client:

        async def worker() -> None:
            for _ in remaining:
                statuses[(await client.get("/api/v1/projects/")).status_code] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


def test_concurrent_api_requests_stay_within_the_pool(transactional_db: None, tmp_path: Path) -> None:
    from apps.tenancy import org_services, project_services, token_services

    alice = make_user("alice")
    org = org_services.org_create(actor=alice, slug="alpha", name="Alpha")
    project_services.project_create(actor=alice, org=org, slug="web", name="Web")
    _, token = token_services.token_create(user=alice, name="load", scopes=["read"])

    application_name = f"stratus-test-dbconn-{os.getpid()}"
    url = urlsplit(os.environ["DATABASE_URL"])
    database_url = urlunsplit(
        url._replace(
            path="/" + connection.settings_dict["NAME"], query=urlencode({"application_name": application_name})
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "DATABASE_URL": database_url,
        "STRATUS_DATA_DIR": str(tmp_path),
        "STRATUS_SECRET_KEY": settings.SECRET_KEY,
        "STRATUS_ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS),
        "STRATUS_ENGINE": "remote",
        "DB_POOL_MAX": str(POOL_MAX),
    }
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, server)
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _connections(application_name))
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            statuses = asyncio.run(_load(f"http://127.0.0.1:{port}", token))
        finally:
            stop.set()
            sampler.join(10)
        time.sleep(0.5)
        after = _connections(application_name)
    finally:
        server.terminate()
        server.wait(20)
    log_tail = (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
    assert statuses == Counter({200: REQUESTS}), (statuses, log_tail)
    assert 0 < peak <= POOL_MAX, (peak, log_tail)
    assert after <= POOL_MAX
