"""The one error envelope, request ids and the structured request log."""

from __future__ import annotations

import json
import logging
import re

import pytest
from rest_framework.test import APIClient

from apps.core.logging import JsonFormatter, RequestIdFilter
from apps.tenancy.models import Project

pytestmark = pytest.mark.django_db

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The world's users get passwords; a fast hasher keeps setup from dominating (no test
    here checks a password)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def envelope(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def test_malformed_json_is_a_400_envelope(world, client_for):
    response = client_for(world.alice).post(
        "/api/v1/projects/", data='{"org": "alpha", "slug":', content_type="application/json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_json"
    assert error["message"].startswith("JSON parse error - ")
    assert error["fields"] == {}
    assert Project.objects.count() == 2


def test_body_over_the_limit_is_a_413_envelope(world, client_for, settings):
    settings.STRATUS_MAX_REQUEST_BYTES = 1000
    body = json.dumps({"org": "alpha", "slug": "big", "name": "Big", "description": "x" * 1950})
    assert len(body) > 1000
    response = client_for(world.alice).post("/api/v1/projects/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == envelope(
        "request_too_large", f"Request body of {len(body)} bytes exceeds the limit of 1000 bytes."
    )
    assert not Project.objects.filter(slug="big").exists()

    # Under the limit the same endpoint works.
    small = client_for(world.alice).post(
        "/api/v1/projects/", {"org": "alpha", "slug": "small", "name": "S"}, format="json"
    )
    assert small.status_code == 201


def test_body_limit_applies_before_authentication(world, settings):
    settings.STRATUS_MAX_REQUEST_BYTES = 1000
    response = APIClient().post("/api/v1/projects/", data="y" * 2000, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_validation_error_names_the_field(world, client_for):
    response = client_for(world.alice).post(
        "/api/v1/projects/", {"org": "alpha", "slug": "Bad Slug!", "name": "Bad"}, format="json"
    )
    assert response.status_code == 400
    message = "Use 1-50 lowercase letters, digits and dashes, starting and ending with a letter or digit."
    assert response.json() == envelope("invalid", f"slug: {message}", {"slug": [message]})
    assert Project.objects.count() == 2


def test_missing_fields_are_all_named(world, client_for):
    response = client_for(world.alice).post("/api/v1/projects/", {}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {
        "org": ["This field is required."],
        "slug": ["This field is required."],
        "name": ["This field is required."],
    }


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/nope/", "/api/v1/projects/abc/"])
def test_unknown_api_route_is_a_404_envelope(world, client_for, path):
    response = client_for(world.alice).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == envelope("not_found", f"No API route matches {path}.")


def test_unknown_object_is_a_404_envelope(world, client_for):
    response = client_for(world.alice).get("/api/v1/projects/999999/")
    assert response.status_code == 404
    assert response.json() == envelope("not_found", "Project not found.")


def test_wrong_method_is_a_405_envelope(world, client_for):
    response = client_for(world.alice).put("/api/v1/projects/", {}, format="json")
    assert response.status_code == 405
    assert response.json() == envelope("method_not_allowed", 'Method "PUT" not allowed.')


@pytest.mark.parametrize("path", ["/api/v1/me/", "/api/v1/projects/", "/api/v1/audit-events/"])
def test_unauthenticated_is_a_401_envelope(world, path):
    response = APIClient().get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == envelope("not_authenticated", "Authentication credentials were not provided.")


def test_unsupported_media_type_is_an_envelope(world, client_for):
    response = client_for(world.alice).post("/api/v1/projects/", data="org=alpha", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_valid_request_id_is_honoured(world, client_for):
    response = client_for(world.alice).get("/api/v1/me/", HTTP_X_REQUEST_ID="trace-abc.123:x_y")
    assert response.status_code == 200
    assert response["X-Request-Id"] == "trace-abc.123:x_y"


@pytest.mark.parametrize("incoming", [None, "", "has spaces", "a" * 129, "bad\nnewline", "<script>"])
def test_missing_or_invalid_request_id_is_replaced(world, client_for, incoming):
    headers = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}
    response = client_for(world.alice).get("/api/v1/me/", **headers)
    assert response.status_code == 200
    assert HEX32.match(response["X-Request-Id"])


def test_request_id_is_on_error_responses_too(world):
    unauthenticated = APIClient().get("/api/v1/me/", HTTP_X_REQUEST_ID="err-1")
    assert unauthenticated.status_code == 401
    assert unauthenticated["X-Request-Id"] == "err-1"
    missing = APIClient().get("/api/v1/nope", HTTP_X_REQUEST_ID="err-2")
    assert missing.status_code == 404
    assert missing["X-Request-Id"] == "err-2"


def test_generated_request_ids_differ(world, client_for):
    client = client_for(world.alice)
    ids = {client.get("/api/v1/me/")["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


class JsonLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def request_log():
    handler = JsonLines()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def request_lines(handler: JsonLines) -> list[dict]:
    parsed = [json.loads(line) for line in handler.lines]  # every line is one JSON object
    return [p for p in parsed if p["logger"] == "stratus.request"]


def test_one_json_log_line_per_request(world, client_for, request_log):
    client = client_for(world.alice)
    ok = client.get("/api/v1/projects/", HTTP_X_REQUEST_ID="log-test-1")
    missing = client.get("/api/v1/nope")
    bad = client.post("/api/v1/projects/", data="{", content_type="application/json")

    lines = request_lines(request_log)
    assert len(lines) == 3
    first, second, third = lines
    assert first["msg"] == "request"
    assert first["level"] == "info"
    assert first["request_id"] == "log-test-1"
    assert first["method"] == "GET"
    assert first["path"] == "/api/v1/projects/"
    assert first["status"] == 200
    assert first["user_id"] == world.alice.pk
    assert isinstance(first["duration_ms"], float)
    assert first["ts"].endswith("+00:00")
    assert (second["request_id"], second["method"], second["path"], second["status"]) == (
        missing["X-Request-Id"],
        "GET",
        "/api/v1/nope",
        404,
    )
    assert (third["request_id"], third["method"], third["path"], third["status"]) == (
        bad["X-Request-Id"],
        "POST",
        "/api/v1/projects/",
        400,
    )
    assert ok["X-Request-Id"] == "log-test-1"


def test_request_log_for_anonymous_request_has_no_user(world, request_log):
    response = APIClient().get("/api/v1/me/", HTTP_X_REQUEST_ID="anon-1")
    [line] = request_lines(request_log)
    assert line["request_id"] == "anon-1"
    assert line["status"] == response.status_code == 401
    assert line["user_id"] is None
