"""Versions: created from a JSON map of files or a zip upload, immutable, numbered,
content-addressed, readable file by file, diffable; hostile uploads leave nothing behind."""

import io
import zipfile

import pytest
from django.core.files.storage import storages

from apps.audit.models import AuditEvent
from apps.functions import services
from apps.functions.models import Artifact, Version

HELLO = {"name": "hello", "runtime": "python3.11", "handler": "main.handler"}
MAIN_V1 = "def handler(event, context):\n    return {'ok': 1}\n"
MAIN_V2 = "def handler(event, context):\n    return {'ok': 2}\n"


@pytest.fixture
def fn(world):
    return services.function_create(actor=world.alice, project=world.web, **HELLO)


def versions_url(fn):
    return f"/api/v1/functions/{fn.pk}/versions/"


def zip_bytes(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_versions_from_json_files_are_numbered_and_content_addressed(world, client_for, fn):
    bob = client_for(world.bob)

    first = bob.post(versions_url(fn), {"files": {"main.py": MAIN_V1}, "message": "first"}, format="json")
    second = bob.post(versions_url(fn), {"files": {"main.py": MAIN_V2}}, format="json")
    third = bob.post(versions_url(fn), {"files": {"main.py": MAIN_V1}, "message": "back"}, format="json")

    assert [r.status_code for r in (first, second, third)] == [201, 201, 201]
    assert [r.json()["number"] for r in (first, second, third)] == [1, 2, 3]
    body = first.json()
    assert (body["source"], body["message"], body["author"], body["file_count"]) == ("files", "first", "bob", 1)
    assert body["config"]["handler"] == "main.handler"
    assert "description" not in body["config"]
    # v1 and v3 have the same content: one artifact, stored once
    assert first.json()["sha256"] == third.json()["sha256"] != second.json()["sha256"]
    assert Artifact.objects.count() == 2
    artifact = Artifact.objects.get(sha256=body["sha256"])
    assert storages["artifacts"].exists(artifact.storage_name)
    assert AuditEvent.objects.filter(action="version.create").count() == 3


def test_zip_upload_creates_a_version_and_files_read_back(world, client_for, fn):
    archive = zip_bytes({"main.py": MAIN_V1, "lib/util.py": "X = 1\n", "logo.bin": b"\x00\xff\x10"})
    bob = client_for(world.bob)

    response = bob.post(versions_url(fn), {"archive": io.BytesIO(archive), "message": "zip"}, format="multipart")

    assert response.status_code == 201, response.json()
    assert (response.json()["number"], response.json()["source"], response.json()["file_count"]) == (1, "upload", 3)
    tree = bob.get(f"{versions_url(fn)}1/files/").json()
    assert [(f["path"], f["size"]) for f in tree] == [("lib/util.py", 6), ("logo.bin", 3), ("main.py", len(MAIN_V1))]
    text = bob.get(f"{versions_url(fn)}1/files/main.py").json()
    assert (text["content"], text["encoding"]) == (MAIN_V1, "utf-8")
    binary = bob.get(f"{versions_url(fn)}1/files/logo.bin").json()
    assert (binary["content"], binary["encoding"]) == ("AP8Q", "base64")
    assert bob.get(f"{versions_url(fn)}1/files/missing.py").status_code == 404
    download = bob.get(f"{versions_url(fn)}1/archive")
    assert download["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        assert sorted(zf.namelist()) == ["lib/util.py", "logo.bin", "main.py"]


@pytest.mark.parametrize(
    ("archive", "code"),
    [
        (zip_bytes({"../evil.py": "x"}), "archive_unsafe_path"),
        (zip_bytes({"/etc/passwd": "x"}), "archive_unsafe_path"),
        (b"not a zip at all", "archive_not_zip"),
        (b"", "invalid"),  # DRF: "The submitted file is empty." on field `archive`
    ],
)
def test_hostile_uploads_are_refused_and_leave_nothing(world, client_for, fn, archive, code):
    response = client_for(world.bob).post(versions_url(fn), {"archive": io.BytesIO(archive)}, format="multipart")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Version.objects.count() == 0
    assert Artifact.objects.count() == 0


def test_upload_over_the_limit_is_413(world, client_for, fn, settings):
    settings.STRATUS_MAX_UPLOAD_BYTES = 10_000
    archive = zip_bytes({"big.txt": "x" * 200_000})  # compresses small; send raw padding instead
    padded = archive + b"\0" * 200_000
    response = client_for(world.bob).post(versions_url(fn), {"archive": io.BytesIO(padded)}, format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert Version.objects.count() == 0


def test_hostile_paths_in_a_json_map_are_refused(world, client_for, fn):
    response = client_for(world.bob).post(versions_url(fn), {"files": {"../../x.py": "x"}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "archive_unsafe_path"
    assert Version.objects.count() == 0


def test_empty_file_map_is_refused(world, client_for, fn):
    response = client_for(world.bob).post(versions_url(fn), {"files": {}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "version_empty"


def test_diff_shows_files_and_config(world, client_for, fn):
    bob = client_for(world.bob)
    bob.post(versions_url(fn), {"files": {"main.py": MAIN_V1, "old.py": "o"}}, format="json")
    bob.patch(f"/api/v1/functions/{fn.pk}/", {"memory_mb": 512}, format="json")
    bob.post(versions_url(fn), {"files": {"main.py": MAIN_V2, "new.py": "n"}}, format="json")

    diff = bob.get(f"/api/v1/functions/{fn.pk}/diff?from=1&to=2").json()

    assert diff["files"]["added"] == ["new.py"]
    assert diff["files"]["removed"] == ["old.py"]
    [modified] = diff["files"]["modified"]
    assert modified["path"] == "main.py"
    assert "-    return {'ok': 1}\n+    return {'ok': 2}\n" in modified["diff"]
    assert diff["config"] == {"memory_mb": [256, 512]}
    bad = bob.get(f"/api/v1/functions/{fn.pk}/diff?from=1")
    assert bad.status_code == 400
    assert bob.get(f"/api/v1/functions/{fn.pk}/diff?from=1&to=9").status_code == 404


def test_viewer_reads_versions_but_cannot_create(world, client_for, fn):
    client_for(world.bob).post(versions_url(fn), {"files": {"main.py": MAIN_V1}}, format="json")
    carol = client_for(world.carol)

    assert carol.get(versions_url(fn)).json()["count"] == 1
    refused = carol.post(versions_url(fn), {"files": {"main.py": MAIN_V2}}, format="json")
    assert refused.status_code == 403
    upload = carol.post(versions_url(fn), {"archive": io.BytesIO(zip_bytes({"a.py": "x"}))}, format="multipart")
    assert upload.status_code == 403
    assert Version.objects.count() == 1


def test_deleting_a_function_keeps_artifacts_another_function_uses(world, client_for, fn):
    other = services.function_create(
        actor=world.alice, project=world.web, name="other", runtime="python3.11", handler="m.h"
    )
    bob = client_for(world.bob)
    bob.post(versions_url(fn), {"files": {"main.py": MAIN_V1}}, format="json")
    bob.post(versions_url(other), {"files": {"main.py": MAIN_V1}}, format="json")
    [artifact] = Artifact.objects.all()

    assert bob.delete(f"/api/v1/functions/{fn.pk}/").status_code == 204

    assert Artifact.objects.filter(pk=artifact.pk).exists()
    assert storages["artifacts"].exists(artifact.storage_name)
    assert other.versions.get().artifact == artifact


@pytest.mark.parametrize("count", [2, 20])
def test_version_list_is_bounded_in_queries(world, client_for, fn, django_assert_max_num_queries, count):
    bob = client_for(world.bob)
    for i in range(count):
        bob.post(versions_url(fn), {"files": {"main.py": f"# {i}\n"}}, format="json")
    with django_assert_max_num_queries(8):
        response = bob.get(versions_url(fn) + "?limit=100")
    assert response.json()["count"] == count
