"""Races for real: threads released together by a barrier, each on its own database
connection (closed when it ends), on PostgreSQL, where row locks and constraints decide who
wins. SQLite runs one writer at a time and has no race to lose: the tests skip there (and fail
under CI, which runs them on PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from tests.prerequisites import needs

on_postgresql = needs(
    connection.vendor == "postgresql",
    "a race needs PostgreSQL (DATABASE_URL): SQLite runs one writer at a time, so nobody races",
)


def race(contenders: list[Callable[[], Any]], timeout: float = 60.0) -> list[tuple[str, Any]]:
    """Run each contender in its own thread, all released at once; per contender, in order,
    ("ok", its result) or ("raised", the exception)."""
    barrier = threading.Barrier(len(contenders))
    outcomes: list[tuple[str, Any]] = [("missing", None)] * len(contenders)

    def run(i: int, contender: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout)
            outcomes[i] = ("ok", contender())
        except Exception as exc:  # noqa: BLE001 - reported to the test
            outcomes[i] = ("raised", exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a contender did not finish"
    return outcomes
