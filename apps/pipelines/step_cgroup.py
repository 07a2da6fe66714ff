"""A cgroup per pipeline step, so the end of a step ends everything it started.

A step runs in its own process group, but one ``setsid`` (a daemon, ``nohup setsid …``, a
double fork) leaves a process group, and such a process would outlive the step, the run and
its cancel. A cgroup cannot be left by an unprivileged process: the step's shell is moved
into a fresh cgroup before it drops to the step uid, all it starts is born there, and
``cgroup.kill`` (Linux 5.14+) SIGKILLs every member at once, including any forked during the
kill. Without ``cgroup.kill`` the members are killed until none are left.

Where: the cgroup v2 hierarchy (the ``cgroup2`` mount, ``/sys/fs/cgroup`` on a v2 host or
``/sys/fs/cgroup/unified`` on a hybrid one), under this process's own cgroup, in
``stratus-steps/run-<run>-<step>``. When the ``memory`` or ``pids`` controllers are enabled
for it, the step's whole tree also gets ``memory.max``/``pids.max``. Creating it needs write
access there (root, or a delegated cgroup); where that fails, steps keep the process group
alone and the first failure is logged once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PARENT = "stratus-steps"
KILL_WAIT_S = 5.0
_warned = False


def _cgroup2_root() -> Path | None:
    """This process's own cgroup in the v2 hierarchy, or None without one."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mount = next((line.split()[1] for line in mounts if line.split()[2:3] == ["cgroup2"]), None)
    path = next((line.split(":", 2)[2] for line in own if line.startswith("0::")), None)
    if mount is None or path is None:
        return None
    return Path(mount) / path.lstrip("/")


class StepCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str, *, memory_mb: int | None = None, max_pids: int | None = None) -> StepCgroup | None:
        """A new, empty cgroup for one step; None where cgroups cannot be made here."""
        global _warned
        root = _cgroup2_root()
        if root is None:
            return None
        path = root / PARENT / name
        try:
            path.parent.mkdir(exist_ok=True)
            with contextlib.suppress(FileExistsError):  # a leftover of a crashed worker
                cls(path).kill_and_remove()
            path.mkdir()
        except OSError as exc:
            if not _warned:
                _warned = True
                logger.warning("pipeline steps run without a cgroup (%s): only their process group is killed", exc)
            return None
        group = cls(path)
        controllers = set((path / "cgroup.controllers").read_text().split())
        if memory_mb is not None and "memory" in controllers:
            group._write("memory.max", str(memory_mb * 1024 * 1024))
            group._write("memory.swap.max", "0")
        if max_pids is not None and "pids" in controllers:
            group._write("pids.max", str(max_pids))
        return group

    def _write(self, name: str, value: str) -> None:
        with contextlib.suppress(OSError):  # a controller file this kernel does not have
            (self.path / name).write_text(value)

    def enter_fd(self) -> int:
        """An fd on cgroup.procs, opened in the parent: the child (preexec, before dropping
        its uid) writes its pid there with os.write alone."""
        return os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def kill_and_remove(self) -> None:
        """SIGKILL every member, wait until none is left, remove the cgroup. Never raises."""
        if not self.path.exists():
            return
        deadline = time.monotonic() + KILL_WAIT_S
        kill_file = self.path / "cgroup.kill"
        while True:
            members = self.pids()
            if not members:
                break
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            else:
                for pid in members:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                logger.error("cgroup %s still has members after SIGKILL: %s", self.path, members)
                return
            time.sleep(0.01)
        for _ in range(100):  # rmdir fails with EBUSY until the last member is reaped
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    logger.error("could not remove cgroup %s: %s", self.path, exc)
                    return
                time.sleep(0.01)


def available() -> bool:
    """Whether steps get cgroups on this host (a probe cgroup is made and removed)."""
    group = StepCgroup.create(f"probe-{os.getpid()}")
    if group is None:
        return False
    group.kill_and_remove()
    return True


def kill_run(run_id: int) -> int:
    """Kill what any step of ``run_id`` left on this host (the reaper calls it for runs whose
    worker vanished); returns how many step cgroups were removed."""
    root = _cgroup2_root()
    parent = root / PARENT if root is not None else None
    if parent is None or not parent.is_dir():
        return 0
    removed = 0
    for entry in parent.glob(f"run-{run_id}-*"):
        StepCgroup(entry).kill_and_remove()
        removed += 1
    return removed
