"""Bad input answers 400/413 in the error envelope, naming the rule, and changes nothing:
JSON nested too deep, bodies without a Content-Length (chunked), paths and file names that
are not UTF-8, and websockets to a path no consumer serves.

The JSON and path rules run through the test client; chunked bodies, raw ``%FF`` paths and
websockets need a real server (uvicorn on a socket, httpx, the websockets client)."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apps.functions import services as function_services
from apps.functions.models import DraftFile, Function, Version
from apps.tenancy.models import ApiToken, Organization
from tests.conftest import serving_console

DEPTH = 1000


def nested(depth: int) -> str:
    """A JSON array ``depth`` levels deep: [[[...]]]."""
    return "[" * depth + "]" * depth


def post_raw(client, path: str, text: str):
    return client.generic("POST", path, text.encode(), content_type="application/json")


def assert_too_deep(response, depth: int) -> None:
    assert response.status_code == 400, response.content
    assert response.json() == {
        "error": {
            "code": "json_too_deep",
            "message": f"The JSON body nests {depth} levels deep: JSON may nest at most 64 levels "
            "(arrays and objects inside each other).",
            "fields": {},
        }
    }


@pytest.fixture
def function(world) -> Function:
    return function_services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )


# --- JSON depth ---------------------------------------------------------------------------------


def test_deep_json_on_the_invoke_api_is_a_400_naming_the_limit(world, client_for, function):
    client = client_for(world.alice)
    response = post_raw(
        client, f"/api/v1/functions/{function.pk}/invoke", f'{{"environment":"dev","event":{nested(DEPTH)}}}'
    )
    assert_too_deep(response, DEPTH + 1)


def test_deep_json_on_function_create_is_a_400_and_creates_nothing(world, client_for):
    client = client_for(world.alice)
    body = f'{{"name":"deep","runtime":"python3.11","handler":"main.handler","description":{nested(DEPTH)}}}'
    assert_too_deep(post_raw(client, f"/api/v1/projects/{world.web.pk}/functions/", body), DEPTH + 1)
    assert not Function.objects.filter(name="deep").exists()


def test_deep_json_on_version_create_is_a_400(world, client_for, function):
    # This view names its parsers itself (JSON and multipart): the bound holds there too.
    response = post_raw(client_for(world.alice), f"/api/v1/functions/{function.pk}/versions/", nested(DEPTH))
    assert_too_deep(response, DEPTH)
    assert Version.objects.filter(function=function).count() == 0


def test_deep_json_on_a_tenancy_endpoint_is_a_400_and_creates_nothing(world, client_for):
    client = client_for(world.alice)
    assert_too_deep(post_raw(client, "/api/v1/orgs/", f'{{"slug":"deep","name":{nested(DEPTH)}}}'), DEPTH + 1)
    assert_too_deep(post_raw(client, "/api/v1/tokens/", f'{{"name":"t","scopes":{nested(DEPTH)}}}'), DEPTH + 1)
    assert not Organization.objects.filter(slug="deep").exists()
    assert ApiToken.objects.count() == 0


def test_json_at_the_limit_is_parsed_and_one_level_more_is_not(world, client_for):
    client = client_for(world.alice)
    # The body object is level 1, so 63 more levels make 64.
    at_limit = f'{{"name":"ok","scopes":["read"],"expires_at":null,"x":{nested(63)}}}'
    response = post_raw(client, "/api/v1/tokens/", at_limit)
    assert response.status_code == 201, response.content
    assert_too_deep(post_raw(client, "/api/v1/tokens/", at_limit.replace(nested(63), nested(64))), 65)
    # Brackets inside strings do not nest.
    in_strings = json.dumps({"name": "brackets", "scopes": ["read"], "note": "[" * 500 + '\\"{' * 500})
    assert post_raw(client, "/api/v1/tokens/", in_strings).status_code == 201


# --- bodies without a Content-Length ------------------------------------------------------------


@pytest.fixture
def console(transactional_db) -> Iterator[httpx.Client]:
    with serving_console() as address, httpx.Client(base_url=f"http://{address}", timeout=30) as client:
        yield client


def chunks(*parts: bytes) -> Iterator[bytes]:
    yield from parts  # a generator: httpx sends it chunked, with no Content-Length


def token_headers(user, scopes: list[str]) -> dict[str, str]:
    from apps.tenancy.token_services import token_create

    _, plaintext = token_create(user=user, name="t", scopes=scopes)
    return {"authorization": f"Bearer {plaintext}", "content-type": "application/json"}


def test_a_chunked_json_body_is_read(world, console):
    headers = token_headers(world.alice, ["read", "write"])
    body = chunks(b'{"name": "chunky", "runtime": "python3.11",', b' "handler": "main.handler"}')
    request = console.build_request(
        "POST", f"/api/v1/projects/{world.web.pk}/functions/", content=body, headers=headers
    )
    assert request.headers.get("transfer-encoding") == "chunked" and "content-length" not in request.headers

    response = console.send(request)

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "chunky"
    assert Function.objects.get(name="chunky").handler == "main.handler"


def test_an_oversized_chunked_body_is_a_413_and_creates_nothing(world, console, settings):
    settings.STRATUS_MAX_REQUEST_BYTES = 4096
    headers = token_headers(world.alice, ["read", "write"])
    padding = b" " * 2048
    body = chunks(b'{"name": "big", "runtime": "python3.11",', padding, padding, b' "handler": "main.handler"}')

    response = console.post(f"/api/v1/projects/{world.web.pk}/functions/", content=body, headers=headers)

    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": {"code": "request_too_large", "message": "Request body exceeds the limit of 4096 bytes.", "fields": {}}
    }
    assert response.headers["x-request-id"]
    assert not Function.objects.filter(name="big").exists()


# --- paths and file names that are not UTF-8 ------------------------------------------------------


def test_a_draft_file_path_with_ff_is_a_400_and_stores_nothing(world, console, function):
    headers = token_headers(world.alice, ["read", "write"])
    before = Function.objects.get(pk=function.pk).draft_revision

    response = console.put(
        f"/api/v1/functions/{function.pk}/draft/files/a%FFb.py",
        content=json.dumps({"content": "x = 1"}),
        headers=headers,
    )

    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "code": "invalid_path",
            "message": "The request path is not valid UTF-8: paths and file names must be UTF-8 (percent-escaped).",
            "fields": {},
        }
    }
    assert list(DraftFile.objects.filter(function=function)) == []
    assert Function.objects.get(pk=function.pk).draft_revision == before
    # A UTF-8 name with an escape is fine.
    ok = console.put(
        f"/api/v1/functions/{function.pk}/draft/files/caf%C3%A9.py",
        content=json.dumps({"content": "x"}),
        headers=headers,
    )
    assert ok.status_code == 201, ok.text
    assert list(DraftFile.objects.filter(function=function).values_list("path", flat=True)) == ["café.py"]


def test_a_replacement_character_in_a_draft_path_is_refused(world, client_for, function):
    # What a server that decodes paths leniently hands on for %FF (no raw path to check).
    client = client_for(world.alice)
    response = client.put(
        f"/api/v1/functions/{function.pk}/draft/files/a%EF%BF%BDb.py", {"content": "x"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "archive_unsafe_path"
    assert "paths and file names must be UTF-8" in response.json()["error"]["message"]
    assert not DraftFile.objects.filter(function=function).exists()


def zip_with_raw_name(name: bytes, *, utf8_flag: bool) -> bytes:
    """A zip whose one entry has exactly these name bytes (zipfile would encode a str)."""
    placeholder = b"q" * len(name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(placeholder.decode(), b"x = 1\n")
    data = buffer.getvalue()
    assert data.count(placeholder) == 2  # the local header and the central directory
    data = data.replace(placeholder, name)
    if utf8_flag:
        # General purpose flag bits: local header at offset 6, central directory entry at 8.
        local = data.index(b"PK\x03\x04") + 6
        central = data.index(b"PK\x01\x02") + 8
        for at in (local, central):
            flags = int.from_bytes(data[at : at + 2], "little") | 0x800
            data = data[:at] + flags.to_bytes(2, "little") + data[at + 2 :]
    return data


@pytest.mark.parametrize("utf8_flag", [False, True])
def test_an_archive_entry_name_that_is_not_utf8_is_a_400(world, client_for, function, utf8_flag):
    upload = io.BytesIO(zip_with_raw_name(b"caf\xe9.py", utf8_flag=utf8_flag))
    upload.name = "code.zip"
    response = client_for(world.alice).post(
        f"/api/v1/functions/{function.pk}/versions/", {"archive": upload}, format="multipart"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "archive_unsafe_path"
    assert "file names in archives must be UTF-8" in response.json()["error"]["message"]
    assert Version.objects.filter(function=function).count() == 0


def test_an_archive_entry_named_in_utf8_without_the_flag_keeps_its_name(world, client_for, function):
    # Most zip tools write UTF-8 names without setting the flag; zipfile would read CP437.
    upload = io.BytesIO(zip_with_raw_name("café.py".encode(), utf8_flag=False))
    upload.name = "code.zip"
    response = client_for(world.alice).post(
        f"/api/v1/functions/{function.pk}/versions/", {"archive": upload}, format="multipart"
    )
    assert response.status_code == 201, response.content
    files = client_for(world.alice).get(f"/api/v1/functions/{function.pk}/versions/1/files/").json()
    assert [entry["path"] for entry in files] == ["café.py"]


# --- websockets -------------------------------------------------------------------------------


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_websocket_to_an_unknown_path_is_refused_at_the_handshake_without_an_error(transactional_db):
    errors = ErrorRecords()
    # uvicorn's own loggers do not propagate to the root logger: listen on them too.
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "django", "channels")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        with serving_console() as address:
            for path in ("/ws/nope/", "/ws/runs/not-a-number/", "/elsewhere"):
                with pytest.raises(InvalidStatus) as refused:
                    connect(
                        f"ws://{address}{path}", additional_headers={"Origin": f"http://{address}"}, open_timeout=10
                    )
                assert refused.value.response.status_code == 404, path
                assert json.loads(refused.value.response.body)["error"]["code"] == "not_found"
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    assert [record.getMessage() for record in errors.records] == []
