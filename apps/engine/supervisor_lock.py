"""One supervisor per data directory: ``manage.py run_supervisor`` holds an exclusive flock on
``STRATUS_SUPERVISOR_LOCK`` (in the data directory) for as long as it runs, with its pid written
in the file. A second one fails to take it and exits before it touches the socket, naming the
holder. The kernel drops the lock when the holder dies, however it dies, so a stale file never
blocks a restart."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class SupervisorRunning(RuntimeError):
    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another supervisor ({holder}) already serves this data directory (it holds {path}); "
            "one supervisor per data directory: stop it first, or give this one another STRATUS_DATA_DIR"
        )
        self.path = path
        self.pid = pid


class SupervisorLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise SupervisorRunning (never blocks)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise SupervisorRunning(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None
