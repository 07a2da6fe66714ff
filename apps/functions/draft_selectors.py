"""Reads of a function's draft. The caller has already been scoped by ``selectors.function_get``."""

from __future__ import annotations

import codecs
from typing import Any

from django.db.models import BinaryField
from django.db.models.functions import Length, Substr

from apps.core.errors import NotFound
from apps.functions.archives import normalize_path
from apps.functions.models import DraftFile, Function

# How much of each file the tree reads to tell text from binary: enough for any binary
# format's header, little enough that a tree of 2,000 files stays a couple of MB.
SNIFF_BYTES = 1024


def looks_binary(head: bytes) -> bool:
    """Whether a file starting with ``head`` is binary: not UTF-8, the rule the file API
    uses to answer ``encoding: base64``. A multi-byte character cut at the end of ``head`` is
    not a fault (the incremental decoder waits for the rest)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


def draft_tree(*, function: Function) -> list[dict[str, Any]]:
    """Every draft file's path, size, sha256, updated_at and whether it is binary, in path
    order: one query, reading only the first SNIFF_BYTES of each file."""
    rows = list(
        DraftFile.objects.filter(function=function)
        .annotate(size=Length("content"), head=Substr("content", 1, SNIFF_BYTES, output_field=BinaryField()))
        .order_by("path")
        .values("path", "size", "sha256", "updated_at", "head")
    )
    for row in rows:
        row["binary"] = looks_binary(bytes(row.pop("head") or b""))
    return rows


def draft_files(*, function: Function) -> dict[str, bytes]:
    """Every draft file's content by path (the archive download)."""
    return {
        path: bytes(content)
        for path, content in DraftFile.objects.filter(function=function).values_list("path", "content")
    }


def draft_file_get(*, function: Function, path: str) -> DraftFile:
    """One draft file with its content; a path breaking the path rules is 400, a missing file 404."""
    path = normalize_path(path)
    draft_file = DraftFile.objects.filter(function=function, path=path).first()
    if draft_file is None:
        raise NotFound(f"File '{path}' is not in the draft.")
    return draft_file


def draft_file_exists(*, function: Function, path: str) -> bool:
    return DraftFile.objects.filter(function=function, path=normalize_path(path)).exists()
