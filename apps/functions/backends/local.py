"""The `local` backend: functions run as processes on this host.

This part prepares versions (unpacks each artifact once, atomically, into the data
directory) and records which versions each binding serves. Starting and scaling the
function processes is the local engine's job (apps/engine, in process or as the supervisor),
which reads the same prepared directories and the bindings from the database.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

from apps.functions.archives import ArchiveLimits, read_zip
from apps.functions.artifacts import artifact_bytes
from apps.functions.backends.base import (
    ApplyResult,
    BackendStatus,
    BindingTarget,
    DeployedVersion,
    ExecutionBackend,
    TrafficRules,
)
from apps.functions.models import Artifact


def versions_root() -> Path:
    return Path(settings.DATA_DIR) / "runtime" / "versions"


def drafts_root() -> Path:
    """Drafts written out for a draft run (apps/functions/draft_code.py), by content digest."""
    return Path(settings.DATA_DIR) / "runtime" / "drafts"


def version_dir(sha256: str) -> Path:
    return versions_root() / sha256


class LocalBackend(ExecutionBackend):
    name = "local"

    def prepare(self, target: BindingTarget, version: DeployedVersion) -> bool:
        return self.prepare_sha(version.artifact_sha256)

    def prepare_sha(self, sha256: str) -> bool:
        final = version_dir(sha256)
        if final.is_dir():
            return True  # content-addressed: a prepared directory never changes
        artifact = Artifact.objects.get(sha256=sha256)
        limits = ArchiveLimits(max_upload_bytes=artifact.size, max_total_bytes=artifact.unpacked_size, max_ratio=10**9)
        files = read_zip(io.BytesIO(artifact_bytes(artifact=artifact)), limits=limits)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Unpack beside the final place, then rename: a reader never sees half a version,
        # and two preparers racing both end with the same complete directory.
        staging = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=final.parent))
        try:
            for path, content in files.items():
                dest = staging / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
                os.chmod(dest, 0o644)
            try:
                staging.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def apply(self, target: BindingTarget, versions: Sequence[DeployedVersion], traffic: TrafficRules) -> ApplyResult:
        missing = [v.number for v in versions if not version_dir(v.artifact_sha256).is_dir()]
        if missing:
            return ApplyResult(ready=False, message=f"versions {missing} are not prepared")
        # Header rules and sticky keys are served by the gateway itself on this backend.
        return ApplyResult(ready=True, message="serving " + ", ".join(f"v{n}" for n in traffic.versions()))

    def status(self, target: BindingTarget) -> BackendStatus:
        from apps.functions.models import Binding

        binding = Binding.objects.filter(pk=target.binding_id).prefetch_related("function__versions__artifact").first()
        if binding is None or not binding.traffic:
            return BackendStatus(ready=False, message="not deployed")
        by_number = {v.number: v for v in binding.function.versions.all()}
        unprepared = [
            n
            for n in binding.version_numbers()
            if n not in by_number or not version_dir(by_number[n].artifact.sha256).is_dir()
        ]
        if unprepared:
            return BackendStatus(ready=False, message=f"versions {unprepared} are not prepared")
        return BackendStatus(ready=True, message="prepared")

    def remove(self, target: BindingTarget) -> None:
        # Prepared directories are shared by content with other bindings: they stay; the
        # engine stops this binding's processes when it sees the binding gone.
        return None
