"""Functions through the API: create, read, update, delete; who may; what is refused."""

import pytest

from apps.audit.models import AuditEvent
from apps.functions import services
from apps.functions.models import Function

HELLO = {"name": "hello", "runtime": "python3.11", "handler": "main.handler"}


def url_list(world):
    return f"/api/v1/projects/{world.web.pk}/functions/"


def test_developer_creates_a_function_with_defaults(world, client_for):
    response = client_for(world.bob).post(url_list(world), HELLO, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in HELLO} == HELLO
    assert body["org"] == "alpha"
    assert body["project"] == world.web.pk
    assert (body["kind"], body["memory_mb"], body["timeout_s"]) == ("event", 256, 30)
    assert (body["min_instances"], body["max_instances"], body["instance_concurrency"]) == (0, 10, 1)
    assert body["env"] == {}
    event = AuditEvent.objects.get(action="function.create")
    assert (event.actor_repr, event.org, event.target_id) == ("bob", world.alpha, str(body["id"]))


def test_node_http_function_with_knobs(world, client_for):
    payload = {
        "name": "api",
        "runtime": "node20",
        "handler": "src/index.handler",
        "kind": "http",
        "memory_mb": 1024,
        "timeout_s": 900,
        "env": {"LOG_LEVEL": "debug"},
        "min_instances": 2,
        "max_instances": 5,
        "instance_concurrency": 8,
        "idle_timeout_s": 60,
    }
    response = client_for(world.bob).post(url_list(world), payload, format="json")
    assert response.status_code == 201, response.json()
    assert {k: response.json()[k] for k in payload} == payload


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"memory_mb": 64}, "memory_mb", "Must be between 128 and 3072."),
        ({"memory_mb": 4096}, "memory_mb", "Must be between 128 and 3072."),
        ({"timeout_s": 0}, "timeout_s", "Must be between 1 and 900."),
        ({"timeout_s": 901}, "timeout_s", "Must be between 1 and 900."),
        ({"handler": "main"}, "handler", "A Python handler is 'module.function', e.g. 'main.handler'."),
        (
            {"runtime": "node20", "handler": "../x.handler"},
            "handler",
            "A Node handler is 'file.export', e.g. 'index.handler'.",
        ),
        ({"min_instances": 3, "max_instances": 2}, "min_instances", "Must not exceed max_instances."),
        ({"env": {"1BAD": "x"}}, "env", "'1BAD': use letters, digits and underscores, not starting with a digit."),
        (
            {"env": {"STRATUS_X": "x"}},
            "env",
            "'STRATUS_X': names starting with STRATUS_, AWS_LAMBDA_, SCF_ are reserved.",
        ),
        ({"runtime": "python2.7"}, "runtime", '"python2.7" is not a valid choice.'),
        (
            {"name": "Bad Name"},
            "name",
            "Use 1-50 lowercase letters, digits and dashes, starting and ending with a letter or digit.",
        ),
    ],
)
def test_invalid_config_is_refused_naming_the_field(world, client_for, change, field, message):
    response = client_for(world.bob).post(url_list(world), {**HELLO, **change}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"][field] == [message]
    assert Function.objects.count() == 0


def test_duplicate_name_in_a_project_is_409(world, client_for):
    client = client_for(world.bob)
    assert client.post(url_list(world), HELLO, format="json").status_code == 201
    response = client.post(url_list(world), HELLO, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_exists"
    assert Function.objects.count() == 1


def test_viewer_reads_but_cannot_write(world, client_for):
    fn = services.function_create(actor=world.alice, project=world.web, **HELLO)
    carol = client_for(world.carol)

    assert carol.get(url_list(world)).json()["results"][0]["name"] == "hello"
    assert carol.get(f"/api/v1/functions/{fn.pk}/").status_code == 200
    for response in (
        carol.post(url_list(world), {**HELLO, "name": "other"}, format="json"),
        carol.patch(f"/api/v1/functions/{fn.pk}/", {"memory_mb": 512}, format="json"),
        carol.delete(f"/api/v1/functions/{fn.pk}/"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    fn.refresh_from_db()
    assert fn.memory_mb == 256
    assert list(Function.objects.values_list("name", flat=True)) == ["hello"]


def test_member_without_a_grant_gets_404(world, client_for):
    fn = services.function_create(actor=world.alice, project=world.web, **HELLO)
    dora = client_for(world.dora)
    assert dora.get(url_list(world)).status_code == 404
    assert dora.get(f"/api/v1/functions/{fn.pk}/").status_code == 404
    assert dora.patch(f"/api/v1/functions/{fn.pk}/", {"memory_mb": 512}, format="json").status_code == 404


def test_update_checks_the_merged_config_and_audits_changed_keys_only(world, client_for):
    fn = services.function_create(actor=world.alice, project=world.web, env={"A": "1"}, **HELLO)
    bob = client_for(world.bob)

    refused = bob.patch(f"/api/v1/functions/{fn.pk}/", {"min_instances": 20}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"min_instances": ["Must not exceed max_instances."]}

    ok = bob.patch(f"/api/v1/functions/{fn.pk}/", {"memory_mb": 512, "env": {"A": "2", "B": "x"}}, format="json")
    assert ok.status_code == 200, ok.json()
    assert (ok.json()["memory_mb"], ok.json()["env"]) == (512, {"A": "2", "B": "x"})
    event = AuditEvent.objects.get(action="function.update")
    assert event.changes == {"memory_mb": [256, 512], "env": ["A", "B"]}


def test_delete_removes_the_function(world, client_for):
    fn = services.function_create(actor=world.alice, project=world.web, **HELLO)
    response = client_for(world.bob).delete(f"/api/v1/functions/{fn.pk}/")
    assert response.status_code == 204
    assert not Function.objects.filter(pk=fn.pk).exists()
    assert AuditEvent.objects.filter(action="function.delete", target_id=str(fn.pk)).count() == 1


def test_read_token_cannot_create(world, client_for):
    response = client_for(world.bob, scopes=["read"]).post(url_list(world), HELLO, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This token lacks the 'write' scope this request needs."


@pytest.mark.parametrize("count", [3, 30])
def test_list_issues_a_bounded_number_of_queries(world, client_for, django_assert_max_num_queries, count):
    for i in range(count):
        services.function_create(
            actor=world.alice, project=world.web, name=f"fn-{i}", runtime="python3.11", handler="m.h"
        )
    client = client_for(world.bob)
    with django_assert_max_num_queries(8):
        response = client.get(url_list(world) + "?limit=100")
    assert response.json()["count"] == count


def test_a_function_with_a_deploy_history_and_a_release_can_be_deleted(world, client_for):
    from apps.functions.deploy_services import deploy
    from apps.functions.models import TrafficChange, Version
    from apps.functions.version_services import version_create
    from apps.releases.models import Release
    from apps.releases.services import release_start
    from apps.tenancy.models import Environment

    fn = services.function_create(actor=world.alice, project=world.web, **HELLO)
    dev = Environment.objects.get(project=world.web, name="dev")
    versions = [
        version_create(actor=world.alice, function=fn, files={"main.py": f"# {n}\n".encode()}, source="files")[0]
        for n in range(3)
    ]
    deploy(actor=world.alice, function=fn, environment=dev, version=versions[0])
    deploy(actor=world.alice, function=fn, environment=dev, version=versions[1])
    release_start(
        actor=world.alice, function=fn, environment=dev, version=versions[2], plan={"steps": [50, 100], "advance": "manual"}
    )
    assert TrafficChange.objects.filter(binding__function=fn).count() >= 2 and Release.objects.exists()

    response = client_for(world.alice).delete(f"/api/v1/functions/{fn.pk}/")

    # The timeline keeps a version from being deleted alone, not with its function.
    assert response.status_code == 204, response.content
    assert not Version.objects.filter(function_id=fn.pk).exists()
    assert not Release.objects.exists()
    # A version referenced by the timeline still cannot be deleted on its own.
    other = services.function_create(actor=world.alice, project=world.web, name="kept", runtime="python3.11", handler="main.handler")
    kept = version_create(actor=world.alice, function=other, files={"main.py": b"# kept\n"}, source="files")[0]
    deploy(actor=world.alice, function=other, environment=dev, version=kept)
    from django.db.models import RestrictedError

    with pytest.raises(RestrictedError):
        kept.delete()
