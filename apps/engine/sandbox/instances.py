"""A started function instance: its spec (``InstanceSpec``), the process the zygote forked
(``SpawnedInstance``: control socket, stderr tail, kill, exit) and how it ended (``ExitInfo``).

Out of memory (``ExitInfo.out_of_memory``): the runtime's real stderr mentions MemoryError /
"out of memory" / "JavaScript heap out of memory"; or SIGKILL not sent by ``kill()`` while
the instance's memory cgroup (or, without one, the host's) counted an OOM kill; or
SIGABRT/SIGSEGV/SIGBUS after a peak RSS of at least 90% of the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from apps.core.isolation.cgroups import Cgroup
from apps.core.isolation.hardening import kill_group

INSTANCE_PATH = "/usr/local/bin:/usr/bin:/bin"
STDERR_TAIL_BYTES = 4096
_OOM_MARKERS = (
    "MemoryError",
    "out of memory",
    "Out of memory",
    "Cannot allocate memory",
    "std::bad_alloc",
)
_CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)


@dataclass(frozen=True)
class InstanceSpec:
    runtime: str  # "python3.11" | "node20"
    kind: str  # "event" | "http"
    handler: str  # "main.handler", "app:app", "index.handler"
    code_dir: Path  # unpacked version directory (read-only source, owned by the console user)
    function_id: int
    function_name: str
    function_version: str  # e.g. "3"
    memory_mb: int
    timeout_s: float
    env: Mapping[str, str]  # the function's own variables (already merged); nothing else of the console's
    # The execution identity (function x environment, apps.functions.models.ExecutionIdentity):
    # the instance runs as uid ``uid_base + identity`` when the engine is root.
    identity: int
    max_processes: int = 64  # processes+threads of one instance (its cgroup's pids.max)
    # RLIMIT_NPROC of the identity's uid: all its instances together, whatever max_instances says.
    identity_max_processes: int = 1024
    max_open_files: int = 1024
    tmp_mb: int = 128  # the private /tmp (tmpfs: it counts against the instance's memory cgroup)
    shm_mb: int = 64  # the private /dev/shm
    egress_allow: tuple[str, ...] = ()  # the environment's allowed private addresses (egress.py)
    org_id: int | None = None  # whose quota the instance counts against (apps/tenancy/quotas.py)
    org_quota: tuple[int, int] | None = None  # (instances, memory_mb) when the route was loaded
    # Where the function runs, for the runtime's Lambda/SCF variables (SCF_NAMESPACE, AWS_REGION).
    project: str = ""
    environment: str = ""
    region: str = ""


@dataclass
class ExitInfo:
    returncode: int | None  # exit status, or None if killed by a signal (or unknown)
    signal: int | None
    reason: str  # "exited with status 1", "killed by SIGKILL", "out of memory (limit 128 MB)"
    out_of_memory: bool
    stderr_tail: str  # last ~4 KB the runtime wrote to its real stderr outside the log capture


def _oom_kill_count() -> int | None:
    """The kernel's OOM-killer counter (/proc/vmstat oom_kill), None where unavailable."""
    try:
        with open("/proc/vmstat", "rb") as f:
            for line in f:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _read_status_kb(pid: int, field: bytes) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class SpawnedInstance:
    """A started instance: its pid, the supervisor's end of its control socket, its exit."""

    def __init__(
        self,
        pid: int,
        sock: socket.socket,
        out_fd: int,
        memory_mb: int,
        runtime: str,
        cgroup: Cgroup | None = None,
    ) -> None:
        self.pid = pid
        self.cgroup = cgroup
        self.sock = sock
        self.sock.setblocking(False)
        self.memory_mb = memory_mb
        self.runtime = runtime
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[ExitInfo] = self._loop.create_future()
        self._exited = False
        self._killed = False
        self._peak_kb = 0
        self._oom_kills_at_start = _oom_kill_count()
        self._tail = bytearray()
        self._out_fd: int | None = out_fd
        self._out_closed = asyncio.Event()
        os.set_blocking(out_fd, False)
        self._loop.add_reader(out_fd, self._on_output)
        self._finisher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<SpawnedInstance pid={self.pid} {self.runtime}>"

    # --- stderr capture -----------------------------------------------------------------------

    def _on_output(self) -> None:
        fd = self._out_fd
        if fd is None:
            return
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_output()
                return
            self._tail += chunk
            if len(self._tail) > STDERR_TAIL_BYTES:
                del self._tail[:-STDERR_TAIL_BYTES]

    def _close_output(self) -> None:
        fd, self._out_fd = self._out_fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
        self._out_closed.set()

    # --- exit ---------------------------------------------------------------------------------

    def _set_exit(self, returncode: int | None, signum: int | None, known: bool = True) -> None:
        """The process is gone (``known``: with this status). Called once by the Spawner."""
        if self._exited:
            return
        self._exited = True
        if known:
            # Leftovers of the instance (children it started) die with it.
            kill_group(self.pid)
        self._finisher = self._loop.create_task(self._finish(returncode, signum, known))

    async def _finish(self, returncode: int | None, signum: int | None, known: bool) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._out_closed.wait(), 1.0)
        self._on_output()
        self._close_output()
        info = self._exit_info(returncode, signum, known)  # reads the cgroup's OOM count first
        if self.cgroup is not None:
            # Whatever the instance started dies with it, even what left its process group.
            group, self.cgroup = self.cgroup, None
            await asyncio.to_thread(group.remove)
        if not self._done.done():
            self._done.set_result(info)

    def _exit_info(self, returncode: int | None, signum: int | None, known: bool) -> ExitInfo:
        tail = self._tail.decode("utf-8", errors="replace")
        oom = any(marker in tail for marker in _OOM_MARKERS)
        if not oom and signum is not None and not self._killed:
            if signum == signal.SIGKILL:
                # Not our kill(): the kernel's OOM killer, in the instance's own memory cgroup
                # or (without one) if the host's counter moved meanwhile.
                if self.cgroup is not None and self.cgroup.memory_dir is not None:
                    oom = self.cgroup.oom_kills() > 0
                else:
                    now = _oom_kill_count()
                    oom = now is not None and self._oom_kills_at_start is not None and now > self._oom_kills_at_start
            elif signum in _CRASH_SIGNALS:
                oom = self._peak_kb >= self.memory_mb * 1024 * 0.9
        if oom:
            reason = f"out of memory (limit {self.memory_mb} MB)"
        elif not known:
            reason = "exited (status unknown: its zygote was gone)"
        elif signum is not None:
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            reason = f"killed by {name}"
        else:
            reason = f"exited with status {returncode}"
        return ExitInfo(returncode=returncode, signal=signum, reason=reason, out_of_memory=oom, stderr_tail=tail)

    async def wait_exit(self) -> ExitInfo:
        """Resolves when the process has exited; may be awaited any number of times."""
        return await asyncio.shield(self._done)

    def kill(self) -> None:
        """SIGKILL the instance's whole process group (its own session); idempotent."""
        if self._exited:
            return
        self._killed = True
        kill_group(self.pid)
        with contextlib.suppress(OSError):  # not yet a group leader (right after fork)
            os.kill(self.pid, signal.SIGKILL)

    def peak_rss_kb(self) -> int | None:
        """VmHWM of the process, None once it is gone."""
        if self._exited:
            return None
        value = _read_status_kb(self.pid, b"VmHWM:")
        if value is not None:
            self._peak_kb = max(self._peak_kb, value)
        return value
