"""Test events through the API: CRUD, private vs shared, roles, outsiders, bad input, templates.

The world (tests/conftest.py): alice owns alpha, bob is a developer on `web`, carol a viewer
on `web`, dora a developer of alpha with no grant on `web`, charlie the outsider.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.core import event_shapes
from apps.core.errors import DomainError
from apps.functions import services as function_services
from apps.functions import test_event_services
from apps.functions.models import Function
from apps.functions.models import TestEvent as Event
from apps.functions.test_event_templates import template_list

API = "/api/v1"


@pytest.fixture
def function(world: Any) -> Function:
    return function_services.function_create(
        actor=world.alice, project=world.web, name="checkout", runtime="python3.11", handler="main.handler"
    )


def url(function: Function, test_event_id: int | None = None) -> str:
    base = f"{API}/functions/{function.pk}/test-events/"
    return base if test_event_id is None else f"{base}{test_event_id}/"


def make(actor: Any, function: Function, name: str, *, shared: bool = False, body: Any = None) -> Event:
    return test_event_services.test_event_create(
        actor=actor, function=function, name=name, body={"n": name} if body is None else body, shared=shared
    )


def snapshot() -> list[tuple[Any, ...]]:
    return list(Event.objects.order_by("pk").values_list("pk", "name", "body", "shared", "created_by_id"))


def names(response: Any) -> list[str]:
    return [row["name"] for row in response.json()["results"]]


# --- CRUD -------------------------------------------------------------------------------------


def test_a_developer_creates_reads_updates_and_deletes_an_event(
    world: Any, function: Function, client_for: Any
) -> None:
    bob = client_for(world.bob)

    created = bob.post(url(function), {"name": "GET /items", "body": {"httpMethod": "GET"}}, format="json")
    assert created.status_code == 201, created.content
    row = created.json()
    assert {k: row[k] for k in ("function", "name", "body", "shared", "created_by")} == {
        "function": function.pk,
        "name": "GET /items",
        "body": {"httpMethod": "GET"},
        "shared": False,
        "created_by": "bob",
    }
    event_url = url(function, row["id"])
    assert bob.get(event_url).json()["body"] == {"httpMethod": "GET"}
    assert names(bob.get(url(function))) == ["GET /items"]

    patched = bob.patch(event_url, {"name": "list items", "body": [1, "two", None], "shared": True}, format="json")
    assert patched.status_code == 200, patched.content
    assert (patched.json()["name"], patched.json()["body"], patched.json()["shared"]) == (
        "list items",
        [1, "two", None],
        True,
    )
    assert bob.delete(event_url).status_code == 204
    assert bob.get(event_url).status_code == 404
    assert Event.objects.count() == 0
    assert list(
        AuditEvent.objects.filter(action__startswith="test_event.").order_by("pk").values_list("action", flat=True)
    ) == ["test_event.create", "test_event.update", "test_event.delete"]


def test_the_same_event_is_seen_through_a_token(world: Any, function: Function, client_for: Any) -> None:
    """The VS Code extension's way in: a Bearer token with the read scope reads, write creates."""
    event = make(world.bob, function, "shared one", shared=True)
    reader = client_for(world.bob, scopes=["read"])
    assert reader.get(url(function, event.pk)).json()["body"] == {"n": "shared one"}
    assert reader.post(url(function), {"name": "x", "body": {}}, format="json").status_code == 403
    writer = client_for(world.bob, scopes=["read", "write"])
    assert writer.post(url(function), {"name": "x", "body": {}}, format="json").status_code == 201


# --- private vs shared ------------------------------------------------------------------------


def test_the_list_holds_shared_events_and_the_callers_private_ones(
    world: Any, function: Function, client_for: Any
) -> None:
    make(world.alice, function, "alice private")
    make(world.alice, function, "alice shared", shared=True)
    make(world.bob, function, "bob private")

    assert names(client_for(world.alice).get(url(function))) == ["alice private", "alice shared"]
    assert names(client_for(world.bob).get(url(function))) == ["alice shared", "bob private"]
    assert names(client_for(world.carol).get(url(function))) == ["alice shared"]


def test_someone_elses_private_event_answers_404_as_a_missing_one(
    world: Any, function: Function, client_for: Any
) -> None:
    private = make(world.alice, function, "alice private")
    before = snapshot()
    bob = client_for(world.bob)
    missing = bob.get(url(function, 987654))
    for response in (
        bob.get(url(function, private.pk)),
        bob.patch(url(function, private.pk), {"body": {"stolen": True}}, format="json"),
        bob.delete(url(function, private.pk)),
    ):
        assert response.status_code == 404
        assert response.json() == missing.json()
    assert snapshot() == before


def test_only_the_creator_makes_a_shared_event_private(world: Any, function: Function, client_for: Any) -> None:
    shared = make(world.alice, function, "alice shared", shared=True)

    refused = client_for(world.bob).patch(url(function, shared.pk), {"shared": False}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["fields"] == {"shared": ["Only the creator may change this."]}
    assert Event.objects.get(pk=shared.pk).shared is True

    assert client_for(world.alice).patch(url(function, shared.pk), {"shared": False}, format="json").status_code == 200
    assert Event.objects.get(pk=shared.pk).shared is False


# --- roles ------------------------------------------------------------------------------------


def test_a_developer_edits_and_deletes_a_shared_event_of_someone_else(
    world: Any, function: Function, client_for: Any
) -> None:
    shared = make(world.alice, function, "alice shared", shared=True)
    bob = client_for(world.bob)
    assert bob.patch(url(function, shared.pk), {"body": {"edited": "by bob"}}, format="json").status_code == 200
    assert Event.objects.get(pk=shared.pk).body == {"edited": "by bob"}
    assert bob.delete(url(function, shared.pk)).status_code == 204
    assert not Event.objects.filter(pk=shared.pk).exists()


def test_a_viewer_reads_shared_events_and_writes_nothing(world: Any, function: Function, client_for: Any) -> None:
    shared = make(world.alice, function, "alice shared", shared=True)
    before = snapshot()
    carol = client_for(world.carol)

    assert carol.get(url(function, shared.pk)).json()["name"] == "alice shared"
    for response in (
        carol.post(url(function), {"name": "mine", "body": {}}, format="json"),
        carol.patch(url(function, shared.pk), {"body": {}}, format="json"),
        carol.delete(url(function, shared.pk)),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "permission_denied"
    assert snapshot() == before


@pytest.mark.parametrize("who", ["charlie", "dora"])
def test_outsiders_get_404_and_change_nothing(world: Any, function: Function, client_for: Any, who: str) -> None:
    """charlie is in another org; dora is in alpha but has no grant on the project: neither sees the function."""
    shared = make(world.alice, function, "alice shared", shared=True)
    before, audit_before = snapshot(), AuditEvent.objects.count()
    client = client_for(world.user(who))
    for response in (
        client.get(url(function)),
        client.post(url(function), {"name": "x", "body": {}}, format="json"),
        client.get(url(function, shared.pk)),
        client.patch(url(function, shared.pk), {"body": {"x": 1}, "shared": False}, format="json"),
        client.delete(url(function, shared.pk)),
    ):
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "not_found"
    assert snapshot() == before
    assert AuditEvent.objects.count() == audit_before


def test_an_event_of_another_function_is_not_reached_through_this_one(
    world: Any, function: Function, client_for: Any
) -> None:
    other = function_services.function_create(
        actor=world.alice, project=world.web, name="other", runtime="python3.11", handler="main.handler"
    )
    event = make(world.alice, other, "shared", shared=True)
    assert client_for(world.alice).get(url(function, event.pk)).status_code == 404


# --- bad input --------------------------------------------------------------------------------


def test_a_body_that_is_not_json_is_refused(world: Any, function: Function, client_for: Any) -> None:
    response = client_for(world.bob).post(
        url(function), data='{"name": "x", "body": {', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert Event.objects.count() == 0


@pytest.mark.parametrize("body", [None, "missing"])
def test_an_event_needs_a_body_other_than_null(world: Any, function: Function, client_for: Any, body: Any) -> None:
    payload: dict[str, Any] = {"name": "x"} if body == "missing" else {"name": "x", "body": body}
    response = client_for(world.bob).post(url(function), payload, format="json")
    assert response.status_code == 400
    assert "body" in response.json()["error"]["fields"]
    assert Event.objects.count() == 0


def test_a_body_over_256_kib_is_refused_naming_the_limit(world: Any, function: Function, client_for: Any) -> None:
    bob = client_for(world.bob)
    at_limit = {"s": "x" * (256 * 1024 - len('{"s":""}'))}
    assert len(json.dumps(at_limit, separators=(",", ":"))) == 256 * 1024
    assert bob.post(url(function), {"name": "at limit", "body": at_limit}, format="json").status_code == 201

    over = {"s": at_limit["s"] + "x"}
    response = bob.post(url(function), {"name": "over", "body": over}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "test_event_too_large"
    assert error["message"] == (
        "The test event's body is 262145 bytes as JSON: a test event may be at most 262144 bytes (256 KiB)."
    )
    event = Event.objects.get(name="at limit")
    assert bob.patch(url(function, event.pk), {"body": over}, format="json").status_code == 400
    assert Event.objects.get(pk=event.pk).body == at_limit
    assert list(Event.objects.values_list("name", flat=True)) == ["at limit"]


def test_a_body_nested_deeper_than_the_json_bound_is_refused(
    world: Any, function: Function, client_for: Any, settings: Any
) -> None:
    """The bound of the API's parser (STRATUS_MAX_JSON_DEPTH) holds for the body itself too,
    whoever calls the service (a page, a future import), not only for API requests."""
    settings.STRATUS_MAX_JSON_DEPTH = 8
    deep: Any = 0
    for _ in range(8):
        deep = [deep]
    assert make(world.bob, function, "at the bound", body=deep).body == deep
    with pytest.raises(DomainError) as refused:
        make(world.bob, function, "too deep", body=[deep])
    assert (refused.value.code, refused.value.message) == (
        "json_too_deep",
        "The test event's body nests 9 levels deep: it may nest at most 8 levels.",
    )
    # Through the API the request's own object is one more level: the parser refuses it first.
    response = client_for(world.bob).post(url(function), {"name": "api", "body": deep}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "json_too_deep")
    assert list(Event.objects.values_list("name", flat=True)) == ["at the bound"]


def test_a_duplicate_name_is_409_naming_the_rule(world: Any, function: Function, client_for: Any) -> None:
    make(world.alice, function, "GET /items")  # alice's private event: the name is the function's
    other = make(world.bob, function, "other")
    before = snapshot()
    bob = client_for(world.bob)

    created = bob.post(url(function), {"name": "GET /items", "body": {}}, format="json")
    renamed = bob.patch(url(function, other.pk), {"name": "GET /items"}, format="json")
    for response in (created, renamed):
        assert response.status_code == 409
        assert response.json()["error"] == {
            "code": "already_exists",
            "message": "Function 'checkout' already has a test event named 'GET /items': names are unique per function.",
            "fields": {"name": ["Already taken in this function."]},
        }
    assert snapshot() == before


def test_a_duplicate_that_races_past_the_check_is_409_too(world: Any, function: Function) -> None:
    """Two creates racing: both pass the existence check, the unique constraint stops the
    second, and it gets the same 409 (not a 500), its savepoint rolled back alone."""
    make(world.alice, function, "taken")
    loser = Event(function=function, name="taken", body={}, created_by=world.bob)
    with pytest.raises(DomainError) as refused:
        test_event_services._save(loser)
    assert (refused.value.status_code, refused.value.code) == (409, "already_exists")
    assert list(Event.objects.values_list("name", flat=True)) == ["taken"]


def test_the_service_refuses_a_null_body(world: Any, function: Function) -> None:
    """The API's serializer refuses null first; the service holds the rule for every caller."""
    with pytest.raises(DomainError) as refused:
        test_event_services.test_event_create(actor=world.bob, function=function, name="x", body=None)
    assert refused.value.code == "test_event_body_invalid"
    assert Event.objects.count() == 0


def test_the_same_name_is_fine_in_another_function(world: Any, function: Function) -> None:
    other = function_services.function_create(
        actor=world.alice, project=world.web, name="other", runtime="python3.11", handler="main.handler"
    )
    make(world.alice, function, "same")
    assert make(world.alice, other, "same").function_id == other.pk


@pytest.mark.parametrize("name", ["", "   ", "tab\there", "x" * 101])
def test_a_bad_name_is_refused(world: Any, function: Function, client_for: Any, name: str) -> None:
    response = client_for(world.bob).post(url(function), {"name": name, "body": {}}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    assert Event.objects.count() == 0


# --- templates --------------------------------------------------------------------------------


def test_templates_name_the_starting_points_and_the_kind_each_is_for(world: Any, client_for: Any) -> None:
    response = client_for(world.carol, scopes=["read"]).get(f"{API}/test-event-templates/")
    assert response.status_code == 200
    templates = response.json()
    assert [t["id"] for t in templates] == [
        "http-get",
        "http-post",
        "scf-api-gateway",
        "scheduled",
        "custom",
        "http-request",
    ]
    assert [t["kind"] for t in templates] == ["event"] * 5 + ["http"]
    by_id = {t["id"]: t["body"] for t in templates}
    assert (by_id["http-get"]["httpMethod"], by_id["http-get"]["body"]) == ("GET", None)
    assert (by_id["http-post"]["httpMethod"], json.loads(by_id["http-post"]["body"])) == (
        "POST",
        {"name": "widget", "quantity": 2},
    )
    assert by_id["scheduled"]["detail-type"] == "Scheduled Event"
    assert by_id["custom"] == {}


def test_templates_need_a_signed_in_caller(db: None) -> None:
    from rest_framework.test import APIClient

    assert APIClient().get(f"{API}/test-event-templates/").status_code == 401


def gateway_event(method: str, query: bytes, body: bytes) -> dict[str, Any]:
    """What the gateway really hands an event function for a request (its shaping module, fed
    as apps/engine/gateway.py feeds it)."""
    request = event_shapes.Request(
        method=method,
        path="/items",
        query=query.decode(),
        headers=[("host", "functions.example"), ("content-type", "application/json")],
        body=body,
        source_ip="203.0.113.7",
        scheme="http",
        port="80",
        http_version="1.1",
        request_id="r1",
        key=("my-org", "my-project", "dev", "my-function"),
        received_at=1767225600.0,
    )
    return event_shapes.build_event("apigw-v1", request, event_shapes.match_route((), "/items"))


def shape(event: dict[str, Any]) -> dict[str, Any]:
    """The keys and value types a handler relies on (requestContext's keys too)."""
    top = {k: type(v).__name__ for k, v in event.items()}
    return {**top, "requestContext": {k: type(v).__name__ for k, v in event["requestContext"].items()}}


@pytest.mark.parametrize(
    ("template_id", "method", "query", "body"),
    [("http-get", "GET", b"limit=10", b""), ("http-post", "POST", b"", b'{"name": "widget"}')],
)
def test_http_templates_have_the_shape_the_gateway_sends(
    template_id: str, method: str, query: bytes, body: bytes
) -> None:
    template = next(t["body"] for t in template_list() if t["id"] == template_id)
    real = gateway_event(method, query, body)
    assert shape(template) == shape(real)
    assert template["requestContext"]["stratus"].keys() == real["requestContext"]["stratus"].keys()
