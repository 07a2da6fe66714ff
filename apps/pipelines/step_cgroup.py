"""A cgroup per pipeline step, so the end of a step ends everything it started.

A step runs in its own process group, but one ``setsid`` (a daemon, ``nohup setsid …``, a
double fork) leaves a process group, and such a process would outlive the step, the run and
its cancel. A cgroup cannot be left by an unprivileged process: the step's launcher joins a
fresh group before it drops to the step uid (runtime/stratus_bootstrap/confine.py), all it
starts is born there, and killing the group (``cgroup.kill`` on v2, a kill loop on v1) ends
every member, including any forked during the kill. Where the memory and pids controllers
are available (v1 or v2, apps/core/isolation/cgroups.py), the step's whole tree also gets
its ``memory_mb`` and ``STEP_MAX_PIDS`` as limits.

Groups are named ``run-<run>-<step>`` under ``stratus-steps`` in this worker's own cgroup.
Where none can be made (not root, no delegation), steps keep the process group alone and the
first failure is logged once.
"""

from __future__ import annotations

import logging
import os
from functools import cache

from apps.core.isolation.cgroups import Cgroup, CgroupFactory

logger = logging.getLogger(__name__)

PARENT = "stratus-steps"
_warned = False


@cache
def _factory() -> CgroupFactory:
    return CgroupFactory(PARENT)


class StepCgroup:
    def __init__(self, group: Cgroup) -> None:
        self.group = group

    @classmethod
    def create(cls, name: str, *, memory_mb: int | None = None, max_pids: int | None = None) -> StepCgroup | None:
        """A new, empty group for one step (a leftover of the same name is killed first);
        None where cgroups cannot be made here."""
        global _warned
        factory = _factory()
        group = factory.create(
            name, memory_bytes=memory_mb * 1024 * 1024 if memory_mb is not None else None, pids_max=max_pids
        )
        if group is None:
            if not _warned:
                _warned = True
                logger.warning(
                    "pipeline steps run without a cgroup (%s): only their process group is killed",
                    factory.problem or "cgroups are not available",
                )
            return None
        return cls(group)

    @property
    def procs_files(self) -> list[str]:
        return self.group.procs_files

    def enter_fd(self) -> int:
        """An fd on the first group's cgroup.procs (a process that writes its pid there joins)."""
        return os.open(self.group.procs_files[0], os.O_WRONLY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        return self.group.pids()

    def oom_kills(self) -> int:
        return self.group.oom_kills()

    def kill_and_remove(self) -> None:
        """SIGKILL every member, wait until none is left, remove the group. Never raises."""
        self.group.remove()


def available() -> bool:
    """Whether steps get cgroups on this host (a probe group is made and removed)."""
    group = StepCgroup.create(f"probe-{os.getpid()}")
    if group is None:
        return False
    group.kill_and_remove()
    return True


def kill_run(run_id: int) -> int:
    """Kill what any step of ``run_id`` left on this host (the reaper calls it for runs whose
    worker vanished); returns how many step groups were removed."""
    groups = _factory().existing(f"run-{run_id}-")
    for group in groups:
        group.remove()
    return len(groups)
