"""The embedded default keeps its state in one data directory (``STRATUS_DATA_DIR``).

Generated secrets (Django's secret key, the key that encrypts environment secrets) live
there, created on first start with owner-only permissions and reused afterwards, so a
second ``make run`` keeps working sessions, tokens and encrypted values.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_private_dir(path: Path) -> Path:
    """The data directory: the console's keys, database and artifacts live here, so nobody
    else may list or enter it (function instances run as other users). When the sandbox lives
    inside it, the engine opens it to traversal (0711) and nothing more."""
    ensure_dir(path)
    info = path.stat()
    if info.st_mode & 0o066 and info.st_uid == os.getuid():
        path.chmod(0o700)
    return path


def _generated(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        ensure_dir(path.parent)
        # O_EXCL: two processes starting at once never overwrite each other's key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(make())
    return path.read_text(encoding="utf-8").strip()


def generated_secret_key(data_dir: Path) -> str:
    return _generated(data_dir / "secret_key", lambda: secrets.token_urlsafe(50))


def generated_encryption_key(data_dir: Path) -> str:
    return _generated(data_dir / "encryption_key", lambda: Fernet.generate_key().decode())
