"""How the gateway picks a version: weights, the X-Stratus-Version override, header and cookie
rules, sticky buckets; and traffic switches under load (real clients, real instances)."""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

import httpx
import pytest
from django.db import transaction

from apps.engine.routing import NotServed, Rule, make_route
from apps.functions import version_services
from apps.functions.deploy_services import traffic_apply
from apps.functions.models import Binding, TrafficChange
from tests.engine.conftest import deploy_latest, make_function, url, wait_for, wait_revision, wait_routed


class FakeVersion:
    def __init__(self, number: int) -> None:
        self.number = number


def route(weights: list[tuple[int, int]], tags: dict[str, int] | None = None, **extra: Any) -> Any:
    versions = {n: FakeVersion(n) for n, _ in weights}
    versions.update({r.version: FakeVersion(r.version) for r in extra.get("rules", ())})
    return make_route(
        key=("o", "p", "e", "f"),
        binding_id=7,
        function_id=1,
        environment_id=1,
        project_id=1,
        kind="event",
        auth_mode="public",
        revision=1,
        versions=versions,
        weights=weights,
        tags=tags or {},
        **extra,
    )


def no_header(name: str) -> None:
    return None


def test_sticky_buckets_only_move_from_stable_to_canary_as_the_share_grows():
    users = [f"user-{i}" for i in range(3000)]
    previous: set[str] = set()
    for share in (10, 30, 60, 100):
        weights = [(1, 100 - share), (2, share)] if share < 100 else [(2, 100)]
        r = route(weights, tags={"stable": 1, "canary": 2} if share < 100 else {})
        on_canary = {u for u in users if r.bucket_version(u).number == 2} if share < 100 else set(users)
        assert previous <= on_canary  # nobody who was on the canary goes back
        assert abs(len(on_canary) / len(users) * 100 - share) < 3
        # The same caller, asked again, lands on the same side.
        assert all((r.bucket_version(u).number == 2) == (u in on_canary) for u in users[:200]) or share == 100
        previous = on_canary


def test_override_names_a_tag_or_a_number_and_refuses_what_is_not_served():
    r = route([(3, 90), (4, 10)], tags={"stable": 3, "canary": 4})
    assert r.select("canary", no_header, no_header).number == 4
    assert r.select("stable", no_header, no_header).number == 3
    assert r.select("3", no_header, no_header).number == 3
    assert r.select("v4", no_header, no_header).number == 4
    with pytest.raises(NotServed, match="'9' is not served here \\(serving v4, v3; tags canary, stable\\)"):
        r.select("9", no_header, no_header)


def test_rules_match_headers_and_cookies_before_weights():
    import re

    rules = (
        Rule("header", "x-beta", "equals", "1", 5),
        Rule("cookie", "plan", "regex", "pro|team", 6, re.compile("pro|team")),
    )
    r = route([(3, 100)], rules=rules)
    headers = {"x-beta": "1"}
    assert r.select(None, headers.get, no_header).number == 5
    assert r.select(None, no_header, {"plan": "team"}.get).number == 6
    assert r.select(None, no_header, {"plan": "teams"}.get).number == 3  # regex must match whole value
    assert r.select(None, no_header, no_header).number == 3


def test_weights_split_within_two_points_over_ten_thousand_picks():
    r = route([(1, 70), (2, 30)])
    counts = collections.Counter(r.pick().number for _ in range(10_000))
    assert abs(counts[2] / 100 - 30) <= 2


# --- through the gateway ------------------------------------------------------------------


VERSIONED = "import os\nV = os.environ.get('V', '?')\ndef handler(event, context):\n    return {'v': V}\n"


def two_versions(world: Any, name: str) -> Any:
    """A function serving v1 at 100%, with a v2 published beside it."""
    fn = make_function(world, name, {"main.py": VERSIONED}, max_instances=4)
    deploy_latest(world, fn)
    version_services.version_create(
        actor=world.alice, function=fn, files={"main.py": VERSIONED.encode(), "two.txt": b"2"}, source="files"
    )
    return fn


def set_traffic(world: Any, fn: Any, traffic: list[dict[str, Any]], **binding_fields: Any) -> None:
    with transaction.atomic():
        binding = Binding.objects.select_for_update().get(function=fn)
        for key, value in binding_fields.items():
            setattr(binding, key, value)
        binding.save()
        traffic_apply(actor=world.alice, binding=binding, traffic=traffic, reason=TrafficChange.Reason.STEP)


async def hammer(base_url: str, path: str, count: int, concurrency: int) -> collections.Counter[tuple[int, str]]:
    """``count`` GETs over ``concurrency`` keep-alive connections, with a minimal HTTP/1.1
    client (a full client would cost more CPU than the server it measures, in this same
    process). Counts (status, X-Stratus-Version) pairs."""
    host, port = base_url.removeprefix("http://").split(":")
    seen: collections.Counter[tuple[int, str]] = collections.Counter()
    remaining = iter(range(count))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for _ in remaining:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
                await reader.readexactly(int(headers.get("content-length", "0")))
                seen[(int(lines[0].split()[1]), headers.get("x-stratus-version", "?"))] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return seen


def test_gateway_split_override_rules_and_sticky(world, engine, served):
    fn = two_versions(world, "split")
    set_traffic(
        world,
        fn,
        [{"version": 1, "weight": 80, "tag": "stable"}, {"version": 2, "weight": 20, "tag": "canary"}],
        sticky_key="header:X-User",
        header_rules=[{"source": "cookie", "name": "beta", "match": "equals", "value": "yes", "version": 2}],
    )
    wait_revision(engine, fn)

    # Split: 10,000 real requests, within 2 points of the weight.
    seen = asyncio.run(hammer(served.base_url, url(fn), 10_000, 8))
    assert {status for status, _ in seen} == {200}, seen
    assert abs(seen[(200, "2")] / 100 - 20) <= 2, seen

    # Override, rule, sticky.
    assert served.get(url(fn), headers={"x-stratus-version": "canary"}).headers["x-stratus-version"] == "2"
    assert served.get(url(fn), headers={"x-stratus-version": "stable"}).headers["x-stratus-version"] == "1"
    bad = served.get(url(fn), headers={"x-stratus-version": "7"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "version_not_served"
    # Cookies reach a function (and its cookie rules) on the functions host only.
    on_functions_host = served.base_url.replace("127.0.0.1", "localhost") + url(fn)
    assert all(
        served.get(on_functions_host, headers={"cookie": "a=1; beta=yes"}).headers["x-stratus-version"] == "2"
        for _ in range(20)
    )
    for user in ("ada", "bob", "cy", "dee", "eve"):
        seen = {served.get(url(fn), headers={"x-user": user}).headers["x-stratus-version"] for _ in range(15)}
        assert len(seen) == 1, (user, seen)


def test_a_prewarmed_canary_is_running_before_it_takes_traffic(world, engine, served):
    fn = two_versions(world, "prewarm")
    wait_routed(engine, fn)

    set_traffic(
        world,
        fn,
        [{"version": 1, "weight": 90, "tag": "stable"}, {"version": 2, "weight": 10, "tag": "canary", "warm": 2}],
    )
    wait_revision(engine, fn)

    pools = [p for key, p in engine.engine.pools.items() if key[2] == fn.pk and key[3] == 2 and not p.draining]
    assert len(pools) == 1 and len(pools[0].instances) == 2  # started before the route swap
    response = served.get(url(fn), headers={"x-stratus-version": "canary"})
    assert response.status_code == 200 and "x-stratus-cold-start" not in response.headers


def test_twenty_switches_under_load_drop_nothing(world, engine, served):
    fn = make_function(world, "steady", {"main.py": VERSIONED}, max_instances=4)
    for n in (2, 3):
        version_services.version_create(
            actor=world.alice,
            function=fn,
            files={"main.py": VERSIONED.encode(), "n.txt": str(n).encode()},
            source="files",
        )
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    stop = threading.Event()
    statuses: collections.Counter[int] = collections.Counter()
    versions: collections.Counter[str] = collections.Counter()
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=served.base_url, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.get(url(fn))
                except httpx.HTTPError as exc:  # a dropped connection counts as a failure
                    errors.append(repr(exc))
                    continue
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    errors.append(response.text)
                versions[response.headers.get("x-stratus-version", "?")] += 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    states = [
        [{"version": 1, "weight": 90, "tag": "stable"}, {"version": 2, "weight": 10, "tag": "canary"}],
        [{"version": 1, "weight": 50, "tag": "stable"}, {"version": 2, "weight": 50, "tag": "canary"}],
        [{"version": 2, "weight": 100}],
        [{"version": 2, "weight": 70, "tag": "stable"}, {"version": 3, "weight": 30, "tag": "canary"}],
        [{"version": 2, "weight": 100}],  # abort
        [{"version": 1, "weight": 100}],  # rollback
        [{"version": 1, "weight": 34}, {"version": 2, "weight": 33}, {"version": 3, "weight": 33}],
    ]

    def served_more(than: int) -> bool:
        return sum(statuses.values()) + len(errors) >= than

    try:
        # Each switch lands among requests in flight: wait until the clients have been served
        # some more since the last one (a condition, not a sleep tuned to an idle machine).
        wait_for(lambda: served_more(12), timeout=60)
        for i in range(20):
            set_traffic(world, fn, states[i % len(states)])
            wait_for(lambda seen=sum(statuses.values()) + len(errors): served_more(seen + 12), timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 200
    assert {"1", "2", "3"} <= set(versions)
    assert TrafficChange.objects.filter(binding__function=fn).count() == 21
    wait_for(lambda: True)


@pytest.mark.django_db
def test_each_function_gets_an_identity_per_environment_and_a_process_ceiling_apart_from_max_instances(world):
    from apps.engine.routing import route_version
    from apps.functions.identities import execution_identities
    from apps.tenancy.models import Environment
    from tests.engine.conftest import make_function

    world.alpha.quota_instances = 1000  # an operator lets this org run that many
    world.alpha.save(update_fields=["quota_instances"])
    big = make_function(world, "big", {"main.py": "def handler(e, c):\n    return 1\n"}, max_instances=1000)
    small = make_function(world, "small", {"main.py": "def handler(e, c):\n    return 1\n"}, max_instances=2)
    dev, prod = (Environment.objects.get(project=world.web, name=n) for n in ("dev", "prod"))

    specs = {
        (fn.name, env.name): route_version(
            function=fn, environment=env, version=fn.versions.get(), env={}, binding_id=None
        ).spec
        for fn in (big, small)
        for env in (dev, prod)
    }

    identities = [spec.identity for spec in specs.values()]
    assert len(set(identities)) == 4  # dev and prod of one function are two identities
    assert execution_identities([(big.pk, dev.pk)]) == {(big.pk, dev.pk): specs[("big", "dev")].identity}
    # RLIMIT_NPROC of the identity: 64 per instance it may run, never past the setting.
    assert specs[("big", "dev")].identity_max_processes == 1024
    assert specs[("small", "dev")].identity_max_processes == 128
    assert specs[("big", "dev")].max_processes == 64  # each instance's own cgroup pids.max
    assert specs[("big", "dev")].org_id == world.alpha.pk
