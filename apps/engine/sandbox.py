"""Start function instances as confined OS processes, fast.

Both runtimes are forked by a pre-started *zygote* (``runtime/stratus_bootstrap/zygote.py``):
Python instances keep running the bootstrap the zygote already imported, Node instances
``exec`` ``node --max-old-space-size=<memory_mb> runtime/node/bootstrap.js`` once confined.
Either way the instance speaks the frame protocol (``runtime/stratus_bootstrap/protocol.py``)
on a socketpair whose other end is ``SpawnedInstance.sock``; the supervisor reads
``ready``/``init_error`` itself.

Identity (when the engine runs as root: ``Spawner.sandboxing``)
----------------------------------------------------------------
Each function runs as a uid of its own *per environment*: ``uid_base + spec.identity``
(``apps.functions.models.ExecutionIdentity``), with no supplementary groups, so the dev
instances of a function cannot read, trace or signal its prod instances (whose environment
holds prod's secrets), nor those of any other function. Instances are not dumpable (Python by
``prctl``, Node by running an execute-only copy of the node binary, see ``_node_executable``):
``/proc/<pid>/environ``, ``mem`` and ptrace are closed even to processes of the same uid.
``no_new_privs``: no setuid binary gives anything back.

Confinement, per instance (``runtime/stratus_bootstrap/confine.py``, in the forked child)
-----------------------------------------------------------------------------------------
* A private mount namespace: the whole tree read-only; ``/proc`` with ``hidepid=invisible``
  (an instance sees its identity's processes only); ``/tmp`` (``spec.tmp_mb``, the function's
  ``ephemeral_storage_mb``) and ``/dev/shm`` (``spec.shm_mb``) as private tmpfs owned by the
  uid, ENOSPC past their size, gone with the instance; ``/run`` empty (no host Unix socket:
  PostgreSQL's, MariaDB's, D-Bus's). HOME and TMPDIR are ``/tmp``.
* A cgroup (``apps/core/isolation/cgroups.py``, v1 or v2, under ``stratus-instances``):
  ``memory`` = memory_mb + the tmpfs sizes + ``CGROUP_OVERHEAD_MB`` (shared memory and tmpfs
  pages count), ``pids`` = ``spec.max_processes``; removed (and every member killed, even one
  that left the process group) when the instance exits. OOM kills are read from it.
* The egress firewall (``apps/core/isolation/firewall.py``): the uid reaches the public
  internet, and no loopback, private or link-local address and no address of this host,
  except what its environment's ``egress_allow`` opens (never the console's own endpoints).

Which of these the host allows is probed at ``start()`` (``Spawner.isolation``), logged, and
shown by ``/readyz``; what is missing is named there. Without root: every instance runs as
the console's uid, not dumpable and without new privileges, and nothing else applies.

Limits, per instance
--------------------
* ``RLIMIT_AS`` (Python only): ``memory_mb`` plus what the interpreter had mapped at fork time,
  the two log-pump thread stacks and a small slack (measured in the child, see the zygote). Too
  big an allocation is a ``MemoryError`` in the handler (an ``error`` frame) or, if the runtime
  itself cannot allocate, a crash. Node gets ``--max-old-space-size`` instead (V8 reserves huge
  address ranges, so no RLIMIT_AS), and dies with "JavaScript heap out of memory"; memory
  outside its heap (Buffers) is caught by the cgroup.
* ``RLIMIT_NOFILE`` = ``max_open_files``; ``RLIMIT_CORE`` = 0.
* ``RLIMIT_NPROC`` = ``identity_max_processes``, counted per real uid, so for all instances of
  the identity together (each also has its cgroup's ``pids.max``). Without root there is one
  uid for everything, so the limit is "tasks this uid has now + max_processes".
* Each instance runs in its own session/process group; ``kill()`` SIGKILLs the group, and the
  group is SIGKILLed once more when the instance exits.

Code and directories
--------------------
The code is a private copy, ``sandbox_dir/<uid>/code/<basename of code_dir>/`` (copied once,
atomically, root-owned and readable through the uid's group: dirs 0550, files 0440 or 0550);
``sandbox_dir/<uid>`` and ``sandbox_dir`` are 0711 root. If ``sandbox_dir`` lies inside
``data_dir``, ``data_dir`` becomes 0711 and every other entry directly in it loses its
group/other permissions (secret key, database, artifacts). Paths an instance needs that lie
under ``/tmp`` (a test data directory) are bound back into its namespace.

The environment of an instance is built from scratch: PATH, HOME, TMPDIR, LANG (and
PYTHONUNBUFFERED/PYTHONDONTWRITEBYTECODE for Python), the function's own variables, the
``STRATUS_*`` runtime variables (which the bootstrap replaces by ``AWS_LAMBDA_*``). The zygote
itself starts with PATH, LANG and MALLOC_ARENA_MAX=1 only.

The Python interpreter
----------------------
Sandboxed instances must be able to read the interpreter's standard library (the zygote
pre-imports only the bootstrap's modules). When the configured ``python`` lives where other
users cannot read (e.g. a pyenv under /root), ``start()`` falls back, with a warning, to a
``python3.X`` of the same minor version in /usr/local/bin or /usr/bin, and raises RuntimeError if
there is none. All instances forked from one zygote share its hash seed (PYTHONHASHSEED).

Out of memory (``ExitInfo.out_of_memory``): the runtime's real stderr mentions MemoryError /
"out of memory" / "JavaScript heap out of memory"; or SIGKILL not sent by ``kill()`` while
the instance's memory cgroup (or, without one, the host's) counted an OOM kill; or
SIGABRT/SIGSEGV/SIGBUS after a peak RSS of at least 90% of the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.core.isolation import RUNTIME_DIR, path_problem, probe_host
from apps.core.isolation.cgroups import Cgroup, CgroupFactory
from apps.core.isolation.firewall import Firewall

logger = logging.getLogger(__name__)

NODE_BOOTSTRAP = RUNTIME_DIR / "node" / "bootstrap.js"
NODE_CACHE_DIR = Path("/var/cache/stratus")  # execute-only copies of node (see _node_executable)
CGROUP_PARENT = "stratus-instances"
# A memory cgroup holds the runtime's own pages besides the handler's memory_mb (and the tmpfs
# of /tmp and /dev/shm); RLIMIT_AS / V8's heap limit report a handler's excess first.
CGROUP_OVERHEAD_MB = 64
INSTANCE_PATH = "/usr/local/bin:/usr/bin:/bin"
STDERR_TAIL_BYTES = 4096
ZYGOTE_START_TIMEOUT_S = 15.0
SPAWN_TIMEOUT_S = 10.0
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
            # Leftovers of the instance (children it started) die with it. The group id cannot
            # have been reused while any member is alive; if none is, this is ESRCH.
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
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
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
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


@dataclass
class _Pending:
    future: asyncio.Future[SpawnedInstance]
    sock: socket.socket
    out_fd: int
    spec: InstanceSpec
    cgroup: Cgroup | None = None


class _ZygoteDied(Exception):
    pass


_path_problem = path_problem


def _harden_tree(root: Path, gid: int) -> None:
    """chown -R root:gid; dirs 0550, files 0440 (0550 if they were executable); symlinks as is.
    Owned by root and readable through the function's group: the function reads its code but
    cannot change it for the next instances of the same version."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, 0, gid)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                os.chmod(path, 0o550)  # noqa: S103 - group: the function reads its own code
            else:
                os.chmod(path, 0o550 if st.st_mode & 0o111 else 0o440)
    os.lchown(root, 0, gid)
    os.chmod(root, 0o550)  # noqa: S103 - group: the function reads its own code


def _count_tasks(uid: int) -> int:
    """Processes + threads owned by ``uid`` (what RLIMIT_NPROC counts; /proc/<pid> belongs to the
    process's effective uid, which for our own processes is the real one)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                total += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return total


@dataclass
class Isolation:
    """What confines instances on this host (probed at start; see ``describe``)."""

    identity: bool = False  # a uid per function x environment (root)
    namespace: bool = False  # a private mount namespace per instance
    readonly_root: bool = False
    hidepid: bool = False
    tmpfs: bool = False  # private, size-limited /tmp and /dev/shm
    cgroups: str = "none"
    network: str = "not enforced"
    complete_cgroups: bool = False  # memory and pids limits both available
    network_enforced: bool = False
    problems: list[str] = field(default_factory=list)

    def missing(self) -> list[str]:
        """The protections this host does not give, each with why."""
        described = self.describe()
        return [
            f"{name}: {described[name]}"
            for name, complete in (
                ("identity", self.identity),
                ("filesystem", self.namespace and self.tmpfs and self.hidepid and self.readonly_root),
                ("cgroups", self.complete_cgroups),
                ("network", self.network_enforced),
            )
            if not complete
        ]

    def report(self) -> dict[str, Any]:
        return {"complete": not self.missing(), **self.describe(), "missing": self.missing()}

    def describe(self) -> dict[str, str]:
        """One line per protection, for the start-up log and /readyz."""
        if self.namespace:
            fs = "private mounts: " + ", ".join(
                part
                for part, on in (
                    ("read-only root", self.readonly_root),
                    ("/proc shows only the identity's own processes (hidepid)", self.hidepid),
                    ("private size-limited /tmp and /dev/shm", self.tmpfs),
                    ("/run hidden", True),
                )
                if on
            )
        else:
            fs = "not isolated (" + next((p for p in self.problems if p.startswith("mounts")), "not root") + ")"
        return {
            "identity": "one uid per function and environment, no groups, not dumpable, no new privileges"
            if self.identity
            else "every instance runs as the console's own uid (not root); not dumpable, no new privileges",
            "filesystem": fs,
            "cgroups": self.cgroups,
            "network": self.network,
        }


class Spawner:
    """Starts instances; see the module docstring for the limits and the sandbox."""

    def __init__(
        self,
        *,
        sandbox_dir: Path,
        data_dir: Path,
        uid_base: int = 200000,
        python: str = sys.executable,
        node: str = "node",
        firewall: Firewall | None = None,
    ) -> None:
        self.sandbox_dir = Path(os.path.abspath(sandbox_dir))
        self.data_dir = Path(os.path.abspath(data_dir))
        self.uid_base = uid_base
        self.python = python
        self.node = node
        self.sandboxing = os.geteuid() == 0
        self.isolation = Isolation()
        self.firewall = firewall
        self._cgroups: CgroupFactory | None = None
        self._node_exec: str | None = None
        self._node_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._zsock: socket.socket | None = None
        self._zygote_lock: asyncio.Lock | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._python_ok = False
        self._pending: dict[int, _Pending] = {}
        self._children: dict[int, SpawnedInstance] = {}
        self._seq = itertools.count(1)
        self._prepared: dict[tuple[int, str], tuple[Path, Path]] = {}
        self._prepare_locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def zygote_pid(self) -> int | None:
        """The running zygote's pid (for monitoring), None when there is none."""
        return self._zygote.pid if self._zygote is not None else None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the sandbox directories, find out what confines instances on this host, and
        start the Python zygote."""
        self._loop = asyncio.get_running_loop()
        self._zygote_lock = asyncio.Lock()
        self._node_lock = asyncio.Lock()
        self._closed = False
        await asyncio.to_thread(self._prepare_base)
        await asyncio.to_thread(self._probe_isolation)
        await self._ensure_zygote()

    def _probe_isolation(self) -> None:
        found = Isolation(identity=self.sandboxing)
        if self.sandboxing:
            probe = probe_host()
            found.namespace = probe.get("namespace") is True and probe.get("private") is True
            found.tmpfs = probe.get("tmpfs") is True
            found.hidepid = probe.get("hidepid") is True
            found.readonly_root = probe.get("readonly_root") is True
            failed = {k: v for k, v in probe.items() if v is not True}
            if failed or not probe:
                detail = ", ".join(f"{k}: {v}" for k, v in failed.items()) or "the probe failed (see the log)"
                found.problems.append(f"mounts: {detail}")
            self._cgroups = CgroupFactory(CGROUP_PARENT)
            found.cgroups = self._cgroups.describe()
            self._remove_stale_cgroups()
        else:
            found.problems.append("mounts: not root")
            found.cgroups = "none (not root)"
        if self.firewall is None:
            self.firewall = Firewall(self.uid_base)
            try:
                from apps.core.isolation.egress import protected_endpoints

                protected = protected_endpoints()
            except Exception as exc:  # noqa: BLE001 - without Django settings, say so
                self.firewall.problem = f"the console's endpoints are unknown ({type(exc).__name__}: {exc})"
            else:
                self.firewall.install(protected)
        found.network = self.firewall.describe()
        found.complete_cgroups = self._cgroups is not None and self._cgroups.limits == {"memory", "pids"}
        found.network_enforced = self.firewall.available
        self.isolation = found
        missing = found.missing()
        if missing:
            logger.warning("function instances are NOT fully isolated on this host: %s", "; ".join(missing))
        else:
            logger.info("function instances are isolated: %s", found.describe())

    def _remove_stale_cgroups(self) -> None:
        """Groups of a supervisor that is gone (killed before it could clean up)."""
        assert self._cgroups is not None
        for group in self._cgroups.existing("i-"):
            owner = group.dirs[0].name.split("-")[1]
            if owner.isdigit() and int(owner) != os.getpid() and not Path(f"/proc/{owner}").exists():
                group.remove()

    async def close(self) -> None:
        """Stop the zygote. Instances keep running (the supervisor kills them); their exits are
        still noticed (status unknown) through pidfds."""
        self._closed = True
        sock, proc = self._zsock, self._zygote
        if sock is not None and proc is not None:
            self._zygote_lost(sock, proc)
        for task in list(self._tasks):
            if not task.done() and task.get_name().startswith("zygote-reap"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), 3)

    # --- spawning -----------------------------------------------------------------------------

    def uid_of(self, spec: InstanceSpec) -> int:
        return self.uid_base + int(spec.identity)

    async def spawn(self, spec: InstanceSpec) -> SpawnedInstance:
        """Start one instance; returns as soon as the process exists."""
        if self._loop is None:
            raise RuntimeError("Spawner.start() has not been called")
        if self._closed:
            raise RuntimeError("the spawner is closed")
        if not spec.runtime.startswith(("python", "node")):
            raise ValueError(f"unknown runtime {spec.runtime!r}")
        uid = self.uid_of(spec)
        task_root, home = await self._prepare_function(spec, uid)
        argv = None
        if spec.runtime.startswith("node"):
            argv = [await self._node_executable(), f"--max-old-space-size={int(spec.memory_mb)}", str(NODE_BOOTSTRAP)]
        if self.firewall is not None and self.firewall.available and self.firewall.pending(uid, spec.egress_allow):
            await asyncio.to_thread(self.firewall.allow, uid, spec.egress_allow)
        group = self._new_cgroup(spec, uid)
        try:
            return await self._spawn_in_zygote(spec, uid, task_root, home, argv, group)
        except BaseException:
            if group is not None:
                await asyncio.to_thread(group.remove)
            raise

    async def prepare(self, spec: InstanceSpec) -> None:
        """Make the function's private code copy and home now (on deploy), so its first
        instance does not pay for them."""
        await self._prepare_function(spec, self.uid_of(spec))

    def _new_cgroup(self, spec: InstanceSpec, uid: int) -> Cgroup | None:
        if self._cgroups is None or not self._cgroups.available:
            return None
        memory_mb = int(spec.memory_mb) + CGROUP_OVERHEAD_MB
        if self.isolation.tmpfs:
            memory_mb += int(spec.tmp_mb) + int(spec.shm_mb)
        return self._cgroups.create(
            f"i-{os.getpid()}-{uid}-{next(self._seq)}",
            memory_bytes=memory_mb * 1024 * 1024,
            pids_max=int(spec.max_processes),
        )

    def _confine_config(
        self, spec: InstanceSpec, uid: int, group: Cgroup | None, keep: list[Path]
    ) -> dict[str, Any]:
        iso = self.isolation
        return {
            "uid": uid if self.sandboxing else None,
            "gid": uid if self.sandboxing else None,
            "cgroup_join": group.join_files if group is not None else [],
            "namespace": iso.namespace,
            "readonly_root": iso.readonly_root,
            "hidepid": iso.hidepid,
            "hide_run": True,
            "keep": [str(p) for p in keep],
            "tmp_mb": int(spec.tmp_mb) if iso.tmpfs else None,
            "shm_mb": int(spec.shm_mb) if iso.tmpfs else None,
            "dumpable": False,
            "no_new_privs": True,
        }

    def _instance_env(self, spec: InstanceSpec, home: Path, task_root: Path) -> dict[str, str]:
        # With private mounts, HOME and TMPDIR are the instance's own tmpfs: nothing it writes
        # outlives it or reaches another instance.
        scratch = "/tmp" if self.isolation.namespace and self.isolation.tmpfs else str(home)  # noqa: S108
        env = {"PATH": INSTANCE_PATH, "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"}
        if spec.runtime.startswith("python"):
            env["PYTHONUNBUFFERED"] = "1"
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        for key, value in spec.env.items():
            if key.startswith(("STRATUS_", "AWS_LAMBDA_")):
                continue  # reserved for the runtime
            env[str(key)] = str(value)
        env.update(
            STRATUS_HANDLER=spec.handler,
            STRATUS_KIND=spec.kind,
            STRATUS_TASK_ROOT=str(task_root),
            STRATUS_FUNCTION_NAME=spec.function_name,
            STRATUS_FUNCTION_VERSION=str(spec.function_version),
            STRATUS_MEMORY_MB=str(int(spec.memory_mb)),
            STRATUS_TIMEOUT_S=f"{float(spec.timeout_s):g}",
        )
        return env

    def _nproc_limit(self, spec: InstanceSpec) -> int:
        if self.sandboxing:
            # Per identity uid: all of the identity's instances together (each instance's own
            # share is its cgroup's pids.max).
            return int(spec.identity_max_processes)
        # Without root every instance shares our uid, and RLIMIT_NPROC counts all the tasks of
        # the real uid: the best available bound is "what this uid runs now + max_processes"
        # (contains a fork bomb, but is not a per-function cap; counted at each spawn, ~1 ms).
        return _count_tasks(os.getuid()) + int(spec.max_processes)

    async def _node_executable(self) -> str:
        """An execute-only copy of node (mode 0111): an execve of a binary its user cannot read
        leaves the process non-dumpable, as the Python instances are, so no process of the same
        uid can read a Node instance's memory or environ or ptrace it."""
        if self._node_exec is not None:
            return self._node_exec
        assert self._node_lock is not None
        async with self._node_lock:
            if self._node_exec is None:
                self._node_exec = await asyncio.to_thread(self._copy_node)
        return self._node_exec

    def _copy_node(self) -> str:
        source = shutil.which(self.node) or self.node
        if not os.path.isfile(source):
            raise RuntimeError(f"node is not installed ({self.node!r} not found)")
        if self.sandboxing:
            problem = _path_problem(NODE_BOOTSTRAP.parent, readable=True)
            if problem is not None:
                raise RuntimeError(f"{NODE_BOOTSTRAP} is not readable by sandboxed functions: {problem} lacks o+rx")
        st = os.stat(source)
        # Shared by every engine of the host (one copy of ~100 MB per node binary), root's
        # when root: no function uid may replace it.
        bin_dir = NODE_CACHE_DIR if self.sandboxing else self.sandbox_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(bin_dir, 0o711)  # noqa: S103 - traversable by function uids, not listable
        dest = bin_dir / f"node-{st.st_size}-{int(st.st_mtime)}"
        if not dest.exists():
            tmp = bin_dir / f".tmp-node-{uuid.uuid4().hex}"
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o111)  # noqa: S103 - execute-only: see _node_executable
            os.rename(tmp, dest)
        return str(dest)

    async def _spawn_in_zygote(
        self,
        spec: InstanceSpec,
        uid: int,
        task_root: Path,
        home: Path,
        argv: list[str] | None,
        group: Cgroup | None,
    ) -> SpawnedInstance:
        loop = asyncio.get_running_loop()
        python = argv is None
        config = {
            "env": self._instance_env(spec, home, task_root),
            "cwd": str(task_root),
            "confine": self._confine_config(
                spec, uid, group, [task_root, RUNTIME_DIR, *([Path(argv[0])] if argv else [])]
            ),
            "memory_mb": int(spec.memory_mb) if python else None,
            "nofile": int(spec.max_open_files),
            "nproc": self._nproc_limit(spec),
            "exec": argv,
        }
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
            if self.sandboxing and not self._python_ok:
                problem = _path_problem(Path(hello["stdlib"]), readable=True)
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
            if stdlib.is_dir() and _path_problem(stdlib, readable=True) is None:
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

    # --- directories --------------------------------------------------------------------------

    def _prepare_base(self) -> None:
        sandbox = self.sandbox_dir
        sandbox.mkdir(parents=True, exist_ok=True)
        if not self.sandboxing:
            return
        os.chown(sandbox, 0, 0)
        os.chmod(sandbox, 0o711)  # noqa: S103 - traversable by the function uids, not listable
        self._harden_data_dir()
        real_sandbox = sandbox.resolve()
        problem = _path_problem(real_sandbox, readable=False)
        if problem is not None:
            raise RuntimeError(
                f"sandbox_dir {real_sandbox} is not reachable by sandboxed functions: {problem} is not "
                "traversable by other users (needs o+x)"
            )

    def _harden_data_dir(self) -> None:
        """If sandbox_dir lies inside data_dir: data_dir and the directories down to sandbox_dir
        become 0711 (traversable, not listable), every other entry directly in data_dir loses its
        group/other permissions. Run at start() and again whenever a function is prepared, for
        entries created since (the console should create its files 0600 anyway)."""
        data = self.data_dir.resolve()
        real_sandbox = self.sandbox_dir.resolve()
        if data not in real_sandbox.parents:
            return
        os.chmod(data, 0o711)  # noqa: S103 - traversable (to reach sandbox_dir), not listable
        rel = real_sandbox.relative_to(data)
        walk = data
        for part in rel.parts[:-1]:  # the directories between data_dir and sandbox_dir
            walk = walk / part
            os.chmod(walk, 0o711)  # noqa: S103 - traversable, not listable
        for entry in os.scandir(data):
            if entry.name == rel.parts[0]:
                continue
            st = os.lstat(entry.path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                os.chmod(entry.path, mode & ~0o077)

    async def _prepare_function(self, spec: InstanceSpec, uid: int) -> tuple[Path, Path]:
        key = (uid, os.path.abspath(spec.code_dir))
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        lock = self._prepare_locks.setdefault(key, asyncio.Lock())
        async with lock:
            prepared = self._prepared.get(key)
            if prepared is None:
                prepared = await asyncio.to_thread(self._prepare_function_sync, Path(spec.code_dir), uid)
                self._prepared[key] = prepared
        return prepared

    def _prepare_function_sync(self, code_dir: Path, uid: int) -> tuple[Path, Path]:
        base = self.sandbox_dir / str(uid)
        home = base / "home"
        if not self.sandboxing:
            home.mkdir(parents=True, exist_ok=True)
            os.chmod(home, 0o700)
            return Path(os.path.abspath(code_dir)), home
        self._harden_data_dir()
        code_root = base / "code"
        for directory in (base, code_root):
            directory.mkdir(exist_ok=True)
            os.chown(directory, 0, 0)
            os.chmod(directory, 0o711)  # noqa: S103 - traversable, not listable
        home.mkdir(exist_ok=True)
        os.chown(home, uid, uid)
        os.chmod(home, 0o700)
        dest = code_root / code_dir.name
        if not dest.is_dir():
            if not code_dir.is_dir():
                raise FileNotFoundError(f"code directory {code_dir} does not exist")
            tmp = code_root / f".tmp-{code_dir.name}-{uuid.uuid4().hex}"
            try:
                shutil.copytree(code_dir, tmp, symlinks=True)
                _harden_tree(tmp, uid)
                os.rename(tmp, dest)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and dest.is_dir()):
                    raise
        return dest, home
