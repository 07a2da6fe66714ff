"""The draft as one zip: GET draft/archive downloads it, PUT draft/archive (multipart `file`)
replaces the draft's files with an uploaded zip's.

The world (tests/conftest.py): alice owns alpha, bob is a developer on `web`, carol a viewer
on `web`, dora a developer of alpha with no grant on `web`, charlie the outsider.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.models import AuditEvent
from apps.functions import draft_services, services
from apps.functions.models import DraftFile, Function

MAIN = b"def handler(event, context):\n    return {'ok': True}\n"
LOGO = bytes(range(256)) + b"\xff\xfe\x00"  # not UTF-8: a binary file


@pytest.fixture
def fn(world: Any) -> Function:
    function = services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    for path, content in (("main.py", MAIN), ("lib/util.py", b"X = 1\n"), ("assets/logo.png", LOGO)):
        draft_services.draft_file_write(actor=world.alice, function=function, path=path, content=content)
    return function


def archive_url(fn: Function) -> str:
    return f"/api/v1/functions/{fn.pk}/draft/archive"


def make_zip(entries: dict[str, bytes], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def upload(client: Any, fn: Function, data: bytes, name: str = "code.zip", **headers: str) -> Any:
    return client.put(
        archive_url(fn),
        {"file": SimpleUploadedFile(name, data, content_type="application/zip")},
        format="multipart",
        headers=headers,
    )


def draft(fn: Function) -> dict[str, bytes]:
    return {f.path: bytes(f.content) for f in DraftFile.objects.filter(function=fn)}


def revision(fn: Function) -> int:
    return Function.objects.get(pk=fn.pk).draft_revision


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


ORIGINAL = {"main.py": MAIN, "lib/util.py": b"X = 1\n", "assets/logo.png": LOGO}


# --- download, upload, round trip -------------------------------------------------------------


def test_download_then_upload_round_trips_the_draft(world: Any, client_for: Any, fn: Function) -> None:
    bob = client_for(world.bob)

    downloaded = bob.get(archive_url(fn))

    assert downloaded.status_code == 200
    assert downloaded["Content-Type"] == "application/zip"
    assert downloaded["Content-Disposition"] == 'attachment; filename="hello-draft.zip"'
    assert downloaded["ETag"] == '"rev-3"'
    assert unzip(downloaded.content) == ORIGINAL

    # The draft moves on; uploading the downloaded zip puts it back as it was.
    draft_services.draft_file_delete(actor=world.bob, function=fn, path="lib/util.py")
    draft_services.draft_file_write(actor=world.bob, function=fn, path="main.py", content=b"broken(")
    draft_services.draft_file_write(actor=world.bob, function=fn, path="scratch.txt", content=b"tmp")

    replaced = upload(bob, fn, downloaded.content)

    assert replaced.status_code == 200, replaced.content
    assert draft(fn) == ORIGINAL
    tree = bob.get(f"/api/v1/functions/{fn.pk}/draft/")
    assert replaced.json() == tree.json()  # the answer is the new tree, as GET draft/ gives it
    assert replaced["ETag"] == tree["ETag"] == '"rev-7"'
    assert [(f["path"], f["size"], f["binary"]) for f in replaced.json()["files"]] == [
        ("assets/logo.png", len(LOGO), True),
        ("lib/util.py", 6, False),
        ("main.py", len(MAIN), False),
    ]
    assert AuditEvent.objects.filter(action="draft.replace").get().changes == {
        "added": ["lib/util.py"],
        "changed": ["main.py"],
        "removed": ["scratch.txt"],
        "revision": 7,
    }


def test_anyone_who_sees_the_function_downloads_an_empty_or_full_draft(world: Any, client_for: Any) -> None:
    empty = services.function_create(
        actor=world.alice, project=world.web, name="empty", runtime="python3.11", handler="main.handler"
    )
    response = client_for(world.carol).get(archive_url(empty))  # a viewer
    assert response.status_code == 200
    assert unzip(response.content) == {}


def test_an_upload_with_the_current_revision_replaces_and_a_stale_one_is_409(
    world: Any, client_for: Any, fn: Function
) -> None:
    bob = client_for(world.bob)
    before = revision(fn)

    stale = upload(bob, fn, make_zip({"main.py": b"x = 1\n"}), **{"If-Match": f'"rev-{before - 1}"'})
    file_etag = upload(bob, fn, make_zip({"main.py": b"x = 1\n"}), **{"If-Match": DraftFile.objects.get(path="main.py").sha256})

    for response in (stale, file_etag):
        assert response.status_code == 409, response.content
        assert response.json()["error"]["code"] == "stale_write"
    assert f"draft's current ETag is 'rev-{before}'" in stale.json()["error"]["message"]
    assert f"takes the draft's ETag 'rev-{before}'" in file_etag.json()["error"]["message"]
    assert draft(fn) == ORIGINAL and revision(fn) == before

    fresh = upload(bob, fn, make_zip({"main.py": b"x = 1\n"}), **{"If-Match": f'"rev-{before}"'})
    assert fresh.status_code == 200, fresh.content
    assert draft(fn) == {"main.py": b"x = 1\n"}
    assert fresh.json()["etag"] == f"rev-{before + 1}"


# --- one folder wrapping everything ------------------------------------------------------------


def test_a_single_top_folder_is_unwrapped(world: Any, client_for: Any, fn: Function) -> None:
    # GitHub's "Download ZIP" (hello-main/...), zipped on a Mac (__MACOSX/ beside it).
    data = make_zip(
        {
            "hello-main/": b"",
            "hello-main/main.py": MAIN,
            "hello-main/lib/util.py": b"Y = 2\n",
            "__MACOSX/hello-main/._main.py": b"\x00\x05\x16\x07",
        }
    )

    response = upload(client_for(world.bob), fn, data)

    assert response.status_code == 200, response.content
    assert draft(fn) == {"main.py": MAIN, "lib/util.py": b"Y = 2\n"}


@pytest.mark.parametrize(
    ("runtime", "handler", "entries"),
    [
        ("python3.11", "app.main.handler", {"app/__init__.py": b"", "app/main.py": MAIN}),
        ("node20", "src/index.handler", {"src/index.js": b"exports.handler = async () => 1;\n"}),
    ],
)
def test_a_top_folder_the_handler_lives_in_is_kept(
    world: Any, client_for: Any, runtime: str, handler: str, entries: dict[str, bytes]
) -> None:
    function = services.function_create(
        actor=world.alice, project=world.web, name="nested", runtime=runtime, handler=handler
    )
    alice = client_for(world.alice)

    response = upload(alice, function, make_zip(entries))

    assert response.status_code == 200, response.content
    assert draft(function) == entries
    # So such a draft survives its own round trip.
    assert upload(alice, function, alice.get(archive_url(function)).content).status_code == 200
    assert draft(function) == entries


# --- refused zips change nothing -----------------------------------------------------------------


def refused(response: Any, status: int, code: str, fn: Function, before: int) -> str:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert draft(fn) == ORIGINAL
    assert revision(fn) == before
    assert not AuditEvent.objects.filter(action="draft.replace").exists()
    return str(response.json()["error"]["message"])


def test_more_than_2000_files_is_400_naming_the_rule(world: Any, client_for: Any, fn: Function) -> None:
    before = revision(fn)
    data = make_zip({f"f{i:04}.py": b"" for i in range(2001)})

    message = refused(upload(client_for(world.bob), fn, data), 400, "draft_too_many_files", fn, before)

    assert message == "The draft would hold 2001 files: drafts are limited to 2000 files."


def test_a_zip_of_21_mb_is_413_naming_the_rule(world: Any, client_for: Any, fn: Function) -> None:
    before = revision(fn)
    # Random bytes do not compress: a 21 MB zip of three 7 MB files, each under the per-file limit.
    data = make_zip({f"blob{i}.bin": os.urandom(7 * 1024 * 1024) for i in range(3)}, stored=True)
    assert len(data) > 21 * 1024 * 1024

    message = refused(upload(client_for(world.bob), fn, data), 413, "draft_too_large", fn, before)

    assert message == (
        "The zip unzips to more than 20971520 bytes (at entry 'blob2.bin'): drafts are limited to 20971520 bytes "
        "(20 MB) in all."
    )


def test_a_file_over_10_mb_is_413_naming_the_rule(world: Any, client_for: Any, fn: Function) -> None:
    before = revision(fn)
    data = make_zip({"main.py": MAIN, "data.bin": os.urandom(10 * 1024 * 1024 + 2)}, stored=True)

    message = refused(upload(client_for(world.bob), fn, data), 413, "draft_too_large", fn, before)

    assert message == "File 'data.bin' is 10485762 bytes: draft files are limited to 10485760 bytes each."


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", MAIN)
        link = zipfile.ZipInfo("passwd")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code", "rule"),
    [
        (make_zip({"main.py": MAIN, "../evil.py": b"x"}), "archive_unsafe_path", "escapes the archive root (zip slip)"),
        (make_zip({"main.py": MAIN, "/etc/cron.d/x": b"x"}), "archive_unsafe_path", "is an absolute path (zip slip)"),
        (symlink_zip(), "archive_symlink", "is a symbolic link"),
        (make_zip({"lib": b"x", "lib/a.py": b"y"}), "archive_duplicate_path", "a path cannot be both a file and"),
        (b"PK\x03\x04 not really a zip", "archive_not_zip", "The upload is not a zip archive"),
        (make_zip({}), "archive_empty", "The zip holds no files"),
        (make_zip({"__MACOSX/._x": b"junk"}), "archive_empty", "The zip holds no files"),
    ],
    ids=["dotdot", "leading-slash", "symlink", "file-and-folder", "not-a-zip", "empty", "only-mac-junk"],
)
def test_unsafe_or_useless_zips_are_400_naming_the_rule(
    world: Any, client_for: Any, fn: Function, data: bytes, code: str, rule: str
) -> None:
    before = revision(fn)
    message = refused(upload(client_for(world.bob), fn, data), 400, code, fn, before)
    assert rule in message


def test_the_upload_must_be_a_multipart_file(world: Any, client_for: Any, fn: Function) -> None:
    bob, before = client_for(world.bob), revision(fn)

    missing = bob.put(archive_url(fn), {}, format="multipart")
    raw = bob.generic("PUT", archive_url(fn), make_zip({"main.py": b"x"}), content_type="application/zip")

    refused(missing, 400, "invalid", fn, before)
    assert refused(raw, 415, "unsupported_media_type", fn, before)


# --- who may --------------------------------------------------------------------------------------


def test_a_viewer_downloads_but_cannot_upload(world: Any, client_for: Any, fn: Function) -> None:
    carol, before = client_for(world.carol), revision(fn)

    assert unzip(carol.get(archive_url(fn)).content) == ORIGINAL
    message = refused(upload(carol, fn, make_zip({"main.py": b"hacked"})), 403, "permission_denied", fn, before)
    assert "Replacing the draft needs" in message


@pytest.mark.parametrize("username", ["dora", "charlie"])
def test_a_member_without_grant_and_an_outsider_get_404(
    world: Any, client_for: Any, fn: Function, username: str
) -> None:
    client, before = client_for(world.user(username)), revision(fn)

    download = client.get(archive_url(fn))
    assert download.status_code == 404
    assert download.json()["error"]["message"] == "Function not found."
    message = refused(upload(client, fn, make_zip({"main.py": b"hacked"})), 404, "not_found", fn, before)
    assert message == "Function not found."


def test_tokens_need_read_to_download_and_write_to_upload(world: Any, client_for: Any, fn: Function) -> None:
    reader, before = client_for(world.bob, scopes=["read"]), revision(fn)

    assert reader.get(archive_url(fn)).status_code == 200
    message = refused(upload(reader, fn, make_zip({"main.py": b"x"})), 403, "permission_denied", fn, before)
    assert message == "This token lacks the 'write' scope this request needs."

    writer = client_for(world.bob, scopes=["write"])
    assert upload(writer, fn, make_zip({"main.py": b"x"})).status_code == 200
    assert draft(fn) == {"main.py": b"x"}


def test_the_tree_tells_binary_files_by_their_first_kib(world: Any, client_for: Any, fn: Function) -> None:
    # 1,023 ASCII bytes then "é" (two bytes): the character straddles the sniffed KiB, and is
    # still text; a NUL is UTF-8 too (the file API answers it as utf-8 text as well).
    straddling = b"#" * 1023 + "é\n".encode()
    for path, content in (("straddle.txt", straddling), ("nul.txt", b"a\x00b")):
        draft_services.draft_file_write(actor=world.bob, function=fn, path=path, content=content)
    bob = client_for(world.bob)

    tree = {f["path"]: f["binary"] for f in bob.get(f"/api/v1/functions/{fn.pk}/draft/").json()["files"]}

    assert tree == {
        "assets/logo.png": True,
        "lib/util.py": False,
        "main.py": False,
        "nul.txt": False,
        "straddle.txt": False,
    }
    for path, binary in tree.items():
        encoding = bob.get(f"/api/v1/functions/{fn.pk}/draft/files/{path}").json()["encoding"]
        assert (encoding != "utf-8") == binary, path
