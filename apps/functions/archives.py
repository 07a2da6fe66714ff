"""Safe reading of uploaded zip archives and the canonical archive versions are addressed by.

An upload is hostile until proven otherwise. ``read_zip`` refuses, with a message that names
the rule and the entry:

* anything that is not a zip (checked by magic bytes and by ``zipfile``), or is larger than
  the upload limit (counted while reading, so an oversized body is never held whole);
* paths that would escape an extraction directory (zip slip: absolute, drive-letter or
  backslash-rooted paths, ``..`` components), empty components, NUL/control characters,
  over-long paths, duplicates after normalisation, and a file that another entry needs
  to be a directory;
* symlinks, device, FIFO and socket entries, encrypted entries, compression methods other
  than stored/deflate;
* zip bombs: too many entries, too many bytes once unzipped, or an entry whose unzipped
  size exceeds ``max_ratio`` times its compressed size. Sizes are *counted* while
  inflating the raw entry data ourselves — the sizes in the headers are attacker-controlled
  and are only compared against what was counted, never used to bound the work.

Nothing is extracted to disk: the upload is spooled to a ``SpooledTemporaryFile`` (memory
first, a temp file past a few MiB) that is always closed, and the result is a
``{path: bytes}`` map.

``build_canonical_zip`` goes the other way: equal file maps give byte-identical archives
(sorted paths, fixed timestamps and permissions, deflate at a fixed level), so
``content_digest`` can content-address versions.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, BinaryIO

from apps.core.errors import DomainError

MiB = 1024 * 1024

# Read/inflate granularity: also the most a single decompress call may produce, so a
# bomb never materialises more than this beyond the limit it trips.
_CHUNK = 64 * 1024
# Uploads below this stay in memory; above, SpooledTemporaryFile rolls over to disk.
_SPOOL_MEMORY_BYTES = 8 * MiB

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # first local header, or an empty archive
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800  # general purpose bit 11: the name is UTF-8

# Canonical archive parameters: changing any of them changes every digest.
_CANONICAL_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_CANONICAL_MODE = stat.S_IFREG | 0o644
_CANONICAL_LEVEL = 6

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# Unpaired surrogates cannot be stored as UTF-8; U+FFFD is what a decoder leaves where bytes
# were not UTF-8 (a server decoding a path with %FF in it, say): a name holding it is not the
# name the client meant.
_NOT_UTF8 = re.compile("[\ud800-\udfff\ufffd]")


@dataclass(frozen=True)
class ArchiveLimits:
    # 50 MB zipped / 250 MB unzipped mirror AWS Lambda's direct-upload and unzipped limits.
    max_upload_bytes: int = 50 * MiB
    max_total_bytes: int = 250 * MiB
    max_entries: int = 10_000
    # Per-entry unzipped/compressed cap. Entries up to ``ratio_exempt_bytes`` unzipped are
    # exempt: small text files (lockfiles, minified JSON) legitimately compress 100x+.
    max_ratio: int = 100
    ratio_exempt_bytes: int = 1 * MiB
    max_path_length: int = 1024


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveRejected(DomainError):
    """An archive or file map broke a safety rule; ``entry`` names the offending path, if any."""

    status_code = 400
    code = "archive_rejected"

    def __init__(self, message: str, *, code: str, entry: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, code=code, status_code=status_code)
        self.entry = entry


def _entry(name: str) -> str:
    # repr() shows NULs, control characters and backslashes unambiguously.
    return f"Entry {name!r}"


def normalize_path(path: str, *, limits: ArchiveLimits = DEFAULT_LIMITS) -> str:
    """Return ``path`` as a relative forward-slash path, or raise ``ArchiveRejected``.

    Backslashes are treated as separators (Windows tools write them) and ``.`` components
    are dropped, so ``./a\\b.py`` becomes ``a/b.py``; anything that could resolve outside
    the root is refused rather than "fixed".
    """
    if "\x00" in path:
        raise ArchiveRejected(
            f"{_entry(path)} contains a NUL byte: paths must not contain NUL or control characters",
            code="archive_unsafe_path",
            entry=path,
        )
    if _CONTROL_CHARS.search(path):
        raise ArchiveRejected(
            f"{_entry(path)} contains a control character: paths must not contain NUL or control characters",
            code="archive_unsafe_path",
            entry=path,
        )
    if _NOT_UTF8.search(path):
        raise ArchiveRejected(
            f"{_entry(path)} is not valid UTF-8 (an unpaired surrogate or U+FFFD, the mark of bytes that were not "
            "UTF-8): paths and file names must be UTF-8",
            code="archive_unsafe_path",
            entry=path,
        )
    if len(path.encode("utf-8", "surrogatepass")) > limits.max_path_length:
        raise ArchiveRejected(
            f"{_entry(path[:64] + '...')} is longer than {limits.max_path_length} bytes: paths are limited "
            f"to {limits.max_path_length} bytes",
            code="archive_unsafe_path",
            entry=path,
        )
    unified = path.replace("\\", "/")
    if unified.startswith("/") or _DRIVE_LETTER.match(unified):
        raise ArchiveRejected(
            f"{_entry(path)} is an absolute path (zip slip): paths must be relative without '..'",
            code="archive_unsafe_path",
            entry=path,
        )
    parts: list[str] = []
    for part in unified.split("/"):
        if part == "..":
            raise ArchiveRejected(
                f"{_entry(path)} escapes the archive root (zip slip): paths must be relative without '..'",
                code="archive_unsafe_path",
                entry=path,
            )
        if part == "":
            raise ArchiveRejected(
                f"{_entry(path)} has an empty path component: paths must not contain '//' or end with '/'",
                code="archive_unsafe_path",
                entry=path,
            )
        if part != ".":
            parts.append(part)
    if not parts:
        raise ArchiveRejected(
            f"{_entry(path)} does not name a file: paths must name a file below the archive root",
            code="archive_unsafe_path",
            entry=path,
        )
    return "/".join(parts)


def file_dir_conflict(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first (path, parent) where ``parent`` is a file that ``path`` needs to be a
    directory ('a' and 'a/b'), or None. Shared by archives and drafts."""
    files = set(paths)
    for path in sorted(files):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                return path, parent
    return None


def _check_tree(paths: Iterable[str]) -> None:
    """Refuse a file that another entry needs to be a directory ('a' and 'a/b')."""
    conflict = file_dir_conflict(paths)
    if conflict is not None:
        path, parent = conflict
        raise ArchiveRejected(
            f"{_entry(path)} is inside '{parent}', which is also a file: a path cannot be both a file and a directory",
            code="archive_duplicate_path",
            entry=path,
        )


def _spool_upload(stream: BinaryIO, limits: ArchiveLimits) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed by read_zip
    try:
        size = 0
        while True:
            # Never ask for more than one byte past the limit: that byte is the proof.
            chunk = stream.read(min(_CHUNK, limits.max_upload_bytes + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise ArchiveRejected(
                    f"The upload is larger than {limits.max_upload_bytes} bytes: archives are limited to "
                    f"{limits.max_upload_bytes} bytes zipped",
                    code="archive_too_large",
                    status_code=413,
                )
            spool.write(chunk)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def _not_zip(reason: str) -> ArchiveRejected:
    return ArchiveRejected(
        f"The upload is not a zip archive ({reason}): upload a .zip file",
        code="archive_not_zip",
    )


def _corrupt(name: str, reason: str) -> ArchiveRejected:
    return ArchiveRejected(
        f"{_entry(name)} is corrupt ({reason}): the archive must be a valid zip",
        code="archive_corrupt",
        entry=name,
    )


def _raw_entry_data(spool: IO[bytes], info: zipfile.ZipInfo, upload_size: int) -> int:
    """Seek to the entry's compressed data and return its offset, validating the local header."""
    spool.seek(info.header_offset)
    header = spool.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise _corrupt(info.orig_filename, "local header is truncated")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_HEADER_SIGNATURE:
        raise _corrupt(info.orig_filename, "bad local header signature")
    start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
    if start + info.compress_size > upload_size:
        raise _corrupt(info.orig_filename, "compressed data runs past the end of the archive")
    spool.seek(start)
    return start


def _check_overlaps(infos: list[zipfile.ZipInfo], starts: dict[int, int]) -> None:
    """Refuse entries sharing data: many directory records over one local file is a known bomb."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for current, following in itertools.pairwise(ordered):
        if starts[id(current)] + current.compress_size > following.header_offset:
            raise ArchiveRejected(
                f"{_entry(following.orig_filename)} overlaps entry {current.orig_filename!r}: entries must not "
                "share data",
                code="archive_overlapping_entries",
                entry=following.orig_filename,
            )


def _inflate(spool: IO[bytes], info: zipfile.ZipInfo) -> Iterator[bytes]:
    """Yield the entry's real unzipped bytes in chunks of at most _CHUNK.

    Reads exactly ``compress_size`` raw bytes (bounded by the upload size, which we
    checked) and inflates them ourselves: ``zipfile.ZipExtFile`` stops at the header's
    ``file_size``, so it would hide how much data is really there.
    """
    remaining = info.compress_size
    name = info.orig_filename
    if info.compress_type == zipfile.ZIP_STORED:
        while remaining:
            chunk = spool.read(min(_CHUNK, remaining))
            if not chunk:
                raise _corrupt(name, "data is truncated")
            remaining -= len(chunk)
            yield chunk
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = b""
    try:
        while not inflater.eof:
            if not pending and remaining:
                pending = spool.read(min(_CHUNK, remaining))
                if not pending:
                    raise _corrupt(name, "data is truncated")
                remaining -= len(pending)
            # max_length bounds the output of one call: a bomb is inflated _CHUNK at a time.
            out = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            if out:
                yield out
            elif not pending and not remaining and not inflater.eof:
                raise _corrupt(name, "deflate stream is truncated")
    except zlib.error as exc:
        raise _corrupt(name, f"invalid deflate data: {exc}")


def _check_entry_kind(info: zipfile.ZipInfo, name: str) -> bool:
    """Refuse links, devices, encryption and exotic compression; return True for a directory."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ArchiveRejected(
            f"{_entry(name)} is a symbolic link: archives may contain only regular files and directories",
            code="archive_symlink",
            entry=name,
        )
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise ArchiveRejected(
            f"{_entry(name)} is a device, FIFO or socket: archives may contain only regular files and directories",
            code="archive_special_file",
            entry=name,
        )
    is_dir = name.endswith(("/", "\\")) or stat.S_ISDIR(mode)
    if is_dir:
        return True
    if info.flag_bits & _FLAG_ENCRYPTED:
        raise ArchiveRejected(
            f"{_entry(name)} is encrypted: encrypted archives are not accepted",
            code="archive_encrypted",
            entry=name,
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArchiveRejected(
            f"{_entry(name)} uses compression method {info.compress_type}: only stored and deflate entries are "
            "accepted",
            code="archive_unsupported_compression",
            entry=name,
        )
    return False


def _utf8_name(info: zipfile.ZipInfo) -> str:
    """The entry's name read as UTF-8. zipfile decodes a name without the UTF-8 flag as CP437
    (the format's old default), but most tools today write UTF-8 without setting the flag, and
    a name in another encoding would be stored as mojibake: such names are UTF-8 or refused."""
    name = info.orig_filename
    if info.flag_bits & _FLAG_UTF8:
        return name  # zipfile decoded it as UTF-8 already, strictly
    raw = name.encode("cp437")  # CP437 maps every byte: these are the bytes in the archive
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveRejected(
            f"Entry {raw!r} has a name that is not valid UTF-8: file names in archives must be UTF-8",
            code="archive_unsafe_path",
            entry=name,
        ) from None


def read_zip(stream: BinaryIO, *, limits: ArchiveLimits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """Read an uploaded zip into ``{normalised path: content}`` or raise ``ArchiveRejected``.

    Directory entries are validated and skipped. Nothing is written anywhere but the
    spooled copy of the upload, which is closed on every path out.
    """
    spool = _spool_upload(stream, limits)
    try:
        return _read_spooled(spool, limits)
    finally:
        spool.close()


def _read_spooled(spool: IO[bytes], limits: ArchiveLimits) -> dict[str, bytes]:
    upload_size = spool.seek(0, io.SEEK_END)
    spool.seek(0)
    if upload_size == 0:
        raise _not_zip("it is empty")
    if spool.read(4) not in _ZIP_MAGIC:
        raise _not_zip("it does not start with a zip signature")
    spool.seek(0)
    if not zipfile.is_zipfile(spool):
        raise _not_zip("no zip central directory was found; is it truncated?")
    spool.seek(0)
    try:
        archive = zipfile.ZipFile(spool)  # noqa: SIM115 - closed below; spool is closed by the caller
    except UnicodeDecodeError:
        raise ArchiveRejected(
            "An entry's name is marked as UTF-8 but is not valid UTF-8: file names in archives must be UTF-8",
            code="archive_unsafe_path",
        ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise _not_zip(f"its central directory is unreadable: {exc}")
    with archive:
        infos = archive.infolist()
        # Checked before any entry is inflated: bounds the work whatever the entries hold.
        if len(infos) > limits.max_entries:
            raise ArchiveRejected(
                f"The archive has {len(infos)} entries: archives are limited to {limits.max_entries} entries",
                code="archive_too_many_entries",
            )
        files: list[tuple[str, zipfile.ZipInfo]] = []
        seen: dict[str, str] = {}
        for info in infos:
            # orig_filename: zipfile silently truncates ZipInfo.filename at a NUL byte.
            raw_name = _utf8_name(info)
            is_dir = _check_entry_kind(info, raw_name)
            dir_name = raw_name[:-1] if is_dir and raw_name.endswith(("/", "\\")) else raw_name
            if is_dir and dir_name == ".":
                continue  # "./": the root itself, written by some archivers
            path = normalize_path(dir_name, limits=limits)
            if is_dir:
                continue
            if path in seen:
                raise ArchiveRejected(
                    f"{_entry(raw_name)} duplicates entry {seen[path]!r} (both are '{path}'): each path may "
                    "appear only once",
                    code="archive_duplicate_path",
                    entry=raw_name,
                )
            seen[path] = raw_name
            files.append((path, info))
        _check_tree(seen)
        starts = {id(info): _raw_entry_data(spool, info, upload_size) for _, info in files}
        _check_overlaps([info for _, info in files], starts)

        result: dict[str, bytes] = {}
        total = 0
        for path, info in files:
            name = info.orig_filename
            spool.seek(starts[id(info)])
            entry_cap = max(limits.max_ratio * info.compress_size, limits.ratio_exempt_bytes)
            parts: list[bytes] = []
            size = 0
            crc = 0
            for chunk in _inflate(spool, info):
                size += len(chunk)
                total += len(chunk)
                if total > limits.max_total_bytes:
                    raise ArchiveRejected(
                        f"The archive unzips to more than {limits.max_total_bytes} bytes (at entry {name!r}): "
                        f"archives are limited to {limits.max_total_bytes} bytes unzipped",
                        code="archive_too_big_unzipped",
                        entry=name,
                        status_code=413,
                    )
                if size > entry_cap:
                    raise ArchiveRejected(
                        f"{_entry(name)} unzips to more than {limits.max_ratio} times its compressed size "
                        f"({info.compress_size} bytes): entries over {limits.ratio_exempt_bytes} bytes are limited "
                        f"to a compression ratio of {limits.max_ratio}",
                        code="archive_ratio",
                        entry=name,
                    )
                crc = zlib.crc32(chunk, crc)
                parts.append(chunk)
            if size != info.file_size:
                raise _corrupt(name, f"header declares {info.file_size} bytes but it holds {size}")
            if crc != info.CRC:
                raise _corrupt(name, "CRC-32 mismatch")
            result[path] = b"".join(parts)
        return result


def _canonical_files(files: Mapping[str, bytes], limits: ArchiveLimits) -> dict[str, bytes]:
    if len(files) > limits.max_entries:
        raise ArchiveRejected(
            f"The file map has {len(files)} files: archives are limited to {limits.max_entries} entries",
            code="archive_too_many_entries",
        )
    canonical: dict[str, bytes] = {}
    originals: dict[str, str] = {}
    total = 0
    for raw_name, content in files.items():
        path = normalize_path(raw_name, limits=limits)
        if path in canonical:
            raise ArchiveRejected(
                f"{_entry(raw_name)} duplicates entry {originals[path]!r} (both are '{path}'): each path "
                "may appear only once",
                code="archive_duplicate_path",
                entry=raw_name,
            )
        if not isinstance(content, bytes | bytearray | memoryview):
            raise TypeError(f"content of {raw_name!r} must be bytes, not {type(content).__name__}")
        total += len(content)
        if total > limits.max_total_bytes:
            raise ArchiveRejected(
                f"The files total more than {limits.max_total_bytes} bytes (at entry {raw_name!r}): "
                f"archives are limited to {limits.max_total_bytes} bytes unzipped",
                code="archive_too_big_unzipped",
                entry=raw_name,
                status_code=413,
            )
        canonical[path] = bytes(content)
        originals[path] = raw_name
    _check_tree(canonical)
    return canonical


def build_canonical_zip(files: Mapping[str, bytes], *, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes:
    """Build the deterministic archive for ``files``: equal maps give identical bytes.

    Paths are checked with the same rules as uploads (a JSON file map can carry hostile
    paths too) and normalised, so ``{'./a.py': x}`` and ``{'a.py': x}`` are one archive.
    Byte-identity also depends on zlib's deflate output, which is stable for a given zlib
    build; digests are compared within one deployment.
    """
    canonical = _canonical_files(files, limits)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(canonical):
            info = zipfile.ZipInfo(path, date_time=_CANONICAL_DATE_TIME)
            info.create_system = 3  # Unix, whatever the host: it is part of the bytes
            info.external_attr = _CANONICAL_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, canonical[path], compress_type=zipfile.ZIP_DEFLATED, compresslevel=_CANONICAL_LEVEL)
    return buffer.getvalue()


def content_digest(files: Mapping[str, bytes], *, limits: ArchiveLimits = DEFAULT_LIMITS) -> str:
    """sha256 (hex) of the canonical archive of ``files``: the version's content address."""
    return hashlib.sha256(build_canonical_zip(files, limits=limits)).hexdigest()
