"""Filesystem preparation of function instances: the sandbox directory and each function's
private code copy and home.

The code is a private copy, ``sandbox_dir/<uid>/code/<basename of code_dir>/`` (copied once,
atomically, root-owned and readable through the uid's group: dirs 0550, files 0440 or 0550);
``sandbox_dir/<uid>`` and ``sandbox_dir`` are 0711 root. If ``sandbox_dir`` lies inside
``data_dir``, ``data_dir`` becomes 0711 and every other entry directly in it loses its
group/other permissions (secret key, database, artifacts): ``protect_data_dir`` of
``apps/core/isolation/hardening.py``, the rule pipeline steps follow too. Without root the
code is used in place and only the home (0700) is made.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import uuid
from pathlib import Path

from apps.core.isolation import path_problem
from apps.core.isolation.hardening import harden_tree, protect_data_dir


class SandboxFiles:
    """``sandbox_dir`` and what lies in it; ``sandboxing``: the engine runs as root."""

    def __init__(self, *, sandbox_dir: Path, data_dir: Path, sandboxing: bool) -> None:
        self.sandbox_dir = sandbox_dir
        self.data_dir = data_dir
        self.sandboxing = sandboxing
        self._prepared: dict[tuple[int, str], tuple[Path, Path]] = {}
        self._prepare_locks: dict[tuple[int, str], asyncio.Lock] = {}

    def prepare_base(self) -> None:
        sandbox = self.sandbox_dir
        sandbox.mkdir(parents=True, exist_ok=True)
        if not self.sandboxing:
            return
        os.chown(sandbox, 0, 0)
        os.chmod(sandbox, 0o711)  # noqa: S103 - traversable by the function uids, not listable
        self.harden_data_dir()
        real_sandbox = sandbox.resolve()
        problem = path_problem(real_sandbox, readable=False)
        if problem is not None:
            raise RuntimeError(
                f"sandbox_dir {real_sandbox} is not reachable by sandboxed functions: {problem} is not "
                "traversable by other users (needs o+x)"
            )

    def harden_data_dir(self) -> None:
        """If sandbox_dir lies inside data_dir: see ``protect_data_dir``. Run at start() and
        again whenever a function is prepared, for entries created since."""
        protect_data_dir(self.data_dir, self.sandbox_dir)

    async def prepare_function(self, code_dir: Path, uid: int) -> tuple[Path, Path]:
        """(the code directory the instance runs, its home), made once per (uid, code_dir)."""
        key = (uid, os.path.abspath(code_dir))
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        lock = self._prepare_locks.setdefault(key, asyncio.Lock())
        async with lock:
            prepared = self._prepared.get(key)
            if prepared is None:
                prepared = await asyncio.to_thread(self._prepare_function_sync, Path(code_dir), uid)
                self._prepared[key] = prepared
        return prepared

    async def discard_function(self, code_dir: Path, uid: int) -> None:
        """Forget ``code_dir``'s private copy for ``uid`` and remove it (a draft's code,
        superseded by a newer draft: versions' copies stay, other bindings share them)."""
        key = (uid, os.path.abspath(code_dir))
        self._prepared.pop(key, None)
        self._prepare_locks.pop(key, None)
        if self.sandboxing:
            dest = self.sandbox_dir / str(uid) / "code" / Path(code_dir).name
            await asyncio.to_thread(shutil.rmtree, dest, True)

    def _prepare_function_sync(self, code_dir: Path, uid: int) -> tuple[Path, Path]:
        base = self.sandbox_dir / str(uid)
        home = base / "home"
        if not self.sandboxing:
            home.mkdir(parents=True, exist_ok=True)
            os.chmod(home, 0o700)
            return Path(os.path.abspath(code_dir)), home
        self.harden_data_dir()
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
                harden_tree(tmp, uid)
                os.rename(tmp, dest)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and dest.is_dir()):
                    raise
        return dest, home
