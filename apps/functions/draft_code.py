"""The draft as code to run: its files written out once per content, for a draft run.

A draft run (the WebIDE's Run, ``POST /functions/{id}/draft/invoke``) runs the draft's saved
files without publishing them. The engine runs code from a directory, so the draft is
written to ``<data dir>/runtime/drafts/<digest>/``, where the digest names the draft's
content (its paths and their sha256, which the draft rows already hold: no content is read
to know whether the directory exists). Like a version's directory, it is written beside its
final place and renamed in, so a reader never sees half a draft, and it never changes.

Directories of drafts nobody ran for a day are removed when a new one is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from apps.core.errors import DomainError
from apps.functions.backends.local import drafts_root
from apps.functions.models import DraftFile, Function

DRAFT_DIR_PREFIX = "draft-"  # apart from versions' directories (named by artifact sha256)
STALE_AFTER_S = 24 * 3600


def _digest(entries: list[tuple[str, str]]) -> str:
    if not entries:
        raise DomainError("The draft has no files: add a file before running it.", code="draft_empty")
    digest = hashlib.sha256()
    for path, sha in sorted(entries):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()[:32]


def draft_code_dir(digest: str) -> Path:
    return drafts_root() / f"{DRAFT_DIR_PREFIX}{digest}"


def draft_code_prepare(function: Function) -> tuple[str, Path]:
    """(the draft's digest, the directory holding its files), written if missing. The
    digest is first read without content (one small query); when the directory has to be
    written, it is named by the digest of the rows actually written, so a save landing in
    between never puts new files under an old name."""
    digest = _digest(list(DraftFile.objects.filter(function=function).values_list("path", "sha256")))
    final = draft_code_dir(digest)
    if final.is_dir():
        _touch(final)
        return digest, final
    rows = list(DraftFile.objects.filter(function=function).values_list("path", "sha256", "content"))
    digest = _digest([(path, sha) for path, sha, _ in rows])
    final = draft_code_dir(digest)
    if final.is_dir():
        return digest, final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        for path, _, content in rows:
            dest = staging / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(bytes(content))
            os.chmod(dest, 0o644)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune_stale(final.parent, keep=final)
    return digest, final


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _prune_stale(root: Path, *, keep: Path) -> None:
    """Remove draft directories not run for STALE_AFTER_S (a draft run touches its own)."""
    cutoff = time.time() - STALE_AFTER_S
    for entry in root.iterdir():
        if entry == keep or not entry.name.startswith(DRAFT_DIR_PREFIX):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue
