"""The draft through the API: tree, files, ETags, rename, delete, limits, rights, publish."""

import base64
import hashlib

import pytest

from apps.audit.models import AuditEvent
from apps.functions import draft_services, services
from apps.functions.archives import ArchiveRejected
from apps.functions.models import DraftFile, Function, Version

MAIN = "def handler(event, context):\n    return {'ok': True}\n"
BINARY = bytes(range(256)) + b"\xff\xfe\x00"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fn(world) -> Function:
    return services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )


def draft_url(fn: Function) -> str:
    return f"/api/v1/functions/{fn.pk}/draft/"


def file_url(fn: Function, path: str) -> str:
    return f"/api/v1/functions/{fn.pk}/draft/files/{path}"


def put_text(client, fn, path, text, **headers):
    return client.put(file_url(fn, path), {"content": text}, format="json", headers=headers)


def draft_paths(fn: Function) -> dict[str, bytes]:
    return {f.path: bytes(f.content) for f in DraftFile.objects.filter(function=fn)}


# --- write / read / list ---------------------------------------------------------------------


def test_write_read_and_list_round_trip_with_a_binary_file(world, client_for, fn):
    bob = client_for(world.bob)

    created = put_text(bob, fn, "main.py", MAIN)
    binary = bob.put(
        file_url(fn, "assets/logo.bin"),
        {"content": base64.b64encode(BINARY).decode(), "encoding": "base64"},
        format="json",
    )

    assert created.status_code == 201, created.json()
    assert {k: created.json()[k] for k in ("path", "size", "sha256", "revision")} == {
        "path": "main.py",
        "size": len(MAIN.encode()),
        "sha256": sha(MAIN.encode()),
        "revision": 1,
    }
    assert created["ETag"] == f'"{sha(MAIN.encode())}"'
    assert binary.status_code == 201, binary.json()
    assert binary.json()["revision"] == 2

    text = bob.get(file_url(fn, "main.py"))
    assert text.status_code == 200
    assert text.json() == {
        "path": "main.py",
        "content": MAIN,
        "encoding": "utf-8",
        "sha256": sha(MAIN.encode()),
        "size": len(MAIN.encode()),
    }
    assert text["ETag"] == f'"{sha(MAIN.encode())}"'
    blob = bob.get(file_url(fn, "assets/logo.bin")).json()
    assert (blob["encoding"], base64.b64decode(blob["content"])) == ("base64", BINARY)
    raw = bob.get(file_url(fn, "assets/logo.bin") + "?raw=1")
    assert (raw.status_code, raw.content, raw["Content-Type"]) == (200, BINARY, "application/octet-stream")
    assert raw["X-Content-Type-Options"] == "nosniff"
    assert bob.get(file_url(fn, "main.py") + "?raw=1")["Content-Type"] == "text/x-python"

    tree = bob.get(draft_url(fn))
    assert tree.status_code == 200
    assert tree["ETag"] == '"rev-2"'
    body = tree.json()
    assert (body["revision"], body["etag"]) == (2, "rev-2")
    assert [(f["path"], f["size"], f["sha256"]) for f in body["files"]] == [
        ("assets/logo.bin", len(BINARY), sha(BINARY)),
        ("main.py", len(MAIN.encode()), sha(MAIN.encode())),
    ]
    assert all(f["updated_at"] for f in body["files"])


def test_overwrite_is_200_and_bumps_the_revision(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "main.py", "v1")

    response = put_text(bob, fn, "main.py", "v2", **{"If-Match": f'"{sha(b"v1")}"'})

    assert response.status_code == 200, response.json()
    assert response.json()["revision"] == 2
    assert draft_paths(fn) == {"main.py": b"v2"}


def test_invalid_base64_is_400_and_stores_nothing(world, client_for, fn):
    response = client_for(world.bob).put(
        file_url(fn, "a.bin"), {"content": "not base64!", "encoding": "base64"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["content"][0].startswith("Not valid base64")
    assert draft_paths(fn) == {}


def test_missing_file_is_404(world, client_for, fn):
    response = client_for(world.bob).get(file_url(fn, "nope.py"))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "File 'nope.py' is not in the draft."


# --- ETags and concurrent editors ------------------------------------------------------------


def test_write_with_an_old_etag_is_409_stale_write(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "main.py", "v1")
    put_text(bob, fn, "main.py", "v2")

    response = put_text(bob, fn, "main.py", "v3", **{"If-Match": f'"{sha(b"v1")}"'})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "stale_write"
    assert sha(b"v2") in error["message"]
    assert draft_paths(fn) == {"main.py": b"v2"}


def test_two_editors_second_write_is_refused_and_the_first_survives(world, client_for, fn):
    # Given a file both bob and alice have open
    put_text(client_for(world.alice), fn, "main.py", "original")
    bob, alice = client_for(world.bob), client_for(world.alice)
    bob_etag = bob.get(file_url(fn, "main.py"))["ETag"]
    alice_etag = alice.get(file_url(fn, "main.py"))["ETag"]

    # When both save with the ETag they read
    first = put_text(bob, fn, "main.py", "bob's change", **{"If-Match": bob_etag})
    second = put_text(alice, fn, "main.py", "alice's change", **{"If-Match": alice_etag})

    # Then bob's save wins and alice is told the file moved on
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "stale_write"
    assert sha(b"bob's change") in second.json()["error"]["message"]
    assert draft_paths(fn) == {"main.py": b"bob's change"}
    assert bob.get(draft_url(fn)).json()["revision"] == 2


def test_tree_revision_as_if_match(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "a.py", "a")
    tree_etag = bob.get(draft_url(fn))["ETag"]
    assert tree_etag == '"rev-1"'

    assert put_text(bob, fn, "b.py", "b", **{"If-Match": tree_etag}).status_code == 201
    stale = put_text(bob, fn, "c.py", "c", **{"If-Match": tree_etag})

    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_write"
    assert "'rev-2'" in stale.json()["error"]["message"]
    assert sorted(draft_paths(fn)) == ["a.py", "b.py"]


def test_if_none_match_star_refuses_an_existing_file(world, client_for, fn):
    bob = client_for(world.bob)
    assert put_text(bob, fn, "main.py", "first", **{"If-None-Match": "*"}).status_code == 201

    response = put_text(bob, fn, "main.py", "second", **{"If-None-Match": "*"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_exists"
    assert draft_paths(fn) == {"main.py": b"first"}


def test_file_and_folder_cannot_share_a_path(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "lib/a.py", "a")
    put_text(bob, fn, "util", "u")

    as_file = put_text(bob, fn, "lib", "x")
    as_folder = put_text(bob, fn, "util/b.py", "x")

    assert (as_file.status_code, as_file.json()["error"]["code"]) == (409, "path_conflict")
    assert as_file.json()["error"]["message"] == (
        "'lib' is a folder holding 'lib/a.py': a path cannot be both a file and a folder."
    )
    assert (as_folder.status_code, as_folder.json()["error"]["code"]) == (409, "path_conflict")
    assert draft_paths(fn) == {"lib/a.py": b"a", "util": b"u"}


# --- hostile paths and limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../x", "paths must be relative without '..'"),
        ("/etc/passwd", "is an absolute path (zip slip)"),
        ("a//b", "paths must not contain '//' or end with '/'"),
        ("a\\..\\b", "paths must be relative without '..'"),
    ],
)
def test_hostile_paths_are_400_naming_the_rule_and_store_nothing(world, client_for, fn, path, rule):
    response = put_text(client_for(world.bob), fn, path, "x")

    assert response.status_code == 400, response.content
    assert rule in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "archive_unsafe_path"
    assert draft_paths(fn) == {}
    fn.refresh_from_db()
    assert fn.draft_revision == 0


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a//b", "a\\..\\b"])
def test_hostile_paths_are_refused_by_the_service(world, fn, path):
    with pytest.raises(ArchiveRejected):
        draft_services.draft_file_write(actor=world.bob, function=fn, path=path, content=b"x")
    assert draft_paths(fn) == {}


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setattr(
        draft_services, "LIMITS", draft_services.DraftLimits(max_file_bytes=10, max_total_bytes=25, max_files=3)
    )


def test_a_file_over_the_size_limit_is_413(world, client_for, fn, small_limits):
    response = put_text(client_for(world.bob), fn, "big.txt", "x" * 11)

    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "draft_too_large",
        "message": "File 'big.txt' is 11 bytes: draft files are limited to 10 bytes each.",
        "fields": {},
    }
    assert draft_paths(fn) == {}


def test_the_draft_total_and_file_count_are_limited(world, client_for, fn, small_limits):
    bob = client_for(world.bob)
    for name in ("a", "b"):
        assert put_text(bob, fn, name, "x" * 10).status_code == 201

    too_big = put_text(bob, fn, "c", "x" * 6)
    # Overwriting counts the new size, not old + new.
    assert put_text(bob, fn, "b", "y" * 10).status_code == 200
    assert put_text(bob, fn, "c", "x" * 5).status_code == 201
    too_many = put_text(bob, fn, "d", "x")

    assert too_big.status_code == 413
    assert too_big.json()["error"]["message"] == "The draft would hold 26 bytes: drafts are limited to 25 bytes."
    assert too_many.status_code == 400
    assert too_many.json()["error"]["message"] == "The draft would hold 4 files: drafts are limited to 3 files."
    assert sorted(draft_paths(fn)) == ["a", "b", "c"]


# --- rename and delete -----------------------------------------------------------------------


def rename(client, fn, source, target, **headers):
    return client.post(
        f"/api/v1/functions/{fn.pk}/draft/rename", {"from": source, "to": target}, format="json", headers=headers
    )


def test_rename_a_file(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "main.py", MAIN)

    response = rename(bob, fn, "main.py", "src/app.py", **{"If-Match": sha(MAIN.encode())})

    assert response.status_code == 200, response.json()
    assert [f["path"] for f in response.json()["files"]] == ["src/app.py"]
    assert response.json()["revision"] == 2
    assert draft_paths(fn) == {"src/app.py": MAIN.encode()}


def test_rename_a_folder(world, client_for, fn):
    bob = client_for(world.bob)
    for path in ("lib/a.py", "lib/sub/b.py", "library.py"):
        put_text(bob, fn, path, path)

    response = rename(bob, fn, "lib", "pkg/lib2", **{"If-Match": '"rev-3"'})

    assert response.status_code == 200, response.json()
    assert draft_paths(fn) == {
        "pkg/lib2/a.py": b"lib/a.py",
        "pkg/lib2/sub/b.py": b"lib/sub/b.py",
        "library.py": b"library.py",
    }
    event = AuditEvent.objects.get(action="draft.rename")
    assert event.changes["paths"] == [["lib/a.py", "pkg/lib2/a.py"], ["lib/sub/b.py", "pkg/lib2/sub/b.py"]]


def test_rename_onto_an_existing_file_or_folder_is_409(world, client_for, fn):
    bob = client_for(world.bob)
    for path in ("a.py", "b.py", "lib/x.py", "pkg/y.py"):
        put_text(bob, fn, path, path)

    onto_file = rename(bob, fn, "a.py", "b.py")
    onto_folder = rename(bob, fn, "lib", "pkg")
    into_itself = rename(bob, fn, "lib", "lib/inner")
    missing = rename(bob, fn, "ghost.py", "c.py")

    assert (onto_file.status_code, onto_file.json()["error"]["code"]) == (409, "already_exists")
    assert (onto_folder.status_code, onto_folder.json()["error"]["code"]) == (409, "already_exists")
    assert (into_itself.status_code, into_itself.json()["error"]["code"]) == (400, "invalid_rename")
    assert missing.status_code == 404
    assert sorted(draft_paths(fn)) == ["a.py", "b.py", "lib/x.py", "pkg/y.py"]


def test_rename_to_a_hostile_path_is_400(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "a.py", "a")
    response = rename(bob, fn, "a.py", "../a.py")
    assert response.status_code == 400
    assert "paths must be relative without '..'" in response.json()["error"]["message"]
    assert draft_paths(fn) == {"a.py": b"a"}


def test_delete_a_file(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "a.py", "a")
    put_text(bob, fn, "b.py", "b")

    stale = bob.delete(file_url(fn, "a.py"), headers={"If-Match": sha(b"old")})
    deleted = bob.delete(file_url(fn, "a.py"), headers={"If-Match": f'"{sha(b"a")}"'})
    again = bob.delete(file_url(fn, "a.py"))

    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "stale_write")
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert draft_paths(fn) == {"b.py": b"b"}
    assert bob.get(draft_url(fn)).json()["revision"] == 3


def test_replace_swaps_the_whole_tree(world, fn):
    draft_services.draft_file_write(actor=world.bob, function=fn, path="keep.py", content=b"k")
    draft_services.draft_file_write(actor=world.bob, function=fn, path="gone.py", content=b"g")
    draft_services.draft_file_write(actor=world.bob, function=fn, path="edit.py", content=b"1")

    draft_services.draft_replace(
        actor=world.bob, function=fn, files={"keep.py": b"k", "edit.py": b"2", "./new/x.py": b"n"}
    )

    assert draft_paths(fn) == {"keep.py": b"k", "edit.py": b"2", "new/x.py": b"n"}
    assert fn.draft_revision == 4
    assert AuditEvent.objects.get(action="draft.replace").changes == {
        "added": ["new/x.py"],
        "changed": ["edit.py"],
        "removed": ["gone.py"],
        "revision": 4,
    }


# --- who may ---------------------------------------------------------------------------------


def test_viewer_reads_but_cannot_write(world, client_for, fn):
    put_text(client_for(world.bob), fn, "main.py", MAIN)
    carol = client_for(world.carol)

    assert carol.get(draft_url(fn)).status_code == 200
    assert carol.get(file_url(fn, "main.py")).json()["content"] == MAIN
    for response in (
        put_text(carol, fn, "main.py", "hacked"),
        put_text(carol, fn, "new.py", "x"),
        carol.delete(file_url(fn, "main.py")),
        rename(carol, fn, "main.py", "x.py"),
        carol.post(f"/api/v1/functions/{fn.pk}/draft/publish", {}, format="json"),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "permission_denied"
    assert draft_paths(fn) == {"main.py": MAIN.encode()}
    assert Version.objects.count() == 0


@pytest.mark.parametrize("username", ["dora", "charlie"])
def test_member_without_grant_and_outsider_get_404(world, client_for, fn, username):
    put_text(client_for(world.bob), fn, "main.py", MAIN)
    client = client_for(world.user(username))

    for response in (
        client.get(draft_url(fn)),
        client.get(file_url(fn, "main.py")),
        put_text(client, fn, "main.py", "hacked"),
        client.delete(file_url(fn, "main.py")),
        rename(client, fn, "main.py", "x.py"),
        client.post(f"/api/v1/functions/{fn.pk}/draft/publish", {}, format="json"),
    ):
        assert response.status_code == 404, response.content
        assert response.json()["error"]["message"] == "Function not found."
    assert draft_paths(fn) == {"main.py": MAIN.encode()}
    assert Version.objects.count() == 0


def test_read_token_cannot_write(world, client_for, fn):
    response = put_text(client_for(world.bob, scopes=["read"]), fn, "main.py", MAIN)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This token lacks the 'write' scope this request needs."
    assert draft_paths(fn) == {}


# --- publish ---------------------------------------------------------------------------------


def publish(client, fn, message=""):
    return client.post(f"/api/v1/functions/{fn.pk}/draft/publish", {"message": message}, format="json")


def test_publish_creates_versions_only_when_something_changed(world, client_for, fn):
    bob = client_for(world.bob)
    put_text(bob, fn, "main.py", MAIN)

    first = publish(bob, fn, "first")
    again = publish(bob, fn, "nothing new")
    put_text(bob, fn, "main.py", MAIN + "# changed\n")
    second = publish(bob, fn, "second")

    assert first.status_code == 201, first.json()
    assert (first.json()["number"], first.json()["source"], first.json()["message"]) == (1, "draft", "first")
    assert first.json()["author"] == "bob"
    assert again.status_code == 200
    assert again.json()["number"] == 1
    assert second.status_code == 201
    assert second.json()["number"] == 2
    assert list(Version.objects.filter(function=fn).values_list("number", flat=True)) == [2, 1]


def test_publishing_an_empty_draft_is_400(world, client_for, fn):
    response = publish(client_for(world.bob), fn)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "draft_empty"
    assert Version.objects.count() == 0


# --- audit and queries -----------------------------------------------------------------------


def test_audit_events_name_paths_and_never_contents(world, client_for, fn):
    bob = client_for(world.bob)
    secret_text = "API_KEY = 'sk_live_do_not_log'"
    put_text(bob, fn, "config.py", secret_text)
    rename(bob, fn, "config.py", "settings.py")
    publish(bob, fn)
    bob.delete(file_url(fn, "settings.py"))

    events = AuditEvent.objects.filter(action__startswith="draft.").order_by("id")
    assert [(e.action, e.actor_repr, e.target_id) for e in events] == [
        ("draft.file_write", "bob", str(fn.pk)),
        ("draft.rename", "bob", str(fn.pk)),
        ("draft.publish", "bob", str(fn.pk)),
        ("draft.file_delete", "bob", str(fn.pk)),
    ]
    write = events[0].changes
    assert (write["path"], write["created"], write["sha256"], write["revision"]) == (
        "config.py",
        True,
        sha(secret_text.encode()),
        1,
    )
    assert events[3].changes == {"path": "settings.py", "revision": 3}
    for event in AuditEvent.objects.all():
        assert "sk_live_do_not_log" not in str(event.changes)


@pytest.mark.parametrize("count", [3, 30])
def test_tree_listing_uses_a_bounded_number_of_queries(world, client_for, fn, django_assert_max_num_queries, count):
    for i in range(count):
        draft_services.draft_file_write(actor=world.bob, function=fn, path=f"src/f{i}.py", content=b"x" * i)
    client = client_for(world.bob)
    with django_assert_max_num_queries(6):
        response = client.get(draft_url(fn))
    assert [f["size"] for f in response.json()["files"]] == sorted(range(count), key=lambda i: f"src/f{i}.py")
