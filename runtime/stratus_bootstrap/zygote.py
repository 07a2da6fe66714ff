"""A pre-forked "zygote": a long-lived process that has already imported the bootstrap and forks
one child per function instance, so an instance pays no interpreter start-up or import cost.

The supervisor (``apps/engine/sandbox/zygote.py``) starts it as::

    python -I -S -c "import sys; sys.path.insert(0, '<repo>/runtime'); \
        from stratus_bootstrap.zygote import main; main()"

with ``STRATUS_ZYGOTE_FD=<n>`` naming its end of a ``socketpair(AF_UNIX, SOCK_SEQPACKET)``
(nothing else of the console's environment). ``-I -S``: the console's site-packages are not
importable by functions. Every message on that socket is one JSON object (one datagram, no
length prefix: SEQPACKET keeps the boundaries and carries the fds).

supervisor -> zygote
  ``{"type": "spawn", "seq": n, "config": {...}}`` with two fds attached (SCM_RIGHTS): the
  instance's end of its control socketpair and the write end of a pipe that becomes the
  instance's real stdout/stderr. ``config`` keys: ``env`` (the complete environment of the
  instance, including the ``STRATUS_*`` variables but not ``STRATUS_CONTROL_FD``), ``cwd``,
  ``confine`` (``stratus_bootstrap.confine``: cgroups, mount namespace, uid/gid, dumpable),
  ``memory_mb`` (null: no RLIMIT_AS), ``nofile``, ``nproc``, and ``exec`` (an argv: run that
  program, e.g. Node, instead of the Python bootstrap, once confined).

zygote -> supervisor
  ``{"type": "hello", "pid": .., "version": "3.11.7", "stdlib": "/usr/lib/python3.11",
  "prefix": ..}`` once, after the pre-imports.
  ``{"type": "spawned", "seq": n, "pid": ..}`` or ``{"type": "spawn_error", "seq": n, "error": str}``.
  ``{"type": "exited", "pid": .., "status": <raw wait status>}`` when a child has been reaped.

End of file on the socket: the zygote exits (its children keep running; each one exits when
its own control channel closes).

The zygote never starts a thread: the log pumps (``LogCapture``) start in the forked child.
Both runtimes are started here, so every instance is confined by the same code in a
single-threaded parent (no ``preexec_fn`` in the threaded console).
"""

from __future__ import annotations

# Pre-imports: everything the bootstrap needs, so that a forked child pays nothing for them.
import asyncio
import asyncio.base_events
import asyncio.selector_events
import asyncio.unix_events
import base64
import collections
import contextlib
import dataclasses
import errno
import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import io
import json
import os
import resource
import selectors
import signal
import site
import socket
import struct
import sys
import threading
import traceback
import typing
import urllib.parse
import uuid
from typing import Any

import stratus_bootstrap.confine
import stratus_bootstrap.context
import stratus_bootstrap.httpapp
import stratus_bootstrap.logs
import stratus_bootstrap.protocol
from stratus_bootstrap import loop as _loop

# -S skips site.main() (no site-packages), which also leaves out the exit()/quit() builtins that
# user code may call; add them without touching sys.path.
site.setquit()

_PRELOADED = (
    asyncio,
    base64,
    collections,
    contextlib,
    dataclasses,
    errno,
    functools,
    importlib,
    inspect,
    io,
    struct,
    threading,
    typing,
    urllib.parse,
    uuid,
    stratus_bootstrap.confine,
    stratus_bootstrap.context,
    stratus_bootstrap.httpapp,
    stratus_bootstrap.logs,
    stratus_bootstrap.protocol,
)

MAX_MESSAGE = 1 << 20
_real_stderr = 2  # in a child: a private dup of the instance's real stderr (see _child)
# Address space granted above the memory limit: the interpreter already mapped at fork time
# (measured in the child), plus the stacks of the two log-pump threads (8 MiB each by default)
# and some slack for the allocator.
AS_SLACK_MB = 24


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 64 * 1024 * 1024


def _thread_stack_bytes() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 8 * 1024 * 1024
    return min(soft, 64 * 1024 * 1024)


def _child(config: dict[str, Any], ctl_fd: int, out_fd: int) -> int:
    """Runs in the forked child: isolate, apply limits, drop privileges, serve. Never returns
    into the zygote's loop (the caller ``os._exit``s with the result)."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    # fds: 0 stays /dev/null, 1 and 2 become the instance's real stdout/stderr pipe, the
    # control socket is kept; everything else the zygote had open is closed.
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    if out_fd > 2:
        os.close(out_fd)
    os.closerange(3, ctl_fd)
    os.closerange(ctl_fd + 1, 1 << 16)
    global _real_stderr
    _real_stderr = os.dup(2)  # fd 2 becomes the log capture; crashes are reported here instead
    os.set_inheritable(_real_stderr, False)

    # Limits, set while still privileged so the hard limits can be whatever was asked.
    memory_mb = config.get("memory_mb") if not config.get("exec") else None
    if memory_mb:
        limit = _vm_size_bytes() + 2 * _thread_stack_bytes() + (int(memory_mb) + AS_SLACK_MB) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    nofile = int(config.get("nofile") or 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    nproc = config.get("nproc")
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    # cgroups, private mounts, the uid, no new privileges, not dumpable: any failure ends
    # the child here (reported on its real stderr), before a line of tenant code runs.
    stratus_bootstrap.confine.confine(config.get("confine") or {})
    os.umask(0o077)

    env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
    env["STRATUS_CONTROL_FD"] = str(ctl_fd)
    argv = config.get("exec")
    if argv:  # another runtime (Node): it inherits the control socket and stdout/stderr
        os.set_inheritable(ctl_fd, True)
        os.chdir(config.get("cwd") or "/")
        os.execve(argv[0], [str(a) for a in argv], env)  # noqa: S606 - the runtime, fixed argv
    cfg = _loop.read_config(env)  # removes STRATUS_*, sets AWS_LAMBDA_*
    os.environ.clear()
    os.environ.update(env)
    cwd = config.get("cwd") or cfg.task_root
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    sys.argv = [""]
    sys.dont_write_bytecode = True  # never write __pycache__ into a function's code
    return _loop.run(cfg, stratus_bootstrap.protocol.Channel(ctl_fd, ctl_fd))


def _spawn(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    seq = message.get("seq")
    if message.get("type") != "spawn" or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        _send(sock, {"type": "spawn_error", "seq": seq, "error": "expected a spawn message with two fds"})
        return
    ctl_fd, out_fd = fds
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(ctl_fd)
        os.close(out_fd)
        _send(sock, {"type": "spawn_error", "seq": seq, "error": f"fork failed: {exc}"})
        return
    if pid == 0:  # the child
        code = 70
        try:
            sock.close()
            code = _child(message.get("config") or {}, ctl_fd, out_fd)
        except SystemExit as exc:  # sys.exit() in user code: exit as a standalone interpreter would
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                with contextlib.suppress(BaseException):
                    os.write(_real_stderr, f"{exc.code}\n".encode("utf-8", "replace"))
        except BaseException:  # noqa: BLE001 - report anything, then exit without unwinding into the zygote
            with contextlib.suppress(BaseException):
                fatal = "stratus_bootstrap: fatal error\n" + traceback.format_exc()
                os.write(_real_stderr, fatal.encode("utf-8", "replace"))
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(BaseException):
                    stream.flush()
            os._exit(code)
    os.close(ctl_fd)
    os.close(out_fd)
    _send(sock, {"type": "spawned", "seq": seq, "pid": pid})


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"type": "exited", "pid": pid, "status": status})


def main() -> None:
    stratus_bootstrap.confine.load_libc()  # dlopen once here, not in every child
    fd = int(os.environ.pop("STRATUS_ZYGOTE_FD"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd)
    sock.set_inheritable(False)
    os.chdir("/")

    wake_r, wake_w = os.pipe()
    for end in (wake_r, wake_w):
        os.set_blocking(end, False)
        os.set_inheritable(end, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    _send(
        sock,
        {
            "type": "hello",
            "pid": os.getpid(),
            "version": ".".join(str(part) for part in sys.version_info[:3]),
            "stdlib": os.path.dirname(os.__file__),
            "prefix": sys.base_prefix,
        },
    )
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj == wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(wake_r, 4096):
                            pass
                    _reap(sock)
                    continue
                try:
                    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data and not fds:
                    return  # the supervisor closed its end
                try:
                    message = json.loads(data.decode("utf-8"))
                    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                        raise ValueError("message truncated")
                except ValueError as exc:
                    for extra in fds:
                        os.close(extra)
                    _send(sock, {"type": "spawn_error", "seq": None, "error": f"bad message: {exc}"})
                    continue
                _spawn(sock, message, fds)
            _reap(sock)
    finally:
        sel.close()
        sock.close()


if __name__ == "__main__":
    main()
