"""The scheduler: a 1 s tick that claims due occurrences and runs them.

Claiming (``triggers_claim_due``) happens in one transaction per tick:

- PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` over the due triggers, so two schedulers
  at once split the due rows between them instead of both taking them (or waiting).
- SQLite (the embedded default): no row locks; each trigger is claimed with a conditional
  ``UPDATE … WHERE next_fire_at = <what we read>`` whose row count says who won. SQLite
  runs one writer at a time, so the loser's update matches nothing.
- Either way ``next_fire_at`` is advanced and the fire row written in the same transaction,
  and a fire of a scheduled occurrence is unique per (trigger, scheduled_at) in the schema.

After commit the claimed fires run on this process's thread pool (``submit``), through the
engine's ``schedule_invoke``. Where it runs: the embedded default starts the loop with its
in-process worker (apps.triggers.apps); production runs ``manage.py run_scheduler`` (one or
more: the claim makes extra schedulers safe, they only share the work) or sets
STRATUS_SCHEDULER_IN_WORKER to run a loop in every Celery worker (docs/DEPLOY.md).

Misfires: an occurrence found more than STRATUS_TRIGGER_MISFIRE_GRACE_S late (no scheduler
was running) follows the trigger's misfire policy: ``skip`` records one "missed" fire for
the latest missed occurrence; ``run_once`` fires once, for the latest missed occurrence.
Either way the schedule resumes at the next occurrence after now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from apps.engine.engine import new_request_id
from apps.triggers import schedule, services
from apps.triggers.models import FireStatus, MisfirePolicy, OverlapPolicy, Trigger, TriggerFire

log = logging.getLogger(__name__)

TICK_S = 1.0
CLAIM_BATCH = 200
# Counting missed occurrences after a long downtime stops here (rate(1 minute) down for a
# month): the latest is still found by jumping, only the count in the message is capped.
MISSED_COUNT_MAX = 10_000
# A fire still "running" this long after it started lost its scheduler (the process died).
LOST_AFTER = timedelta(minutes=20)


def misfire_grace() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "STRATUS_TRIGGER_MISFIRE_GRACE_S", 60)))


@dataclass
class Claimed:
    fire_id: int
    status: str


def _latest_missed(trigger: Trigger, first: datetime, now: datetime) -> tuple[datetime, int]:
    """The latest occurrence at or before ``now`` from ``first`` on, and how many there were."""
    latest, count = first, 1
    cursor = first
    while count < MISSED_COUNT_MAX:
        nxt = services.next_fire_compute(trigger, after=cursor)
        if nxt is None or nxt > now:
            return latest, count
        latest, cursor, count = nxt, nxt, count + 1
    return latest, count


def triggers_claim_due(*, now: datetime | None = None, runner: str | None = None) -> list[Claimed]:
    """Claim every due occurrence (up to CLAIM_BATCH), advance the triggers and write their
    fires in one transaction; return the fires to run (status running) and the others."""
    now = now or timezone.now()
    runner = runner or services.runner_name()
    claimed: list[Claimed] = []
    with transaction.atomic():
        qs = Trigger.objects.filter(enabled=True, next_fire_at__lte=now).order_by("next_fire_at", "id")
        if connection.vendor == "postgresql":
            qs = qs.select_for_update(skip_locked=True)
        for trigger in list(qs[:CLAIM_BATCH]):
            scheduled = trigger.next_fire_at
            assert scheduled is not None
            try:
                expired = trigger.end_at is not None and scheduled > trigger.end_at
                late = now - scheduled > misfire_grace()
                occurrence, missed = scheduled, 1
                if late:
                    occurrence, missed = _latest_missed(trigger, scheduled, now)
                next_at = services.next_fire_compute(trigger, after=max(occurrence, now) if late else occurrence)
            except schedule.ExpressionError:
                log.exception("trigger %s: its expression no longer parses; disabling it", trigger.pk)
                Trigger.objects.filter(pk=trigger.pk).update(enabled=False, next_fire_at=None)
                continue
            won = Trigger.objects.filter(pk=trigger.pk, enabled=True, next_fire_at=scheduled).update(
                next_fire_at=next_at,
                **({} if expired else {"last_scheduled_at": occurrence, "last_fired_at": now}),
            )
            if not won or expired:
                continue  # another scheduler took it, or an edit moved it
            status = FireStatus.RUNNING
            error = ""
            if late and trigger.misfire_policy == MisfirePolicy.SKIP:
                status = FireStatus.MISSED
                error = f"{missed} occurrence(s) missed from {scheduled.isoformat()} (misfire policy: skip)."
            elif TriggerFire.objects.filter(
                trigger=trigger, status__in=[FireStatus.RUNNING, FireStatus.QUEUED]
            ).exists():
                if trigger.overlap_policy == OverlapPolicy.SKIP:
                    status, error = FireStatus.SKIPPED, "The previous run was still going (overlap policy: skip)."
                elif trigger.overlap_policy == OverlapPolicy.QUEUE:
                    status = FireStatus.QUEUED
            if late and status != FireStatus.MISSED:
                error = f"Ran once for {missed} occurrence(s) missed from {scheduled.isoformat()} (misfire policy)."
            try:
                with transaction.atomic():  # a savepoint: the unique constraint is the last guard
                    fire = TriggerFire.objects.create(
                        trigger=trigger,
                        scheduled_at=occurrence,
                        status=status,
                        request_id=new_request_id() if status in (FireStatus.RUNNING, FireStatus.QUEUED) else "",
                        fired_at=now if status == FireStatus.RUNNING else None,
                        last_run_at=trigger.last_fired_at,
                        error=error,
                        runner=runner,
                    )
            except IntegrityError:
                log.error("trigger %s: occurrence %s was already fired", trigger.pk, occurrence)
                continue
            claimed.append(Claimed(fire.pk, status))
    return claimed


def fires_lost_mark(*, now: datetime | None = None) -> int:
    """Fires left "running" by a scheduler that died: marked lost (their trigger's queued
    fires can then start)."""
    now = now or timezone.now()
    return TriggerFire.objects.filter(status=FireStatus.RUNNING, fired_at__lt=now - LOST_AFTER).update(
        status=FireStatus.LOST, finished_at=now, error="The scheduler running it stopped before it finished."
    )


# --- running fires ----------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _run_in_thread(fire_id: int) -> None:
    close_old_connections()
    try:
        services.fire_run(fire_id=fire_id)
    except Exception:
        log.exception("fire %s: run failed", fire_id)
    finally:
        close_old_connections()


def submit(fire_id: int) -> None:
    """Run a claimed fire on this process's pool (the tick never waits for a function)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            workers = int(getattr(settings, "STRATUS_TRIGGER_WORKERS", 8))
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stratus-trigger-fire")
        executor = _executor
    executor.submit(_run_in_thread, fire_id)


def executor_shutdown(wait: bool = True) -> None:
    global _executor
    with _executor_lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=wait)


def tick(*, now: datetime | None = None, run: Callable[[int], None] = submit) -> list[Claimed]:
    claimed = triggers_claim_due(now=now)
    for item in claimed:
        if item.status == FireStatus.RUNNING:
            run(item.fire_id)
    return claimed


class SchedulerLoop:
    """The 1 s loop in a thread: wakes just after each whole second (an occurrence is due at a
    whole second; waking right after it keeps fire latency low), ticks, repeats until stopped."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="stratus-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                close_old_connections()
                tick()
                if self.ticks % 60 == 0:
                    fires_lost_mark()
            except Exception:
                log.exception("scheduler tick failed")
            self.ticks += 1
            now = time.time()
            # Wake 5 ms after the next whole second.
            self._stop.wait(self.tick_s - (now % self.tick_s) + 0.005)
        close_old_connections()


_loop: SchedulerLoop | None = None


def start_in_process() -> SchedulerLoop:
    """The schedules' loop and, beside it, the asynchronous events' dispatcher
    (apps.triggers.dispatcher): wherever schedules fire, queued events run too."""
    global _loop
    from apps.triggers import dispatcher

    if _loop is None:
        _loop = SchedulerLoop()
        _loop.start()
    dispatcher.start_in_process()
    return _loop


def stop_in_process() -> None:
    global _loop
    from apps.triggers import dispatcher

    if _loop is not None:
        _loop.stop()
        _loop = None
    executor_shutdown(wait=False)
    dispatcher.stop_in_process(wait=False)
