"""Deploying versions to environments: rights, traffic, timeline, config snapshot, and the
backend apply that runs after commit (local backend: the version unpacked on disk)."""

import pytest

from apps.audit.models import AuditEvent
from apps.functions import services, version_services
from apps.functions.backends.local import version_dir
from apps.functions.deploy_services import binding_apply_revision, merged_env
from apps.functions.models import Binding, TrafficChange
from apps.tenancy import environment_services
from apps.tenancy.models import Environment

HELLO = {"name": "hello", "runtime": "python3.11", "handler": "main.handler"}


@pytest.fixture
def fn(world):
    function = services.function_create(actor=world.alice, project=world.web, env={"GREETING": "hi"}, **HELLO)
    for i in (1, 2):
        version_services.version_create(
            actor=world.alice, function=function, files={"main.py": f"V = {i}\n".encode()}, source="files"
        )
    return function


def deploy(client, fn, environment, version, **extra):
    return client.post(
        f"/api/v1/functions/{fn.pk}/deploy", {"environment": environment, "version": version, **extra}, format="json"
    )


def test_developer_deploys_to_dev_and_the_binding_serves_it(world, client_for, fn, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = deploy(client_for(world.bob), fn, "dev", 2)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["environment"] == "dev"
    assert body["traffic"] == [{"version": 2, "weight": 100}]
    assert body["url"] == "http://localhost:8000/fn/alpha/web/dev/hello/"
    assert (body["auth_mode"], body["backend"], body["status"], body["revision"]) == ("token", "local", "pending", 1)
    assert len(callbacks) == 2  # route announcement + apply task, queued after commit, not before

    # When the apply task runs (as the worker would)
    binding = binding_apply_revision(binding_id=Binding.objects.get().pk, revision=1)

    # Then the local backend has the version unpacked and the binding is ready
    assert (binding.status, binding.applied_revision) == ("ready", 1)
    sha = fn.versions.get(number=2).artifact.sha256
    assert (version_dir(sha) / "main.py").read_text() == "V = 2\n"


def test_redeploy_records_the_timeline_and_the_config_used(world, client_for, fn):
    dev = Environment.objects.get(project=world.web, name="dev")
    environment_services.environment_var_set(actor=world.alice, environment=dev, name="LOG_LEVEL", value="debug")
    environment_services.environment_secret_set(actor=world.alice, environment=dev, name="DB_PASSWORD", value="pw-zz9")
    bob = client_for(world.bob)

    deploy(bob, fn, "dev", 1)
    response = deploy(bob, fn, "dev", 2)

    assert response.json()["revision"] == 2
    first, second = TrafficChange.objects.order_by("id")
    assert (first.from_traffic, first.to_traffic) == ([], [{"version": 1, "weight": 100}])
    assert (second.from_traffic, second.to_traffic) == (
        [{"version": 1, "weight": 100}],
        [{"version": 2, "weight": 100}],
    )
    assert second.config_snapshot == {
        "function_env": ["GREETING"],
        "variables": {"LOG_LEVEL": "debug"},
        "secrets": ["DB_PASSWORD"],
    }
    assert "pw-zz9" not in str(second.config_snapshot)
    event = AuditEvent.objects.filter(action="binding.deploy").order_by("id").last()
    assert event.changes == {
        "environment": "dev",
        "version": 2,
        "from": [{"version": 1, "weight": 100}],
        "to": [{"version": 2, "weight": 100}],
    }
    # the deployed process environment merges function env, variables and secrets
    assert merged_env(version=fn.versions.get(number=2), environment=dev) == {
        "GREETING": "hi",
        "LOG_LEVEL": "debug",
        "DB_PASSWORD": "pw-zz9",
    }


@pytest.mark.parametrize(
    ("actor", "environment", "expected"),
    [
        ("alice", "prod", 200),  # owner
        ("adam", "prod", 200),  # admin
        ("bob", "dev", 200),  # developer, unprotected
        ("bob", "prod", 403),  # developer, protected
        ("carol", "dev", 403),  # viewer
        ("dora", "dev", 404),  # member without a grant on the project
        ("charlie", "dev", 404),  # outsider
    ],
)
def test_who_may_deploy_where(world, client_for, fn, actor, environment, expected):
    response = deploy(client_for(world.user(actor)), fn, environment, 1)

    assert response.status_code == expected, response.json()
    if expected != 200:
        assert Binding.objects.count() == 0
        assert TrafficChange.objects.count() == 0


def test_a_deployer_grant_on_prod_lets_a_developer_deploy_there(world, client_for, fn):
    prod = Environment.objects.get(project=world.web, name="prod")
    environment_services.environment_deployer_add(actor=world.alice, environment=prod, user=world.bob)

    assert deploy(client_for(world.bob), fn, "prod", 1).status_code == 200


def test_deploy_needs_the_deploy_scope_on_a_token(world, client_for, fn):
    refused = deploy(client_for(world.bob, scopes=["read", "write"]), fn, "dev", 1)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "This token lacks the 'deploy' scope this request needs."
    assert deploy(client_for(world.bob, scopes=["deploy"]), fn, "dev", 1).status_code == 200


def test_unknown_version_or_environment_is_404(world, client_for, fn):
    bob = client_for(world.bob)
    assert deploy(bob, fn, "dev", 9).json()["error"]["message"] == "Version 9 of function 'hello' not found."
    assert deploy(bob, fn, "qa", 1).status_code == 404
    assert Binding.objects.count() == 0


def test_a_stale_apply_does_nothing(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 2)
    binding = Binding.objects.get()

    assert binding_apply_revision(binding_id=binding.pk, revision=1) is None  # superseded by revision 2
    binding.refresh_from_db()
    assert (binding.status, binding.applied_revision) == ("pending", 0)
    assert binding_apply_revision(binding_id=binding.pk, revision=2).status == "ready"


def test_bindings_list_shows_traffic_and_urls(world, client_for, fn):
    deploy(client_for(world.bob), fn, "dev", 1)
    deploy(client_for(world.alice), fn, "prod", 2, auth_mode="public")

    listing = client_for(world.carol).get(f"/api/v1/functions/{fn.pk}/bindings/").json()

    assert [(b["environment"], b["traffic"], b["auth_mode"], b["url"]) for b in listing["results"]] == [
        ("dev", [{"version": 1, "weight": 100}], "token", "http://localhost:8000/fn/alpha/web/dev/hello/"),
        ("prod", [{"version": 2, "weight": 100}], "public", "http://localhost:8000/fn/alpha/web/prod/hello/"),
    ]


def test_an_environment_can_choose_its_backend_for_new_bindings(world, client_for, fn, settings, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"  # a cluster is configured (never reached: nothing is applied)
    kubeconfig.write_text("apiVersion: v1\n")
    settings.STRATUS_KNATIVE_KUBECONFIG = str(kubeconfig)
    alice = client_for(world.alice)
    env_url = f"/api/v1/projects/{world.web.pk}/environments/staging/"

    refused = alice.patch(env_url, {"execution_backend": "lambda"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "execution_backend": ["Use one of: knative, local, or '' for the default."]
    }
    assert client_for(world.bob).patch(env_url, {"execution_backend": "knative"}, format="json").status_code == 403

    changed = alice.patch(env_url, {"execution_backend": "knative"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["execution_backend"] == "knative"
    assert deploy(alice, fn, "staging", 1).json()["backend"] == "knative"
    assert deploy(alice, fn, "dev", 1).json()["backend"] == "local"
    event = AuditEvent.objects.get(action="environment.update")
    assert event.changes == {"execution_backend": ["", "knative"]}
