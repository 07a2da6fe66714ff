"""The instances of one (binding, version): autoscaling, queueing, reaping, init backoff.

- A request takes an instance with fewer than ``concurrency`` requests in flight (the least
  loaded); if none has room and fewer than ``max_instances`` exist, it starts one (a cold
  start, which that request then uses); otherwise it queues for up to ``queue_timeout_s``
  and is throttled (429) when nothing frees up.
- ``min_instances`` stay warm (reserved, started on deploy). Instances idle longer than
  ``idle_timeout_s`` are reaped; the last one goes only after ``idle_timeout_s *
  LAST_INSTANCE_KEEPALIVE_FACTOR``, so a trickle of traffic does not pay a cold start each time.
- A handler that fails at import is not retried hot: the failure is remembered and answered
  to every request until a backoff (1 s, doubling to 60 s) expires.

Several tasks act on one pool (requests, the maintenance loop, route reloads): every method
takes instances out of ``instances`` before its first ``await``, so two drains, or a reap
during a drain, never find the same instance (and ``Instance.stop`` stops an instance once
however often it is called).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apps.engine.instance import FrameLimits, InitFailed, Instance, InstanceDied, LogLine
from apps.engine.sandbox import InstanceSpec, SpawnedInstance

logger = logging.getLogger(__name__)

LAST_INSTANCE_KEEPALIVE_FACTOR = 3
_stopping: set[asyncio.Task[None]] = set()
INIT_BACKOFF_S = (1.0, 60.0)


class Throttled(Exception):
    def __init__(self, max_instances: int, concurrency: int, quota: str | None = None) -> None:
        self.quota = quota  # the organization quota that kept a new instance from starting
        super().__init__(
            quota or f"Rate exceeded: all {max_instances} instance(s) x {concurrency} concurrent request(s) are busy"
        )


@dataclass(frozen=True)
class ScalingPolicy:
    min_instances: int = 0
    max_instances: int = 10
    concurrency: int = 1
    idle_timeout_s: float = 300.0
    queue_timeout_s: float = 1.0
    init_timeout_s: float = 10.0


@dataclass
class Lease:
    instance: Instance
    cold_start: bool
    init_ms: float | None
    init_logs: list[LogLine]


class Pool:
    def __init__(
        self,
        key: Any,
        spec: InstanceSpec,
        policy: ScalingPolicy,
        spawn: Callable[[InstanceSpec], Awaitable[SpawnedInstance]],
        admit: Callable[[InstanceSpec], str | None] | None = None,
        limits: FrameLimits | None = None,
    ) -> None:
        self.key = key
        self.spec = spec
        self.policy = policy
        self.limits = limits or FrameLimits()
        self._spawn = spawn
        # Whether one more instance may start now (the organization's quota across every
        # pool of the engine): None, or the reason it may not.
        self._admit = admit
        self.instances: list[Instance] = []
        self.starting = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.init_error: InitFailed | None = None
        self.init_failures = 0
        self.backoff_until = 0.0
        self.draining = False
        self.prepared = False  # code copied ahead of the first request (engine._prepare)
        self.throttles = 0
        self.cold_starts = 0

    # --- requests -----------------------------------------------------------------------

    async def acquire(self) -> Lease:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.queue_timeout_s
        refused: str | None = None
        while True:
            self._raise_if_backing_off()
            instance = self._pick()
            if instance is not None:
                instance.in_flight += 1
                return Lease(instance, False, None, [])
            if len(self.instances) + self.starting < self.policy.max_instances:
                refused = self._admit(self.spec) if self._admit is not None else None
                if refused is None:
                    return await self._start_for_request()
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.throttles += 1
                raise Throttled(self.policy.max_instances, self.policy.concurrency, refused)
            waiter: asyncio.Future[None] = loop.create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)

    def in_flight(self) -> int:
        """Requests being served by this pool's instances now."""
        return sum(instance.in_flight for instance in self.instances)

    def release(self, lease: Lease) -> None:
        instance = lease.instance
        instance.in_flight -= 1
        instance.served += 1
        instance.last_used = time.monotonic()
        if instance.dead or instance.retire or (self.draining and instance.in_flight == 0):
            self._forget(instance)
        self._wake_one()

    def _pick(self) -> Instance | None:
        best: Instance | None = None
        for instance in self.instances:
            if instance.dead or instance.retire or instance.in_flight >= self.policy.concurrency:
                continue
            if best is None or instance.in_flight < best.in_flight:
                best = instance
        return best

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _raise_if_backing_off(self) -> None:
        if self.init_error is not None and time.monotonic() < self.backoff_until:
            raise self.init_error

    async def _start_for_request(self) -> Lease:
        instance, init_logs = await self._start_instance(for_request=True)
        instance.in_flight += 1
        self.cold_starts += 1
        return Lease(instance, True, instance.init_ms, init_logs)

    async def _start_instance(self, for_request: bool = False, counted: bool = False) -> tuple[Instance, list[LogLine]]:
        if not counted:
            self.starting += 1
        began = time.perf_counter()
        try:
            spawned = await self._spawn(self.spec)
            instance = Instance(spawned, self.spec, self.limits)
            try:
                await instance.start(self.policy.init_timeout_s)
                # Init duration as Lambda reports it: the whole start (process, runtime,
                # handler import), not just the import the bootstrap measured.
                instance.import_ms, instance.init_ms = instance.init_ms, (time.perf_counter() - began) * 1000
            except InitFailed as exc:
                self._record_init_failure(exc)
                raise
            except InstanceDied as exc:
                failure = InitFailed(
                    {"type": "Runtime.ExitError", "message": f"Runtime exited during init: {exc}", "stack": []},
                    instance.take_orphan_logs(),
                )
                self._record_init_failure(failure)
                raise failure from None
        finally:
            self.starting -= 1
        self.init_error = None
        self.init_failures = 0
        if self.draining and not for_request:
            await instance.stop()
            raise InstanceDied(None, "the version stopped serving while its instance started")
        # A request routed here before a traffic switch is still served; the instance goes
        # when it is released (release() forgets instances of a draining pool).
        self.instances.append(instance)
        return instance, instance.take_orphan_logs()

    def _record_init_failure(self, failure: InitFailed) -> None:
        self.init_failures += 1
        low, high = INIT_BACKOFF_S
        self.init_error = failure
        self.backoff_until = time.monotonic() + min(high, low * 2 ** (self.init_failures - 1))
        logger.warning(
            "function init failed",
            extra={"pool": str(self.key), "failures": self.init_failures, "error": failure.error.get("type")},
        )
        self._wake_one()

    def _forget(self, instance: Instance) -> None:
        if instance in self.instances:
            self.instances.remove(instance)
        if not instance.dead:
            # Hold the task: an unreferenced task (and the instance's read loop with it) can
            # be garbage-collected before the process is reaped.
            task = asyncio.get_running_loop().create_task(instance.stop())
            _stopping.add(task)
            task.add_done_callback(_stopping.discard)

    def on_instance_failed(self, instance: Instance) -> None:
        """A request found the instance dead or had it killed (timeout): replace it lazily."""
        instance.kill()
        if instance in self.instances:
            self.instances.remove(instance)

    # --- housekeeping (called by the engine's maintenance loop) -----------------------------

    async def ensure_min(self) -> None:
        """Keep min_instances warm (reserved instances), unless init keeps failing."""
        self.instances = [i for i in self.instances if not i.dead]
        missing = self.policy.min_instances - len(self.instances) - self.starting
        if self.draining or missing <= 0 or time.monotonic() < self.backoff_until:
            return
        admitted = 0
        for _ in range(missing):
            refused = self._admit(self.spec) if self._admit is not None else None
            if refused is not None:
                logger.warning("reserved instances not started: %s", refused, extra={"pool": str(self.key)})
                break
            # Counted as starting from now on, not from when each start's task first runs: the
            # next admission, and an ensure_min running at the same time, see them.
            self.starting += 1
            admitted += 1
        if admitted == 0:
            return
        results = await asyncio.gather(
            *(self._start_instance(counted=True) for _ in range(admitted)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, InitFailed | InstanceDied):
                logger.error("starting a reserved instance failed", exc_info=result)
        self._wake_one()

    async def reap(self, now: float | None = None) -> int:
        """Stop instances idle past their timeout; the last one waits for the longer keep-alive."""
        now = time.monotonic() if now is None else now
        self.instances = [i for i in self.instances if not i.dead]
        idle = sorted(
            (i for i in self.instances if i.in_flight == 0 and now - i.last_used >= self.policy.idle_timeout_s),
            key=lambda i: i.last_used,
        )
        reaped: list[Instance] = []
        for instance in idle:
            remaining = len(self.instances)
            if remaining <= self.policy.min_instances:
                break
            if remaining == 1:
                keep_alive = self.policy.idle_timeout_s * LAST_INSTANCE_KEEPALIVE_FACTOR
                if now - instance.last_used < keep_alive:
                    break
            self.instances.remove(instance)
            reaped.append(instance)
        if reaped:
            await asyncio.gather(*(instance.stop() for instance in reaped))
        return len(reaped)

    async def drain(self) -> None:
        """Stop taking requests; stop instances once their requests finish (release() stops
        the busy ones later). Idempotent, and safe to run twice at once."""
        self.draining = True
        idle = [instance for instance in self.instances if instance.in_flight == 0]
        for instance in idle:
            self.instances.remove(instance)
        if idle:
            await asyncio.gather(*(instance.stop() for instance in idle))

    @property
    def idle(self) -> bool:
        return not self.instances and not self.starting and not self.waiters

    def describe(self) -> dict[str, Any]:
        return {
            "instances": [
                {"pid": i.pid, "in_flight": i.in_flight, "served": i.served, "init_ms": i.init_ms}
                for i in self.instances
            ],
            "starting": self.starting,
            "queued": len(self.waiters),
            "throttles": self.throttles,
            "cold_starts": self.cold_starts,
            "init_error": self.init_error.error if self.init_error else None,
        }
