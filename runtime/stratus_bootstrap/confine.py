"""Confine the current process before it runs tenant code (stdlib only: it runs in the zygote's
forked children and, as ``python -I -S confine.py <config> -- <argv>``, before a pipeline step).

Called while still root, in this order:

1. **cgroups**: move ourselves into each group the supervisor prepared (memory, pids; one per
   v1 hierarchy, or the v2 group), through ``Cgroup.join_files``.
   Children are born there; an unprivileged process cannot leave.
2. **mount and IPC namespaces** (``unshare(CLONE_NEWNS | CLONE_NEWIPC)``, propagation private,
   so nothing leaks back; System V IPC of others out of reach):
   - the whole tree read-only (``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)``), except the
     ``writable`` paths (a step's workspace), which get a writable bind mount of their own;
   - ``/proc`` mounted afresh with ``hidepid=invisible``: only our own uid's processes exist;
   - ``/tmp`` and ``/dev/shm`` private tmpfs with a size limit (ENOSPC past it), owned by the
     target uid, gone when the last process of the namespace exits;
   - ``/run`` (and with it ``/var/run``) an empty read-only tmpfs: no Unix socket of the host
     (PostgreSQL's, MariaDB's, D-Bus) can be reached by path.
   With ``"no_network": true`` also a **network namespace** of its own: only a loopback that is
   down, so no address of any kind (the host's, the console's, the internet) can be reached;
   for processes that need no network at all (the WebIDE's language servers).
3. **identity**: no supplementary groups, then gid, then uid (irreversible).
4. ``PR_SET_NO_NEW_PRIVS``: no setuid/setcap binary gives privileges back; and
   ``PR_SET_DUMPABLE 0``: no other process of the same uid can read our memory or environ or
   ptrace us (``/proc/<pid>/*`` becomes root's). An ``execve`` resets dumpable unless the
   binary is unreadable to us, which is why Node is run from an execute-only copy.

Every step that fails raises ``ConfinementError`` naming it; the caller never runs tenant code
half-confined. ``probe()`` tells what this host supports (run once by the supervisor, in a
throwaway child).

Config (a dict, JSON on the command line for the launcher)::

    {"uid": 200123, "gid": 200123,          # null: keep ours
     "cgroup_join": ["/sys/fs/cgroup/memory/.../tasks", ...],  # Cgroup.join_files
     "namespace": true,                      # the mount namespace and all of step 2
     "readonly_root": true, "hidepid": true, "hide_run": true,
     "tmp_mb": 128, "shm_mb": 64, "writable": ["/path/to/workspace"],
     "keep": ["/path/to/code"],             # stays visible even under /tmp, /dev/shm or /run
     "dumpable": false, "no_new_privs": true,
     "no_network": false}                   # true: a network namespace of its own (no network)
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
# mount_setattr(2) (Linux 5.12): the same number on every architecture that has it.
SYS_MOUNT_SETATTR = 442


class ConfinementError(Exception):
    pass


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


_libc: Any = None


def load_libc() -> Any:
    global _libc
    if _libc is None:
        # The interpreter's own symbols include libc's (no ldconfig lookup, which would run a
        # subprocess).
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


_c = load_libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ConfinementError(f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None, what: str) -> None:
    _check(
        _c().mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        what,
    )


def _set_readonly(path: str, *, recursive: bool, readonly: bool) -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = _c().syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), ctypes.c_uint(flags), ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(result, f"mount_setattr {'read-only' if readonly else 'writable'} {path}")


def _tmpfs(target: str, size_mb: int, uid: int | None, gid: int | None, mode: str) -> None:
    options = [f"size={int(size_mb)}m", f"mode={mode}", "nr_inodes=65536"]
    if uid is not None:
        options += [f"uid={int(uid)}", f"gid={int(gid if gid is not None else uid)}"]
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, ",".join(options), f"tmpfs on {target}")


def join_cgroups(join_files: list[str]) -> None:
    """Move this (single-threaded) process into each group: "0" names the writer itself; into
    a v1 ``tasks`` file that moves just this thread, without the threadgroup lock."""
    for path in join_files:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as exc:
            raise ConfinementError(f"joining cgroup {os.path.dirname(path)}: {exc.strerror}") from None


# Replaced by private mounts in the namespace (never used as shared scratch space here).
TMP, SHM = "/tmp", "/dev/shm"  # noqa: S108
_COVERED = (TMP, SHM, "/run")


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _make_path(path: str) -> None:
    """mkdir -p with every new directory 0711 (traversable, not listable), whatever the umask."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            os.mkdir(current)
            os.chmod(current, 0o711)  # noqa: S103 - traversable, not listable


def isolate_filesystem(config: dict[str, Any]) -> None:
    uid, gid = config.get("uid"), config.get("gid")
    # A mount namespace, and an IPC one: System V shared memory, semaphores and message
    # queues of other instances and of the host are out of reach too.
    _check(_c().unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(CLONE_NEWNS | CLONE_NEWIPC)")
    if config.get("no_network"):
        _check(_c().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None, "making / private")
    if config.get("readonly_root", True):
        _set_readonly("/", recursive=True, readonly=True)
    writable = {os.path.realpath(p) for p in config.get("writable") or []}
    wanted = [os.path.realpath(p) for p in config.get("keep") or []] + sorted(writable)
    # Paths the process needs (its code, the runtime, a step's workspace) that lie under a
    # directory the private mounts cover (a data directory in /tmp): held open (in this
    # namespace, so they can be bound again) and bound back once the cover is in place.
    covered: list[tuple[str, int]] = []
    for path in dict.fromkeys(wanted):
        if any(_under(path, c) for c in _COVERED) and os.path.exists(path):
            covered.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    if config.get("hide_run", True) and os.path.isdir("/run"):
        _mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=755", "hide /run")
    tmp_mb = config.get("tmp_mb")
    if tmp_mb:
        _tmpfs(TMP, int(tmp_mb), uid, gid, "700" if uid is not None else "1777")
    shm_mb = config.get("shm_mb")
    if shm_mb and os.path.isdir(SHM):
        _tmpfs(SHM, int(shm_mb), uid, gid, "700" if uid is not None else "1777")
    restored = set()
    for path, fd in covered:
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        _make_path(path if is_dir else os.path.dirname(path))
        if not is_dir and not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o400))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None, f"keep {path}")
        os.close(fd)
        restored.add(path)
    for path in sorted(writable):
        if path not in restored:  # a mount of its own, which can then be made writable alone
            _mount(path, path, None, MS_BIND | MS_REC, None, f"bind {path}")
        if config.get("readonly_root", True):
            _set_readonly(path, recursive=False, readonly=False)
    if config.get("hide_run", True) and os.path.isdir("/run"):
        _mount("none", "/run", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "/run read-only")
    if config.get("hidepid", True):
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible", "/proc with hidepid")


def drop_identity(uid: int | None, gid: int | None) -> None:
    if uid is None:
        return
    os.setgroups([])
    os.setgid(int(gid if gid is not None else uid))
    os.setuid(int(uid))
    if os.getuid() != uid or os.geteuid() != uid:
        raise ConfinementError("the uid did not change")


def confine(config: dict[str, Any]) -> None:
    """Steps 1-4 of the module docstring, as ``config`` asks; raises ConfinementError."""
    join_cgroups(list(config.get("cgroup_join") or []))
    if config.get("namespace"):
        isolate_filesystem(config)
    drop_identity(config.get("uid"), config.get("gid"))
    if config.get("no_new_privs", True):
        _check(_c().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    if not config.get("dumpable", False):
        _check(_c().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")


def probe() -> dict[str, Any]:
    """What this host lets us do, tried in this (throwaway) process: each key is True or the
    reason it failed."""
    found: dict[str, Any] = {}

    def attempt(name: str, action: Any) -> bool:
        try:
            action()
        except (ConfinementError, OSError) as exc:
            found[name] = str(exc)
            return False
        found[name] = True
        return True

    if not attempt(
        "namespace", lambda: _check(_c().unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(CLONE_NEWNS | CLONE_NEWIPC)")
    ):
        return found
    if not attempt("private", lambda: _mount("none", "/", None, MS_REC | MS_PRIVATE, None, "making / private")):
        return found
    attempt("tmpfs", lambda: _tmpfs(TMP, 1, None, None, "1777"))
    attempt(
        "hidepid",
        lambda: _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible", "proc"),
    )
    attempt("readonly_root", lambda: _set_readonly("/", recursive=True, readonly=True))
    return found


def main(argv: list[str]) -> None:
    """``confine.py <config json> -- <program> [args...]``: confine, then exec the program
    (with the environment we were given)."""
    if len(argv) >= 2 and argv[1] == "--probe":
        print(json.dumps(probe()), flush=True)
        return
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: confine.py <config json> -- <program> [args...]\n")
        os._exit(64)
    try:
        config = json.loads(argv[1])
        workdir = config.get("cwd")
        confine(config)
        if workdir:
            os.chdir(workdir)
    except (ConfinementError, OSError, ValueError) as exc:
        sys.stderr.write(f"stratus: could not confine the process: {exc}\n")
        sys.stderr.flush()
        os._exit(70)
    try:
        os.execvp(argv[3], argv[3:])  # noqa: S606 - the step's own command, by design
    except OSError as exc:
        sys.stderr.write(f"stratus: could not start {argv[3]}: {exc.strerror}\n")
        sys.stderr.flush()
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv)
