"""Reads of a function's draft. The caller has already been scoped by ``selectors.function_get``."""

from __future__ import annotations

from typing import Any

from django.db.models.functions import Length

from apps.core.errors import NotFound
from apps.functions.archives import normalize_path
from apps.functions.models import DraftFile, Function


def draft_tree(*, function: Function) -> list[dict[str, Any]]:
    """Every draft file's path, size, sha256 and updated_at, in path order: one query, no content."""
    return list(
        DraftFile.objects.filter(function=function)
        .annotate(size=Length("content"))
        .order_by("path")
        .values("path", "size", "sha256", "updated_at")
    )


def draft_file_get(*, function: Function, path: str) -> DraftFile:
    """One draft file with its content; a path breaking the path rules is 400, a missing file 404."""
    path = normalize_path(path)
    draft_file = DraftFile.objects.filter(function=function, path=path).first()
    if draft_file is None:
        raise NotFound(f"File '{path}' is not in the draft.")
    return draft_file


def draft_file_exists(*, function: Function, path: str) -> bool:
    return DraftFile.objects.filter(function=function, path=normalize_path(path)).exists()
