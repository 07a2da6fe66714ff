"""The outbox: tasks that a state change owes the broker survive the broker being down.

A service that changes state and then needs a Celery task (a deploy's ``binding_apply``, a
pipeline run's ``run_execute``, an invitation's email…) calls
``enqueue_after_commit(task, *args, **kwargs)`` inside its transaction. That writes an
``Outbox`` row in the same transaction (so the debt commits with the change, or not at all)
and, after commit, tries to send it. A send that fails (broker unreachable) is logged and
recorded on the row, never raised: the change is committed and the caller answers 2xx.

What is still pending is sent by ``drain()``, which runs:

- in a reconciler thread of the process that saw a send fail (web, worker, supervisor: it
  keeps trying every second or so until nothing is pending, so the task goes out as soon as
  the broker is back, with no other process needed — the broker being what failed);
- from the periodic ``apps.core.tasks.outbox_drain`` (beat in production, a chain on the
  embedded worker, and whenever a worker comes up), for rows whose process died first.

Sends are claimed one row at a time with a conditional update, so two drains (or the
after-commit send and a drain) never send the same row twice while a claim lasts; tasks are
idempotent anyway (``binding_apply(binding_id, revision)`` acts only on the current revision).

``retry_later(key, fn)`` is the same safety net for in-process work that is not a task: the
engine's Redis announcement of changed routes (apps/engine/host.py) registers a republish
when publishing fails, and the reconciler calls it until it succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.db.models import Min
from django.utils import timezone

from apps.core.models import Outbox

logger = logging.getLogger(__name__)

# A claimed row is left alone this long (a sender that died mid-send is retried after it).
CLAIM_S = 60.0
# How soon a row whose send failed is tried again: doubles per attempt up to the maximum.
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 5.0
# How often the reconciler thread looks (it also wakes when a send succeeds here).
RECONCILE_INTERVAL_S = 1.0
# Sent rows are kept this long for the record, then pruned by the drain.
KEEP_SENT = timedelta(days=1)
# Fail fast when the broker is down: the row is the retry, not the caller's request.
RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def enqueue_after_commit(task: Any, *args: Any, countdown: float = 0.0, **kwargs: Any) -> int:
    """Owe ``task(*args, **kwargs)`` to the broker: an outbox row now (in the caller's
    transaction, if any), a send after commit (at once outside a transaction). ``countdown``
    counts from now. Arguments must be JSON (ids, not rows). Returns the row's id."""
    now = timezone.now()
    row = Outbox.objects.create(
        task=task.name,
        args=list(args),
        kwargs=kwargs,
        eta=now + timedelta(seconds=countdown) if countdown > 0 else None,
        next_attempt_at=now,
    )
    pk = row.pk
    transaction.on_commit(lambda: send(pk))
    return pk


def _task(name: str) -> Any:
    from console.celery import app

    task = app.tasks.get(name)
    if task is None:  # a process that never imported the task's module (the reconciler's)
        app.loader.import_default_modules()
        task = app.tasks.get(name)
    if task is None:
        raise LookupError(f"no Celery task named {name!r}")
    return task


def send(pk: int) -> bool:
    """Send one pending row if nobody else holds it; True when the broker took it. Never
    raises: a failure is kept on the row and the reconciler takes over."""
    return _send(pk) == "sent"


def _send(pk: int) -> str:
    """Send one row: "sent", "busy" (sent already, claimed by another sender, not due) or "failed"."""
    now = timezone.now()
    claimed = Outbox.objects.filter(pk=pk, sent_at__isnull=True, next_attempt_at__lte=now).update(
        next_attempt_at=now + timedelta(seconds=CLAIM_S)
    )
    if not claimed:
        return "busy"
    row = Outbox.objects.get(pk=pk)
    attempts = row.attempts + 1
    try:
        options: dict[str, Any] = {"retry": True, "retry_policy": RETRY_POLICY}
        if row.eta is not None:
            options["countdown"] = round(max(0.0, (row.eta - timezone.now()).total_seconds()), 1)
        _task(row.task).apply_async(args=tuple(row.args) or None, kwargs=row.kwargs or None, **options)
    except Exception as exc:  # noqa: BLE001 - the broker (or the task's lookup) failed: keep the row
        backoff = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (attempts - 1))
        Outbox.objects.filter(pk=pk).update(
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:500],
            next_attempt_at=timezone.now() + timedelta(seconds=backoff),
        )
        logger.warning("outbox: sending %s (row %s) failed, will retry: %s", row.task, pk, exc)
        reconciler.ensure_running()
        return "failed"
    Outbox.objects.filter(pk=pk).update(attempts=attempts, sent_at=timezone.now(), last_error="")
    if attempts > 1:
        logger.info("outbox: sent %s (row %s) after %d attempts", row.task, pk, attempts)
    reconciler.wake()  # the broker answers: whatever else waits can go now
    return "sent"


def drain(limit: int = 200) -> int:
    """Send what is pending and due, oldest first; stop at the first failure (the broker is
    down: the rest would fail too). Returns how many were sent."""
    sent = 0
    due = Outbox.objects.filter(sent_at__isnull=True, next_attempt_at__lte=timezone.now()).order_by("pk")
    for pk in list(due.values_list("pk", flat=True)[:limit]):
        outcome = _send(pk)
        if outcome == "sent":
            sent += 1
        elif outcome == "failed":
            break
    Outbox.objects.filter(sent_at__lt=timezone.now() - KEEP_SENT).delete()
    return sent


def pending_report() -> dict[str, Any]:
    """For /readyz: how many tasks still wait for the broker, and how long the oldest has."""
    pending = Outbox.objects.filter(sent_at__isnull=True)
    summary = pending.aggregate(oldest=Min("created_at"))
    oldest = summary["oldest"]
    report: dict[str, Any] = {
        "pending": pending.count(),
        "oldest_age_s": round((timezone.now() - oldest).total_seconds(), 1) if oldest else None,
    }
    last = pending.exclude(last_error="").order_by("-pk").values_list("last_error", flat=True).first()
    if last:
        report["last_error"] = last
    return report


class Reconciler:
    """A daemon thread, started by a failed send (or ``retry_later``) in this process, that
    drains the outbox and runs the retries until nothing is pending, then ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._retries: dict[str, Callable[[], None]] = {}
        self._kicked = False

    def ensure_running(self) -> None:
        with self._lock:
            self._kicked = True  # a thread about to end takes one more pass
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="stratus-outbox", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()

    def retry_later(self, key: str, fn: Callable[[], None]) -> None:
        """Call ``fn()`` again soon, until it returns without raising; a second registration
        under the same key replaces the first (one republish covers both)."""
        with self._lock:
            self._retries[key] = fn
        self.ensure_running()

    def _run_retries(self) -> bool:
        """Run each pending retry once; True when none is left."""
        with self._lock:
            pending = list(self._retries.items())
        for key, fn in pending:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - still failing: keep it for the next pass
                logger.debug("outbox: retry %s failed again: %s", key, exc)
                continue
            with self._lock:
                if self._retries.get(key) is fn:
                    del self._retries[key]
        with self._lock:
            return not self._retries

    def _run(self) -> None:
        while True:
            self._wake.wait(RECONCILE_INTERVAL_S)
            self._wake.clear()
            with self._lock:
                self._kicked = False
            rows_left = True
            try:
                close_old_connections()
                drain()
                rows_left = Outbox.objects.filter(sent_at__isnull=True).exists()
            except Exception:
                logger.exception("outbox: a drain failed; trying again")
            finally:
                connection.close()
            retries_done = self._run_retries()
            if not rows_left and retries_done:
                with self._lock:
                    if not self._retries and not self._kicked:
                        self._thread = None
                        return

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


reconciler = Reconciler()
retry_later = reconciler.retry_later
