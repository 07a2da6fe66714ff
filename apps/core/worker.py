"""The embedded default's in-process Celery worker.

`manage.py serve` starts one worker thread consuming the in-memory broker, so a request
that enqueues a task returns at once and the task runs beside it, as it would on a separate
`celery worker` in production. The pattern follows celery.contrib.testing.worker, which
runs a WorkController in a thread the same way.
"""

from __future__ import annotations

import threading

from celery.worker import WorkController

_worker: WorkController | None = None
_thread: threading.Thread | None = None
_ready = threading.Event()


class _ThreadWorker(WorkController):
    def on_consumer_ready(self, consumer: object) -> None:
        # The `celery worker` command sends worker_ready; a WorkController started in code
        # does not, and tasks that kick off on it (the release sweep) would never start.
        from celery.signals import worker_ready

        worker_ready.send(sender=consumer)
        _ready.set()


def start(concurrency: int = 2, timeout: float = 15.0) -> WorkController:
    """Start the worker thread once; wait until its consumer is ready."""
    global _worker, _thread
    if _worker is not None:
        return _worker
    from console.celery import app

    app.finalize()
    app.set_current()
    built: list[WorkController] = []

    def run() -> None:
        # Built in its own thread: Celery's Django fixup closes the database connections of
        # the thread that creates a worker, which must not be the caller's.
        worker = _ThreadWorker(
            app=app,
            concurrency=concurrency,
            pool="threads",
            hostname="embedded@stratus",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        built.append(worker)
        worker.start()

    thread = threading.Thread(target=run, name="stratus-embedded-worker", daemon=True)
    thread.start()
    if not _ready.wait(timeout):
        raise RuntimeError(f"the in-process worker did not start within {timeout} s")
    _worker, _thread = built[0], thread
    return built[0]


def is_running() -> bool:
    return _thread is not None and _thread.is_alive() and _ready.is_set()


def stop() -> None:
    global _worker, _thread
    if _worker is None:
        return
    _worker.stop(in_sighandler=False)
    if _thread is not None:
        _thread.join(10)
    _worker, _thread = None, None
    _ready.clear()
