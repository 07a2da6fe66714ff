"""The hostile-archive corpus for apps.functions.archives.

Every hostile archive is built here, either with ``zipfile`` (crafted ZipInfo names and
attributes) or byte by byte with ``raw_zip`` where ``zipfile`` would refuse to write the
lie (encrypted flags, NUL names, duplicate names, headers whose sizes lie). Bombs use small
ArchiveLimits so the suite stays fast while the counting logic is the same.
"""

from __future__ import annotations

import gzip
import io
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass

import pytest

from apps.functions import archives
from apps.functions.archives import (
    DEFAULT_LIMITS,
    ArchiveLimits,
    ArchiveRejected,
    build_canonical_zip,
    content_digest,
    normalize_path,
    read_zip,
)

MiB = 1024 * 1024


# --- builders ---------------------------------------------------------------------------


def make_zip(*entries: tuple[str | zipfile.ZipInfo, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def info(name: str, mode: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = mode << 16
    return zi


@dataclass
class RawEntry:
    """One entry of a hand-built zip: every header field is ours to lie about."""

    name: bytes
    payload: bytes  # the raw (already compressed) data
    method: int = zipfile.ZIP_STORED
    crc: int | None = None
    file_size: int | None = None  # written to both headers
    central_file_size: int | None = None  # overrides file_size in the central directory only
    flags: int = 0
    external_attr: int = (stat.S_IFREG | 0o644) << 16


def raw_zip(*entries: RawEntry) -> bytes:
    out = bytearray()
    central = bytearray()
    dos_date = (0 << 9) | (1 << 5) | 1  # 1980-01-01
    for e in entries:
        crc = e.crc if e.crc is not None else zlib.crc32(e.payload)
        size = e.file_size if e.file_size is not None else len(e.payload)
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, e.flags, e.method, 0, dos_date, crc, len(e.payload), size, len(e.name), 0
        )
        out += e.name + e.payload
        central_size = e.central_file_size if e.central_file_size is not None else size
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            (3 << 8) | 20,
            20,
            e.flags,
            e.method,
            0,
            dos_date,
            crc,
            len(e.payload),
            central_size,
            len(e.name),
            0,
            0,
            0,
            0,
            e.external_attr,
            offset,
        )
        central += e.name
    cd_offset = len(out)
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    return bytes(out)


def deflate_zeros(n_mib: int) -> bytes:
    """A valid raw deflate stream of n_mib MiB of zeros, built without compressing it all.

    Each block is self-contained (a full flush from a fresh compressor), so it can be
    repeated; a fresh compressor's finish adds the final block.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * n_mib + zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()


def rejected(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> ArchiveRejected:
    with pytest.raises(ArchiveRejected) as caught:
        read_zip(io.BytesIO(data), limits=limits)
    return caught.value


# --- zip slip and hostile names -----------------------------------------------------------

ESCAPE = "escapes the archive root (zip slip): paths must be relative without '..'"
ABSOLUTE = "is an absolute path (zip slip): paths must be relative without '..'"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../x", ESCAPE),
        ("../evil.py", ESCAPE),
        ("a/../../x", ESCAPE),
        ("a/..", ESCAPE),
        ("..\\evil.py", ESCAPE),
        ("a\\..\\..\\evil.py", ESCAPE),
        ("/etc/passwd", ABSOLUTE),
        ("C:\\x", ABSOLUTE),
        ("C:/Windows/x.dll", ABSOLUTE),
        ("c:x", ABSOLUTE),
        ("\\x", ABSOLUTE),
        ("\\\\server\\share\\x", ABSOLUTE),
        ("a//b.py", "has an empty path component"),
        ("a" * 1025, "paths are limited to 1024 bytes"),
        ("a\nb.py", "contains a control character"),
    ],
)
def test_unsafe_paths_are_refused_naming_rule_and_entry(name: str, rule: str) -> None:
    err = rejected(make_zip((name, b"print('pwned')\n")))

    assert err.code == "archive_unsafe_path"
    assert err.status_code == 400
    assert err.entry == name
    assert rule in err.message
    if len(name) <= 1024:
        assert repr(name) in err.message


def test_zip_slip_message_is_exact() -> None:
    err = rejected(make_zip(("../evil.py", b"x")))

    assert err.message == (
        "Entry '../evil.py' escapes the archive root (zip slip): paths must be relative without '..'"
    )


def test_nul_byte_in_name_is_refused_although_zipfile_would_truncate_it() -> None:
    data = raw_zip(RawEntry(b"evil.py\x00.txt", b"x"))
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["evil.py"]  # what a naive reader sees

    err = rejected(data)

    assert err.code == "archive_unsafe_path"
    assert err.entry == "evil.py\x00.txt"
    assert "Entry 'evil.py\\x00.txt' contains a NUL byte" in err.message


def test_hostile_directory_entry_is_refused_too() -> None:
    err = rejected(make_zip(("../outside/", b""), ("a.py", b"x")))

    assert err.code == "archive_unsafe_path"
    assert err.entry == "../outside"


# --- entry kinds --------------------------------------------------------------------------


def test_symlink_entry_is_refused() -> None:
    err = rejected(make_zip((info("link", stat.S_IFLNK | 0o777), b"/etc/passwd")))

    assert err.code == "archive_symlink"
    assert err.message == ("Entry 'link' is a symbolic link: archives may contain only regular files and directories")
    assert err.entry == "link"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("dev/tty0", stat.S_IFCHR), ("dev/sda", stat.S_IFBLK), ("pipe", stat.S_IFIFO), ("sock", stat.S_IFSOCK)],
)
def test_device_fifo_and_socket_entries_are_refused(name: str, kind: int) -> None:
    err = rejected(make_zip((info(name, kind | 0o644), b"")))

    assert err.code == "archive_special_file"
    assert err.message == (
        f"Entry '{name}' is a device, FIFO or socket: archives may contain only regular files and directories"
    )


def test_encrypted_entry_is_refused() -> None:
    err = rejected(raw_zip(RawEntry(b"secret.py", b"\x00" * 12 + b"ciphertext", flags=0x1)))

    assert err.code == "archive_encrypted"
    assert err.message == "Entry 'secret.py' is encrypted: encrypted archives are not accepted"


def test_unsupported_compression_is_refused() -> None:
    err = rejected(make_zip(("a.py", b"x" * 100), compression=zipfile.ZIP_BZIP2))

    assert err.code == "archive_unsupported_compression"
    assert "Entry 'a.py' uses compression method 12" in err.message


# --- duplicates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [(b"a.py", b"a.py"), (b"a.py", b"./a.py"), (b"src/a.py", b"src\\a.py"), (b"src/a.py", b"src/./a.py")],
)
def test_duplicate_paths_are_refused(first: bytes, second: bytes) -> None:
    err = rejected(raw_zip(RawEntry(first, b"one"), RawEntry(second, b"two")))

    assert err.code == "archive_duplicate_path"
    assert err.entry == second.decode()
    assert err.message.startswith(f"Entry {second.decode()!r} duplicates entry {first.decode()!r}")
    assert "each path may appear only once" in err.message


def test_file_that_is_also_a_directory_is_refused() -> None:
    err = rejected(make_zip(("lib", b"x"), ("lib/a.py", b"y")))

    assert err.code == "archive_duplicate_path"
    assert err.message == (
        "Entry 'lib/a.py' is inside 'lib', which is also a file: a path cannot be both a file and a directory"
    )


# --- bombs --------------------------------------------------------------------------------


def test_too_many_entries_is_refused() -> None:
    limits = ArchiveLimits(max_entries=5)
    assert read_zip(io.BytesIO(make_zip(*[(f"f{i}.py", b"x") for i in range(5)])), limits=limits).keys() == {
        f"f{i}.py" for i in range(5)
    }

    err = rejected(make_zip(*[(f"f{i}.py", b"x") for i in range(6)]), limits)

    assert err.code == "archive_too_many_entries"
    assert err.message == "The archive has 6 entries: archives are limited to 5 entries"


def test_total_unzipped_over_limit_is_refused_at_the_entry_that_crosses_it() -> None:
    limits = ArchiveLimits(max_total_bytes=1_000_000)
    chunk = bytes(range(256)) * 1563  # 400,128 bytes each
    err = rejected(make_zip(("a.bin", chunk), ("b.bin", chunk), ("c.bin", chunk)), limits)

    assert err.code == "archive_too_big_unzipped"
    assert err.status_code == 413
    assert err.entry == "c.bin"
    assert err.message == (
        "The archive unzips to more than 1000000 bytes (at entry 'c.bin'): archives are limited to 1000000 bytes "
        "unzipped"
    )


def test_per_entry_ratio_bomb_is_refused() -> None:
    data = make_zip(("readme.txt", b"hello\n"), ("bomb.bin", bytes(20 * MiB)))

    err = rejected(data)  # default limits: 250 MB total would not stop it, the ratio does

    assert err.code == "archive_ratio"
    assert err.status_code == 400
    assert err.entry == "bomb.bin"
    assert err.message.startswith("Entry 'bomb.bin' unzips to more than 100 times its compressed size")
    assert "limited to a compression ratio of 100" in err.message


def test_small_highly_compressible_entries_are_exempt_from_the_ratio_rule() -> None:
    text = b"a" * (MiB - 1)  # ~1000x compressible, but under the 1 MiB exemption

    assert read_zip(io.BytesIO(make_zip(("package-lock.json", text)))) == {"package-lock.json": text}


def test_lying_header_bomb_is_caught_by_counting() -> None:
    # 300 MiB of zeros in ~300 KB of deflate, while both headers claim 1,000 bytes.
    payload = deflate_zeros(300)
    data = raw_zip(RawEntry(b"tiny.txt", payload, method=zipfile.ZIP_DEFLATED, file_size=1000, crc=0))
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo("tiny.txt").file_size == 1000  # headers lie
    limits = ArchiveLimits(max_total_bytes=4 * MiB)

    err = rejected(data, limits)

    assert err.code == "archive_too_big_unzipped"
    assert err.entry == "tiny.txt"
    assert "more than 4194304 bytes (at entry 'tiny.txt')" in err.message


def test_lying_header_ratio_bomb_is_caught_by_counting() -> None:
    payload = deflate_zeros(300)
    data = raw_zip(RawEntry(b"tiny.txt", payload, method=zipfile.ZIP_DEFLATED, file_size=10, crc=0))

    err = rejected(data)  # default limits: 100x the ~300 KB compressed trips at ~30 MB

    assert err.code == "archive_ratio"
    assert err.entry == "tiny.txt"


def test_central_directory_size_patched_to_lie_in_a_real_archive() -> None:
    data = bytearray(make_zip(("payload.bin", bytes(5 * MiB))))
    cd = data.index(b"PK\x01\x02")
    struct.pack_into("<L", data, cd + 24, 100)  # central directory file_size: "100 bytes"
    struct.pack_into("<L", data, 22, 100)  # and the local header agrees with the lie
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("payload.bin").file_size == 100
    limits = ArchiveLimits(max_total_bytes=512 * 1024)  # below the ratio cap, so the total trips first

    err = rejected(bytes(data), limits)

    assert err.code == "archive_too_big_unzipped"
    assert err.entry == "payload.bin"


def test_lying_header_within_limits_is_refused_as_corrupt() -> None:
    real = b"x = 1\n" * 1000
    data = raw_zip(RawEntry(b"a.py", zlib.compress(real)[2:-4], method=zipfile.ZIP_DEFLATED, file_size=10))

    err = rejected(data)

    assert err.code == "archive_corrupt"
    assert err.message == (
        "Entry 'a.py' is corrupt (header declares 10 bytes but it holds 6000): the archive must be a valid zip"
    )


def test_crc_mismatch_and_garbage_deflate_are_refused_as_corrupt() -> None:
    bad_crc = rejected(raw_zip(RawEntry(b"a.py", b"hello", crc=1234)))
    garbage = rejected(raw_zip(RawEntry(b"b.py", b"\xff" * 50, method=zipfile.ZIP_DEFLATED, file_size=50)))

    assert (bad_crc.code, bad_crc.entry) == ("archive_corrupt", "a.py")
    assert "CRC-32 mismatch" in bad_crc.message
    assert (garbage.code, garbage.entry) == ("archive_corrupt", "b.py")
    assert "invalid deflate data" in garbage.message


def test_overlapping_entries_bomb_is_refused() -> None:
    # Fifield-style: many central directory records pointing at one local file.
    payload = zlib.compress(bytes(900_000))[2:-4]
    one = raw_zip(
        RawEntry(b"f", payload, method=zipfile.ZIP_DEFLATED, file_size=900_000, crc=zlib.crc32(bytes(900_000)))
    )
    local_end = one.index(b"PK\x01\x02")
    central_record = one[local_end : one.index(b"PK\x05\x06")]
    records = b"".join(central_record[:-1] + bytes([ord("a") + i]) for i in range(10))
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 10, 10, len(records), local_end, 0)
    err = rejected(one[:local_end] + records + eocd, ArchiveLimits(max_total_bytes=5_000_000))

    assert err.code == "archive_overlapping_entries"
    assert err.message == "Entry 'b' overlaps entry 'a': entries must not share data"


# --- not a zip, too large -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"def handler(event, context):\n    return 1\n", "it does not start with a zip signature"),
        (gzip.compress(b"hello" * 100), "it does not start with a zip signature"),
        (b"", "it is empty"),
        (make_zip(("a.py", b"x" * 1000))[:-10], "no zip central directory was found; is it truncated?"),
        (make_zip(("a.py", b"x" * 1000))[:40], "no zip central directory was found; is it truncated?"),
        (b"MZ\x90\x00self-extractor" + make_zip(("a.py", b"x")), "it does not start with a zip signature"),
    ],
    ids=["plain-text", "gzip", "empty", "truncated-end", "truncated-middle", "prepended-data"],
)
def test_non_zip_input_is_refused(data: bytes, reason: str) -> None:
    err = rejected(data)

    assert err.code == "archive_not_zip"
    assert err.status_code == 400
    assert err.message == f"The upload is not a zip archive ({reason}): upload a .zip file"


class EndlessZeros(io.RawIOBase):
    """A body that never ends: the reader must stop on its own."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        assert n > 0, "must never read an upload whole"
        chunk = (b"PK\x03\x04" + bytes(n))[:n] if self.served == 0 else bytes(n)
        self.served += len(chunk)
        return chunk


def test_upload_over_the_size_limit_is_refused_without_reading_it_all() -> None:
    body = EndlessZeros()

    with pytest.raises(ArchiveRejected) as caught:
        read_zip(body, limits=ArchiveLimits(max_upload_bytes=1000))  # type: ignore[arg-type]

    err = caught.value
    assert err.code == "archive_too_large"
    assert err.status_code == 413
    assert err.message == "The upload is larger than 1000 bytes: archives are limited to 1000 bytes zipped"
    assert body.served == 1001


def test_upload_exactly_at_the_limit_is_read() -> None:
    data = make_zip(("a.py", b"x = 1\n"))

    assert read_zip(io.BytesIO(data), limits=ArchiveLimits(max_upload_bytes=len(data))) == {"a.py": b"x = 1\n"}


@pytest.mark.parametrize("hostile", [False, True])
def test_spooled_upload_is_always_closed(monkeypatch: pytest.MonkeyPatch, hostile: bool) -> None:
    spools = []
    real = archives.tempfile.SpooledTemporaryFile

    def recording(*args, **kwargs):
        spool = real(*args, **kwargs)
        spools.append(spool)
        return spool

    monkeypatch.setattr(archives.tempfile, "SpooledTemporaryFile", recording)
    data = make_zip(("../x", b"x")) if hostile else make_zip(("a.py", b"x"))

    if hostile:
        with pytest.raises(ArchiveRejected):
            read_zip(io.BytesIO(data))
    else:
        read_zip(io.BytesIO(data))

    assert len(spools) == 1
    assert spools[0].closed


# --- accepted archives ----------------------------------------------------------------------


def test_normal_archive_round_trips_and_skips_directories() -> None:
    inner = make_zip(("../nested-is-not-extracted.py", b"x"))
    data = make_zip(
        ("./", b""),
        ("src/", b""),
        ("src/handler.py", b"def handler(event, context):\n    return {'ok': True}\n"),
        ("./requirements.txt", b"requests==2.32.3\n"),
        ("src\\util.py", b"X = 1\n"),
        ("vendor/lib.zip", inner),
        ("empty.txt", b""),
        ("d\u00e9j\u00e0/caf\u00e9.py", "print('é')\n".encode()),
    )

    assert read_zip(io.BytesIO(data)) == {
        "src/handler.py": b"def handler(event, context):\n    return {'ok': True}\n",
        "requirements.txt": b"requests==2.32.3\n",
        "src/util.py": b"X = 1\n",
        "vendor/lib.zip": inner,
        "empty.txt": b"",
        "d\u00e9j\u00e0/caf\u00e9.py": "print('é')\n".encode(),
    }


def test_stored_entries_are_read() -> None:
    data = make_zip(("a.py", b"x = 1\n"), compression=zipfile.ZIP_STORED)

    assert read_zip(io.BytesIO(data)) == {"a.py": b"x = 1\n"}


def test_empty_zip_reads_as_no_files() -> None:
    assert read_zip(io.BytesIO(make_zip())) == {}


# --- canonical archives and digests ----------------------------------------------------------

FILES = {
    "handler.py": b"def handler(event, context):\n    return event\n",
    "lib/util.py": b"X = 1\n",
    "README.md": b"# hi\n",
}


def test_canonical_zip_is_deterministic_and_independent_of_insertion_order() -> None:
    reordered = dict(reversed(list(FILES.items())))

    first = build_canonical_zip(FILES)

    assert build_canonical_zip(FILES) == first
    assert build_canonical_zip(reordered) == first
    assert content_digest(reordered) == content_digest(FILES)


def test_canonical_zip_round_trips_through_read_zip() -> None:
    assert read_zip(io.BytesIO(build_canonical_zip(FILES))) == FILES
    assert read_zip(io.BytesIO(build_canonical_zip({}))) == {}


def test_canonical_zip_fixes_order_timestamps_and_permissions() -> None:
    with zipfile.ZipFile(io.BytesIO(build_canonical_zip(FILES))) as zf:
        infos = zf.infolist()

    assert [i.filename for i in infos] == ["README.md", "handler.py", "lib/util.py"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {stat.S_IFREG | 0o644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_digest_changes_when_one_byte_changes() -> None:
    changed = {**FILES, "lib/util.py": b"X = 2\n"}
    renamed = {**{k: v for k, v in FILES.items() if k != "lib/util.py"}, "lib/utils.py": b"X = 1\n"}

    digests = {content_digest(FILES), content_digest(changed), content_digest(renamed)}

    assert len(digests) == 3
    assert all(len(d) == 64 for d in digests)


def test_canonical_zip_normalises_paths() -> None:
    assert build_canonical_zip({"./lib\\util.py": b"X = 1\n"}) == build_canonical_zip({"lib/util.py": b"X = 1\n"})


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../evil.py", "archive_unsafe_path"),
        ("/etc/passwd", "archive_unsafe_path"),
        ("C:\\x", "archive_unsafe_path"),
        ("a\x00b", "archive_unsafe_path"),
        ("", "archive_unsafe_path"),
        (".", "archive_unsafe_path"),
        ("dir/", "archive_unsafe_path"),
    ],
)
def test_canonical_zip_refuses_hostile_paths_in_a_file_map(name: str, code: str) -> None:
    with pytest.raises(ArchiveRejected) as caught:
        build_canonical_zip({name: b"x"})

    assert caught.value.code == code
    assert caught.value.entry == name
    assert repr(name) in caught.value.message


def test_canonical_zip_refuses_duplicates_and_limits() -> None:
    with pytest.raises(ArchiveRejected) as dup:
        build_canonical_zip({"a.py": b"1", "./a.py": b"2"})
    with pytest.raises(ArchiveRejected) as many:
        build_canonical_zip({f"{i}.py": b"" for i in range(4)}, limits=ArchiveLimits(max_entries=3))
    with pytest.raises(ArchiveRejected) as big:
        build_canonical_zip({"a": b"x" * 10, "b": b"x" * 10}, limits=ArchiveLimits(max_total_bytes=15))

    assert (dup.value.code, dup.value.entry) == ("archive_duplicate_path", "./a.py")
    assert many.value.code == "archive_too_many_entries"
    assert (big.value.code, big.value.entry, big.value.status_code) == ("archive_too_big_unzipped", "b", 413)


def test_normalize_path() -> None:
    assert normalize_path("./src\\app.py") == "src/app.py"
    assert normalize_path("a/./b") == "a/b"
