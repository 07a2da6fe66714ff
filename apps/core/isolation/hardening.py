"""The OS hardening around tenant processes, one definition for function instances
(``apps/engine/sandbox``) and pipeline steps (``apps/pipelines/step_sandbox.py``).

- **The data directory**: tenant uids must traverse it to reach their own directory (the
  engine's ``sandbox_dir``, a run's workspace) and must see nothing else of it (secret key,
  database, artifacts, mirrors): ``protect_data_dir``.
- **Files handed to a tenant**: its code, root-owned and read-only through its group
  (``harden_tree``); or its workspace, owned by it (``chown_tree``).
- **Limits**: the rlimits of a step, set in the child between fork and exec
  (``step_preexec``), and the RLIMIT_NPROC of an instance when everything shares one uid
  (``count_tasks``). A function instance's own rlimits are set by the zygote
  (``runtime/stratus_bootstrap/zygote.py``, which imports nothing of ``apps``) from the
  values the engine sends it.
- **The end of a process tree**: its process group is SIGKILLed (``kill_group``); its
  cgroup (``cgroups.py``) catches what left the group.

Plain ``os`` calls only: ``step_preexec`` runs in a forked child, where taking a lock
another thread held at fork time would hang.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import stat
from collections.abc import Iterable
from pathlib import Path

TRAVERSE_ONLY = 0o711  # other users may pass through to a path they know, not list


def protect_data_dir(data_dir: Path, reach: Path, *, keep: Iterable[Path] = ()) -> bool:
    """Let tenant uids reach ``reach`` (a directory inside ``data_dir``) and nothing else of
    ``data_dir``: ``data_dir``, every directory down to ``reach`` and ``reach`` itself become
    0711 (traversable, not listable); every other entry directly in ``data_dir`` or in a
    directory on the way loses its group/other permissions, except those leading to one of
    ``keep`` (what another kind of tenant process reaches). Symlinks are left alone.

    Returns False, changing nothing, when ``reach`` is not inside ``data_dir``. Run it again
    whenever entries may have appeared since (the console creates its files 0600 anyway)."""
    data = data_dir.resolve()
    target = reach.resolve()
    if data not in target.parents:
        return False
    kept = [path.resolve() for path in keep]
    chain = [data, *(p for p in reversed(target.parents) if data in p.parents), target]
    for directory in chain:
        os.chmod(directory, TRAVERSE_ONLY)
    for directory, inner in zip(chain, chain[1:], strict=False):
        spared = {inner.name} | {k.relative_to(directory).parts[0] for k in kept if directory in k.parents}
        for entry in os.scandir(directory):
            if entry.name in spared:
                continue
            st = os.lstat(entry.path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                os.chmod(entry.path, mode & ~0o077)
    return True


def harden_tree(root: Path, gid: int) -> None:
    """chown -R root:gid; dirs 0550, files 0440 (0550 if they were executable); symlinks as is.
    Owned by root and readable through the tenant's group: a function reads its code but
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


def chown_tree(root: Path, uid: int) -> None:
    """chown -R uid:uid (symlinks themselves, not their targets): a step's workspace is its own."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, uid)
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(dirpath, name), uid, uid)


# A step's ceilings (per process; its cgroup caps the whole tree where the host allows).
STEP_MAX_OPEN_FILES = 4096
STEP_MAX_PROCESSES = 4096


def step_preexec(memory_mb: int | None) -> None:
    """A step's limits, in the child before exec (plain os calls): the cgroup, the mounts and
    the uid are the launcher's (step_sandbox.py), which runs next, still as root."""
    os.umask(0o022)
    resource.setrlimit(resource.RLIMIT_NOFILE, (STEP_MAX_OPEN_FILES, STEP_MAX_OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb is not None:
        # RLIMIT_DATA, not RLIMIT_AS: it counts memory a process writes to (heap, anonymous
        # mappings), not address space it only reserves, which Node/V8, Go and the JVM reserve
        # by the gigabyte. Per process; the step's cgroup caps the whole tree where the
        # memory controller is available.
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    nproc = STEP_MAX_PROCESSES
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY:
        nproc = min(nproc, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, hard if hard != resource.RLIM_INFINITY else nproc))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def count_tasks(uid: int) -> int:
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


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (a tenant process runs in a session of its own); nothing when
    it is already gone. The group id cannot be reused while any member is alive."""
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)
