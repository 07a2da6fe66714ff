"""The Knative backend against a fake Kubernetes API (tests/functions/fake_kube.py: a cluster cannot
run here), driven by the real `kubernetes` client; and the signed artifact URLs the runtime fetches."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signing
from django.db import transaction
from kubernetes import config as k8s_config

from apps.functions import artifact_urls, deploy_services, version_services
from apps.functions import services as function_services
from apps.functions.artifacts import artifact_bytes, artifact_store
from apps.functions.backends import registry
from apps.functions.backends.base import BindingTarget, DeployedVersion, HeaderMatch, TrafficRules
from apps.functions.backends.knative import KnativeBackend
from apps.functions.models import Binding, TrafficChange
from apps.tenancy.models import Environment
from tests.functions.fake_kube import FakeKube, running_fake_kube
from tests.functions.test_knative_manifests import schema_errors

NS = "stratus-test"
IMAGE = "registry.example.com/stratus/runtime:1"
TARGET = BindingTarget(binding_id=7, org="acme", project="shop", environment="prod", function="resize")
SECRET_VALUE = "s3cr3t-db-password"
SERVICE = "acme-shop-prod-resize"


def config(**overrides: Any) -> dict[str, Any]:
    return {
        "runtime": "python3.11",
        "handler": "main.handler",
        "kind": "event",
        "memory_mb": 256,
        "timeout_s": 30,
        "env": {"LOG_LEVEL": "info"},
        "min_instances": 0,
        "max_instances": 5,
        "instance_concurrency": 2,
        "idle_timeout_s": 300,
        **overrides,
    }


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with running_fake_kube() as fake:
        yield fake


@pytest.fixture
def backend(fake: FakeKube, tmp_path, settings) -> KnativeBackend:
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    return KnativeBackend(api_client, namespace=NS, image=IMAGE)


@pytest.fixture
def versions(db) -> dict[int, DeployedVersion]:
    out = {}
    for number in (3, 4, 5):
        artifact = artifact_store(files={"main.py": f"def handler(e, c):\n    return {number}\n".encode()})
        out[number] = DeployedVersion(
            number=number,
            artifact_sha256=artifact.sha256,
            config=config(),
            env={"LOG_LEVEL": "info", "DB_PASSWORD": SECRET_VALUE},
        )
    return out


def service_name(backend: KnativeBackend) -> str:
    name = backend.service_name(TARGET)
    assert name.startswith(SERVICE + "-")
    return name


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_apply_90_10_posts_a_valid_service_with_exact_traffic_and_env_behind_secrets(fake, backend, versions):
    name = service_name(backend)

    result = backend.apply(TARGET, [versions[3], versions[4]], TrafficRules(weights=((3, 90), (4, 10))))

    assert result.ready is False  # no controller has reported yet
    assert result.unsupported == []
    (get,) = [r for r in fake.calls("GET", "services")]
    assert get.path == f"/apis/serving.knative.dev/v1/namespaces/{NS}/services/{name}"
    (post,) = fake.calls("POST", "services")
    assert post.path == f"/apis/serving.knative.dev/v1/namespaces/{NS}/services"
    body = post.body
    assert schema_errors(body) == []
    assert body["spec"]["traffic"] == [
        {"revisionName": f"{name}-v3", "percent": 90, "latestRevision": False, "tag": "v3"},
        {"revisionName": f"{name}-v4", "percent": 10, "latestRevision": False, "tag": "v4"},
    ]
    assert body["spec"]["template"]["metadata"]["name"] == f"{name}-v4"
    (container,) = body["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["env"] == [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{name}-v4-env", "key": "DB_PASSWORD"}}},
        {"name": "LOG_LEVEL", "valueFrom": {"secretKeyRef": {"name": f"{name}-v4-env", "key": "LOG_LEVEL"}}},
        {
            "name": "STRATUS_ARTIFACT_URL",
            "valueFrom": {"secretKeyRef": {"name": f"{name}-artifacts", "key": versions[4].artifact_sha256}},
        },
        {"name": "STRATUS_ARTIFACT_SHA256", "value": versions[4].artifact_sha256},
        {"name": "STRATUS_HANDLER", "value": "main.handler"},
        {"name": "STRATUS_RUNTIME", "value": "python3.11"},
        {"name": "STRATUS_KIND", "value": "event"},
        {"name": "STRATUS_FUNCTION_NAME", "value": "resize"},
        {"name": "STRATUS_FUNCTION_VERSION", "value": "4"},
        {"name": "STRATUS_MEMORY_MB", "value": "256"},
        {"name": "STRATUS_TIMEOUT_S", "value": "30"},
        {"name": "STRATUS_MAX_BODY_BYTES", "value": str(6 * 1024 * 1024)},
        {"name": "STRATUS_ORG", "value": "acme"},
        {"name": "STRATUS_PROJECT", "value": "shop"},
        {"name": "STRATUS_ENVIRONMENT", "value": "prod"},
        {"name": "STRATUS_REGION", "value": "us-east-1"},  # settings.STRATUS_FUNCTION_REGION
    ]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/_stratus/healthz"}
    raw = json.dumps(body)
    assert SECRET_VALUE not in raw and b64(SECRET_VALUE) not in raw
    assert "sig=" not in raw  # the expiring URL is not in the immutable revision

    # The Secrets were written before the Service, for both versions that carry traffic.
    order = [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests if r.method in ("POST", "PUT")]
    assert order[-1] == ("POST", "services")
    for number in (3, 4):
        env_secret = fake.get("secrets", NS, f"{name}-v{number}-env")
        assert env_secret["data"] == {"LOG_LEVEL": b64("info"), "DB_PASSWORD": b64(SECRET_VALUE)}
        assert env_secret["metadata"]["labels"]["stratus.dev/service"] == name
    urls = fake.get("secrets", NS, f"{name}-artifacts")["data"]
    assert set(urls) == {versions[3].artifact_sha256, versions[4].artifact_sha256}
    url = base64.b64decode(urls[versions[4].artifact_sha256]).decode()
    assert url.startswith(f"http://127.0.0.1:8000/artifacts/{versions[4].artifact_sha256}.zip?sig=")


def test_second_apply_puts_with_the_current_resource_version(fake, backend, versions):
    name = service_name(backend)
    backend.apply(TARGET, [versions[3], versions[4]], TrafficRules(weights=((3, 90), (4, 10))))
    rv = fake.get("services", NS, name)["metadata"]["resourceVersion"]

    backend.apply(TARGET, [versions[3], versions[4]], TrafficRules(weights=((3, 50), (4, 50))))

    (put,) = fake.calls("PUT", "services")
    assert put.path == f"/apis/serving.knative.dev/v1/namespaces/{NS}/services/{name}"
    assert put.body["metadata"]["resourceVersion"] == rv
    assert schema_errors(put.body) == []
    assert [(t["revisionName"], t["percent"]) for t in put.body["spec"]["traffic"]] == [
        (f"{name}-v3", 50),
        (f"{name}-v4", 50),
    ]
    assert len(fake.calls("POST", "services")) == 1


def test_concurrent_modification_between_get_and_put_is_retried(fake, backend, versions):
    name = service_name(backend)
    backend.apply(TARGET, [versions[4]], TrafficRules(weights=((4, 100),)))
    bumped: list[str] = []

    def concurrent_writer(kind: str, ns: str, obj: str) -> None:
        if kind == "services" and not bumped:  # only the first PUT races
            fake.bump(kind, ns, obj)
            bumped.append(fake.get(kind, ns, obj)["metadata"]["resourceVersion"])

    fake.before_put = concurrent_writer
    backend.apply(TARGET, [versions[4], versions[5]], TrafficRules(weights=((4, 100), (5, 0))))

    puts = fake.calls("PUT", "services")
    assert len(puts) == 2
    assert puts[1].body["metadata"]["resourceVersion"] == bumped[0]
    assert [r.method for r in fake.calls(kind="services")] == ["GET", "POST", "GET", "PUT", "GET", "PUT"]
    stored = fake.get("services", NS, name)
    assert stored["spec"]["template"]["metadata"]["name"] == f"{name}-v5"


def test_conflicts_that_never_end_give_up_after_three_retries(fake, backend, versions):
    backend.apply(TARGET, [versions[4]], TrafficRules(weights=((4, 100),)))
    fake.before_put = lambda kind, ns, obj: fake.bump(kind, ns, obj) if kind == "services" else None

    with pytest.raises(RuntimeError, match="still conflicting after 3 retries"):
        backend.apply(TARGET, [versions[4]], TrafficRules(weights=((4, 100),)))
    assert len(fake.calls("PUT", "services")) == 4


def test_status_reads_the_ready_condition(fake, backend, versions):
    name = service_name(backend)
    assert backend.status(TARGET).message == "not deployed"
    backend.apply(TARGET, [versions[4]], TrafficRules(weights=((4, 100),)))
    assert backend.status(TARGET).ready is False

    fake.set_status(
        NS,
        name,
        {"conditions": [{"type": "Ready", "status": "True"}], "latestReadyRevisionName": f"{name}-v4"},
    )
    status = backend.status(TARGET)

    assert status.ready is True
    assert status.message == f"ready: latest ready revision {name}-v4"
    assert status.instances == [{"revision": f"{name}-v4"}]
    fake.set_status(NS, name, {"conditions": [{"type": "Ready", "status": "False", "message": "image pull failed"}]})
    assert (backend.status(TARGET).ready, backend.status(TARGET).message) == (False, "image pull failed")


def test_apply_reports_ready_from_the_returned_service(fake, backend, versions):
    name = service_name(backend)
    backend.apply(TARGET, [versions[4]], TrafficRules(weights=((4, 100),)))
    fake.set_status(NS, name, {"conditions": [{"type": "Ready", "status": "True"}]})

    result = backend.apply(TARGET, [versions[4]], TrafficRules(weights=((4, 100),)))

    assert result.ready is True


def test_remove_deletes_service_and_secrets_and_is_idempotent(fake, backend, versions):
    name = service_name(backend)
    other = BindingTarget(binding_id=8, org="acme", project="shop", environment="dev", function="resize")
    backend.apply(TARGET, [versions[3], versions[4]], TrafficRules(weights=((3, 90), (4, 10))))
    backend.apply(other, [versions[4]], TrafficRules(weights=((4, 100),)))

    backend.remove(TARGET)

    deleted = sorted(r.path.rsplit("/", 1)[-1] for r in fake.calls("DELETE"))
    assert deleted == sorted([name, f"{name}-artifacts", f"{name}-v3-env", f"{name}-v4-env"])
    assert fake.get("services", NS, name) is None
    assert [k for k in fake.objects if k[0] == "secrets" and name in k[2]] == []
    other_name = backend.service_name(other)
    assert fake.get("services", NS, other_name) is not None  # the other binding is untouched
    assert fake.get("secrets", NS, f"{other_name}-v4-env") is not None

    backend.remove(TARGET)  # second time: 404s are fine
    assert backend.status(TARGET).message == "not deployed"


def test_header_rules_and_sticky_key_are_reported_unsupported(fake, backend, versions):
    name = service_name(backend)
    traffic = TrafficRules(
        weights=((3, 90), (4, 10)),
        tags={3: "stable", 4: "canary"},
        header_rules=(
            HeaderMatch(header="X-Beta", value="1", version=4),
            HeaderMatch(header="beta", value="^u-", version=4, kind="regex", source="cookie"),
        ),
        sticky_key="cookie:uid",
    )

    result = backend.apply(TARGET, [versions[3], versions[4]], traffic)

    assert result.unsupported == [
        "header rule 1 (header X-Beta equals 1 -> v4): Knative routes by weight only; "
        "use the tag URL or the Knative-Serving-Tag header (tag v4)",
        "header rule 2 (cookie beta matches ^u- -> v4): Knative routes by weight only; "
        "use the tag URL or the Knative-Serving-Tag header (tag v4)",
        "sticky key cookie:uid: Knative has no sticky routing; each request is split by weight",
    ]
    (post,) = fake.calls("POST", "services")
    assert schema_errors(post.body) == []
    assert post.body["spec"]["traffic"] == [
        {"revisionName": f"{name}-v3", "percent": 90, "latestRevision": False, "tag": "stable"},
        {"revisionName": f"{name}-v3", "percent": 0, "latestRevision": False, "tag": "v3"},
        {"revisionName": f"{name}-v4", "percent": 10, "latestRevision": False, "tag": "canary"},
        {"revisionName": f"{name}-v4", "percent": 0, "latestRevision": False, "tag": "v4"},
    ]


def test_prepare_writes_the_artifact_url_and_keeps_other_versions_keys(fake, backend, versions):
    name = service_name(backend)
    backend.prepare(TARGET, versions[3])
    assert backend.prepare(TARGET, versions[4]) is True

    data = fake.get("secrets", NS, f"{name}-artifacts")["data"]
    assert set(data) == {versions[3].artifact_sha256, versions[4].artifact_sha256}
    assert fake.calls("POST", "services") == []


def test_client_is_built_lazily_from_the_kubeconfig_setting(fake, tmp_path, settings, versions):
    settings.STRATUS_KNATIVE_KUBECONFIG = str(fake.write_kubeconfig(tmp_path / "kc"))
    settings.STRATUS_KNATIVE_NAMESPACE = NS
    backend = KnativeBackend()
    assert fake.requests == []

    assert backend.status(TARGET).message == "not deployed"
    assert (
        fake.requests[0].path == f"/apis/serving.knative.dev/v1/namespaces/{NS}/services/{backend.service_name(TARGET)}"
    )


# --- end to end: a binding's release state through binding_apply_revision --------------------


@pytest.fixture
def knative_settings(fake, tmp_path, settings) -> Iterator[None]:
    """The registry's `knative` backend, built from settings, talking to the fake API."""
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.STRATUS_KNATIVE_KUBECONFIG = str(fake.write_kubeconfig(tmp_path / "kc-e2e"))
    settings.STRATUS_KNATIVE_NAMESPACE = NS
    settings.STRATUS_KNATIVE_IMAGE = IMAGE
    registry._build.cache_clear()
    yield
    registry._build.cache_clear()


@pytest.fixture
def knative_binding(world, knative_settings) -> Binding:
    """`hello` in alpha/web/staging (a knative environment), versions 1 and 2, 1 deployed at 100%."""
    staging = Environment.objects.get(project=world.web, name="staging")
    Environment.objects.filter(pk=staging.pk).update(execution_backend="knative")
    staging.refresh_from_db()
    function = function_services.function_create(
        actor=world.alice, project=world.web, name="hello", runtime="python3.11", handler="main.handler"
    )
    for i in (1, 2):
        version_services.version_create(
            actor=world.alice, function=function, files={"main.py": f"V = {i}\n".encode()}, source="files"
        )
    binding = deploy_services.deploy(
        actor=world.alice, function=function, environment=staging, version=function.versions.get(number=1)
    )
    assert binding.backend == "knative"
    return binding


def set_traffic(binding: Binding, traffic: list[dict[str, Any]]) -> Binding:
    with transaction.atomic():
        return deploy_services.traffic_apply(
            actor=None, binding=binding, traffic=traffic, reason=TrafficChange.Reason.STEP
        )


def knative_name(binding: Binding) -> str:
    return KnativeBackend(namespace=NS, image=IMAGE).service_name(deploy_services.binding_target(binding))


def test_binding_apply_renders_100_percent_single_version(fake, knative_binding):
    binding = deploy_services.binding_apply_revision(binding_id=knative_binding.pk, revision=knative_binding.revision)

    name = knative_name(binding)
    (post,) = fake.calls("POST", "services")
    assert schema_errors(post.body) == []
    assert post.body["spec"]["traffic"] == [
        {"revisionName": f"{name}-v1", "percent": 100, "latestRevision": False, "tag": "v1"}
    ]
    assert binding.status == "pending"  # no Knative controller has reported yet
    assert binding.status_message == "Knative has not reported readiness yet"


def test_binding_apply_of_a_release_with_header_rule_and_sticky_key_applies_weights_and_names_the_rest(
    fake, knative_binding
):
    # Given a release state (stable v1 90% / canary v2 10%) with a header rule and a sticky key
    binding = set_traffic(
        knative_binding,
        [{"version": 1, "weight": 90, "tag": "stable"}, {"version": 2, "weight": 10, "tag": "canary", "warm": 1}],
    )
    Binding.objects.filter(pk=binding.pk).update(
        header_rules=[{"source": "header", "name": "X-Beta", "match": "equals", "value": "1", "version": 2}],
        sticky_key="header:X-User-Id",
    )

    # When the apply task runs
    binding = deploy_services.binding_apply_revision(binding_id=binding.pk, revision=binding.revision)

    # Then the weights and tags reached the Knative Service (schema-valid, summing to 100)
    name = knative_name(binding)
    (post,) = fake.calls("POST", "services")
    assert schema_errors(post.body) == []
    traffic = post.body["spec"]["traffic"]
    assert traffic == [
        {"revisionName": f"{name}-v1", "percent": 90, "latestRevision": False, "tag": "stable"},
        {"revisionName": f"{name}-v1", "percent": 0, "latestRevision": False, "tag": "v1"},
        {"revisionName": f"{name}-v2", "percent": 10, "latestRevision": False, "tag": "canary"},
        {"revisionName": f"{name}-v2", "percent": 0, "latestRevision": False, "tag": "v2"},
    ]
    assert sum(t["percent"] for t in traffic) == 100
    assert fake.get("services", NS, name)["spec"]["traffic"] == traffic
    # and the rules Knative cannot express are named on the binding, not dropped
    unsupported = (
        "not supported on knative: "
        "header rule 1 (header X-Beta equals 1 -> v2): Knative routes by weight only; "
        "use the tag URL or the Knative-Serving-Tag header (tag v2); "
        "sticky key header:X-User-Id: Knative has no sticky routing; each request is split by weight"
    )
    assert binding.status == "pending"
    assert binding.status_message == f"Knative has not reported readiness yet; {unsupported}"

    # When Knative reports the Service ready and the (idempotent) task runs again
    fake.set_status(
        NS, name, {"conditions": [{"type": "Ready", "status": "True"}], "latestReadyRevisionName": f"{name}-v2"}
    )
    binding = deploy_services.binding_apply_revision(binding_id=binding.pk, revision=binding.revision)

    # Then the binding is ready (the weights applied) and still names what Knative cannot do
    assert (binding.status, binding.applied_revision) == ("ready", binding.revision)
    assert binding.status_message == f"ready: latest ready revision {name}-v2; {unsupported}"


def test_binding_status_message_stays_within_its_column(fake, knative_binding):
    binding = set_traffic(knative_binding, [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}])
    rules = [
        {"source": "cookie", "name": f"beta{i}", "match": "regex", "value": "^u-[0-9a-f]{8}$", "version": 2}
        for i in range(10)
    ]
    Binding.objects.filter(pk=binding.pk).update(header_rules=rules, sticky_key="cookie:uid")

    binding = deploy_services.binding_apply_revision(binding_id=binding.pk, revision=binding.revision)

    assert binding.status == "pending"
    assert len(binding.status_message) == 500
    assert binding.status_message.endswith("…")
    assert "header rule 1 (cookie beta0 matches ^u-[0-9a-f]{8}$ -> v2)" in binding.status_message


# --- signed artifact URLs ---------------------------------------------------------------------


@pytest.fixture
def artifact(db):
    return artifact_store(files={"main.py": b"def handler(event, context):\n    return 'hi'\n"})


def relative(url: str) -> str:
    assert url.startswith("http://127.0.0.1:8000/")
    return url[len("http://127.0.0.1:8000") :]


def test_signed_url_downloads_the_exact_bytes(client, artifact, settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    url = artifact_urls.artifact_signed_url(artifact=artifact, ttl_s=600)

    response = client.get(relative(url))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response.content == artifact_bytes(artifact=artifact)


def test_tampered_signature_is_403(client, artifact, settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    url = artifact_urls.artifact_signed_url(artifact=artifact, ttl_s=600)
    tampered = url[:-1] + ("A" if url[-1] != "A" else "B")

    response = client.get(relative(tampered))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "artifact_signature_invalid"
    assert "signature is missing or invalid" in response.json()["error"]["message"]


def test_signature_for_another_artifact_is_403(client, artifact, db):
    other = artifact_store(files={"other.py": b"x = 1\n"})
    sig = artifact_urls.artifact_signature(sha256=other.sha256)

    response = client.get(f"/artifacts/{artifact.sha256}.zip?sig={sig}")

    assert response.status_code == 403


def test_missing_signature_is_403(client, artifact):
    response = client.get(f"/artifacts/{artifact.sha256}.zip")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "artifact_signature_invalid"


def test_expired_signature_is_403(client, artifact, settings, monkeypatch):
    settings.STRATUS_ARTIFACT_URL_TTL_S = 60
    past = time.time() - 61
    monkeypatch.setattr(signing.time, "time", lambda: past)
    sig = artifact_urls.artifact_signature(sha256=artifact.sha256)
    monkeypatch.undo()

    response = client.get(f"/artifacts/{artifact.sha256}.zip?sig={sig}")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "artifact_signature_expired"
    assert "valid for 60 seconds" in response.json()["error"]["message"]


def test_ttl_longer_than_the_setting_is_refused(artifact, settings):
    settings.STRATUS_ARTIFACT_URL_TTL_S = 60
    with pytest.raises(ValueError, match="exceeds STRATUS_ARTIFACT_URL_TTL_S"):
        artifact_urls.artifact_signed_url(artifact=artifact, ttl_s=61)


def test_bindings_refresh_renews_artifact_urls_before_they_expire(fake, knative_binding, client, settings, monkeypatch):
    """A revision that scales from zero hours after its deploy reads the URL from the Secret:
    the periodic refresh keeps it valid (issued 50 minutes in, still good at 70 minutes, when
    the deploy's own URL has expired)."""
    settings.STRATUS_ARTIFACT_URL_TTL_S = 3600
    binding = deploy_services.binding_apply_revision(binding_id=knative_binding.pk, revision=knative_binding.revision)
    secret = f"{knative_name(binding)}-artifacts"
    sha = binding.function.versions.get(number=1).artifact.sha256

    def url_now() -> str:
        data = fake.get("secrets", NS, secret)["data"]
        return base64.b64decode(data[sha]).decode().removeprefix(settings.PUBLIC_URL)

    deployed_url = url_now()
    start = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: start + 50 * 60)
    assert deploy_services.bindings_refresh() == (1, 0)
    refreshed_url = url_now()
    assert refreshed_url != deployed_url

    monkeypatch.setattr(signing.time, "time", lambda: start + 70 * 60)
    assert client.get(deployed_url).status_code == 403  # expired
    assert client.get(refreshed_url).status_code == 200
    assert fake.calls("PUT", "services") == []  # only the Secret changed: no new revision


def test_bindings_refresh_goes_on_past_a_failing_binding(fake, knative_binding, world, settings, caplog):
    binding = deploy_services.binding_apply_revision(binding_id=knative_binding.pk, revision=knative_binding.revision)
    fake.fail_next("GET", "secrets", status=500)  # the API server fails once, then answers
    assert deploy_services.bindings_refresh() == (0, 1)
    assert f"refreshing binding {binding.pk} on knative failed" in caplog.text
    assert deploy_services.bindings_refresh() == (1, 0)


def test_the_refresh_runs_three_times_per_url_lifetime(settings):
    from apps.functions import tasks
    from console.celery import app

    settings.STRATUS_ARTIFACT_URL_TTL_S = 3600
    assert tasks.refresh_interval_s() == 1200
    assert app.conf.beat_schedule["bindings-refresh"]["task"] == "apps.functions.tasks.bindings_refresh"
