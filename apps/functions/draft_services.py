"""Writes to a function's draft: the one editable working copy the WebIDE and VS Code edit.

Every write takes the Function row lock (``select_for_update``) before it looks at the
draft, so writes to one function's draft are serialised: the If-Match check, the limit
checks and the ``draft_revision`` bump all see the state the previous write committed.
Two editors holding the same ETag therefore cannot both win; the second gets 409
``stale_write`` instead of silently overwriting the first.

ETags: a file's ETag is its sha256; the whole tree's ETag is ``rev-<draft_revision>``,
bumped by every change. ``if_match`` accepts either.

Audit events name paths, sizes and digests, never file contents.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Length

from apps.audit.services import audit_record
from apps.core.actors import Actor
from apps.core.errors import Conflict, DomainError, NotFound
from apps.functions.archives import (
    ArchiveLimits,
    ArchiveRejected,
    MiB,
    file_dir_conflict,
    normalize_path,
    read_zip,
)
from apps.functions.models import DraftFile, Function, Version
from apps.functions.version_services import version_create
from apps.tenancy import permissions, roles


@dataclass(frozen=True)
class DraftLimits:
    # A draft is source code a person edits (WebIDE, VS Code), not a place for vendored
    # dependencies: 20 MB and 2,000 files hold any hand-written function with room to spare
    # and keep the tree, the archive download and a zip upload quick. 10 MB per file keeps a
    # file loadable in the browser. All are below the archive limits (archives.DEFAULT_LIMITS:
    # 250 MB unzipped, 10,000 entries), so any draft can be published as a version.
    max_file_bytes: int = 10 * MiB
    max_total_bytes: int = 20 * MiB
    max_files: int = 2_000


# Module-level so tests (and, later, a setting) can swap in smaller limits.
LIMITS = DraftLimits()

REVISION_PREFIX = "rev-"


def revision_etag(revision: int) -> str:
    return f"{REVISION_PREFIX}{revision}"


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _lock(actor: Actor, function: Function, action: str) -> Function:
    """Check the right, then lock and reload the Function row (the draft's serialisation point)."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, action)
    return Function.objects.select_for_update().select_related("project__org").get(pk=function.pk)


def _bump(locked: Function, function: Function) -> None:
    locked.draft_revision += 1
    # update_fields: a draft edit is not a config change, so updated_at stays put.
    locked.save(update_fields=["draft_revision"])
    # The caller's instance reflects the new revision (views answer with it).
    function.draft_revision = locked.draft_revision


def _audit(actor: Actor, function: Function, action: str, changes: dict[str, Any]) -> None:
    audit_record(actor=actor, org=function.project.org, action=action, target=function, changes=changes)


def _stale(message: str) -> Conflict:
    return Conflict(message, code="stale_write")


def _check_if_match(locked: Function, path: str, current: DraftFile | None, if_match: str | None) -> None:
    """``if_match`` is a file ETag (sha256), the tree ETag ``rev-<n>`` or ``*`` (any existing file)."""
    if if_match is None:
        return
    tree_etag = revision_etag(locked.draft_revision)
    if if_match.startswith(REVISION_PREFIX):
        if if_match != tree_etag:
            raise _stale(
                f"The draft changed since you read it: If-Match was {if_match!r} but the draft's current ETag is "
                f"{tree_etag!r}. Re-read the draft and retry."
            )
        return
    if current is None:
        raise _stale(
            f"File '{path}' does not exist in the draft (If-Match was {if_match!r}): it was deleted or renamed "
            "since you read it. Re-read the draft and retry."
        )
    if if_match not in ("*", current.sha256):
        raise _stale(
            f"File '{path}' changed since you read it: If-Match was {if_match!r} but its current ETag is "
            f"{current.sha256!r}. Re-read the file and retry."
        )


def _path_conflicts(function: Function, path: str, *, ignore: Iterable[str] = ()) -> list[str]:
    """Existing files that ``path`` would collide with as file-vs-directory ('lib' vs 'lib/a.py')."""
    parts = path.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    query = Q(path__startswith=f"{path}/")
    if parents:
        query |= Q(path__in=parents)
    return list(
        DraftFile.objects.filter(query, function=function)
        .exclude(path__in=list(ignore))
        .order_by("path")
        .values_list("path", flat=True)[:1]
    )


def _path_conflict_error(path: str, other: str) -> Conflict:
    if other.startswith(f"{path}/"):
        detail = f"'{path}' is a folder holding '{other}'"
    else:
        detail = f"'{other}' is a file, so '{path}' cannot be inside it"
    return Conflict(f"{detail}: a path cannot be both a file and a folder.", code="path_conflict")


def _too_large(message: str) -> DomainError:
    return DomainError(message, code="draft_too_large", status_code=413)


def _check_file_size(path: str, size: int) -> None:
    if size > LIMITS.max_file_bytes:
        raise _too_large(
            f"File '{path}' is {size} bytes: draft files are limited to {LIMITS.max_file_bytes} bytes each."
        )


def _tree_size(function: Function, *, excluding: Iterable[str] = ()) -> tuple[int, int]:
    """(file count, total bytes) of the draft, leaving out ``excluding``; one query, no content loaded."""
    totals = (
        DraftFile.objects.filter(function=function)
        .exclude(path__in=list(excluding))
        .aggregate(count=Count("pk"), total=Sum(Length("content")))
    )
    return totals["count"] or 0, totals["total"] or 0


def _check_totals(count: int, total: int) -> None:
    if count > LIMITS.max_files:
        raise DomainError(
            f"The draft would hold {count} files: drafts are limited to {LIMITS.max_files} files.",
            code="draft_too_many_files",
        )
    if total > LIMITS.max_total_bytes:
        raise _too_large(f"The draft would hold {total} bytes: drafts are limited to {LIMITS.max_total_bytes} bytes.")


@transaction.atomic
def draft_file_write(
    *,
    actor: Actor,
    function: Function,
    path: str,
    content: bytes,
    if_match: str | None = None,
    if_none_match: str | None = None,
) -> DraftFile:
    """Create or overwrite one draft file.

    ``if_match``: the file's ETag (sha256) or the tree's ``rev-<n>``; a mismatch is 409
    ``stale_write``. ``if_none_match="*"``: create only; an existing file is 409
    ``already_exists``. Refusals change nothing (the transaction rolls back).
    """
    path = normalize_path(path)
    _check_file_size(path, len(content))
    locked = _lock(actor, function, "Editing the draft")
    current = DraftFile.objects.filter(function=locked, path=path).defer("content").first()
    _check_if_match(locked, path, current, if_match)
    if if_none_match == "*" and current is not None:
        raise Conflict(
            f"File '{path}' already exists in the draft (If-None-Match: *); its ETag is {current.sha256!r}.",
            code="already_exists",
        )
    sha256 = _sha256(content)
    if current is None:
        conflicts = _path_conflicts(locked, path)
        if conflicts:
            raise _path_conflict_error(path, conflicts[0])
    count, total = _tree_size(locked, excluding=[path])
    _check_totals(count + 1, total + len(content))

    if current is None:
        draft_file = DraftFile.objects.create(function=locked, path=path, content=content, sha256=sha256)
    else:
        draft_file = current
        draft_file.content = content
        draft_file.sha256 = sha256
        draft_file.save(update_fields=["content", "sha256", "updated_at"])
    _bump(locked, function)
    _audit(
        actor,
        locked,
        "draft.file_write",
        {
            "path": path,
            "created": current is None,
            "size": len(content),
            "sha256": sha256,
            "revision": locked.draft_revision,
        },
    )
    return draft_file


@transaction.atomic
def draft_file_delete(*, actor: Actor, function: Function, path: str, if_match: str | None = None) -> None:
    """Delete one draft file; 404 if it is not there, 409 ``stale_write`` on an If-Match mismatch."""
    path = normalize_path(path)
    locked = _lock(actor, function, "Editing the draft")
    current = DraftFile.objects.filter(function=locked, path=path).defer("content").first()
    _check_if_match(locked, path, current, if_match)
    if current is None:
        raise NotFound(f"File '{path}' is not in the draft.")
    current.delete()
    _bump(locked, function)
    _audit(actor, locked, "draft.file_delete", {"path": path, "revision": locked.draft_revision})


@transaction.atomic
def draft_rename(
    *, actor: Actor, function: Function, source: str, target: str, if_match: str | None = None
) -> list[tuple[str, str]]:
    """Rename a file, or a folder (every file under ``source/``). Returns the (old, new) pairs.

    A file rename accepts the file's ETag or ``rev-<n>`` as ``if_match``; a folder rename
    only ``rev-<n>``. An existing target (file, or folder holding files) is 409
    ``already_exists``; moving a folder into itself is 400.
    """
    source = normalize_path(source)
    target = normalize_path(target)
    locked = _lock(actor, function, "Editing the draft")
    file = DraftFile.objects.filter(function=locked, path=source).defer("content").first()
    if file is not None:
        _check_if_match(locked, source, file, if_match)
        moves = [(source, target)]
        rows = [file]
    else:
        rows = list(
            DraftFile.objects.filter(function=locked, path__startswith=f"{source}/").defer("content").order_by("path")
        )
        if not rows:
            raise NotFound(f"Neither a file nor a folder '{source}' is in the draft.")
        if if_match is not None and not if_match.startswith(REVISION_PREFIX):
            raise _stale(
                f"'{source}' is a folder: its If-Match must be the draft's ETag "
                f"{revision_etag(locked.draft_revision)!r}, not a file ETag."
            )
        _check_if_match(locked, source, None, if_match)
        if target == source or target.startswith(f"{source}/"):
            raise DomainError(
                f"Cannot move folder '{source}' into itself ('{target}'): the target must be outside it.",
                code="invalid_rename",
            )
        moves = [(row.path, target + row.path[len(source) :]) for row in rows]
    if DraftFile.objects.filter(function=locked, path=target).exists():
        raise Conflict(
            f"'{target}' already exists in the draft: delete it first or pick another name.", code="already_exists"
        )
    if file is None and DraftFile.objects.filter(function=locked, path__startswith=f"{target}/").exists():
        raise Conflict(f"Folder '{target}' already exists in the draft: pick another name.", code="already_exists")
    # Paths grow when moved deeper: each new path must pass the same rules as a written one.
    for _, new in moves:
        normalize_path(new)
    conflicts = _path_conflicts(locked, target, ignore=[old for old, _ in moves])
    if conflicts:
        raise _path_conflict_error(target, conflicts[0])

    # The targets were checked to be free, so no update below can hit the unique constraint.
    for row, (_, new) in zip(rows, moves, strict=True):
        row.path = new
    DraftFile.objects.bulk_update(rows, ["path"])
    _bump(locked, function)
    _audit(
        actor,
        locked,
        "draft.rename",
        {"from": source, "to": target, "paths": [list(m) for m in moves], "revision": locked.draft_revision},
    )
    return moves


def _check_tree(paths: Iterable[str]) -> None:
    conflict = file_dir_conflict(paths)
    if conflict is not None:
        raise _path_conflict_error(*conflict)


@transaction.atomic
def draft_replace(*, actor: Actor, function: Function, files: Mapping[str, bytes], if_match: str | None = None) -> None:
    """Replace the whole draft with ``files`` (e.g. from an uploaded zip or a version).

    Every path is checked and normalised and every limit applied before anything changes,
    and the deletes, updates and inserts run in this one transaction: a refusal (or a crash
    half-way) leaves the draft as it was. Unchanged files (same sha256) are left alone.
    ``if_match`` may only be the tree's ``rev-<n>`` (or ``*``): a mismatch is 409 ``stale_write``.
    """
    normalised: dict[str, bytes] = {}
    for raw, content in files.items():
        path = normalize_path(raw)
        if path in normalised:
            raise DomainError(
                f"Entry {raw!r} duplicates another entry (both are '{path}'): each path may appear only once.",
                code="duplicate_path",
            )
        _check_file_size(path, len(content))
        normalised[path] = bytes(content)
    _check_tree(normalised)
    _check_totals(len(normalised), sum(len(c) for c in normalised.values()))
    locked = _lock(actor, function, "Replacing the draft")
    if if_match is not None and if_match != "*":
        if not if_match.startswith(REVISION_PREFIX):
            raise _stale(
                f"Replacing the whole draft takes the draft's ETag {revision_etag(locked.draft_revision)!r} as "
                f"If-Match, not a file ETag ({if_match!r})."
            )
        _check_if_match(locked, "", None, if_match)

    existing = dict(DraftFile.objects.filter(function=locked).values_list("path", "sha256"))
    removed = sorted(existing.keys() - normalised.keys())
    added = sorted(normalised.keys() - existing.keys())
    changed = sorted(p for p in normalised.keys() & existing.keys() if existing[p] != _sha256(normalised[p]))
    DraftFile.objects.filter(function=locked, path__in=removed).delete()
    for row in DraftFile.objects.filter(function=locked, path__in=changed).defer("content"):
        row.content = normalised[row.path]
        row.sha256 = _sha256(row.content)
        row.save(update_fields=["content", "sha256", "updated_at"])
    DraftFile.objects.bulk_create(
        DraftFile(function=locked, path=p, content=normalised[p], sha256=_sha256(normalised[p])) for p in added
    )
    _bump(locked, function)
    _audit(
        actor,
        locked,
        "draft.replace",
        {"added": added, "changed": changed, "removed": removed, "revision": locked.draft_revision},
    )


# Finder writes resource forks of a zipped folder under __MACOSX/ next to it: never code, and
# they would keep the folder from being the only one at the top.
_ARCHIVE_JUNK = "__MACOSX"


def _draft_archive_limits() -> ArchiveLimits:
    # Inflating stops as soon as the files pass the draft's total: a bomb (or a 200 MB
    # node_modules) never gets past 20 MB in memory. Entries stay at the archive default:
    # folder entries count there too, and the draft's own file count is checked with its rule.
    return ArchiveLimits(max_total_bytes=LIMITS.max_total_bytes)


def _handler_root(handler: str) -> str:
    """The first path component of the handler's file: 'app' for Python 'app.main.handler',
    'src' for Node 'src/index.handler', 'main' for 'main.handler'."""
    return re.split(r"[/.]", handler.rsplit(".", 1)[0], maxsplit=1)[0]


def _unwrap(files: dict[str, bytes], handler: str) -> tuple[dict[str, bytes], str | None]:
    """Strip one folder that wraps every file (GitHub's "Download ZIP", a zipped folder).

    Kept when the function's handler points into that folder: then the folder is part of the
    code's layout (a draft whose files all live in ``src/`` downloads and uploads unchanged).
    Answers the files and the folder that was stripped, if any.
    """
    files = {p: c for p, c in files.items() if p.split("/", 1)[0] != _ARCHIVE_JUNK}
    tops = {p.split("/", 1)[0] for p in files}
    if len(tops) != 1 or any("/" not in p for p in files):
        return files, None
    top = tops.pop()
    if top == _handler_root(handler):
        return files, None
    return {p[len(top) + 1 :]: c for p, c in files.items()}, top


@dataclass(frozen=True)
class DraftUpload:
    files: int
    unwrapped: str | None  # the folder that wrapped every file and was stripped


def draft_replace_from_zip(
    *, actor: Actor, function: Function, upload: BinaryIO, if_match: str | None = None
) -> DraftUpload:
    """Replace the draft's files with an uploaded zip's (``archives.read_zip``: zip slip,
    absolute paths, symlinks, devices and bombs are refused with the rule they broke).

    The right is checked before the upload is read; the replacement is ``draft_replace``
    (every draft limit, If-Match ``rev-<n>``, one transaction), so a refused zip changes nothing.
    """
    # Checked again under the lock by draft_replace; first here so nobody without the right
    # makes the server inflate an archive.
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Replacing the draft")
    try:
        files = read_zip(upload, limits=_draft_archive_limits())
    except ArchiveRejected as exc:
        if exc.code != "archive_too_big_unzipped":
            raise
        raise _too_large(
            f"The zip unzips to more than {LIMITS.max_total_bytes} bytes (at entry {exc.entry!r}): drafts are "
            f"limited to {LIMITS.max_total_bytes} bytes ({LIMITS.max_total_bytes // MiB} MB) in all."
        ) from None
    files, unwrapped = _unwrap(files, function.handler)
    if not files:
        # Most likely the wrong zip; a draft is emptied file by file, not by accident.
        raise DomainError("The zip holds no files: upload a zip of the function's files.", code="archive_empty")
    draft_replace(actor=actor, function=function, files=files, if_match=if_match)
    return DraftUpload(files=len(files), unwrapped=unwrapped)


@transaction.atomic
def draft_publish(*, actor: Actor, function: Function, message: str = "") -> tuple[Version, bool]:
    """Publish the draft as a version; returns (version, created).

    If the draft and config equal the latest version's, that version is returned
    (``created`` False) instead of a duplicate. The Function lock keeps the published
    files consistent with one draft revision.
    """
    locked = _lock(actor, function, "Publishing the draft")
    files = dict(DraftFile.objects.filter(function=locked).values_list("path", "content"))
    if not files:
        raise DomainError("The draft has no files: add at least one file before publishing.", code="draft_empty")
    version, created = version_create(
        actor=actor,
        function=locked,
        files={path: bytes(content) for path, content in files.items()},
        source=Version.Source.DRAFT,
        message=message,
        reuse_identical=True,
    )
    _audit(
        actor,
        locked,
        "draft.publish",
        {"version": version.number, "created": created, "revision": locked.draft_revision},
    )
    return version, created
