"""Where the engine runs in this process, and how route changes reach it.

In the embedded default the engine runs on its own asyncio loop in a daemon thread of the
web process (`manage.py serve`, started on boot so reserved instances come up at once; the
invoke API and the gateway start it on first use otherwise). Async callers on another loop
(the ASGI server's) and sync callers (DRF views, tasks) both reach it through this host.

The control plane never calls in here: it announces, and apps/engine/apps.py subscribes these
listeners at start (apps/core/announcements.py).

Route changes: `routes_changed(binding_ids)` hears apps.functions.routes.routes_changed after
every deploy or traffic change commits (and `environment_changed` hears tenancy's, after an
environment's egress allow-list changes). It tells this process's engine directly and, when
Redis is configured, publishes on the ``stratus:<instance>:routes`` channel so the supervisor and every
web process reload too. A publish that fails (Redis down) is retried by the outbox's
reconciler (apps/core/outbox.py ``retry_later``) until Redis answers; a listener reloads
whenever Redis confirms its subscription, first or again after a reconnect, since it may have
missed announcements meanwhile. Neither waits for the periodic resync.

Token revocations: `tokens_changed(digests)` hears apps.tenancy.announcements.tokens_revoked
after a revocation commits. It drops the tokens from this process's gateway caches
(apps/engine/gateway_auth.py) and publishes them on ``stratus:<instance>:tokens``, which every web
process's engine host listens to (the supervisor checks no tokens), so a revoked token stops
working on /fn/ everywhere at once, not after the cache TTL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from django.conf import settings

from apps.core.outbox import retry_later
from apps.engine.engine import Engine, RoutedEngine
from apps.engine.sandbox import Spawner

logger = logging.getLogger(__name__)
T = TypeVar("T")


def routes_channel() -> str:
    """The Redis pub/sub channel of route changes, in this installation's namespace
    (``STRATUS_REDIS_PREFIX``: pub/sub ignores the database number, installations do not)."""
    return f"{settings.STRATUS_REDIS_PREFIX}routes"


def tokens_channel() -> str:
    """The Redis pub/sub channel of token revocations, in this installation's namespace."""
    return f"{settings.STRATUS_REDIS_PREFIX}tokens"


class EngineHost:
    def __init__(self, engine: RoutedEngine) -> None:
        self.engine = engine
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._listener: asyncio.Task[None] | None = None
        self._token_listener: asyncio.Task[None] | None = None

    def start(self, timeout: float = 60.0) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="stratus-engine", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the local engine did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the local engine failed to start: {self._error}") from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(self.engine.start())
            if settings.REDIS_URL:
                loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
            self._error = exc
            self._started.set()
            return
        self._started.set()
        loop.run_forever()

    async def attach(self) -> None:
        """Run the engine on the running loop (the ASGI server's, from its lifespan startup):
        the gateway then calls it without crossing threads."""
        self.loop = asyncio.get_running_loop()
        await self.engine.start()
        if settings.REDIS_URL:
            await self._listen()

    async def _listen(self) -> None:
        """Follow the route and token announcements of other processes (Redis). Returns once
        the token subscription is live (or after 5 s), so that the gateway of a starting web
        process does not cache a verdict for a token whose revocation it cannot hear yet."""
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(listen_for_route_changes(self.engine))
        subscribed = asyncio.Event()
        self._token_listener = loop.create_task(listen_for_token_changes(subscribed))
        try:
            await asyncio.wait_for(subscribed.wait(), timeout=5)
        except TimeoutError:
            logger.warning(
                "not subscribed to token revocations after 5 s (Redis); until then a revoked token "
                "may work on /fn/ here for up to STRATUS_GATEWAY_AUTH_CACHE_S"
            )

    async def detach(self) -> None:
        await self._close()
        self.loop = None

    async def _close(self) -> None:
        for listener in (self._listener, self._token_listener):
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
        await self.engine.close()
        if self._thread is not None:  # our own loop: its executor is ours to shut down
            await asyncio.get_running_loop().shutdown_default_executor()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the engine's loop from any loop."""
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def call_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        if self.loop is None or self._thread is None:
            return
        try:
            self.call_sync(self._close(), timeout=20)
        except Exception:
            logger.exception("stopping the engine failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._thread = None
        self.loop = None


_host: EngineHost | None = None
_host_lock = threading.Lock()


def build_engine() -> RoutedEngine:
    """The engine of this process: the real one (embedded), or a client of the supervisor."""
    if settings.STRATUS_ENGINE == "remote":
        from apps.engine.remote import RemoteEngine

        return RemoteEngine(settings.STRATUS_SUPERVISOR_SOCKET)
    return build_local_engine()


def build_local_engine() -> Engine:
    spawner = Spawner(
        sandbox_dir=settings.STRATUS_SANDBOX_DIR,
        data_dir=settings.DATA_DIR,
        uid_base=settings.STRATUS_SANDBOX_UID_BASE,
    )
    return Engine(spawner)


def get_host() -> EngineHost:
    """This process's engine host, started on first use."""
    global _host
    with _host_lock:
        if _host is None:
            from apps.monitoring.sink import get_sink

            get_sink().start()  # the batch writer of invocation records and logs
            host = EngineHost(build_engine())
            host.start()
            _host = host
        return _host


def current_host() -> EngineHost | None:
    return _host


async def attach_host() -> EngineHost:
    """Start this process's engine on the running loop (see EngineHost.attach)."""
    global _host
    from apps.monitoring.sink import get_sink

    with _host_lock:
        if _host is not None:
            return _host
        host = EngineHost(build_engine())
        _host = host
    get_sink().start()
    try:
        await host.attach()
    except BaseException:
        _host = None
        raise
    return host


async def detach_host() -> None:
    global _host
    host = _host
    if host is not None and host._thread is None:
        _host = None
        await host.detach()
    # The server stops: the engine's records go to the database (or the journal) now.
    from apps.monitoring.sink import get_sink

    await asyncio.to_thread(get_sink().stop)


def stop_host() -> None:
    global _host
    with _host_lock:
        if _host is not None:
            _host.stop()
            _host = None


def isolation_report() -> dict[str, Any]:
    """What confines function instances: this process's engine, or the supervisor's."""
    host = _host
    if host is None or host.loop is None:
        return {"complete": None, "status": "the engine has not started in this process yet"}
    try:
        return host.call_sync(host.engine.isolation(), timeout=5)
    except Exception as exc:  # noqa: BLE001 - a supervisor that is down, for instance
        return {"complete": None, "status": f"unknown ({type(exc).__name__}: {exc})"}


def protect_console_port(port: int) -> None:
    """The console now also listens on ``port``: keep tenant code off it (a server started
    after this process's engine, as the tests do)."""
    if port not in settings.STRATUS_LISTEN_PORTS:
        settings.STRATUS_LISTEN_PORTS.append(port)
    host = _host
    if host is not None and host.loop is not None:
        host.call_sync(host.engine.refresh_firewall(), timeout=30)


def routes_changed(binding_ids: tuple[int, ...] = ()) -> None:
    """Hear that these bindings' routes changed (apps.functions.routes.routes_changed, after
    commit; empty: any binding may have): reload here and tell the other processes."""
    host = _host
    if host is not None:
        host.engine.request_reload()
    if settings.REDIS_URL:
        try:
            publish_routes_changed(binding_ids)
        except Exception as exc:
            # Redis is down (or refuses us): the other processes would wait for their periodic
            # resync (STRATUS_ROUTES_RESYNC_S). Publish again, for any binding, as soon as
            # Redis answers: the outbox's reconciler retries until it does.
            logger.warning("publishing a route change failed, will retry: %s", exc)
            retry_later("routes-changed", publish_routes_changed)


def publish_routes_changed(binding_ids: tuple[int, ...] = ()) -> None:
    """Tell the other processes (web, supervisor) over Redis that routes changed; raises when
    Redis cannot be reached."""
    import redis

    client = redis.Redis.from_url(str(settings.REDIS_URL), socket_connect_timeout=2, socket_timeout=2)
    try:
        # The listeners reload their whole table; the ids are for whoever watches the channel.
        client.publish(routes_channel(), ",".join(str(pk) for pk in binding_ids))
    finally:
        client.close()


def environment_changed(environment_id: int) -> None:
    """Hear that an environment's instance config changed (apps.tenancy.announcements, after
    commit): its egress allow-list is part of each instance's spec, so reload the routes (and
    with them the firewall's allow-lists) now rather than at the next periodic resync."""
    routes_changed()


def tokens_changed(digests: Iterable[str]) -> None:
    """Hear that these tokens (SHA-256 hex digests) were revoked
    (apps.tenancy.announcements.tokens_revoked, after commit).

    This process's gateway forgets them at once. With Redis, every web process is told on
    ``stratus:<instance>:tokens`` and answers on a reply channel once it has forgotten them; this waits for
    as many answers as Redis delivered the announcement to (at most
    TOKEN_REVOCATION_WAIT_S), so when the revocation returns, no gateway anywhere still holds
    the tokens: "the very next call fails" holds across processes, not only "very soon after"."""
    from apps.engine.gateway_auth import forget_tokens

    digests = sorted(set(digests))
    if not digests:
        return
    forget_tokens(digests)
    if not settings.REDIS_URL:
        return
    try:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            _announce_and_wait(client, digests)
        finally:
            client.close()
    except Exception:
        # Other processes then stop accepting the tokens when their cache entries expire
        # (STRATUS_GATEWAY_AUTH_CACHE_S).
        logger.exception("announcing a token revocation failed")


# How long a revocation waits for the other web processes to confirm they forgot the tokens.
TOKEN_REVOCATION_WAIT_S = 2.0


def _announce_and_wait(client: Any, digests: list[str]) -> None:
    reply = f"{tokens_channel()}:ack:{uuid.uuid4().hex}"
    acks = client.pubsub()
    try:
        acks.subscribe(reply)
        deadline = time.monotonic() + TOKEN_REVOCATION_WAIT_S
        # Subscribed (confirmed by Redis) before announcing, so no answer can be missed.
        while acks.get_message(timeout=max(0.0, deadline - time.monotonic())) is None:
            if time.monotonic() >= deadline:
                break
        receivers = int(client.publish(tokens_channel(), json.dumps({"digests": digests, "reply": reply})))
        heard = 0
        while heard < receivers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning(
                    "%d of %d processes confirmed a token revocation within %s s; the others drop the "
                    "tokens when their cache entries expire",
                    heard,
                    receivers,
                    TOKEN_REVOCATION_WAIT_S,
                )
                return
            message = acks.get_message(timeout=remaining)
            if message is not None and message.get("type") == "message":
                heard += 1
    finally:
        acks.close()


async def listen_for_token_changes(subscribed: asyncio.Event | None = None) -> None:
    """Forget every token another process announces as revoked (Redis pub/sub), then confirm
    on the announcement's reply channel; ``subscribed`` is set once the subscription is live."""
    import redis.asyncio as aioredis

    from apps.engine.gateway_auth import forget_all_tokens, forget_tokens

    while True:
        client = aioredis.Redis.from_url(str(settings.REDIS_URL))
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(tokens_channel())
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "subscribe":  # Redis confirmed: from here on nothing is missed
                    # Anything revoked while we were not listening: forget every verdict once.
                    forget_all_tokens()
                    if subscribed is not None:
                        subscribed.set()
                elif kind == "message":
                    digests, reply = _announcement(message.get("data"))
                    forget_tokens(digests)
                    if reply:
                        await client.publish(reply, b"1")  # another connection than the subscription's
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("token revocation subscription failed; retrying")
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()


def _announcement(data: Any) -> tuple[list[str], str | None]:
    """(digests, reply channel) of an announcement: {"digests": [...], "reply": "..."}."""
    try:
        body = json.loads(data)
    except (TypeError, ValueError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("digests"), list):
        logger.warning("ignoring a malformed token announcement")
        return [], None
    reply = body.get("reply")
    return [d for d in body["digests"] if isinstance(d, str)], reply if isinstance(reply, str) else None


async def listen_for_route_changes(engine: RoutedEngine) -> None:
    """Reload on every announcement from another process (Redis pub/sub)."""
    import redis.asyncio as aioredis

    while True:
        try:
            client = aioredis.Redis.from_url(str(settings.REDIS_URL))
            pubsub = client.pubsub()
            await pubsub.subscribe(routes_channel())
            async for message in pubsub.listen():
                # "subscribe": Redis confirmed the subscription, first or again after a
                # reconnect (the client resubscribes by itself): anything announced while we
                # were not listening is lost, so catch up at once rather than at the resync.
                if message.get("type") in ("message", "subscribe"):
                    await engine.reload_routes()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("route change subscription failed; retrying")
            await asyncio.sleep(1.0)
