"""The zygote client: one pre-started Python process (``runtime/stratus_bootstrap/zygote.py``)
that forks every instance, Python or Node, on request.

The zygote speaks JSON over a SOCK_SEQPACKET socketpair: ``spawn`` (a config and two fds: the
instance's control socket and its stderr pipe) → ``spawned`` / ``spawn_error``; ``exited``
when a child it forked is reaped; ``hello`` once at start (its Python version and stdlib).
If it dies, pending spawns fail (a spawn retries once with a new zygote) and its orphaned
instances are watched through pidfds (their exit status is then unknown).

The zygote starts with PATH, LANG and MALLOC_ARENA_MAX=1 only. Sandboxed instances must be
able to read the interpreter's standard library (the zygote pre-imports only the
bootstrap's modules): when the configured ``python`` lives where other users cannot read
(e.g. a pyenv under /root), ``ensure()`` falls back, with a warning, to a ``python3.X`` of
the same minor version in /usr/local/bin or /usr/bin, and raises RuntimeError if there is
none. All instances forked from one zygote share its hash seed (PYTHONHASHSEED).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.core.isolation import RUNTIME_DIR, path_problem
from apps.core.isolation.cgroups import Cgroup
from apps.engine.sandbox.instances import INSTANCE_PATH, InstanceSpec, SpawnedInstance

logger = logging.getLogger(__name__)

ZYGOTE_START_TIMEOUT_S = 15.0
SPAWN_TIMEOUT_S = 10.0


@dataclass
class _Pending:
    future: asyncio.Future[SpawnedInstance]
    sock: socket.socket
    out_fd: int
    spec: InstanceSpec
    cgroup: Cgroup | None = None


class _ZygoteDied(Exception):
    pass


class ZygoteClient:
    """Starts instances through the zygote; restarts the zygote when it is gone."""

    def __init__(self, *, python: str, check_stdlib: bool) -> None:
        self.python = python
        self.check_stdlib = check_stdlib  # sandboxed: other users must read the stdlib
        self._zygote: subprocess.Popen[bytes] | None = None
        self._zsock: socket.socket | None = None
        self._zygote_lock: asyncio.Lock | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._python_ok = False
        self._pending: dict[int, _Pending] = {}
        self._children: dict[int, SpawnedInstance] = {}
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pid(self) -> int | None:
        """The running zygote's pid, None when there is none."""
        return self._zygote.pid if self._zygote is not None else None

    async def start(self) -> None:
        self._zygote_lock = asyncio.Lock()
        await self._ensure_zygote()

    async def close(self) -> None:
        """Stop the zygote. Instances keep running; their exits are still noticed (status
        unknown) through pidfds."""
        sock, proc = self._zsock, self._zygote
        if sock is not None and proc is not None:
            self._zygote_lost(sock, proc)
        for task in list(self._tasks):
            if not task.done() and task.get_name().startswith("zygote-reap"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), 3)

    async def spawn(self, spec: InstanceSpec, config: dict[str, Any], group: Cgroup | None) -> SpawnedInstance:
        """Have the zygote fork one instance configured by ``config`` (see the zygote)."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            zsock = await self._ensure_zygote()
            seq = next(self._seq)
            payload = json.dumps({"type": "spawn", "seq": seq, "config": config}).encode()
            parent, child = socket.socketpair()
            out_r, out_w = os.pipe()
            future: asyncio.Future[SpawnedInstance] = loop.create_future()
            self._pending[seq] = _Pending(future, parent, out_r, spec, group)
            try:
                await self._zsend(zsock, payload, [child.fileno(), out_w])
            except OSError as exc:
                pending = self._pending.pop(seq, None)
                if pending is not None:
                    pending.sock.close()
                    os.close(pending.out_fd)
                if exc.errno == errno.EMSGSIZE:
                    raise RuntimeError(f"the configuration of {spec.function_name!r} is too large to send") from exc
                if attempt == 1:
                    continue  # the zygote just died: start another
                raise RuntimeError(f"could not reach the zygote: {exc}") from exc
            finally:
                child.close()
                os.close(out_w)
            try:
                return await asyncio.wait_for(future, SPAWN_TIMEOUT_S)
            except _ZygoteDied:
                if attempt == 1:
                    continue
                raise RuntimeError("the zygote died while starting the instance") from None
            except TimeoutError:
                raise RuntimeError(f"the zygote did not start the instance within {SPAWN_TIMEOUT_S:g} s") from None
        raise AssertionError("unreachable")

    async def _zsend(self, sock: socket.socket, payload: bytes, fds: list[int]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                socket.send_fds(sock, [payload], fds)
                return
            except BlockingIOError:
                writable: asyncio.Future[None] = loop.create_future()

                def wake(fut: asyncio.Future[None] = writable) -> None:
                    if not fut.done():
                        fut.set_result(None)

                loop.add_writer(sock.fileno(), wake)
                try:
                    await writable
                finally:
                    loop.remove_writer(sock.fileno())

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the zygote ---------------------------------------------------------------------------

    async def _ensure_zygote(self) -> socket.socket:
        assert self._zygote_lock is not None
        async with self._zygote_lock:
            if self._zsock is not None and self._zygote is not None and self._zygote.poll() is None:
                return self._zsock
            if self._zsock is not None and self._zygote is not None:
                self._zygote_lost(self._zsock, self._zygote)
            hello = await self._start_zygote(self.python)
            if self.check_stdlib and not self._python_ok:
                problem = path_problem(Path(hello["stdlib"]), readable=True)
                if problem is not None:
                    fallback = self._fallback_python(hello["version"])
                    if fallback is None:
                        raise RuntimeError(
                            f"{self.python}'s standard library ({hello['stdlib']}) is not readable by sandboxed "
                            f"functions ({problem} lacks o+rx); install Python {hello['version']} where other users "
                            "can read it and pass it as Spawner(python=...)"
                        )
                    logger.warning(
                        "%s's standard library is not readable by other users (%s); functions use %s instead",
                        self.python,
                        problem,
                        fallback,
                    )
                    assert self._zsock is not None and self._zygote is not None
                    self._zygote_lost(self._zsock, self._zygote)
                    self.python = fallback
                    await self._start_zygote(self.python)
                self._python_ok = True
            assert self._zsock is not None
            return self._zsock

    def _fallback_python(self, version: str) -> str | None:
        """A python<major>.<minor> other users can read (e.g. Debian's), for when the configured
        one lives somewhere private (a pyenv install under /root)."""
        major_minor = ".".join(version.split(".")[:2])
        for directory in ("/usr/local/bin", "/usr/bin"):
            candidate = Path(directory) / f"python{major_minor}"
            if not candidate.exists() or os.path.realpath(candidate) == os.path.realpath(self.python):
                continue
            stdlib = Path(os.path.realpath(candidate)).parent.parent / "lib" / f"python{major_minor}"
            if stdlib.is_dir() and path_problem(stdlib, readable=True) is None:
                return str(candidate)
        return None

    async def _start_zygote(self, python: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):
            parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        code = (
            f"import sys; sys.path.insert(0, {str(RUNTIME_DIR)!r}); from stratus_bootstrap.zygote import main; main()"
        )
        # MALLOC_ARENA_MAX=1: glibc would otherwise reserve 64 MiB of address space per thread that
        # mallocs (the log pumps), which RLIMIT_AS counts. Read once by the zygote's libc, inherited
        # by its forks as process state; the children's os.environ does not keep it.
        env = {
            "PATH": INSTANCE_PATH,
            "LANG": "C.UTF-8",
            "MALLOC_ARENA_MAX": "1",
            "STRATUS_ZYGOTE_FD": str(child.fileno()),
        }
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [python, "-I", "-S", "-c", code],
                env=env,
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        self._zsock, self._zygote = parent, proc
        self._hello = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_zygote_readable, parent, proc)
        try:
            return await asyncio.wait_for(asyncio.shield(self._hello), ZYGOTE_START_TIMEOUT_S)
        except (TimeoutError, _ZygoteDied):
            self._zygote_lost(parent, proc)
            raise RuntimeError(f"the Python zygote ({python}) did not start; see the console's stderr") from None

    def _on_zygote_readable(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._zygote_lost(sock, proc)
                return
            try:
                message = json.loads(data)
            except ValueError:
                logger.error("bad message from the zygote: %r", data[:200])
                continue
            self._on_zygote_message(message)

    def _on_zygote_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(message)
        elif kind == "spawned":
            pending = self._pending.pop(message.get("seq"), None)  # type: ignore[arg-type]
            if pending is None:
                return
            pid = int(message["pid"])
            instance = SpawnedInstance(
                pid, pending.sock, pending.out_fd, int(pending.spec.memory_mb), pending.spec.runtime, pending.cgroup
            )
            self._children[pid] = instance
            if pending.future.done():  # spawn() was cancelled or timed out: nobody owns it
                instance.kill()
                instance.sock.close()
            else:
                pending.future.set_result(instance)
        elif kind == "spawn_error":
            seq = message.get("seq")
            pending = self._pending.pop(seq, None) if isinstance(seq, int) else None
            if pending is None:
                logger.error("zygote: %s", message.get("error"))
                return
            pending.sock.close()
            os.close(pending.out_fd)
            if not pending.future.done():
                pending.future.set_exception(RuntimeError(f"could not start the instance: {message.get('error')}"))
        elif kind == "exited":
            gone = self._children.pop(int(message["pid"]), None)
            if gone is not None:
                status = int(message["status"])
                if os.WIFSIGNALED(status):
                    gone._set_exit(None, os.WTERMSIG(status))
                else:
                    gone._set_exit(os.waitstatus_to_exitcode(status), None)

    def _zygote_lost(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        """The zygote is gone (or being stopped): fail pending spawns, watch its children by pidfd."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(sock.fileno())
        sock.close()
        if self._zsock is sock:
            self._zsock = None
            self._zygote = None
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(_ZygoteDied())
            self._hello.exception()
        for seq, pending in list(self._pending.items()):
            del self._pending[seq]
            pending.sock.close()
            os.close(pending.out_fd)
            if not pending.future.done():
                pending.future.set_exception(_ZygoteDied())
        children, self._children = self._children, {}
        for instance in children.values():
            self._watch_pidfd(instance)
        self._keep(loop.create_task(self._reap_zygote(proc), name=f"zygote-reap-{proc.pid}"))

    async def _reap_zygote(self, proc: subprocess.Popen[bytes]) -> None:
        # It exits by itself on end of file; give it a moment, then make sure.
        for _ in range(200):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.01)
        with contextlib.suppress(OSError):
            proc.kill()
        await asyncio.to_thread(proc.wait)

    def _watch_pidfd(self, instance: SpawnedInstance) -> None:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(instance.pid)
        except OSError:
            instance._set_exit(None, None, known=False)
            return

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            instance._set_exit(None, None, known=False)

        loop.add_reader(fd, gone)
