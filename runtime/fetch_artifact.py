"""Fetch a function's artifact at container start: download, verify sha256, unpack to /var/task.

Runs inside the runtime image (runtime/Dockerfile) before the bootstrap, standard library only:
it may import nothing from the console. Inputs, from the environment (the Knative backend puts
them there; the URL through a Secret, because it expires and revisions are immutable):

- STRATUS_ARTIFACT_URL: the console's signed, expiring download URL;
- STRATUS_ARTIFACT_SHA256: the sha256 the archive must have (it is the artifact's address);
- STRATUS_TASK_DIR: where to unpack (default /var/task).

The archive is Stratus's own canonical zip, but it is checked as if hostile anyway, with the
console's rules (apps/functions/archives.py): no absolute or drive-letter paths, no ``..`` or
empty components, no NUL/control characters, no symlinks or special files, no duplicates, and
bounded entry count and unzipped size counted while extracting. The download is bounded too and
nothing is unpacked unless the hash matches.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import sys
import urllib.request
import zipfile
from pathlib import Path

MiB = 1024 * 1024
MAX_DOWNLOAD_BYTES = 50 * MiB  # the console's upload limit (zipped)
MAX_TOTAL_BYTES = 250 * MiB  # and its unzipped limit
MAX_ENTRIES = 10_000
MAX_PATH_BYTES = 1024
CHUNK = 64 * 1024
TIMEOUT_S = 60

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class FetchError(Exception):
    """The artifact could not be fetched or is unsafe; the message names the rule."""


def download(url: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = TIMEOUT_S) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"artifact URL must be http(s), got {url[:16]!r}...")
    request = urllib.request.Request(url, headers={"User-Agent": "stratus-runtime"})  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            buf = io.BytesIO()
            while chunk := response.read(CHUNK):
                if buf.tell() + len(chunk) > max_bytes:
                    raise FetchError(f"artifact is larger than {max_bytes} bytes: refusing to download more")
                buf.write(chunk)
            return buf.getvalue()
    except OSError as exc:  # urllib.error.URLError/HTTPError are OSErrors; never print the signed URL
        code = getattr(exc, "code", None)
        raise FetchError(f"artifact download failed ({code or type(exc).__name__}): the signed URL may have expired")


def verify(data: bytes, sha256: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():
        raise FetchError(f"artifact sha256 mismatch: expected {sha256}, got {actual}; refusing to unpack")


def safe_path(name: str) -> str:
    """``name`` as a relative forward-slash path, or FetchError (the console's zip-slip rules)."""
    if _CONTROL_CHARS.search(name):
        raise FetchError(f"entry {name!r} contains a NUL or control character")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise FetchError(f"entry {name[:64]!r}... is longer than {MAX_PATH_BYTES} bytes")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE_LETTER.match(unified):
        raise FetchError(f"entry {name!r} is an absolute path (zip slip)")
    parts = []
    for part in unified.split("/"):
        if part == "..":
            raise FetchError(f"entry {name!r} escapes the archive root (zip slip)")
        if part == "":
            raise FetchError(f"entry {name!r} has an empty path component")
        if part != ".":
            parts.append(part)
    if not parts:
        raise FetchError(f"entry {name!r} does not name a file")
    return "/".join(parts)


def unpack(data: bytes, dest: Path) -> list[str]:
    """Extract ``data`` below ``dest``; every entry is checked before anything is written."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise FetchError(f"artifact is not a zip archive ({exc})")
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise FetchError(f"artifact has more than {MAX_ENTRIES} entries")
        plan: list[tuple[zipfile.ZipInfo, str]] = []
        seen: set[str] = set()
        for info in infos:
            mode = info.external_attr >> 16
            if info.is_dir():
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits: a plain file
                raise FetchError(f"entry {info.filename!r} is a symlink or special file")
            if info.flag_bits & 0x1:
                raise FetchError(f"entry {info.filename!r} is encrypted")
            path = safe_path(info.filename)
            if path in seen:
                raise FetchError(f"entry {info.filename!r} is a duplicate")
            seen.add(path)
            plan.append((info, path))
        for path in seen:
            parts = path.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in seen:
                    raise FetchError(f"entry {path!r} is inside a path that is also a file")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        total = 0
        for info, path in plan:
            target = (root / path).resolve()
            if root not in target.parents:  # belt and braces after safe_path
                raise FetchError(f"entry {info.filename!r} escapes the task directory (zip slip)")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(CHUNK):
                    total += len(chunk)  # counted, not trusted from the header
                    if total > MAX_TOTAL_BYTES:
                        raise FetchError(f"artifact unpacks to more than {MAX_TOTAL_BYTES} bytes")
                    out.write(chunk)
        return sorted(seen)


def fetch(url: str, sha256: str, dest: Path) -> list[str]:
    data = download(url)
    verify(data, sha256)
    return unpack(data, dest)


def main() -> int:
    url = os.environ.get("STRATUS_ARTIFACT_URL", "")
    sha256 = os.environ.get("STRATUS_ARTIFACT_SHA256", "")
    dest = Path(os.environ.get("STRATUS_TASK_DIR", "/var/task"))
    if not url or not sha256:
        print("stratus: STRATUS_ARTIFACT_URL and STRATUS_ARTIFACT_SHA256 must be set", file=sys.stderr)
        return 2
    try:
        files = fetch(url, sha256, dest)
    except FetchError as exc:
        print(f"stratus: {exc}", file=sys.stderr)
        return 1
    print(f"stratus: artifact {sha256[:12]} unpacked to {dest} ({len(files)} files)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
