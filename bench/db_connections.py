"""Database connections of a web process under concurrent API load (issue 20, item 1).

Serves the console (`manage.py serve`, uvicorn, STRATUS_ENGINE=remote) on PostgreSQL and Redis
in a throwaway database, sends N authenticated API GETs at concurrency C, and reports the 500s,
the most connections the database saw during the load and the connections still open after it.
One line per database setting:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python -m bench.db_connections [--requests 300] [--concurrency 60]

The modes: ``persistent`` (DB_POOL_MAX=0 DB_CONN_MAX_AGE=60, the old default), ``per-request``
(DB_POOL_MAX=0 DB_CONN_MAX_AGE=0) and ``pool`` (the default: DB_POOL_MAX=10).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from bench.console import TOKEN_LINE, manage
from bench.procs import Processes, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
MODES: dict[str, dict[str, str]] = {
    "persistent": {"DB_POOL_MAX": "0", "DB_CONN_MAX_AGE": "60"},
    "per-request": {"DB_POOL_MAX": "0", "DB_CONN_MAX_AGE": "0"},
    "pool": {},
}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def count_connections(admin: psycopg.Connection[Any], name: str) -> int:
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def sampling(admin_url: str, name: str) -> Iterator[list[int]]:
    """Counts the database's connections every 50 ms while the block runs (over one connection
    opened first, so a full server does not stop the count)."""
    samples: list[int] = []
    stop = threading.Event()
    admin = psycopg.connect(admin_url, autocommit=True)

    def sample() -> None:
        with admin:
            while not stop.is_set():
                samples.append(count_connections(admin, name))
                stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(5)


async def load(base_url: str, token: str, requests: int, concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits
    ) as client:

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    response = await client.get("/api/v1/projects/")
                    statuses[response.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def measure(mode: str, database_url: str, redis_url: str, requests: int, concurrency: int) -> dict[str, Any]:
    name = f"stratus_bench_dbconn_{mode.replace('-', '_')}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="stratus-bench-db-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
        env |= {
            "DATABASE_URL": with_database(database_url, name),
            "REDIS_URL": redis_url,
            "STRATUS_DATA_DIR": tmp,
            "STRATUS_ENGINE": "remote",
            **MODES[mode],
        }
        env.pop("STRATUS_PRODUCTION", None)
        try:
            manage(["migrate", "--noinput", "-v", "0"], env)
            token = {m["user"]: m["token"] for m in TOKEN_LINE.finditer(manage(["seed_demo"], env))}["alice"]
            port = free_port()
            proc = procs.start(
                [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                log=Path(tmp) / "serve.log",
                cwd=ROOT,
            )
            wait_listening(port, proc)
            started = time.monotonic()
            with sampling(database_url, name) as samples:
                statuses = asyncio.run(load(f"http://127.0.0.1:{port}", token, requests, concurrency))
            elapsed = time.monotonic() - started
            time.sleep(1.0)
            with psycopg.connect(database_url, autocommit=True) as admin:
                after = count_connections(admin, name)
        finally:
            procs.stop_all()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "mode": mode,
        "statuses": dict(sorted(statuses.items())),
        "errors_500": statuses[500],
        "peak_connections": max(samples, default=0),
        "connections_after": after,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=60)
    parser.add_argument("--mode", action="append", choices=sorted(MODES), help="default: all")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/11"
    for mode in args.mode or list(MODES):
        print(measure(mode, database_url, redis_url, args.requests, args.concurrency), flush=True)


if __name__ == "__main__":
    main()
