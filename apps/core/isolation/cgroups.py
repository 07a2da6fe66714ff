"""cgroups for function instances and pipeline steps, on cgroup v1, v2 or a hybrid of both.

A group caps what one instance (or one step) and everything it starts may use together:
``memory`` (anonymous memory *and* the tmpfs pages of its private /tmp and /dev/shm) and
``pids`` (processes + threads). It also ends them together: an unprivileged process cannot
leave its cgroup, so a daemon that ``setsid``-escaped the process group still dies with it
(``cgroup.kill`` on v2, a kill loop on v1).

Where the groups live: under this process's own cgroup in each hierarchy, in
``<parent>/<name>`` (``stratus-instances``, ``stratus-steps``), so a supervisor confined by
systemd or a container keeps its children inside its own budget.

- **v1** (and the v1 half of a hybrid host, such as the CI machines here): one directory per
  controller hierarchy (``/sys/fs/cgroup/memory/...``, ``/sys/fs/cgroup/pids/...``), limits
  ``memory.limit_in_bytes`` (+ ``memory.memsw.limit_in_bytes`` where swap is accounted) and
  ``pids.max``.
- **v2**: one directory; ``memory.max``, ``memory.swap.max`` 0, ``pids.max`` when those
  controllers are delegated to our parent group, and ``cgroup.kill``. v2 forbids processes
  in a group whose controllers are handed down ("no internal processes"): when our own group
  holds processes, the controllers are enabled on ``<parent>`` (an empty child of ours) only if
  our own group already hands them down (systemd ``Delegate=yes`` and a supervisor started in
  a leaf of its unit, or a container's private cgroup namespace).

The child joins by writing its pid into each group's ``cgroup.procs`` while it is still root
(``runtime/stratus_bootstrap/confine.py``); the supervisor reads limits and OOM kills back.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

KILL_WAIT_S = 5.0
CONTROLLERS = ("memory", "pids")


@dataclass
class Hierarchies:
    """Where this process's groups are: a directory per v1 controller, and the v2 one."""

    v1: dict[str, Path] = field(default_factory=dict)  # controller -> our own group's directory
    v2: Path | None = None
    v2_controllers: set[str] = field(default_factory=set)  # enabled for children of <parent>


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _own_hierarchies() -> Hierarchies:
    found = Hierarchies()
    own: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own[parts[1]] = parts[2]
    for line in _read(Path("/proc/self/mounts")).splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mountpoint, fstype, options = fields[1], fields[2], set(fields[3].split(","))
        if fstype == "cgroup2" and "" in own:
            found.v2 = Path(mountpoint) / own[""].lstrip("/")
        elif fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options:
                    key = next((k for k in own if controller in k.split(",")), None)
                    if key is not None:
                        found.v1[controller] = Path(mountpoint) / own[key].lstrip("/")
    return found


class Cgroup:
    """One instance's or step's group: a directory in each hierarchy that has one."""

    def __init__(self, dirs: list[Path], *, memory_dir: Path | None, killable: Path | None) -> None:
        self.dirs = dirs
        self.memory_dir = memory_dir
        self.killable = killable  # the v2 directory, where cgroup.kill exists

    def __repr__(self) -> str:
        return f"<Cgroup {', '.join(str(d) for d in self.dirs)}>"

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    @property
    def join_files(self) -> list[str]:
        """Where a single-threaded process writes "0" to move itself in (confine.py). On v1
        that is ``tasks``: moving one thread skips the cgroup threadgroup lock, whose write
        side waits for an RCU grace period (10-30 ms on a busy host, on every cold start);
        ``cgroup.procs`` is the only way on v2."""
        return [str(d / ("cgroup.procs" if d == self.killable else "tasks")) for d in self.dirs]

    def pids(self) -> list[int]:
        members: set[int] = set()
        for directory in self.dirs:
            with contextlib.suppress(ValueError):
                members.update(int(p) for p in _read(directory / "cgroup.procs").split())
        return sorted(members)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer took in this group."""
        if self.memory_dir is None:
            return 0
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            for line in _read(self.memory_dir / name).splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
        return 0

    def memory_peak_bytes(self) -> int | None:
        if self.memory_dir is None:
            return None
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            text = _read(self.memory_dir / name).strip()
            if text.isdigit():
                return int(text)
        return None

    def kill(self) -> None:
        """SIGKILL every member until none is left (bounded by KILL_WAIT_S). Never raises."""
        deadline = time.monotonic() + KILL_WAIT_S
        while True:
            members = self.pids()
            if not members:
                return
            if self.killable is not None and (self.killable / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (self.killable / "cgroup.kill").write_text("1")
            for pid in members:  # v1, or processes only in a v1 group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                logger.error("cgroup %s still has members after SIGKILL: %s", self, members)
                return
            time.sleep(0.005)

    def remove(self) -> None:
        """Kill what is left, then remove every directory. Never raises."""
        self.kill()
        for directory in self.dirs:
            for _ in range(200):  # rmdir is EBUSY until the last member has been reaped
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        logger.error("could not remove cgroup %s: %s", directory, exc)
                        break
                    time.sleep(0.005)


class CgroupFactory:
    """Makes groups under ``<own group>/<parent>`` in every hierarchy we may write to."""

    def __init__(self, parent: str) -> None:
        self.parent = parent
        self.hierarchies = _own_hierarchies()
        self.limits: set[str] = set()  # controllers whose limits our groups get
        self.v1_dirs: dict[str, Path] = {}
        self.v2_dir: Path | None = None
        self.problem = ""
        self._setup()

    def _setup(self) -> None:
        problems = []
        for controller, own in self.hierarchies.v1.items():
            base = own / self.parent
            try:
                base.mkdir(exist_ok=True)
            except OSError as exc:
                problems.append(f"v1 {controller}: {exc.strerror}")
                continue
            self.v1_dirs[controller] = base
            self.limits.add(controller)
        own2 = self.hierarchies.v2
        # A hybrid host whose v1 hierarchies give both limits: v2 adds nothing but a slower way
        # in (see Cgroup.join_files); v1 kills by a loop over the members.
        if own2 is not None and self.limits != set(CONTROLLERS):
            base = own2 / self.parent
            try:
                base.mkdir(exist_ok=True)
                self.v2_dir = base
            except OSError as exc:
                problems.append(f"v2: {exc.strerror}")
            if self.v2_dir is not None:
                wanted = [c for c in CONTROLLERS if c not in self.limits]
                available = set(_read(base / "cgroup.controllers").split())
                missing = [c for c in wanted if c not in available]
                if missing:
                    # Hand them down from our own group if it may (it holds no processes
                    # of its own, or it is the root group).
                    with contextlib.suppress(OSError):
                        (own2 / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
                    available = set(_read(base / "cgroup.controllers").split())
                usable = [c for c in wanted if c in available]
                if usable:
                    try:
                        (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in usable))
                        self.limits.update(usable)
                    except OSError as exc:
                        problems.append(f"v2 controllers {usable}: {exc.strerror}")
                missing = [c for c in wanted if c not in self.limits]
                if missing:
                    problems.append(f"v2: {', '.join(missing)} not delegated to {own2}")
        elif not self.v1_dirs:
            problems.append("no cgroup hierarchy is mounted")
        self.problem = "; ".join(problems)

    @property
    def available(self) -> bool:
        return bool(self.v1_dirs) or self.v2_dir is not None

    def describe(self) -> str:
        if not self.available:
            return f"none ({self.problem})"
        kinds = []
        if self.v1_dirs:
            kinds.append("v1")
        if self.v2_dir is not None:
            kinds.append("v2")
        limits = ", ".join(sorted(self.limits)) or "no limits"
        text = f"{'+'.join(kinds)}: {limits}"
        return text + (f" ({self.problem})" if self.problem and self.limits != set(CONTROLLERS) else "")

    def create(self, name: str, *, memory_bytes: int | None, pids_max: int | None) -> Cgroup | None:
        """A fresh, empty group with these limits; None where none can be made here. A
        leftover of the same name (a crashed supervisor's) is killed and replaced."""
        if not self.available:
            return None
        dirs: list[Path] = []
        memory_dir: Path | None = None
        if self.v2_dir is not None:
            dirs.append(self.v2_dir / name)
            if "memory" in self.limits and "memory" not in self.v1_dirs:
                memory_dir = self.v2_dir / name
        for controller, base in self.v1_dirs.items():
            dirs.append(base / name)
            if controller == "memory":
                memory_dir = base / name
        group = Cgroup(dirs, memory_dir=memory_dir, killable=self.v2_dir / name if self.v2_dir else None)
        try:
            for directory in dirs:
                try:
                    directory.mkdir()
                except FileExistsError:
                    Cgroup([directory], memory_dir=None, killable=None).remove()
                    directory.mkdir()
            self._limit(group, memory_bytes, pids_max)
        except OSError as exc:
            logger.warning("could not make cgroup %s: %s", name, exc)
            group.remove()
            return None
        return group

    def _limit(self, group: Cgroup, memory_bytes: int | None, pids_max: int | None) -> None:
        memory_v1 = self.v1_dirs.get("memory")
        pids_v1 = self.v1_dirs.get("pids")
        name = group.dirs[0].name
        if memory_bytes is not None and "memory" in self.limits:
            if memory_v1 is not None:
                directory = memory_v1 / name
                (directory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):  # only where swap is accounted
                    (directory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            elif self.v2_dir is not None:
                directory = self.v2_dir / name
                (directory / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (directory / "memory.swap.max").write_text("0")
        if pids_max is not None and "pids" in self.limits:
            if pids_v1 is not None:
                (pids_v1 / name / "pids.max").write_text(str(pids_max))
            elif self.v2_dir is not None:
                (self.v2_dir / name / "pids.max").write_text(str(pids_max))

    def existing(self, prefix: str) -> list[Cgroup]:
        """Groups whose name starts with ``prefix`` (leftovers to kill), one per name."""
        names: set[str] = set()
        bases = [*self.v1_dirs.values(), *([self.v2_dir] if self.v2_dir is not None else [])]
        for base in bases:
            with contextlib.suppress(OSError):
                names.update(e.name for e in os.scandir(base) if e.is_dir() and e.name.startswith(prefix))
        groups = []
        for name in sorted(names):
            dirs = [base / name for base in bases if (base / name).is_dir()]
            if not dirs:
                continue  # removed since the listing (another supervisor on this host cleaned it up)
            memory = self.v1_dirs.get("memory")
            groups.append(
                Cgroup(
                    dirs,
                    memory_dir=(memory / name) if memory is not None else None,
                    killable=(self.v2_dir / name) if self.v2_dir is not None else None,
                )
            )
        return groups
