"""Organization quotas: functions, reserved instances and reserved memory. Over a quota the
change is refused with 403 ``quota_exceeded`` naming the quota, and nothing changes; the org
API shows limits and usage; only staff change quotas."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.core.errors import QuotaExceeded
from apps.functions import services as function_services
from apps.functions import version_services
from apps.functions.deploy_services import deploy
from apps.functions.models import Binding, Function, TrafficChange
from apps.releases.models import Release
from apps.tenancy import quotas
from apps.tenancy.models import Environment, Organization
from apps.tenancy.quotas import QuotaLimits

RAISE = "ask the platform's operators to raise the quota"


def make_fn(world: Any, name: str, project: Any = None, actor: Any = None, **config: Any) -> Function:
    return function_services.function_create(
        actor=actor or world.alice,
        project=project or world.web,
        name=name,
        runtime="python3.11",
        handler="main.handler",
        **config,
    )


def publish(world: Any, fn: Function, actor: Any = None, **config: Any) -> int:
    """Set ``config`` on the function and publish a version of it; returns its number."""
    if config:
        fn = function_services.function_update(actor=actor or world.alice, function=fn, **config)
    count = fn.versions.count()
    version, _ = version_services.version_create(
        actor=actor or world.alice, function=fn, files={"main.py": f"V = {count + 1}\n".encode()}, source="files"
    )
    return version.number


def env(world: Any, name: str) -> Environment:
    return Environment.objects.get(project=world.web, name=name)


def deploy_now(world: Any, fn: Function, number: int, environment: str = "dev") -> Binding:
    return deploy(
        actor=world.alice, function=fn, environment=env(world, environment), version=fn.versions.get(number=number)
    )


def set_quotas(org: Organization, **values: int | None) -> None:
    Organization.objects.filter(pk=org.pk).update(**values)
    org.refresh_from_db()


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


# --- limits --------------------------------------------------------------------------------------


def test_defaults_come_from_settings(world, settings):
    settings.STRATUS_ORG_QUOTA_FUNCTIONS = 7
    settings.STRATUS_ORG_QUOTA_INSTANCES = 9
    settings.STRATUS_ORG_QUOTA_MEMORY_MB = 1000

    assert quotas.org_limits(world.alpha) == QuotaLimits(functions=7, instances=9, memory_mb=1000)
    assert quotas.org_quota_limits(world.alpha.pk) == (9, 1000)


def test_overrides_come_from_the_org_fields_and_zero_is_a_limit(world, settings):
    settings.STRATUS_ORG_QUOTA_FUNCTIONS = 7
    settings.STRATUS_ORG_QUOTA_INSTANCES = 9
    settings.STRATUS_ORG_QUOTA_MEMORY_MB = 1000
    set_quotas(world.alpha, quota_functions=0, quota_instances=3, quota_memory_mb=2048)

    assert quotas.org_limits(world.alpha) == QuotaLimits(functions=0, instances=3, memory_mb=2048)
    assert quotas.orgs_quota_limits([world.alpha.pk, world.other.pk]) == {
        world.alpha.pk: (3, 2048),
        world.other.pk: (9, 1000),  # untouched org: the defaults
    }


def test_the_functions_default_from_settings_is_enforced(world, client_for, settings):
    settings.STRATUS_ORG_QUOTA_FUNCTIONS = 1
    make_fn(world, "first")

    response = client_for(world.bob).post(
        f"/api/v1/projects/{world.web.pk}/functions/",
        {"name": "second", "runtime": "python3.11", "handler": "main.handler"},
        format="json",
    )

    assert response.status_code == 403
    assert error(response)["fields"] == {"quota_functions": ["limit 1, used 1, asked 1 more"]}


# --- functions --------------------------------------------------------------------------------


def test_over_the_functions_quota_is_403_naming_it_and_nothing_is_created(world, client_for):
    set_quotas(world.alpha, quota_functions=2)
    make_fn(world, "a")
    make_fn(world, "b")
    make_fn(world, "theirs", project=world.outsider_project, actor=world.charlie)  # another org: not counted
    events = AuditEvent.objects.count()

    response = client_for(world.bob).post(
        f"/api/v1/projects/{world.web.pk}/functions/",
        {"name": "c", "runtime": "python3.11", "handler": "main.handler"},
        format="json",
    )

    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "quota_exceeded",
            "message": "Organization 'alpha' is at its quota of 2 functions (quota_functions): it has 2, and "
            f"creating 'c' would make 3. Delete one or {RAISE}.",
            "fields": {"quota_functions": ["limit 2, used 2, asked 1 more"]},
        }
    }
    assert sorted(Function.objects.filter(project__org=world.alpha).values_list("name", flat=True)) == ["a", "b"]
    assert AuditEvent.objects.count() == events
    # The other org, at 1 function, is not affected.
    make_fn(world, "theirs-too", project=world.outsider_project, actor=world.charlie)


def test_max_instances_over_the_instances_quota_is_refused_on_create_and_update(world, client_for):
    set_quotas(world.alpha, quota_instances=5)
    bob = client_for(world.bob)
    message = (
        "Function 'big' asks for max_instances 6, more than organization 'alpha' may run: its quota is 5 "
        f"instances (quota_instances). Lower max_instances or {RAISE}."
    )

    created = bob.post(
        f"/api/v1/projects/{world.web.pk}/functions/",
        {"name": "big", "runtime": "python3.11", "handler": "main.handler", "max_instances": 6},
        format="json",
    )

    assert created.status_code == 403
    assert error(created) == {
        "code": "quota_exceeded",
        "message": message,
        "fields": {"quota_instances": [message], "max_instances": [message]},
    }
    assert not Function.objects.filter(name="big").exists()

    fn = make_fn(world, "big", max_instances=5, min_instances=1)
    updated = bob.patch(f"/api/v1/functions/{fn.pk}/", {"max_instances": 6, "min_instances": 6}, format="json")

    assert updated.status_code == 403
    assert error(updated)["code"] == "quota_exceeded"
    assert sorted(error(updated)["fields"]) == ["max_instances", "min_instances", "quota_instances"]
    fn.refresh_from_db()
    assert (fn.min_instances, fn.max_instances) == (1, 5)


def test_a_knob_already_over_a_lowered_quota_may_go_down_but_not_up(world, client_for):
    fn = make_fn(world, "wide", max_instances=8)
    set_quotas(world.alpha, quota_instances=5)  # the operators lowered it afterwards
    bob = client_for(world.bob)

    assert bob.patch(f"/api/v1/functions/{fn.pk}/", {"description": "still 8"}, format="json").status_code == 200
    assert bob.patch(f"/api/v1/functions/{fn.pk}/", {"max_instances": 7}, format="json").status_code == 200
    refused = bob.patch(f"/api/v1/functions/{fn.pk}/", {"max_instances": 9}, format="json")

    assert refused.status_code == 403
    assert error(refused)["fields"]["quota_instances"] == [
        "Function 'wide' asks for max_instances 9, more than organization 'alpha' may run: its quota is 5 "
        f"instances (quota_instances). Lower max_instances or {RAISE}."
    ]
    fn.refresh_from_db()
    assert fn.max_instances == 7


def test_an_instance_bigger_than_the_memory_quota_is_refused(world, client_for):
    set_quotas(world.alpha, quota_memory_mb=1000)
    bob = client_for(world.bob)
    message = (
        "Function 'fat' asks for 1024 MB per instance (memory_mb 768 + ephemeral_storage_mb 256), more than "
        "organization 'alpha' may reserve: its quota is 1000 MB (quota_memory_mb). Lower memory_mb or "
        f"ephemeral_storage_mb, or {RAISE}."
    )

    response = bob.post(
        f"/api/v1/projects/{world.web.pk}/functions/",
        {
            "name": "fat",
            "runtime": "python3.11",
            "handler": "main.handler",
            "memory_mb": 768,
            "ephemeral_storage_mb": 256,
        },
        format="json",
    )

    assert response.status_code == 403
    assert error(response) == {
        "code": "quota_exceeded",
        "message": message,
        "fields": {"quota_memory_mb": [message], "memory_mb": [message], "ephemeral_storage_mb": [message]},
    }
    assert not Function.objects.filter(name="fat").exists()
    fits = bob.post(
        f"/api/v1/projects/{world.web.pk}/functions/",
        {
            "name": "fat",
            "runtime": "python3.11",
            "handler": "main.handler",
            "memory_mb": 768,
            "ephemeral_storage_mb": 232,
        },
        format="json",
    )
    assert fits.status_code == 201, fits.json()


# --- reserved instances and memory ----------------------------------------------------------------


def test_deploy_over_the_reserved_instances_quota_is_403_and_the_binding_is_unchanged(
    world, client_for, django_capture_on_commit_callbacks
):
    set_quotas(world.alpha, quota_instances=5)
    warm = make_fn(world, "warm", max_instances=3)
    deploy_now(world, warm, publish(world, warm, min_instances=3))  # 3 reserved in dev
    hot = make_fn(world, "hot", max_instances=3)
    deploy_now(world, hot, publish(world, hot))  # v1: min_instances 0
    v2 = publish(world, hot, min_instances=3)
    binding = Binding.objects.get(function=hot)
    changes = TrafficChange.objects.count()

    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(world.bob).post(
            f"/api/v1/functions/{hot.pk}/deploy", {"environment": "dev", "version": v2}, format="json"
        )

    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "quota_exceeded",
            "message": "Organization 'alpha' would reserve 6 instances, over its quota of 5 (quota_instances): 3 are "
            "reserved now and deploying 'hot' v2 in 'dev' adds 3 (min_instances of the versions served: v2 3). "
            f"Lower min_instances, stop serving versions that reserve instances elsewhere, or {RAISE}.",
            "fields": {"quota_instances": ["limit 5, reserved 3, asked 3"]},
        }
    }
    binding.refresh_from_db()
    assert (binding.traffic, binding.revision) == ([{"version": 1, "weight": 100}], 1)
    assert TrafficChange.objects.count() == changes
    assert callbacks == []  # no routes announced, no apply queued


def test_deploy_over_the_reserved_memory_quota_is_403_naming_it(world, client_for):
    set_quotas(world.alpha, quota_memory_mb=2000)
    a = make_fn(world, "a", memory_mb=512, ephemeral_storage_mb=128)
    deploy_now(world, a, publish(world, a, min_instances=2))  # 2 x 640 = 1280 MB reserved
    b = make_fn(world, "b")
    deploy_now(world, b, publish(world, b))  # min_instances 0: nothing reserved
    v2 = publish(world, b, memory_mb=768, ephemeral_storage_mb=128, min_instances=1)  # 896 MB

    response = client_for(world.bob).post(
        f"/api/v1/functions/{b.pk}/deploy", {"environment": "dev", "version": v2}, format="json"
    )

    assert response.status_code == 403
    assert error(response) == {
        "code": "quota_exceeded",
        "message": "Organization 'alpha' would reserve 2176 MB of memory, over its quota of 2000 MB "
        "(quota_memory_mb): 1280 MB are reserved now and deploying 'b' v2 in 'dev' adds 896 MB ((memory_mb + "
        "ephemeral_storage_mb) x min_instances of the versions served: v2 896 MB). Lower min_instances, memory_mb "
        f"or ephemeral_storage_mb, stop serving versions that reserve memory elsewhere, or {RAISE}.",
        "fields": {"quota_memory_mb": ["limit 2000, reserved 1280, asked 896"]},
    }
    assert Binding.objects.get(function=b).traffic == [{"version": 1, "weight": 100}]


def test_a_redeploy_replaces_the_bindings_reservation_and_another_environment_adds_to_it(world, client_for):
    set_quotas(world.alpha, quota_instances=5)
    fn = make_fn(world, "api", max_instances=3)
    deploy_now(world, fn, publish(world, fn, min_instances=3))
    v2 = publish(world, fn)  # same knobs, new code
    bob = client_for(world.bob)

    replaced = bob.post(f"/api/v1/functions/{fn.pk}/deploy", {"environment": "dev", "version": v2}, format="json")
    added = bob.post(f"/api/v1/functions/{fn.pk}/deploy", {"environment": "staging", "version": v2}, format="json")

    assert replaced.status_code == 200, replaced.json()
    assert added.status_code == 403
    assert error(added)["fields"] == {"quota_instances": ["limit 5, reserved 3, asked 3"]}
    assert "deploying 'api' v2 in 'staging' adds 3" in error(added)["message"]
    assert not Binding.objects.filter(function=fn, environment__name="staging").exists()


def test_a_batched_release_reserves_both_versions_while_it_runs(world, client_for):
    set_quotas(world.alpha, quota_instances=5)
    fn = make_fn(world, "shop", max_instances=3)
    deploy_now(world, fn, publish(world, fn, min_instances=3))
    v2 = publish(world, fn)
    bob = client_for(world.bob)
    url = f"/api/v1/functions/{fn.pk}/releases/"

    batched = bob.post(url, {"environment": "dev", "version": v2, "plan": {"steps": [50, 100]}}, format="json")

    assert batched.status_code == 403
    assert error(batched)["fields"] == {"quota_instances": ["limit 5, reserved 3, asked 3"]}
    assert (
        "starting the release of 'shop' v2 in 'dev' adds 3 (min_instances of the versions served: v1 3, v2 3)"
        in (error(batched)["message"])
    )
    assert Release.objects.count() == 0
    assert Binding.objects.get(function=fn).traffic == [{"version": 1, "weight": 100}]
    # A direct release replaces v1 with v2 at once: it reserves nothing more.
    direct = bob.post(url, {"environment": "dev", "version": v2, "plan": "direct"}, format="json")
    assert direct.status_code == 201, direct.json()


def test_promote_into_another_environment_is_checked(world, client_for):
    set_quotas(world.alpha, quota_instances=5)
    fn = make_fn(world, "pay", max_instances=3)
    deploy_now(world, fn, publish(world, fn, min_instances=3))

    response = client_for(world.alice).post(
        f"/api/v1/functions/{fn.pk}/promote", {"from_environment": "dev", "environment": "staging"}, format="json"
    )

    assert response.status_code == 403
    assert error(response)["fields"] == {"quota_instances": ["limit 5, reserved 3, asked 3"]}
    assert "promoting 'pay' v1 in 'staging' adds 3" in error(response)["message"]
    assert not Binding.objects.filter(function=fn, environment__name="staging").exists()


def test_rollback_to_a_version_that_reserves_more_is_checked(world, client_for):
    set_quotas(world.alpha, quota_instances=5)
    fn = make_fn(world, "pay", max_instances=3)
    deploy_now(world, fn, publish(world, fn, min_instances=3))
    deploy_now(world, fn, publish(world, fn, min_instances=0))  # v2 serves dev, reserving nothing
    other = make_fn(world, "other", max_instances=3)
    deploy_now(world, other, publish(world, other, min_instances=3))

    response = client_for(world.bob).post(f"/api/v1/functions/{fn.pk}/rollback", {"environment": "dev"}, format="json")

    assert response.status_code == 403
    assert error(response)["fields"] == {"quota_instances": ["limit 5, reserved 3, asked 3"]}
    assert "rolling back 'pay' v1 in 'dev' adds 3" in error(response)["message"]
    assert Binding.objects.get(function=fn).traffic == [{"version": 2, "weight": 100}]


def test_header_rules_naming_a_version_outside_the_traffic_reserve_it(world, client_for):
    set_quotas(world.alpha, quota_instances=2)
    fn = make_fn(world, "beta", max_instances=2)
    deploy_now(world, fn, publish(world, fn))
    v2 = publish(world, fn, min_instances=2)
    set_quotas(world.alpha, quota_instances=3)
    other = make_fn(world, "other", max_instances=2)
    deploy_now(world, other, publish(world, other, min_instances=2))
    rule = {"source": "header", "name": "X-Beta", "match": "equals", "value": "1", "version": v2}

    response = client_for(world.bob).patch(
        f"/api/v1/functions/{fn.pk}/bindings/dev", {"header_rules": [rule]}, format="json"
    )

    assert response.status_code == 403
    assert error(response)["fields"] == {"quota_instances": ["limit 3, reserved 2, asked 2"]}
    assert (
        "the header rules of 'beta' in 'dev' adds 2 (min_instances of the versions served: v2 2)"
        in (error(response)["message"])
    )
    assert Binding.objects.get(function=fn).header_rules == []


def test_changes_that_reserve_less_go_through_when_the_org_is_over_a_lowered_quota(world):
    fn = make_fn(world, "api", max_instances=4)
    deploy_now(world, fn, publish(world, fn, min_instances=4))
    deploy_now(world, fn, publish(world, fn, min_instances=2), "staging")
    v3 = publish(world, fn, min_instances=1)
    v4 = publish(world, fn, min_instances=2, memory_mb=512)
    set_quotas(world.alpha, quota_instances=1)  # 6 reserved, the operators lowered it to 1

    shrunk = deploy_now(world, fn, v3)  # dev: 4 -> 1
    assert shrunk.traffic == [{"version": v3, "weight": 100}]
    with pytest.raises(QuotaExceeded) as refused:
        deploy_now(world, fn, 1, "staging")  # staging: 2 -> 4, still over
    assert refused.value.fields == {"quota_instances": ["limit 1, reserved 3, asked 2"]}
    # Each quota judges its own total: more memory on as many instances is checked against
    # the memory quota only (it fits), not refused for the instances already over theirs.
    bigger = deploy_now(world, fn, v4, "staging")  # 2 -> 2 instances, 2 x 384 -> 2 x 640 MB
    assert bigger.traffic == [{"version": v4, "weight": 100}]
    assert quotas.org_quota_usage(world.alpha).as_json() == {
        "functions": {"limit": 100, "used": 1},
        "instances": {"limit": 1, "reserved": 3},
        "memory_mb": {"limit": 16384, "reserved": 1 * (256 + 128) + 2 * (512 + 128)},
    }


# --- the org API ----------------------------------------------------------------------------------


def test_the_org_api_shows_limits_and_usage(world, client_for, settings):
    settings.STRATUS_ORG_QUOTA_FUNCTIONS = 100
    settings.STRATUS_ORG_QUOTA_MEMORY_MB = 16384
    set_quotas(world.alpha, quota_instances=20)
    a = make_fn(world, "a", max_instances=4)
    deploy_now(world, a, publish(world, a, min_instances=2))  # 2 x (256 + 128) MB in dev
    deploy_now(world, a, 1, "staging")  # and again in staging
    b = make_fn(world, "b", memory_mb=512, ephemeral_storage_mb=64)
    publish(world, b)  # published, never deployed: reserves nothing
    theirs = make_fn(world, "theirs", project=world.outsider_project, actor=world.charlie)
    deploy(
        actor=world.charlie,
        function=theirs,
        environment=Environment.objects.get(project=world.outsider_project, name="dev"),
        version=theirs.versions.get(number=publish(world, theirs, actor=world.charlie, min_instances=5)),
    )

    response = client_for(world.carol).get("/api/v1/orgs/alpha/")

    assert response.status_code == 200
    assert response.json()["quotas"] == {
        "functions": {"limit": 100, "used": 2},
        "instances": {"limit": 20, "reserved": 4},
        "memory_mb": {"limit": 16384, "reserved": 1536},
    }


def test_the_org_api_does_not_query_per_function(world, client_for):
    alice = client_for(world.alice)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert alice.get("/api/v1/orgs/alpha/").status_code == 200
        return len(captured.captured_queries)

    fn = make_fn(world, "f0", max_instances=2)
    deploy_now(world, fn, publish(world, fn, min_instances=1))
    one = queries()
    for i in range(1, 5):
        fn = make_fn(world, f"f{i}", max_instances=2)
        deploy_now(world, fn, publish(world, fn, min_instances=1))
        deploy_now(world, fn, 1, "staging")

    assert queries() == one
    assert alice.get("/api/v1/orgs/alpha/").json()["quotas"]["instances"]["reserved"] == 9


def test_an_owner_cannot_change_their_own_quotas(world, client_for):
    alice = client_for(world.alice)

    raised = alice.patch("/api/v1/orgs/alpha/", {"quota_instances": 1000}, format="json")
    renamed_and_raised = alice.patch(
        "/api/v1/orgs/alpha/", {"name": "Renamed", "quotas": {"functions": {"limit": 1000}}}, format="json"
    )

    assert raised.status_code == 403
    assert raised.json() == {
        "error": {
            "code": "permission_denied",
            "message": "Organization quotas (quota_instances) are set by the platform's operators (Django admin), "
            "not by the organization; ask them to change one.",
            "fields": {"quota_instances": ["set by the platform's operators (Django admin), not by the organization"]},
        }
    }
    assert renamed_and_raised.status_code == 403
    assert error(renamed_and_raised)["fields"] == {
        "quotas": ["set by the platform's operators (Django admin), not by the organization"]
    }
    org = Organization.objects.get(pk=world.alpha.pk)
    assert (org.name, org.quota_functions, org.quota_instances, org.quota_memory_mb) == ("Alpha", None, None, None)
    assert alice.patch("/api/v1/orgs/alpha/", {"name": "Renamed"}, format="json").json()["name"] == "Renamed"


def test_an_outsider_gets_404_on_the_org_and_changes_nothing(world, client_for):
    charlie = client_for(world.charlie)

    assert charlie.get("/api/v1/orgs/alpha/").status_code == 404
    assert charlie.patch("/api/v1/orgs/alpha/", {"quota_instances": 1000}, format="json").status_code == 404
    assert Organization.objects.get(pk=world.alpha.pk).quota_instances is None


def test_staff_change_quotas_in_the_django_admin(world):
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pw-123")
    admin = Client()
    admin.login(username="root", password="root-pw-123")
    url = f"/admin/tenancy/organization/{world.alpha.pk}/change/"

    page = admin.get(url)
    saved = admin.post(
        url,
        {"slug": "alpha", "name": "Alpha", "quota_functions": "", "quota_instances": "7", "quota_memory_mb": "4096"},
    )

    assert page.status_code == 200
    assert "functions 0 of 100; reserved instances 0 of 50; reserved memory 0 of 16384 MB" in page.content.decode()
    assert saved.status_code == 302
    org = Organization.objects.get(pk=world.alpha.pk)
    assert (org.quota_functions, org.quota_instances, org.quota_memory_mb) == (None, 7, 4096)
    assert quotas.org_limits(org) == QuotaLimits(functions=100, instances=7, memory_mb=4096)


# --- concurrency ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deploys_cannot_both_take_the_last_room(monkeypatch):
    """The org's row lock: the second deploy's totals are summed after the first committed.
    On SQLite the IMMEDIATE transactions serialize anyway. On PostgreSQL it is the quota
    check's select_for_update on the org; traffic_apply's binding lock happens to lock the
    joined org row as well today (select_related without ``of``), so this fails only
    without both (verified)."""
    from tests.conftest import build_world

    world = build_world()
    set_quotas(world.alpha, quota_instances=5)
    fns = []
    for name in ("left", "right"):
        fn = make_fn(world, name, max_instances=3)
        publish(world, fn, min_instances=3)
        fns.append(fn)
    real_org_reserved = quotas.org_reserved
    first = threading.Event()

    def slow_org_reserved(org_id: int, **kwargs: Any) -> Any:
        total = real_org_reserved(org_id, **kwargs)
        if not first.is_set():
            first.set()
            time.sleep(0.5)  # the first deploy holds the org's lock a while, totals summed
        return total

    monkeypatch.setattr(quotas, "org_reserved", slow_org_reserved)
    outcomes: dict[str, str] = {}

    def run(fn: Function) -> None:
        try:
            deploy_now(world, fn, 1)
            outcomes[fn.name] = "deployed"
        except QuotaExceeded as exc:
            outcomes[fn.name] = exc.code
        finally:
            connection.close()

    left = threading.Thread(target=run, args=(fns[0],))
    left.start()
    assert first.wait(10)
    right = threading.Thread(target=run, args=(fns[1],))
    right.start()
    left.join(30)
    right.join(30)

    assert outcomes == {"left": "deployed", "right": "quota_exceeded"}
    assert quotas.org_quota_usage(world.alpha).reserved.instances == 3


# --- pipelines ------------------------------------------------------------------------------------


@pytest.fixture
def live_world(transactional_db: None, settings: Any) -> Any:
    from tests.conftest import build_world

    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True  # the pipeline's repository is a local path
    return build_world()


def pipeline_run(world: Any, tmp_path: Any, function_yaml: str) -> Any:
    """Push a repository whose stratus.yaml declares ``hello`` with ``function_yaml`` (extra
    keys) and deploys main to dev; run it in this thread; return the finished run."""
    from apps.pipelines import run_services, runner
    from tests.pipelines.conftest import HELLO, GitRepo, make_repository

    repo = GitRepo(tmp_path)
    text = (
        "functions:\n  - name: hello\n    path: functions/hello\n    runtime: python3.11\n    handler: main.handler\n"
        f"{function_yaml}steps:\n  - name: ok\n    run: echo checked\n"
        "triggers:\n  - branch: main\n    environment: dev\n"
    )
    sha = repo.commit("c", {"functions/hello/main.py": HELLO % "x", "stratus.yaml": text})
    repo.push("main")
    run = run_services.run_for_push(
        repository=make_repository(world.web, str(repo.origin)),
        ref="refs/heads/main",
        commit_sha=sha,
        commit_message="msg",
        author="Ann",
        pusher="pat",
    )
    runner.run_execute(run.pk)
    run.refresh_from_db()
    return run


def test_a_pipeline_over_the_functions_quota_fails_the_run_with_the_message(live_world, tmp_path):
    set_quotas(live_world.alpha, quota_functions=0)

    run = pipeline_run(live_world, tmp_path, "")

    assert run.state == "failed"
    assert run.reason == (
        "package: Organization 'alpha' is at its quota of 0 functions (quota_functions): it has 0, and creating "
        f"'hello' would make 1. Delete one or {RAISE}."
    )
    assert not Function.objects.filter(project=live_world.web).exists()


def test_a_pipeline_over_the_reserved_instances_quota_fails_its_deploy(live_world, tmp_path):
    set_quotas(live_world.alpha, quota_instances=3)
    other = make_fn(live_world, "other", max_instances=2)
    deploy_now(live_world, other, publish(live_world, other, min_instances=2))

    run = pipeline_run(live_world, tmp_path, "    min_instances: 2\n    max_instances: 2\n")

    assert run.state == "failed"
    assert run.reason == (
        "deploy: Organization 'alpha' would reserve 4 instances, over its quota of 3 (quota_instances): 2 are "
        "reserved now and deploying 'hello' v1 in 'dev' adds 2 (min_instances of the versions served: v1 2). "
        f"Lower min_instances, stop serving versions that reserve instances elsewhere, or {RAISE}."
    )
    assert not Binding.objects.filter(function__name="hello").exists()
