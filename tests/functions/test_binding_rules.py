"""A binding's routing rules (header/cookie rules, sticky key, auth mode) through the API:
validation, rights, and the traffic change they make (revision, timeline, announcement)."""

import pytest

from apps.audit.models import AuditEvent
from apps.core.errors import DomainError
from apps.functions import services, version_services
from apps.functions.binding_services import binding_rules_set
from apps.functions.models import Binding, TrafficChange
from apps.tenancy.models import Environment

HELLO = {"name": "hello", "runtime": "python3.11", "handler": "main.handler"}
BETA = {"source": "header", "name": "X-Beta", "match": "equals", "value": "1", "version": 2}
STAFF = {"source": "cookie", "name": "team", "match": "regex", "value": r"staff-\d+", "version": 1}


@pytest.fixture
def fn(world):
    function = services.function_create(actor=world.alice, project=world.web, **HELLO)
    for i in (1, 2):
        version_services.version_create(
            actor=world.alice, function=function, files={"main.py": f"V = {i}\n".encode()}, source="files"
        )
    return function


@pytest.fixture
def bound(world, client_for, fn):
    """v1 deployed to dev and prod."""
    alice = client_for(world.alice)
    for environment in ("dev", "prod"):
        response = alice.post(
            f"/api/v1/functions/{fn.pk}/deploy", {"environment": environment, "version": 1}, format="json"
        )
        assert response.status_code == 200, response.json()
    return fn


def url(fn, environment):
    return f"/api/v1/functions/{fn.pk}/bindings/{environment}"


def patch(client, fn, environment, body):
    return client.patch(url(fn, environment), body, format="json")


def test_get_a_binding(world, client_for, bound):
    response = client_for(world.carol).get(url(bound, "dev"))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["environment"], body["traffic"], body["header_rules"], body["sticky_key"]) == (
        "dev",
        [{"version": 1, "weight": 100}],
        [],
        "",
    )


def test_unknown_environment_or_binding_is_404(world, client_for, fn):
    bob = client_for(world.bob)

    assert bob.get(url(fn, "qa")).status_code == 404
    assert bob.get(url(fn, "dev")).json()["error"]["message"] == "Function 'hello' has no binding in 'dev'."
    assert patch(bob, fn, "dev", {"sticky_key": ""}).status_code == 404


def test_setting_rules_is_a_traffic_change(world, client_for, bound, django_capture_on_commit_callbacks):
    bob = client_for(world.bob)

    with django_capture_on_commit_callbacks() as callbacks:
        response = patch(bob, bound, "dev", {"header_rules": [BETA, STAFF], "sticky_key": "cookie:uid"})

    # Then the binding holds the rules, its traffic is unchanged and its revision moved on
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["header_rules"] == [BETA, STAFF]
    assert (body["sticky_key"], body["traffic"], body["revision"]) == ("cookie:uid", [{"version": 1, "weight": 100}], 2)
    assert len(callbacks) == 2  # routes announced to the gateways, apply queued: after commit
    # And the timeline records it
    change = TrafficChange.objects.order_by("id").last()
    assert (change.reason, change.actor, change.version) == ("rules", world.bob, None)
    assert change.from_traffic == change.to_traffic == [{"version": 1, "weight": 100}]
    assert change.note == "header rules: 0 -> 2; sticky key: none -> cookie:uid"
    assert AuditEvent.objects.filter(action="binding.rules").get().changes["note"] == change.note


def test_auth_mode_can_be_changed_and_an_unchanged_patch_changes_nothing(world, client_for, bound):
    bob = client_for(world.bob)

    changed = patch(bob, bound, "dev", {"auth_mode": "public"})
    again = patch(bob, bound, "dev", {"auth_mode": "public", "header_rules": []})

    assert (changed.json()["auth_mode"], changed.json()["revision"]) == ("public", 2)
    assert (again.status_code, again.json()["revision"]) == (200, 2)
    assert TrafficChange.objects.filter(reason="rules").get().note == "auth mode: token -> public"


def test_rules_can_be_cleared(world, client_for, bound):
    bob = client_for(world.bob)
    patch(bob, bound, "dev", {"header_rules": [BETA], "sticky_key": "header:X-User"})

    response = patch(bob, bound, "dev", {"header_rules": [], "sticky_key": ""})

    assert (response.json()["header_rules"], response.json()["sticky_key"], response.json()["revision"]) == ([], "", 3)
    assert TrafficChange.objects.order_by("id").last().note == "header rules: 1 -> 0; sticky key: header:X-User -> none"


def rule(**changes):
    return {**BETA, **changes}


@pytest.mark.parametrize(
    ("header_rules", "message"),
    [
        ("X-Beta", "must be a list of rules"),
        ([BETA] * 21, "at most 20 rules (got 21)"),
        (["X-Beta"], "rule 0: must be an object with source, name, match, value and version"),
        ([BETA, rule(source="query")], "rule 1: 'source' must be header or cookie"),
        ([rule(name="")], "rule 0: 'name' must be a non-empty string"),
        ([rule(name=7)], "rule 0: 'name' must be a non-empty string"),
        ([rule(name="X Beta")], "rule 0: 'name' is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        (
            [rule(source="cookie", name="a;b")],
            "rule 0: 'name' is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)",
        ),
        ([rule(name="X" * 101)], "rule 0: 'name' must be at most 100 characters"),
        ([BETA, STAFF, rule(match="prefix")], "rule 2: 'match' must be equals or regex"),
        ([rule(value=1)], "rule 0: 'value' must be a string"),
        ([rule(value="x" * 201)], "rule 0: 'value' must be at most 200 characters"),
        (
            [rule(match="regex", value="(unclosed")],
            "rule 0: 'value' is not a valid regular expression (missing ), unterminated subpattern at position 0)",
        ),
        ([rule(version=9)], "rule 0: 'version' 9 does not exist"),
        ([rule(version="2")], "rule 0: 'version' must be a version number"),
        ([rule(version=True)], "rule 0: 'version' must be a version number"),
        ([{**BETA, "weight": 5}], "rule 0: unknown keys ['weight']"),
        ([{k: v for k, v in BETA.items() if k != "version"}], "rule 0: missing ['version']"),
    ],
)
def test_each_bad_rule_is_named(world, client_for, bound, header_rules, message):
    response = patch(client_for(world.bob), bound, "dev", {"header_rules": header_rules})

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["fields"] == {"header_rules": [message]}
    assert Binding.objects.get(environment__name="dev").revision == 1
    assert not TrafficChange.objects.filter(reason="rules").exists()


def test_every_bad_rule_is_reported_at_once(world, client_for, bound):
    response = patch(
        client_for(world.bob), bound, "dev", {"header_rules": [rule(match="x"), BETA, rule(version=9, source="y")]}
    )

    assert response.json()["error"]["fields"] == {
        "header_rules": [
            "rule 0: 'match' must be equals or regex",
            "rule 2: 'source' must be header or cookie",
            "rule 2: 'version' 9 does not exist",
        ]
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sticky_key": "uid"}, "sticky_key"),
        ({"sticky_key": "query:uid"}, "sticky_key"),
        ({"sticky_key": "header:"}, "sticky_key"),
        ({"sticky_key": "header:X User"}, "sticky_key"),
        ({"sticky_key": "cookie:" + "u" * 100}, "sticky_key"),
        ({"auth_mode": "open"}, "auth_mode"),
    ],
)
def test_bad_sticky_key_or_auth_mode(world, client_for, bound, body, field):
    response = patch(client_for(world.bob), bound, "dev", body)

    assert response.status_code == 400, response.json()
    assert list(response.json()["error"]["fields"]) == [field]


def test_the_service_validates_sticky_key_and_auth_mode_itself(world, bound):
    binding = Binding.objects.get(environment__name="dev")

    with pytest.raises(DomainError) as bad_key:
        binding_rules_set(actor=world.bob, binding=binding, sticky_key="uid")
    with pytest.raises(DomainError) as bad_mode:
        binding_rules_set(actor=world.bob, binding=binding, auth_mode="open")

    assert bad_key.value.fields == {"sticky_key": ["must be '', 'header:<Name>' or 'cookie:<name>'"]}
    assert bad_mode.value.fields == {"auth_mode": ["must be one of public, token"]}


@pytest.mark.parametrize(
    ("actor", "environment", "expected"),
    [
        ("alice", "prod", 200),
        ("bob", "dev", 200),
        ("bob", "prod", 403),  # developer, protected
        ("carol", "dev", 403),  # viewer
        ("dora", "dev", 404),
        ("charlie", "dev", 404),
    ],
)
def test_who_may_set_rules(world, client_for, bound, actor, environment, expected):
    response = patch(client_for(world.user(actor)), bound, environment, {"sticky_key": "header:X-User"})

    assert response.status_code == expected, response.json()
    binding = Binding.objects.get(environment=Environment.objects.get(project=world.web, name=environment))
    assert binding.sticky_key == ("header:X-User" if expected == 200 else "")


def test_setting_rules_needs_the_deploy_scope_on_a_token(world, client_for, bound):
    refused = patch(client_for(world.bob, scopes=["read", "write"]), bound, "dev", {"sticky_key": "cookie:uid"})

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "This token lacks the 'deploy' scope this request needs."
    assert client_for(world.bob, scopes=["read"]).get(url(bound, "dev")).status_code == 200
