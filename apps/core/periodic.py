"""Periodic tasks: ``celery -A console beat`` sends them in production; the embedded default
has no beat, so when a worker comes up it runs each one at once and, on the embedded worker,
starts a chain in which every run queues the next. A cache key keeps chains from multiplying
(a restart, a second kick).

A periodic task takes ``chain: bool = False`` and begins with
``if chain and not chain_next(task, key=..., interval_s=..., gap_s=...): return``; its app
calls ``beat_every`` in ``ready()``, its tasks module calls ``start_on_worker_ready``.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache


def beat_every(name: str, task_name: str, interval_s: float) -> None:
    """Add ``task_name`` to beat's schedule, every ``interval_s`` seconds."""
    from console.celery import app

    schedule = dict(app.conf.beat_schedule or {})
    schedule.setdefault(name, {"task": task_name, "schedule": float(interval_s)})
    app.conf.beat_schedule = schedule


def chain_next(task: Any, *, key: str, interval_s: float, gap_s: int) -> bool:
    """In a chained run: queue the next run in ``interval_s`` and return True; False when
    another chain ran within ``gap_s`` (this chain ends here, and the run does nothing)."""
    if not cache.add(key, 1, timeout=gap_s):
        return False
    task.apply_async(kwargs={"chain": True}, countdown=interval_s)
    return True


def start_on_worker_ready(task: Any) -> None:
    """When a worker comes up, run ``task`` at once (it catches what was lost while none was
    up); on the embedded worker that run starts its chain."""

    def kick(sender: Any = None, **kwargs: Any) -> None:
        task.apply_async(kwargs={"chain": bool(settings.STRATUS_EMBEDDED_WORKER)})

    worker_ready.connect(kick, weak=False, dispatch_uid=f"periodic:{task.name}")
