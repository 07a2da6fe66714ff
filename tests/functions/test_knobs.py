"""The knobs of a function (apps/functions/knobs.py) mean the same at every entry point: the
API (create and update), stratus.yaml and the engine accept the same minimum and maximum,
refuse one past either end with words naming the range, and the engine runs what was set
(and the same default when a config snapshot lacks a knob)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.errors import DomainError
from apps.engine.routing import route_version
from apps.functions import services
from apps.functions.knobs import CONFIG_FIELDS, KNOB, KNOBS, Knob
from apps.functions.models import Artifact, Function, Version
from apps.pipelines.pipeline_config import FUNCTION_KEYS, parse_pipeline
from apps.tenancy.models import Environment, Project

HELLO: dict[str, Any] = {"name": "hello", "runtime": "python3.11", "handler": "main.handler"}
IDS = [knob.name for knob in KNOBS]


@pytest.fixture
def roomy(world):
    """An organization whose quotas admit every knob's maximum."""
    world.alpha.quota_instances = 100_000
    world.alpha.quota_memory_mb = 1_000_000
    world.alpha.save()
    return world


def with_knob(knob: Knob, value: int) -> dict[str, int]:
    """``knob`` at ``value``, with max_instances room for min_instances."""
    return {knob.name: value, **({"max_instances": KNOB["max_instances"].max} if knob.name == "min_instances" else {})}


def test_every_knob_is_configuration_the_api_and_stratus_yaml_take():
    assert set(KNOB) <= set(CONFIG_FIELDS)
    assert set(CONFIG_FIELDS) <= set(FUNCTION_KEYS)
    for knob in KNOBS:
        assert knob.min <= knob.default <= knob.max, knob
        assert getattr(Function(), knob.name) == knob.default


@pytest.mark.parametrize("knob", KNOBS, ids=IDS)
def test_the_api_creates_with_each_end_of_the_range_and_refuses_past_it(roomy, client_for, knob):
    client = client_for(roomy.bob)
    url = f"/api/v1/projects/{roomy.web.pk}/functions/"
    for i, value in enumerate((knob.min, knob.max)):
        response = client.post(url, {**HELLO, "name": f"ok-{i}", **with_knob(knob, value)}, format="json")
        assert response.status_code == 201, response.json()
        assert response.json()[knob.name] == value

    for value in (knob.min - 1, knob.max + 1):
        response = client.post(url, {**HELLO, "name": "bad", **with_knob(knob, value)}, format="json")
        assert response.status_code == 400, value
        assert response.json()["error"]["fields"][knob.name] == [f"Must be between {knob.min} and {knob.max}."]
    assert not Function.objects.filter(name="bad").exists()


@pytest.mark.parametrize("knob", KNOBS, ids=IDS)
def test_the_api_updates_to_each_end_of_the_range_and_refuses_past_it(roomy, client_for, knob):
    function = services.function_create(actor=roomy.alice, project=roomy.web, **HELLO)
    client = client_for(roomy.bob)
    url = f"/api/v1/functions/{function.pk}/"
    for value in (knob.min, knob.max):
        response = client.patch(url, with_knob(knob, value), format="json")
        assert response.status_code == 200, response.json()
        assert response.json()[knob.name] == value

    for value in (knob.min - 1, knob.max + 1):
        response = client.patch(url, with_knob(knob, value), format="json")
        assert response.status_code == 400, value
        assert response.json()["error"]["fields"][knob.name] == [f"Must be between {knob.min} and {knob.max}."]
    function.refresh_from_db()
    assert getattr(function, knob.name) == knob.max


@pytest.mark.parametrize("knob", KNOBS, ids=IDS)
def test_the_service_refuses_past_the_range_too(roomy, knob):
    """Entry points that skip the serializer (pipelines, VS Code through the service)."""
    for value in (knob.min - 1, knob.max + 1):
        with pytest.raises(DomainError) as refused:
            config: dict[str, Any] = {**HELLO, **with_knob(knob, value)}
            services.function_create(actor=roomy.alice, project=roomy.web, **config)
        assert refused.value.fields[knob.name] == [f"Must be between {knob.min} and {knob.max}."]


def _yaml(knob: Knob, value: int) -> str:
    return (
        f"functions:\n  - name: hello\n    runtime: python3.11\n    handler: main.handler\n    {knob.name}: {value}\n"
    )


@pytest.mark.parametrize("knob", KNOBS, ids=IDS)
def test_stratus_yaml_takes_the_same_range(knob):
    for value in (knob.min, knob.max):
        assert parse_pipeline(_yaml(knob, value))["functions"][0][knob.name] == value

    for value in (knob.min - 1, knob.max + 1):
        with pytest.raises(DomainError) as refused:
            parse_pipeline(_yaml(knob, value))
        assert refused.value.message == (
            f"stratus.yaml line 5: functions[0].{knob.name} must be between {knob.min} and {knob.max}"
        )


# Where the engine keeps each knob of a version it runs.
ENGINE_READS = {
    "memory_mb": lambda rv: rv.spec.memory_mb,
    "timeout_s": lambda rv: rv.spec.timeout_s,
    "ephemeral_storage_mb": lambda rv: rv.spec.tmp_mb,
    "min_instances": lambda rv: rv.policy.min_instances,
    "max_instances": lambda rv: rv.policy.max_instances,
    "instance_concurrency": lambda rv: rv.policy.concurrency,
    "idle_timeout_s": lambda rv: rv.policy.idle_timeout_s,
}


def _engine_route(config: dict[str, Any]) -> Any:
    """The engine's view of a version with this config snapshot (no database: the lookups
    route_version would make are given)."""
    environment = Environment(pk=7, name="dev", project=Project(pk=2, org_id=1), egress_allow=[])
    function = Function(pk=3, name="hello", project=environment.project)
    version = Version(number=1, function=function, config=config, artifact=Artifact(sha256="0" * 64))
    return route_version(
        function=function,
        environment=environment,
        version=version,
        env={},
        binding_id=None,
        identity=1,
        org_quota=(100_000, 1_000_000),
    )


def test_the_engine_reads_every_knob():
    assert set(ENGINE_READS) == set(KNOB)


@pytest.mark.parametrize("knob", KNOBS, ids=IDS)
def test_the_engine_runs_each_end_of_the_range_and_the_default(settings, knob):
    settings.STRATUS_QUEUE_TIMEOUT_S = 10_000  # not the knob's bound: the policy's queue wait is the lesser
    base: dict[str, Any] = {"runtime": "python3.11", "kind": "event", "handler": "main.handler", "env": {}}
    base.update({k.name: k.default for k in KNOBS})
    for value in (knob.min, knob.max):
        config = {**base, **with_knob(knob, value)}
        assert ENGINE_READS[knob.name](_engine_route(config)) == value

    if knob.name not in ("memory_mb", "timeout_s"):  # always in a snapshot: the engine needs them
        config = {k: v for k, v in base.items() if k != knob.name}
        assert ENGINE_READS[knob.name](_engine_route(config)) == knob.default


def test_the_settings_page_offers_the_same_range():
    from apps.functions.pages.function_settings import KNOBS as PAGE_KNOBS

    assert {name: (low, high) for name, _, _, low, high, _ in PAGE_KNOBS} == {k.name: (k.min, k.max) for k in KNOBS}


def test_a_knob_names_its_range():
    assert KNOB["memory_mb"].range_message == "Must be between 128 and 3072."
