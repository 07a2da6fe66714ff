"""The Spawner: what confines instances on this host (probed at start, ``Isolation``), and
each instance's uid, cgroup, confinement, environment and limits, handed to the zygote
client (``zygote.py``) with the Node argv (``node.py``) and the prepared code (``files.py``).
See the package docstring for the whole picture.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.core.isolation import RUNTIME_DIR, probe_host
from apps.core.isolation.cgroups import Cgroup, CgroupFactory
from apps.core.isolation.firewall import Firewall
from apps.core.isolation.hardening import count_tasks
from apps.core.isolation.uid_ranges import claim_installation_uids
from apps.engine.sandbox.files import SandboxFiles
from apps.engine.sandbox.instances import INSTANCE_PATH, InstanceSpec, SpawnedInstance
from apps.engine.sandbox.node import NodeLauncher
from apps.engine.sandbox.zygote import ZygoteClient

logger = logging.getLogger(__name__)

CGROUP_PARENT = "stratus-instances"
# A memory cgroup holds the runtime's own pages besides the handler's memory_mb (and the tmpfs
# of /tmp and /dev/shm); RLIMIT_AS / V8's heap limit report a handler's excess first.
CGROUP_OVERHEAD_MB = 64


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
    """Starts instances; see the package docstring for the limits and the sandbox."""

    def __init__(
        self,
        *,
        sandbox_dir: Path,
        data_dir: Path,
        uid_base: int | None = None,
        python: str = sys.executable,
        node: str = "node",
        firewall: Firewall | None = None,
    ) -> None:
        self.sandbox_dir = Path(os.path.abspath(sandbox_dir))
        self.data_dir = Path(os.path.abspath(data_dir))
        if uid_base is None:
            from django.conf import settings

            uid_base = int(settings.STRATUS_SANDBOX_UID_BASE)
        self.uid_base = uid_base
        self.sandboxing = os.geteuid() == 0
        self.isolation = Isolation()
        self.firewall = firewall
        self.files = SandboxFiles(sandbox_dir=self.sandbox_dir, data_dir=self.data_dir, sandboxing=self.sandboxing)
        self.node = NodeLauncher(node=node, sandbox_dir=self.sandbox_dir, sandboxing=self.sandboxing)
        self.zygote = ZygoteClient(python=python, check_stdlib=self.sandboxing)
        self._cgroups: CgroupFactory | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count(1)
        self._closed = False

    @property
    def python(self) -> str:
        """The interpreter of the zygote (a readable fallback when sandboxed, see zygote.py)."""
        return self.zygote.python

    @property
    def zygote_pid(self) -> int | None:
        """The running zygote's pid (for monitoring), None when there is none."""
        return self.zygote.pid

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the sandbox directories, find out what confines instances on this host, and
        start the Python zygote."""
        self._loop = asyncio.get_running_loop()
        self.node.start()
        self._closed = False
        if self.sandboxing:  # before any instance runs as one of them: are the uids ours?
            await asyncio.to_thread(claim_installation_uids)
        await asyncio.to_thread(self.files.prepare_base)
        await asyncio.to_thread(self._probe_isolation)
        await self.zygote.start()

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
        await self.zygote.close()

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
        task_root, home = await self.files.prepare_function(spec.code_dir, uid)
        argv = await self.node.argv(spec) if spec.runtime.startswith("node") else None
        if self.firewall is not None and self.firewall.available and self.firewall.pending(uid, spec.egress_allow):
            await asyncio.to_thread(self.firewall.allow, uid, spec.egress_allow)
        group = self._new_cgroup(spec, uid)
        try:
            return await self.zygote.spawn(spec, self._zygote_config(spec, uid, task_root, home, argv, group), group)
        except BaseException:
            if group is not None:
                await asyncio.to_thread(group.remove)
            raise

    async def prepare(self, spec: InstanceSpec) -> None:
        """Make the function's private code copy and home now (on deploy), so its first
        instance does not pay for them."""
        await self.files.prepare_function(spec.code_dir, self.uid_of(spec))

    async def discard(self, spec: InstanceSpec) -> None:
        """Remove the private code copy made for ``spec`` (its instances have stopped)."""
        await self.files.discard_function(spec.code_dir, self.uid_of(spec))

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

    def _confine_config(self, spec: InstanceSpec, uid: int, group: Cgroup | None, keep: list[Path]) -> dict[str, Any]:
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
            # The bootstrap turns these into Lambda's and SCF's documented variables
            # (runtime/stratus_bootstrap/loop.py read_config, runtime/node/bootstrap.js readConfig).
            STRATUS_RUNTIME=spec.runtime,
            STRATUS_PROJECT=spec.project,
            STRATUS_ENVIRONMENT=spec.environment,
            STRATUS_REGION=spec.region,
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
        return count_tasks(os.getuid()) + int(spec.max_processes)

    def _zygote_config(
        self,
        spec: InstanceSpec,
        uid: int,
        task_root: Path,
        home: Path,
        argv: list[str] | None,
        group: Cgroup | None,
    ) -> dict[str, Any]:
        python = argv is None
        return {
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
