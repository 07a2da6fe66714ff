"""How a pipeline step is confined: the same protections as a function instance.

A step's command runs through ``runtime/stratus_bootstrap/confine.py`` (as root, then
``exec``), which puts it in its cgroup, gives it a private mount namespace (the tree
read-only except its workspace; ``/tmp`` and ``/dev/shm`` private and size-limited; ``/run``
hidden; ``/proc`` showing only its own processes), drops to the run's uid (``step_uid``:
one per run, so two runs of a project cannot touch each other's workspace or processes),
sets no-new-privileges and makes it non-dumpable. The egress firewall
(apps/core/isolation/firewall.py) keeps that uid off loopback, private and link-local
addresses and the host's own, except what the target environment's ``egress_allow`` opens;
the public internet (package registries) stays reachable.

Before its command, as root: the data directory is closed around the run's workspace
(``harden_workspace``) and the step's rlimits are set between fork and exec
(``preexec``); the step runs in a session of its own and its end SIGKILLs the group
(``kill_group``). These rules are the ones function instances follow too:
``apps/core/isolation/hardening.py``.

What the host supports is probed once per worker process; without root a step runs as the
worker's uid with only no-new-privileges and the process group (``describe()`` says so).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.errors import DomainError
from apps.core.isolation import CONFINE_SCRIPT, path_problem, probe_host
from apps.core.isolation.firewall import Firewall
from apps.core.isolation.hardening import chown_tree, protect_data_dir, step_preexec
from apps.core.isolation.hardening import kill_group as kill_group  # a step's end: its group goes

logger = logging.getLogger(__name__)

STEP_TMP_MB = 1024  # a step's private /tmp (tmpfs): builds use it; counted in the step's memory
STEP_SHM_MB = 64

# The limits of a step's processes, set in the child before exec (plain os calls).
preexec = step_preexec


def harden_workspace(workspace: Path, uid: int, *, data_dir: Path, keep: tuple[Path, ...] = ()) -> None:
    """Let ``uid`` reach its workspace and nothing else: the data directory and the
    directories down to the runs directory become 0711 (traversable, not listable); every
    other entry directly in them loses its group/other permissions (keys, database,
    mirrors), except those leading to ``keep`` (the engine's sandbox, which function uids
    reach); the workspace is chowned to the uid, 0700."""
    protect_data_dir(data_dir, workspace.parent, keep=keep)
    chown_tree(workspace, uid)
    os.chmod(workspace, 0o700)
    problem = path_problem(workspace.parent, readable=False)
    if problem is not None:
        raise DomainError(
            f"the run workspace {workspace} is not reachable by the step user (uid {uid}): {problem} is not "
            "traversable by other users (needs o+x)",
            code="workspace_unreachable",
        )


@cache
def host_support() -> dict[str, Any]:
    """What confine.py can do here (probed once per worker process), {} without root."""
    if os.geteuid() != 0:
        return {}
    found = probe_host()
    failed = {k: v for k, v in found.items() if v is not True}
    if failed or not found:
        logger.warning("pipeline steps run without private mounts: %s", failed or "the probe failed")
    return found


@cache
def firewall() -> Firewall:
    wall = Firewall(int(settings.STRATUS_SANDBOX_UID_BASE))
    if os.geteuid() == 0:
        from apps.core.isolation.egress import protected_endpoints

        if not wall.install(protected_endpoints()):
            logger.warning("pipeline steps are not kept off private addresses: %s", wall.problem)
    return wall


def confinement(*, uid: int | None, workspace: Path, cgroup_join: list[str], memory_mb: int) -> dict[str, Any]:
    """The confine.py configuration of one step."""
    support = host_support()
    namespace = support.get("namespace") is True and support.get("private") is True
    tmpfs = support.get("tmpfs") is True
    return {
        "uid": uid,
        "gid": uid,
        "cgroup_join": cgroup_join,
        "namespace": namespace,
        "readonly_root": support.get("readonly_root") is True,
        "hidepid": support.get("hidepid") is True,
        "hide_run": True,
        "tmp_mb": min(STEP_TMP_MB, memory_mb) if tmpfs else None,
        "shm_mb": STEP_SHM_MB if tmpfs else None,
        "writable": [str(workspace)],
        "cwd": str(workspace),
        "dumpable": False,
        "no_new_privs": True,
    }


def launcher(config: dict[str, Any], argv: list[str]) -> list[str]:
    """The argv that confines itself as ``config`` says, then execs ``argv``."""
    return [sys.executable, "-I", "-S", str(CONFINE_SCRIPT), json.dumps(config), "--", *argv]


def allow_egress(uid: int | None, entries: tuple[str, ...]) -> None:
    if uid is None:
        return
    wall = firewall()
    if wall.available:
        wall.allow(uid, entries)


def forget_egress(uid: int | None) -> None:
    if uid is None:
        return
    wall = firewall()
    if wall.available:
        try:
            wall.forget(uid)
        except RuntimeError:
            logger.exception("removing the egress rules of step uid %s failed", uid)


def describe() -> dict[str, str]:
    support = host_support()
    wall = firewall()
    return {
        "identity": "one uid per run" if os.geteuid() == 0 else "the worker's own uid (not root)",
        "filesystem": "private mounts" if support.get("namespace") is True else "not isolated",
        "network": wall.describe(),
    }
