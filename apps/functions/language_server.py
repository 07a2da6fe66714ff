"""Python language servers for the WebIDE: one jedi-language-server process per editing
session, confined like a pipeline step and cut off from every network.

A session (``LanguageServerSession``) belongs to one websocket (apps/functions/consumers.py):

- **its files**: a snapshot of the draft written to ``<sandbox dir>/lsp/<session>/``, owned
  by the session's own uid (0700), without compiled modules (``.so``, ``.pyd``, ``.dylib``:
  the one kind of file jedi would load and run rather than read). Open files travel in the
  protocol itself (didOpen/didChange); a file saved with its text (didSave) is written to
  the snapshot so imports of it see the new version.
- **its process**: ``confine.py`` (the pipeline steps' launcher) with a mount namespace (the
  tree read-only but the snapshot, private /tmp), a network namespace of its own (no
  network at all), a uid of its own (``STRATUS_LSP_UID_BASE`` + a random number: it can read
  nothing of another session, function or step), no new privileges, not dumpable; rlimits
  (memory, CPU seconds, open files) set before exec. Without root it runs as the console's
  user with the rlimits only, as pipeline steps and functions do there.
- **its lifetime**: the websocket's, and at most ``STRATUS_LSP_IDLE_S`` without a message
  from the editor; ``STRATUS_LSP_MAX_SESSIONS`` per web process and
  ``STRATUS_LSP_MAX_PER_USER`` per user, past which a new session is refused (and says why).

The protocol is relayed as is, except document URIs: the editor names files ``draft:/<path>``,
the server sees ``file://<snapshot>/<path>``, and ``initialize`` gets the console's options
(the interpreter functions run with, diagnostics off: the editor's markers come from the
draft check, code_checks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import shutil
import signal
import sys
import sysconfig
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.isolation import CONFINE_SCRIPT, RUNTIME_DIR, path_problem, probe_host
from apps.core.isolation.hardening import chown_tree, kill_group, protect_data_dir, step_preexec
from apps.core.isolation.uid_ranges import UidRangeConflict, claim_installation_uids
from apps.functions.models import DraftFile, Function

logger = logging.getLogger(__name__)

LSP_MEMORY_MB = 768
LSP_CPU_SECONDS = 1800  # of CPU time in one session's server: far beyond editing, short of mining
LSP_TMP_MB = 128
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
DRAFT_PREFIX = "draft:/"


class SessionRefused(Exception):
    """No session for this editor now: the message says why (a limit, a host problem)."""


@dataclass
class _Registry:
    by_user: dict[int, set[str]] = field(default_factory=dict)
    live: dict[str, LanguageServerSession] = field(default_factory=dict)  # by key, for /readyz and tests

    @property
    def count(self) -> int:
        return len(self.live)


_sessions = _Registry()


def live_sessions() -> list[LanguageServerSession]:
    return list(_sessions.live.values())


@cache
def host_support() -> dict[str, Any]:
    """What confine.py can do here, probed once per process."""
    return probe_host()


def readable_python() -> str:
    """An interpreter the session's uid can run with its standard library readable: this
    process's, else the python<major>.<minor> of /usr/local/bin or /usr/bin (a pyenv install
    under /root is not), as the engine's zygote picks it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if os.geteuid() != 0 or path_problem(stdlib, readable=True) is None:
        return sys.executable
    for directory in ("/usr/local/bin", "/usr/bin"):
        candidate = Path(directory) / f"python{version}"
        library = Path(os.path.realpath(candidate)).parent.parent / "lib" / f"python{version}"
        if candidate.exists() and library.is_dir() and path_problem(library, readable=True) is None:
            return str(candidate)
    raise SessionRefused(f"no Python {version} whose standard library other users can read is installed")


def server_packages() -> Path:
    """The directory holding jedi-language-server and its dependencies (the console's own
    site-packages), which the session's uid must be able to read."""
    import jedi_language_server

    return Path(jedi_language_server.__file__).resolve().parent.parent


class LanguageServerSession:
    def __init__(self, *, function: Function, user_id: int, send: Callable[[str], Awaitable[None]]) -> None:
        self.function_id = function.pk
        self.user_id = user_id
        self.send = send  # a message of the server, as text, to the editor
        self.key = uuid.uuid4().hex
        self.root = Path(settings.STRATUS_SANDBOX_DIR) / "lsp" / self.key
        self.root_uri = self.root.as_uri()
        self.sandboxed = os.geteuid() == 0
        # A uid of the installation's language-server range (STRATUS_LSP_UID_BASE, claimed on
        # this host before use: apps/core/isolation/uid_ranges.py).
        self.uid = (
            int(settings.STRATUS_LSP_UID_BASE) + random.randrange(1, int(settings.STRATUS_UID_RANGE_SIZE))
            if self.sandboxed
            else None
        )
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._registered = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Claim a place (or refuse), write the snapshot, start the confined server."""
        self._register()
        try:
            python = readable_python()
            packages = server_packages()
            if self.sandboxed:
                problem = path_problem(packages, readable=True)
                if problem is not None:
                    raise SessionRefused(f"the language server's packages ({packages}) are not readable: {problem}")
            await asyncio.to_thread(self._write_snapshot)
            self.python = python
            self.process = await asyncio.create_subprocess_exec(
                *self._argv(python, packages),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=str(self.root),
                # HOME (jedi's cache): the private /tmp when confined, else the snapshot itself.
                env={"PATH": "/usr/bin:/bin", "HOME": "/tmp" if self.sandboxed else str(self.root), "LANG": "C.UTF-8"},  # noqa: S108
                start_new_session=True,
                preexec_fn=_preexec,  # noqa: PLW1509 - rlimits only: os calls, no locks
                limit=MAX_MESSAGE_BYTES,
            )
        except BaseException:
            await self.stop()
            raise
        self._reader = asyncio.create_task(self._read_loop(), name=f"lsp-{self.key}")

    async def stop(self) -> None:
        """Kill the server (its whole process group) and remove the snapshot; idempotent."""
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill_group(self.process.pid)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.process.wait(), 5)
        await asyncio.to_thread(shutil.rmtree, self.root, True)
        self._unregister()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _register(self) -> None:
        mine = _sessions.by_user.setdefault(self.user_id, set())
        if _sessions.count >= int(settings.STRATUS_LSP_MAX_SESSIONS):
            raise SessionRefused(
                f"this console runs its maximum of {settings.STRATUS_LSP_MAX_SESSIONS} language servers "
                "(STRATUS_LSP_MAX_SESSIONS); completions come back when an editor closes"
            )
        if len(mine) >= int(settings.STRATUS_LSP_MAX_PER_USER):
            raise SessionRefused(
                f"you have {len(mine)} editors with a language server open, the most one person may have "
                "(STRATUS_LSP_MAX_PER_USER); close one"
            )
        mine.add(self.key)
        _sessions.live[self.key] = self
        self._registered = True

    def _unregister(self) -> None:
        if not self._registered:
            return
        self._registered = False
        _sessions.live.pop(self.key, None)
        mine = _sessions.by_user.get(self.user_id, set())
        mine.discard(self.key)
        if not mine:
            _sessions.by_user.pop(self.user_id, None)

    def _argv(self, python: str, packages: Path) -> list[str]:
        server = [python, "-I", "-S", str(RUNTIME_DIR / "stratus_bootstrap" / "language_server.py"), str(packages)]
        if not self.sandboxed:
            return server
        support = host_support()
        if not (support.get("namespace") is True and support.get("private") is True):
            raise SessionRefused(f"this host cannot give a language server private mounts: {support or 'probe failed'}")
        config = {
            "uid": self.uid,
            "gid": self.uid,
            "namespace": True,
            "no_network": True,
            "readonly_root": support.get("readonly_root") is True,
            "hidepid": support.get("hidepid") is True,
            "hide_run": True,
            "tmp_mb": LSP_TMP_MB if support.get("tmpfs") is True else None,
            "shm_mb": None,
            "writable": [str(self.root)],
            # Read where they are, even under /tmp (a clone there): the server and its script.
            "keep": [str(packages), str(RUNTIME_DIR)],
            "cwd": str(self.root),
            "dumpable": False,
            "no_new_privs": True,
        }
        return [sys.executable, "-I", "-S", str(CONFINE_SCRIPT), json.dumps(config), "--", *server]

    def _write_snapshot(self) -> None:
        base = self.root.parent
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o711)  # noqa: S103 - traversable, not listable: sessions see only their own
        if self.sandboxed:
            # The sandbox directory inside the data directory is reachable, nothing else of it:
            # the rule the engine applies for function instances (it may run elsewhere).
            try:
                claim_installation_uids()
            except UidRangeConflict as exc:
                raise SessionRefused(str(exc)) from None
            sandbox = Path(settings.STRATUS_SANDBOX_DIR)
            protect_data_dir(Path(settings.DATA_DIR), sandbox)
            problem = path_problem(base, readable=False)
            if problem is not None:
                raise SessionRefused(f"{base} is not reachable by the language server's user: {problem} lacks o+x")
        self.root.mkdir(mode=0o700)
        for path, content in DraftFile.objects.filter(function_id=self.function_id).values_list("path", "content"):
            self._write(path, bytes(content))
        if self.uid is not None:
            chown_tree(self.root, self.uid)

    def _write(self, path: str, content: bytes) -> None:
        if path.lower().endswith(COMPILED_SUFFIXES):
            return
        dest = (self.root / path).resolve()
        if not dest.is_relative_to(self.root.resolve()):
            return  # draft paths are normalised on write; a path that escapes is never ours
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
        if self.uid is not None:
            for part in [dest, *dest.parents]:
                if part == self.root:
                    break
                os.lchown(part, self.uid, self.uid)

    # --- the protocol --------------------------------------------------------------------------

    async def from_editor(self, text: str) -> None:
        """One JSON-RPC message of the editor, to the server."""
        if self.process is None or self.process.stdin is None:
            return
        if len(text) > MAX_MESSAGE_BYTES:
            raise ValueError(f"a message is limited to {MAX_MESSAGE_BYTES} bytes")
        message = json.loads(text)
        if not isinstance(message, dict):
            raise ValueError("a message is a JSON object")
        message = _map_uris(message, DRAFT_PREFIX, self.root_uri + "/")
        if message.get("method") == "initialize":
            params = message.setdefault("params", {})
            params["rootUri"] = self.root_uri
            params["rootPath"] = str(self.root)
            params["workspaceFolders"] = [{"uri": self.root_uri, "name": "draft"}]
            params["initializationOptions"] = {
                "workspace": {"environmentPath": self.python},
                "diagnostics": {"enable": False},
                "markupKindPreferred": "markdown",
            }
        elif message.get("method") == "textDocument/didSave":
            saved = message.get("params", {})
            uri, content = saved.get("textDocument", {}).get("uri", ""), saved.get("text")
            if isinstance(content, str) and uri.startswith(self.root_uri + "/"):
                await asyncio.to_thread(self._write, uri[len(self.root_uri) + 1 :], content.encode())
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await self.process.stdin.drain()

    async def _read_loop(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        try:
            while True:
                length = None
                while True:
                    line = await stdout.readline()
                    if not line:
                        return  # the server exited
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None or length > MAX_MESSAGE_BYTES:
                    return
                message = json.loads(await stdout.readexactly(length))
                await self.send(json.dumps(_map_uris(message, self.root_uri + "/", DRAFT_PREFIX)))
        except (asyncio.IncompleteReadError, ValueError, ConnectionError):
            return
        except Exception:
            logger.exception("relaying the language server's messages failed")


def _map_uris(value: Any, old: str, new: str) -> Any:
    """Document URIs (``uri``, ``targetUri``, ``rootUri`` keys) rewritten from one prefix to
    the other; text and everything else as it was."""
    if isinstance(value, dict):
        return {
            key: (new + item[len(old) :])
            if key in ("uri", "targetUri", "rootUri") and isinstance(item, str) and item.startswith(old)
            else _map_uris(item, old, new)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_map_uris(item, old, new) for item in value]
    return value


def _preexec() -> None:
    step_preexec(LSP_MEMORY_MB)
    resource.setrlimit(resource.RLIMIT_CPU, (LSP_CPU_SECONDS, LSP_CPU_SECONDS))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
