"""The local engine (the supervisor): owns the instance pools and serves invocations.

It lives on one asyncio loop (its own thread in the web process for the embedded default, or
the main loop of `manage.py run_supervisor`). Callers give it a RouteVersion (from the routing
table) and a request frame; it takes an instance (starting one if needed), forwards the frame,
enforces the timeout, and answers an Outcome. Records and log lines go to the monitoring sink,
which writes them in batches off this path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from apps.engine.instance import FrameLimits, InitFailed, InstanceDied, LimitExceeded, LogLine, response_frame_limit
from apps.engine.pool import Lease, Pool, Throttled
from apps.engine.routing import DRAFT_NUMBER, Route, RouteKey, RouteVersion, load_routes
from apps.engine.sandbox import InstanceSpec, Spawner

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one invocation produced."""

    request_id: str
    version: int
    status: str  # ok | error | timeout | throttled | crashed
    reply: dict[str, Any] | None = None  # the bootstrap's result / http_response / error frame
    error: dict[str, Any] | None = None  # {type, message, stack} when status != ok
    logs: list[LogLine] = field(default_factory=list)
    duration_ms: float = 0.0
    init_duration_ms: float | None = None
    cold_start: bool = False
    peak_rss_kb: int | None = None
    # Requests in flight in the pool just after this one was admitted (itself included) or
    # refused: what the metric rollups keep the peak of (peak_concurrency).
    concurrency: int | None = None


@dataclass(frozen=True)
class CallSite:
    """Who the records belong to."""

    function_id: int
    environment_id: int
    binding_id: int | None
    trigger: str  # http | invoke


PREWARM_WAIT_S = 2.0


def new_request_id() -> str:
    """A random version-4 UUID string, from the random module's generator (seeded from
    os.urandom and reseeded after fork) rather than uuid.uuid4(): os.urandom releases the GIL
    around its syscall, and on the gateway's hot path every such release let another thread
    (the records flusher) hold the GIL for up to the 5 ms switch interval. A request id names
    a request; it is not a secret."""
    n = random.getrandbits(128)
    n = (n & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)  # version 4, RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RoutedEngine:
    """The routing table kept in sync: loaded on start, reloaded when a change is announced
    (request_reload, thread-safe) and every ``resync_s`` as a safety net."""

    def __init__(self, *, resync_s: float | None = None) -> None:
        self.routes: dict[RouteKey, Route] = {}
        self.resync_s = float(settings.STRATUS_ROUTES_RESYNC_S if resync_s is None else resync_s)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.routes_version = 0
        self._reload_lock: asyncio.Lock | None = None
        self._reload_again = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._announced: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._reload_lock = asyncio.Lock()
        await self.reload_routes()
        if self.resync_s > 0:
            self._tasks.append(asyncio.create_task(self._resync_loop(), name="engine-resync"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        # A reload still waiting for the database would be destroyed pending with the loop.
        announced = list(self._announced)
        for task in announced:
            task.cancel()
        await asyncio.gather(*announced, return_exceptions=True)

    async def reload_routes(self) -> None:
        """Reload the table from the database. Concurrent calls collapse: one more reload
        runs after the current one, not one per call."""
        assert self._reload_lock is not None
        if self._reload_lock.locked():
            self._reload_again = True
            return
        async with self._reload_lock:
            while True:
                self._reload_again = False
                table = await asyncio.to_thread(load_routes)
                await self._before_swap(table)
                self.routes = table
                self.routes_version += 1
                try:
                    await self._after_reload()
                except Exception:
                    # The table is swapped already; the pools catch up on the next reload.
                    logger.exception("reconciling the pools with the routing table failed")
                if not self._reload_again:
                    break

    async def _before_swap(self, table: dict[RouteKey, Route]) -> None:
        return None

    async def _after_reload(self) -> None:
        return None

    def request_reload(self) -> None:
        """Thread-safe: schedule a reload on the engine's loop."""
        if self.loop is None or self.loop.is_closed():
            return

        def schedule() -> None:
            task = asyncio.create_task(self._announced_reload())
            self._announced.add(task)
            task.add_done_callback(self._announced.discard)

        self.loop.call_soon_threadsafe(schedule)

    async def _announced_reload(self) -> None:
        try:
            await self.reload_routes()
        except Exception:
            # The periodic resync (resync_s) tries again.
            logger.exception("reloading the routing table failed")

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            try:
                await self.reload_routes()
            except Exception:
                logger.exception("routing table resync failed")

    async def invoke(
        self, rv: RouteVersion, frame: dict[str, Any], *, site: CallSite, started_at: datetime | None = None
    ) -> Outcome:
        raise NotImplementedError

    async def isolation(self) -> dict[str, Any]:
        """What confines function instances where this engine runs them (for /readyz)."""
        raise NotImplementedError

    async def refresh_firewall(self) -> None:
        """Rebuild the firewall's platform rules, where this engine runs instances itself."""
        return None

    def describe(self) -> dict[str, Any]:
        return {}


class Engine(RoutedEngine):
    def __init__(self, spawner: Spawner, *, resync_s: float | None = None, maintenance_s: float = 1.0) -> None:
        super().__init__(resync_s=resync_s)
        self.spawner = spawner
        self.pools: dict[tuple[Any, ...], Pool] = {}
        self.org_limits: dict[int, tuple[int, int]] = {}  # org id -> (instances, memory_mb) quota
        self.maintenance_s = maintenance_s
        # What an instance may send back: a reply frame as big as the gateway's body limit allows.
        self.limits = FrameLimits(
            response_frame_bytes=response_frame_limit(int(settings.STRATUS_GATEWAY_MAX_BODY_BYTES))
        )
        self._sink: Any = None
        self._running: set[asyncio.Task[Any]] = set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.spawner.start()
        await super().start()
        self._tasks.append(asyncio.create_task(self._maintenance_loop(), name="engine-maintenance"))

    async def close(self) -> None:
        await super().close()
        for pool in list(self.pools.values()):
            await pool.drain()
            for instance in list(pool.instances):
                await instance.stop(grace_s=0.5)
        self.pools.clear()
        await self.spawner.close()

    @property
    def sink(self) -> Any:
        if self._sink is None:
            from apps.monitoring.sink import get_sink

            self._sink = get_sink()
        return self._sink

    # --- routing ------------------------------------------------------------------------

    async def _before_swap(self, table: dict[RouteKey, Route]) -> None:
        """Start the instances a traffic change asks to pre-warm (``warm``, set by releases
        before a canary takes a bigger share) before the gateway sends it that share, so
        the shift does not land on cold starts. Bounded: a slow start never holds a switch
        longer than PREWARM_WAIT_S."""
        warming = []
        for route in table.values():
            for rv in route.versions.values():
                if rv.policy.min_instances <= 0:
                    continue
                pool = self.pool_for(rv)
                if len([i for i in pool.instances if not i.dead]) < rv.policy.min_instances:
                    warming.append(self._background(pool.ensure_min()))
        if warming:
            # Not cancelled on timeout: the instances keep starting, the switch goes ahead.
            _, pending = await asyncio.wait(warming, timeout=PREWARM_WAIT_S)
            if pending:
                logger.warning("pre-warming instances took longer than %s s; switching anyway", PREWARM_WAIT_S)

    async def _after_reload(self) -> None:
        self._note_org_limits()
        await self._reconcile()
        # After the pools (a spawn applies its own uid's rules first anyway): what changes
        # here is the running instances' allow-lists.
        await self._sync_egress()

    async def isolation(self) -> dict[str, Any]:
        return self.spawner.isolation.report()

    async def refresh_firewall(self) -> None:
        """Rebuild the firewall's platform rules (a new console port, a changed deny list)."""
        firewall = self.spawner.firewall
        if firewall is not None and firewall.available:
            from apps.core.isolation.egress import protected_endpoints

            await asyncio.to_thread(firewall.install, protected_endpoints())

    def _note_org_limits(self) -> None:
        """The organizations' current quotas, as the last route load read them."""
        for route in self.routes.values():
            for rv in route.versions.values():
                if rv.spec.org_id is not None and rv.spec.org_quota is not None:
                    self.org_limits[rv.spec.org_id] = rv.spec.org_quota

    async def _sync_egress(self) -> None:
        """Give every routed identity its environment's allow-list in the firewall now, so a
        narrowed list closes for running instances too (not only for the next one)."""
        firewall = self.spawner.firewall
        if firewall is None or not firewall.available:
            return
        wanted: dict[int, tuple[str, ...]] = {}
        for route in self.routes.values():
            for rv in route.versions.values():
                wanted[self.spawner.uid_of(rv.spec)] = rv.spec.egress_allow
        changed = [(uid, allow) for uid, allow in wanted.items() if firewall.pending(uid, allow)]
        if not changed:
            return

        def apply() -> None:
            for uid, allow in changed:
                try:
                    firewall.allow(uid, allow)
                except Exception:
                    logger.exception("updating the egress rules of uid %s failed", uid)

        await asyncio.to_thread(apply)

    async def _reconcile(self) -> None:
        wanted: dict[tuple[Any, ...], RouteVersion] = {}
        for route in self.routes.values():
            for rv in route.versions.values():
                wanted[rv.pool_key] = rv
        for key, pool in list(self.pools.items()):
            routed_binding = key[0] is not None
            if routed_binding and key not in wanted and not pool.draining:
                # In the background: old instances shutting down (up to their grace period)
                # must not hold the next reload, i.e. the next deploy.
                self._background(self._drain(key, pool))
        for rv in wanted.values():
            pool = self.pool_for(rv)
            if rv.policy.min_instances:
                self._background(pool.ensure_min())
            elif not pool.instances and not pool.prepared:
                pool.prepared = True
                self._background(self._prepare(rv.spec))

    def _retire_other_drafts(self, key: tuple[Any, ...]) -> None:
        """A draft changed: the instance of its previous content (same function and
        environment) has no more use, so it stops now rather than after its idle timeout."""
        for other_key, pool in list(self.pools.items()):
            if other_key != key and other_key[:4] == key[:4] and not pool.draining:
                self._background(self._retire_draft(other_key, pool))

    async def _retire_draft(self, key: tuple[Any, ...], pool: Pool) -> None:
        await self._drain(key, pool)
        if not pool.idle:
            return  # still answering a request: the copy stays (the day-old prune takes the source)
        try:
            await self.spawner.discard(pool.spec)
        except Exception:
            logger.exception("removing a superseded draft's code copy failed")

    async def _drain(self, key: tuple[Any, ...], pool: Pool) -> None:
        await pool.drain()
        # A request for the old version may have opened a new pool under the same key since.
        if pool.idle and self.pools.get(key) is pool:
            del self.pools[key]

    async def _prepare(self, spec: InstanceSpec) -> None:
        """Unpack and copy a newly routed version's code ahead of its first request."""
        try:
            if not spec.code_dir.is_dir():
                await asyncio.to_thread(prepare_code, spec)
            await self.spawner.prepare(spec)
        except Exception:
            logger.exception("preparing a version ahead of its first request failed")

    def _background(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` without awaiting it, holding a reference until it finishes."""
        task = asyncio.create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def pool_for(self, rv: RouteVersion) -> Pool:
        pool = self.pools.get(rv.pool_key)
        if pool is None or pool.draining:
            pool = Pool(rv.pool_key, rv.spec, rv.policy, self._spawn, self._admit, self.limits)
            self.pools[rv.pool_key] = pool
            if rv.number == DRAFT_NUMBER:
                self._retire_other_drafts(rv.pool_key)
        elif pool.policy != rv.policy:
            pool.policy = rv.policy
        return pool

    def _admit(self, spec: InstanceSpec) -> str | None:
        """Whether the organization's quota lets one more instance of ``spec`` start: its
        instances and their memory (memory_mb + the /tmp tmpfs) across every pool here."""
        if spec.org_id is None or spec.org_quota is None:
            return None
        max_instances, max_mb = self.org_limits.get(spec.org_id, spec.org_quota)
        running = used_mb = 0
        for pool in self.pools.values():
            if pool.spec.org_id != spec.org_id:
                continue
            count = pool.starting + sum(1 for i in pool.instances if not i.dead)
            running += count
            used_mb += count * (pool.spec.memory_mb + pool.spec.tmp_mb)
        if running + 1 > max_instances:
            return (
                f"Organization quota reached: {running} of {max_instances} instances run "
                "(quota_instances); ask the platform's operators to raise it"
            )
        wanted = spec.memory_mb + spec.tmp_mb
        if used_mb + wanted > max_mb:
            return (
                f"Organization quota reached: {used_mb} MB of {max_mb} MB of memory in use, "
                f"{wanted} MB more asked (quota_memory_mb); ask the platform's operators to raise it"
            )
        return None

    async def _spawn(self, spec: InstanceSpec) -> Any:
        if not spec.code_dir.is_dir():
            await asyncio.to_thread(prepare_code, spec)
        return await self.spawner.spawn(spec)

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.maintenance_s)
            for key, pool in list(self.pools.items()):
                try:
                    await pool.reap()
                    if pool.draining:
                        await self._drain(key, pool)
                    elif key[0] is None and pool.idle and self.pools.get(key) is pool:
                        del self.pools[key]  # ad-hoc (invoke API) pool with nothing left
                    else:
                        await pool.ensure_min()
                except Exception:
                    logger.exception("engine maintenance failed", extra={"pool": str(key)})

    # --- invocation ---------------------------------------------------------------------

    async def invoke(
        self, rv: RouteVersion, frame: dict[str, Any], *, site: CallSite, started_at: datetime | None = None
    ) -> Outcome:
        """Serve one request frame (``invoke`` or ``http``; ``id`` set) on ``rv``'s pool."""
        started_at = started_at or datetime.now(UTC)
        request_id = str(frame["id"])
        outcome = Outcome(request_id=request_id, version=rv.number, status="ok")
        pool = self.pool_for(rv)
        begin = time.perf_counter()
        lease: Lease | None = None
        try:
            lease = await pool.acquire()
        except Throttled as exc:
            outcome.status = "throttled"
            outcome.error = {"type": "QuotaExceeded" if exc.quota else "Throttled", "message": str(exc), "stack": []}
        except InitFailed as exc:
            outcome.status = "error"
            outcome.error = {**exc.error, "type": exc.error.get("type") or "InitError", "init": True}
            outcome.logs = list(exc.logs)
        except InstanceDied as exc:
            outcome.status = "crashed"
            outcome.error = {"type": "Runtime.ExitError", "message": f"Runtime exited: {exc}", "stack": []}
        except Exception as exc:
            # The spawner failed (the zygote is gone, the host is out of processes): still an
            # answer in the envelope and a record.
            logger.exception("starting an instance failed", extra={"pool": str(rv.pool_key)})
            outcome.status = "crashed"
            outcome.error = {
                "type": "Runtime.StartError",
                "message": f"The instance could not start: {exc}",
                "stack": [],
            }
        outcome.concurrency = pool.in_flight()
        if lease is not None:
            outcome.cold_start = lease.cold_start
            outcome.init_duration_ms = lease.init_ms
            outcome.logs = list(lease.init_logs)
            await self._forward(pool, lease, frame, rv, outcome, site)
        outcome.duration_ms = (time.perf_counter() - begin) * 1000 - (outcome.init_duration_ms or 0.0)
        self._record(outcome, rv, site, started_at)
        return outcome

    async def _forward(
        self, pool: Pool, lease: Lease, frame: dict[str, Any], rv: RouteVersion, outcome: Outcome, site: CallSite
    ) -> None:
        instance = lease.instance
        timeout_s = rv.spec.timeout_s
        frame = {**frame, "deadline_ms": time.time() * 1000 + timeout_s * 1000}
        logs: list[LogLine] = []  # filled as lines arrive: kept whatever happens next
        try:
            try:
                reply = await instance.request(
                    frame, timeout_s, logs, late_logs=lambda line: self._record_late_line(line, rv, site, outcome)
                )
            finally:
                outcome.logs.extend(logs)
            outcome.reply = reply.message
            if reply.message.get("type") == "error":
                outcome.status = "error"
                outcome.error = reply.message.get("error") or {}
                if outcome.error.get("type") == "MemoryError":
                    # The heap may be half-broken after a MemoryError: replace the instance.
                    outcome.error["message"] = (
                        f"Out of memory: the function exceeded its memory limit of {rv.spec.memory_mb} MB"
                    )
                    instance.retire = True
        except TimeoutError:
            pool.on_instance_failed(instance)
            outcome.status = "timeout"
            outcome.error = {
                "type": "TimeoutError",
                "message": f"Task timed out after {timeout_s:.2f} seconds",
                "stack": [],
            }
        except LimitExceeded as exc:
            pool.on_instance_failed(instance)
            outcome.status = "crashed"
            outcome.error = {"type": exc.error_type, "message": exc.message, "stack": []}
        except InstanceDied as exc:
            pool.on_instance_failed(instance)
            outcome.status = "crashed"
            if exc.out_of_memory:
                message = f"Runtime exited: out of memory (limit {rv.spec.memory_mb} MB)"
                kind = "Runtime.OutOfMemory"
            else:
                message = f"Runtime exited before answering: {exc}"
                kind = "Runtime.ExitError"
            outcome.error = {"type": kind, "message": message, "stack": []}
            if exc.info and exc.info.stderr_tail:
                outcome.logs.append(LogLine(datetime.now(UTC), "stderr", exc.info.stderr_tail[-4000:]))
        except Exception as exc:
            # A bug on our side: the caller still gets an envelope, the invocation its record.
            logger.exception("forwarding a request to an instance failed", extra={"pool": str(rv.pool_key)})
            pool.on_instance_failed(instance)
            outcome.status = "crashed"
            outcome.error = {
                "type": "Runtime.Error",
                "message": f"The request failed in the engine: {exc}",
                "stack": [],
            }
        finally:
            outcome.peak_rss_kb = instance.peak_rss_kb()
            pool.release(lease)

    def _record_late_line(self, line: LogLine, rv: RouteVersion, site: CallSite, outcome: Outcome) -> None:
        """A line the function wrote after answering (Node: a timer its handler left running),
        recorded under the request it belongs to rather than dropped."""
        from apps.monitoring.records import LogRecord

        try:
            self.sink.submit_logs(
                [
                    LogRecord(
                        function_id=site.function_id,
                        environment_id=site.environment_id,
                        binding_id=site.binding_id,
                        version=rv.number,
                        request_id=outcome.request_id,
                        ts=line.ts,
                        stream=line.stream,
                        text=line.text,
                    )
                ]
            )
        except Exception:
            logger.exception("recording a late log line failed")

    def _record(self, outcome: Outcome, rv: RouteVersion, site: CallSite, started_at: datetime) -> None:
        from apps.monitoring.records import InvocationRecord, LogRecord

        def log_record(line: LogLine) -> LogRecord:
            return LogRecord(
                function_id=site.function_id,
                environment_id=site.environment_id,
                binding_id=site.binding_id,
                version=rv.number,
                request_id=outcome.request_id,
                ts=line.ts,
                stream=line.stream,
                text=line.text,
            )

        try:
            sink = self.sink
            lines = [log_record(line) for line in outcome.logs]
            if outcome.status != "ok" and outcome.error:
                error = outcome.error
                summary = f"[ERROR] {error.get('type')}: {error.get('message')}"
                lines.append(log_record(LogLine(datetime.now(UTC), "system", summary)))
            if lines:
                sink.submit_logs(lines)
            sink.submit_invocation(
                InvocationRecord(
                    request_id=outcome.request_id,
                    function_id=site.function_id,
                    environment_id=site.environment_id,
                    binding_id=site.binding_id,
                    version=rv.number,
                    trigger=site.trigger,
                    started_at=started_at,
                    duration_ms=round(outcome.duration_ms, 3),
                    init_duration_ms=outcome.init_duration_ms,
                    cold_start=outcome.cold_start,
                    status=outcome.status,
                    error_type=str((outcome.error or {}).get("type", "")) if outcome.status != "ok" else "",
                    peak_rss_kb=outcome.peak_rss_kb,
                    concurrency=outcome.concurrency,
                )
            )
        except Exception:
            logger.exception("recording an invocation failed")

    def describe(self) -> dict[str, Any]:
        return {str(key): pool.describe() for key, pool in self.pools.items()}


def prepare_code(spec: InstanceSpec) -> None:
    """Unpack a version's artifact if the deploy task has not done it yet (same atomic path)."""
    from django.db import connection

    from apps.functions.backends.local import LocalBackend

    try:
        LocalBackend().prepare_sha(spec.code_dir.name)
    finally:
        connection.close()
