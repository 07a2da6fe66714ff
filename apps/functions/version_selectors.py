"""Reads of versions: lists, files and diffs."""

from __future__ import annotations

import difflib
from typing import Any

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.functions.artifacts import artifact_files
from apps.functions.models import Function, Version

DIFF_TEXT_LIMIT = 512 * 1024  # larger files are compared by hash only


def version_list(*, function: Function) -> QuerySet[Version]:
    return function.versions.select_related("artifact", "author").order_by("-number")


def version_get(*, function: Function, number: int) -> Version:
    version = version_list(function=function).filter(number=number).first()
    if version is None:
        raise NotFound(f"Version {number} of function '{function.name}' not found.")
    return version


def version_files(*, version: Version) -> dict[str, bytes]:
    return artifact_files(artifact=version.artifact)


def _text(data: bytes) -> str | None:
    if len(data) > DIFF_TEXT_LIMIT:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def version_diff(*, old: Version, new: Version) -> dict[str, Any]:
    """Files added/removed/modified (with a unified diff for text) and config changes."""
    a, b = version_files(version=old), version_files(version=new)
    modified = []
    for path in sorted(a.keys() & b.keys()):
        if a[path] == b[path]:
            continue
        entry: dict[str, Any] = {"path": path, "old_size": len(a[path]), "new_size": len(b[path])}
        old_text, new_text = _text(a[path]), _text(b[path])
        if old_text is not None and new_text is not None:
            entry["diff"] = "".join(
                difflib.unified_diff(
                    old_text.splitlines(keepends=True),
                    new_text.splitlines(keepends=True),
                    fromfile=f"v{old.number}/{path}",
                    tofile=f"v{new.number}/{path}",
                )
            )
        else:
            entry["diff"] = None  # binary or too large: sizes tell what changed
        modified.append(entry)
    config = {
        key: [old.config.get(key), new.config.get(key)]
        for key in sorted(old.config.keys() | new.config.keys())
        if old.config.get(key) != new.config.get(key)
    }
    return {
        "from": old.number,
        "to": new.number,
        "files": {"added": sorted(b.keys() - a.keys()), "removed": sorted(a.keys() - b.keys()), "modified": modified},
        "config": config,
    }
