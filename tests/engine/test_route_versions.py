"""A route version (what the engine runs for one version of a function in one environment:
instance spec, scaling policy, pool key) is built from the database in one way
(apps/engine/routing.py ``route_version``, assembled into routes by ``routes_from``), whoever
asks: the gateway's routing table, the invoke API, the supervisor. These check that the three
agree, and that the invoke API draws a version with the route's own picker."""

from __future__ import annotations

from typing import Any

import pytest

from apps.engine import routing
from apps.engine import services as engine_services
from apps.engine.routing import _load_routes, binding_route, version_from_db
from apps.functions import deploy_services, services, version_services
from apps.functions.models import Binding, TrafficChange
from apps.tenancy import environment_services
from apps.tenancy.models import Environment

pytestmark = pytest.mark.django_db


@pytest.fixture
def canary(world: Any) -> Binding:
    """hello in dev: v1 stable (2 warm instances), v2 canary, 50/50; an env var and a secret."""
    fn = services.function_create(
        actor=world.alice,
        project=world.web,
        name="hello",
        runtime="python3.11",
        handler="main.handler",
        env={"GREETING": "fn", "LEVEL": "fn"},
    )
    for i in (1, 2, 3):
        version_services.version_create(
            actor=world.alice, function=fn, files={"main.py": f"V = {i}\n".encode()}, source="files"
        )
    dev = Environment.objects.get(project=world.web, name="dev")
    environment_services.environment_var_set(actor=world.alice, environment=dev, name="LEVEL", value="var")
    environment_services.environment_var_set(actor=world.alice, environment=dev, name="TOKEN", value="var")
    environment_services.environment_secret_set(actor=world.alice, environment=dev, name="TOKEN", value="secret")
    binding = deploy_services.deploy(actor=world.alice, function=fn, environment=dev, version=fn.versions.get(number=1))
    return deploy_services.traffic_apply(
        actor=world.alice,
        binding=binding,
        traffic=[
            {"version": 1, "weight": 50, "tag": "stable", "warm": 2},
            {"version": 2, "weight": 50, "tag": "canary"},
        ],
        reason=TrafficChange.Reason.STEP,
    )


def test_the_routing_table_and_one_bindings_route_are_the_same(canary: Binding) -> None:
    table = _load_routes([canary.pk])  # load_routes without closing the test's connection
    route = binding_route(canary)

    assert route is not None and list(table.values()) == [route]
    assert route.weights == ((2, 50), (1, 50))  # canary first: sticky buckets move one way
    assert route.versions[1].policy.min_instances == 2  # "warm" of the traffic entry


def test_every_version_gets_the_one_merged_environment(canary: Binding) -> None:
    """version variables, then environment variables, then secrets: the engine's routes, the
    supervisor and the backends (deployed_versions) all run with the same environment."""
    route = binding_route(canary)
    assert route is not None
    expected = {"GREETING": "fn", "LEVEL": "var", "TOKEN": "secret"}

    assert route.versions[1].spec.env == expected
    assert [v.env for v in deploy_services.deployed_versions(canary)] == [expected, expected]
    assert (
        deploy_services.merged_env(version=canary.function.versions.get(number=2), environment=canary.environment)
        == expected
    )


def test_the_supervisor_builds_the_version_the_web_process_routed(canary: Binding) -> None:
    route = binding_route(canary)
    assert route is not None

    built = version_from_db(
        function_id=canary.function_id, environment_id=canary.environment_id, number=2, binding_id=canary.pk
    )

    assert built == route.versions[2]
    assert (
        version_from_db(function_id=canary.function_id, environment_id=canary.environment_id, number=9, binding_id=None)
        is None
    )


def test_the_invoke_api_runs_a_served_version_as_the_route_holds_it(canary: Binding) -> None:
    route = binding_route(canary)
    assert route is not None

    rv, binding = engine_services.invocation_target(
        function=canary.function, environment=canary.environment, version_number=1
    )

    # Same pool and the same policy: the warm instances stay (a policy without them would
    # replace the pool's and let the release's pre-started instances go).
    assert (rv, binding) == (route.versions[1], canary)


def test_the_invoke_api_runs_a_version_the_binding_does_not_serve_apart(canary: Binding) -> None:
    rv, _ = engine_services.invocation_target(
        function=canary.function, environment=canary.environment, version_number=3
    )

    assert rv.number == 3 and rv.pool_key[0] is None and rv.policy.min_instances == 0
    assert rv.spec.env == {"GREETING": "fn", "LEVEL": "var", "TOKEN": "secret"}


def test_the_invoke_api_draws_with_the_routes_picker(canary: Binding, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    real_pick = routing.Route.pick

    def pick(route: routing.Route, rng: Any = None) -> routing.RouteVersion:
        chosen = real_pick(route, rng)
        drawn.append(chosen.number)
        return chosen

    monkeypatch.setattr(routing.Route, "pick", pick)

    numbers = [
        engine_services.invocation_target(
            function=canary.function, environment=canary.environment, version_number=None
        )[0].number
        for _ in range(20)
    ]

    assert numbers == drawn and set(numbers) <= {1, 2}
