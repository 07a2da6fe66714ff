"""The artifact store: canonical zips addressed by their sha256, stored once.

Writing the file before the row is safe: the name is the content's hash, so a retry or a
concurrent writer writes the same bytes, and a file left by a rolled-back transaction is
simply reused by the next store of the same content."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import IntegrityError, transaction

from apps.functions.archives import ArchiveLimits, build_canonical_zip, read_zip
from apps.functions.models import Artifact


def _storage() -> Storage:
    return storages["artifacts"]


def artifact_store(*, files: Mapping[str, bytes]) -> Artifact:
    archive = build_canonical_zip(files)
    sha256 = hashlib.sha256(archive).hexdigest()
    existing = Artifact.objects.filter(sha256=sha256).first()
    if existing is not None:
        return existing
    artifact = Artifact(
        sha256=sha256,
        size=len(archive),
        file_count=len(files),
        unpacked_size=sum(len(c) for c in files.values()),
    )
    storage = _storage()
    if not storage.exists(artifact.storage_name):
        storage.save(artifact.storage_name, ContentFile(archive))
    try:
        with transaction.atomic():  # savepoint: a concurrent insert of the same hash is fine
            artifact.save()
    except IntegrityError:
        return Artifact.objects.get(sha256=sha256)
    return artifact


def artifact_bytes(*, artifact: Artifact) -> bytes:
    with _storage().open(artifact.storage_name, "rb") as fh:
        data: bytes = fh.read()
    if hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise RuntimeError(f"artifact {artifact.sha256} is corrupt in the store (hash mismatch)")
    return data


def artifact_files(*, artifact: Artifact) -> dict[str, bytes]:
    # Our own canonical archives: the limits only need to admit what we stored.
    limits = ArchiveLimits(
        max_upload_bytes=max(artifact.size, 1), max_total_bytes=max(artifact.unpacked_size, 1), max_ratio=10**9
    )
    return read_zip(io.BytesIO(artifact_bytes(artifact=artifact)), limits=limits)
