"""An environment's execution backend: chosen on create, checked against the registered
backends and this installation's configuration (a cluster for knative) when it is set, and a
switch moves the environment's bindings to the new backend (the Kubernetes API is the fake in
tests/functions/fake_kube.py: a cluster cannot run here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.audit.models import AuditEvent
from apps.functions import deploy_services, services, version_services
from apps.functions.backends import registry
from apps.functions.models import Binding
from apps.tenancy.models import Environment
from tests.functions.fake_kube import FakeKube, running_fake_kube

NO_CLUSTER = (
    "the knative backend needs a cluster: set STRATUS_KNATIVE_KUBECONFIG or run the console in a cluster "
    "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)"
)


@pytest.fixture
def no_cluster(settings, monkeypatch) -> None:
    settings.STRATUS_KNATIVE_KUBECONFIG = ""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with running_fake_kube() as fake:
        yield fake


@pytest.fixture
def cluster(fake, settings, tmp_path) -> Iterator[FakeKube]:
    settings.STRATUS_KNATIVE_KUBECONFIG = str(fake.write_kubeconfig(tmp_path / "kubeconfig"))
    settings.STRATUS_KNATIVE_NAMESPACE = "stratus-test"
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    registry._build.cache_clear()
    yield fake
    registry._build.cache_clear()


def url(world) -> str:
    return f"/api/v1/projects/{world.web.pk}/environments/"


def test_create_accepts_a_backend(world, client_for, cluster):
    created = client_for(world.alice).post(url(world), {"name": "kn", "execution_backend": "knative"}, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["execution_backend"] == "knative"
    assert Environment.objects.get(project=world.web, name="kn").execution_backend == "knative"
    event = AuditEvent.objects.get(action="environment.create", changes__name="kn")
    assert event.changes["execution_backend"] == "knative"


def test_create_without_a_backend_uses_the_default(world, client_for):
    created = client_for(world.alice).post(url(world), {"name": "plain"}, format="json")

    assert created.status_code == 201
    assert created.json()["execution_backend"] == ""


def test_create_with_an_unknown_backend_is_400_naming_the_choices(world, client_for):
    refused = client_for(world.alice).post(url(world), {"name": "x", "execution_backend": "lambda"}, format="json")

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "execution_backend": ["Use one of: knative, local, or '' for the default."]
    }
    assert not Environment.objects.filter(project=world.web, name="x").exists()


def test_knative_without_a_cluster_is_400_when_set(world, client_for, no_cluster):
    alice = client_for(world.alice)

    created = alice.post(url(world), {"name": "kn", "execution_backend": "knative"}, format="json")
    changed = alice.patch(url(world) + "staging/", {"execution_backend": "knative"}, format="json")

    for refused in (created, changed):
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "backend_not_configured"
        assert error["fields"] == {"execution_backend": [NO_CLUSTER]}
    assert not Environment.objects.filter(project=world.web, name="kn").exists()
    assert Environment.objects.get(project=world.web, name="staging").execution_backend == ""


def test_a_kubeconfig_that_is_not_a_file_is_named(world, client_for, settings, tmp_path):
    settings.STRATUS_KNATIVE_KUBECONFIG = str(tmp_path / "missing")

    refused = client_for(world.alice).patch(url(world) + "staging/", {"execution_backend": "knative"}, format="json")

    assert refused.status_code == 400
    assert "STRATUS_KNATIVE_KUBECONFIG" in refused.json()["error"]["message"]
    assert str(tmp_path / "missing") in refused.json()["error"]["message"]


def test_switching_the_backend_moves_the_bindings(world, client_for, cluster, django_capture_on_commit_callbacks):
    function = services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    version_services.version_create(
        actor=world.alice, function=function, files={"main.py": b"def handler(e, c):\n    return 1\n"}, source="files"
    )
    staging = Environment.objects.get(project=world.web, name="staging")
    binding = deploy_services.deploy(
        actor=world.alice, function=function, environment=staging, version=function.versions.get()
    )
    assert binding.backend == "local"
    revision = binding.revision

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        changed = client_for(world.alice).patch(
            url(world) + "staging/", {"execution_backend": "knative"}, format="json"
        )

    assert changed.status_code == 200, changed.content
    binding.refresh_from_db()
    assert binding.backend == "knative"
    assert binding.revision == revision + 1
    assert binding.status == Binding.Status.PENDING
    assert binding.status_message == "moving from the local backend to knative"
    assert callbacks  # routes announced, the old backend told, the apply queued: after commit
    event = AuditEvent.objects.get(action="environment.update")
    assert event.changes == {"execution_backend": ["", "knative"], "bindings_moved": [binding.pk]}
    assert AuditEvent.objects.filter(action="binding.move").count() == 1

    # The apply (the worker's task) renders the binding on Knative.
    applied = deploy_services.binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    assert applied is not None and applied.backend == "knative"
    assert [call.method for call in cluster.calls(kind="services")] == ["GET", "POST"]

    # And back: the binding returns to the local backend, the Service is deleted after commit.
    with django_capture_on_commit_callbacks(execute=True):
        back = client_for(world.alice).patch(url(world) + "staging/", {"execution_backend": "local"}, format="json")
    assert back.status_code == 200
    binding.refresh_from_db()
    assert binding.backend == "local"
    assert cluster.calls("DELETE", "services")
