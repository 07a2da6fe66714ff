"""Rollback, promote across environments, and the binding timeline (history) through the API."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.functions import services, version_services
from apps.functions.backends.local import version_dir
from apps.functions.deploy_services import binding_apply_revision, merged_env, traffic_apply
from apps.functions.models import Binding, TrafficChange
from apps.releases.models import Release
from apps.tenancy import environment_services
from apps.tenancy.models import Environment

HELLO = {"name": "hello", "runtime": "python3.11", "handler": "main.handler"}


@pytest.fixture
def fn(world):
    function = services.function_create(actor=world.alice, project=world.web, env={"GREETING": "hi"}, **HELLO)
    for i in (1, 2, 3):
        version_services.version_create(
            actor=world.alice, function=function, files={"main.py": f"V = {i}\n".encode()}, source="files"
        )
    return function


def deploy(client, fn, environment, version):
    response = client.post(
        f"/api/v1/functions/{fn.pk}/deploy", {"environment": environment, "version": version}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response


def rollback(client, fn, environment, version=None):
    body = {"environment": environment, **({"version": version} if version is not None else {})}
    return client.post(f"/api/v1/functions/{fn.pk}/rollback", body, format="json")


def promote(client, fn, source, target):
    body = {"from_environment": source, "environment": target}
    return client.post(f"/api/v1/functions/{fn.pk}/promote", body, format="json")


def env(world, name):
    return Environment.objects.get(project=world.web, name=name)


def set_traffic(binding, traffic, reason, **kwargs):
    with transaction.atomic():
        return traffic_apply(actor=None, binding=binding, traffic=traffic, reason=reason, **kwargs)


def start_release(fn, binding, *, version, stable, canary=10):
    """A release row as the release service would leave it after its first step."""
    release = Release.objects.create(
        binding=binding,
        version=fn.versions.get(number=version),
        stable_version=fn.versions.get(number=stable) if stable else None,
        plan={"steps": [canary, 100], "advance": "manual", "dwell_s": 0, "gate": None},
        state=Release.State.RUNNING,
        step_index=0,
    )
    set_traffic(
        binding,
        [
            {"version": stable, "weight": 100 - canary, "tag": "stable"},
            {"version": version, "weight": canary, "tag": "canary"},
        ],
        TrafficChange.Reason.RELEASE_START,
        release=release,
    )
    return release


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_goes_back_to_the_previous_stable_version(world, client_for, fn, django_capture_on_commit_callbacks):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 2)

    with django_capture_on_commit_callbacks() as callbacks:
        response = rollback(bob, fn, "dev")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["environment"], body["traffic"], body["revision"]) == ("dev", [{"version": 1, "weight": 100}], 3)
    assert len(callbacks) == 2  # routes announced and the apply queued, after commit
    change = TrafficChange.objects.order_by("id").last()
    assert (change.reason, change.note, change.version.number, change.actor) == (
        "rollback",
        "rollback to v1",
        1,
        world.bob,
    )
    assert (change.from_traffic, change.to_traffic) == (
        [{"version": 2, "weight": 100}],
        [{"version": 1, "weight": 100}],
    )
    event = AuditEvent.objects.filter(action="binding.rollback").get()
    assert event.changes["note"] == "rollback to v1"


def test_rollback_skips_the_steps_of_the_release_that_brought_the_current_version(world, client_for, fn):
    # Given v1 deployed, then a release of v2 that went 10 → 50 → 100 and completed
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    binding = Binding.objects.get()
    for traffic, reason in (
        ([{"version": 1, "weight": 90}, {"version": 2, "weight": 10}], TrafficChange.Reason.RELEASE_START),
        ([{"version": 1, "weight": 50}, {"version": 2, "weight": 50}], TrafficChange.Reason.STEP),
        ([{"version": 2, "weight": 100}], TrafficChange.Reason.COMPLETE),
    ):
        set_traffic(binding, traffic, reason)

    # When rolled back with no version named
    response = rollback(bob, fn, "dev")

    # Then v1, the last version that served 100% alone before v2
    assert response.json()["traffic"] == [{"version": 1, "weight": 100}]


def test_rolling_back_twice_goes_back_and_forth(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 2)

    assert rollback(bob, fn, "dev").json()["traffic"] == [{"version": 1, "weight": 100}]
    assert rollback(bob, fn, "dev").json()["traffic"] == [{"version": 2, "weight": 100}]


def test_rollback_to_a_chosen_version(world, client_for, fn):
    bob = client_for(world.bob)
    for number in (1, 2, 3):
        deploy(bob, fn, "dev", number)

    response = rollback(bob, fn, "dev", version=1)

    assert response.status_code == 200, response.json()
    assert response.json()["traffic"] == [{"version": 1, "weight": 100}]
    assert TrafficChange.objects.order_by("id").last().note == "rollback to v1"


def test_rollback_to_an_unknown_version_is_404_and_to_the_serving_one_409(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 2)

    unknown = rollback(bob, fn, "dev", version=9)
    serving = rollback(bob, fn, "dev", version=2)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Version 9 of function 'hello' not found."
    assert serving.status_code == 409
    assert serving.json()["error"] == {
        "code": "already_serving",
        "message": "Version 2 already serves 100% of 'dev': nothing to roll back.",
        "fields": {},
    }
    assert Binding.objects.get().revision == 2


def test_rollback_restores_the_artifact_and_config_of_that_version(world, client_for, fn):
    # Given v1 published with GREETING=hi and 256 MB, then the function changed and v4 published
    dev = env(world, "dev")
    services.function_update(actor=world.alice, function=fn, env={"GREETING": "bye"}, memory_mb=512)
    version_services.version_create(actor=world.alice, function=fn, files={"main.py": b"V = 4\n"}, source="files")
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 4)

    # When rolled back and applied (as the worker would)
    rollback(bob, fn, "dev")
    binding = Binding.objects.get()
    binding = binding_apply_revision(binding_id=binding.pk, revision=binding.revision)

    # Then v1's own snapshot serves: its code on disk, its config and variables
    v1 = fn.versions.get(number=1)
    assert binding.status == "ready"
    assert binding.version_numbers() == [1]
    assert (version_dir(v1.artifact.sha256) / "main.py").read_text() == "V = 1\n"
    assert (v1.config["memory_mb"], v1.config["env"]) == (256, {"GREETING": "hi"})
    assert merged_env(version=v1, environment=dev) == {"GREETING": "hi"}


def test_rollback_in_the_middle_of_a_release_marks_it_rolled_back(world, client_for, fn):
    # Given v1 stable and a release of v2 at its 10% step
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    binding = Binding.objects.get()
    release = start_release(fn, binding, version=2, stable=1)

    # When bob rolls back
    response = rollback(bob, fn, "dev")

    # Then v1 serves everything and the release is over, rolled back by bob
    assert response.status_code == 200, response.json()
    assert response.json()["traffic"] == [{"version": 1, "weight": 100}]
    release.refresh_from_db()
    assert release.state == "rolled_back"
    assert release.finished_at is not None
    assert release.failure == {"by": "rollback", "actor": "bob"}
    change = TrafficChange.objects.order_by("id").last()
    assert (change.reason, change.release_id) == ("rollback", release.pk)
    # And a deploy is possible again (no active release left)
    deploy(bob, fn, "dev", 3)


def test_rollback_to_a_chosen_version_during_a_release(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 2)
    release = start_release(fn, Binding.objects.get(), version=3, stable=2, canary=50)

    response = rollback(bob, fn, "dev", version=1)

    assert response.json()["traffic"] == [{"version": 1, "weight": 100}]
    release.refresh_from_db()
    assert release.state == "rolled_back"


def test_a_refused_rollback_leaves_the_release_running(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    release = start_release(fn, Binding.objects.get(), version=2, stable=1)

    assert rollback(bob, fn, "dev", version=9).status_code == 404
    assert rollback(client_for(world.carol), fn, "dev").status_code == 403

    release.refresh_from_db()
    assert release.state == "running"


@pytest.mark.parametrize(
    ("actor", "environment", "expected"),
    [
        ("alice", "prod", 200),  # owner
        ("bob", "dev", 200),  # developer, unprotected
        ("bob", "prod", 403),  # developer, protected
        ("carol", "dev", 403),  # viewer
        ("dora", "dev", 404),  # member without a grant on the project
        ("charlie", "dev", 404),  # outsider
    ],
)
def test_who_may_roll_back(world, client_for, fn, actor, environment, expected):
    alice = client_for(world.alice)
    deploy(alice, fn, environment, 1)
    deploy(alice, fn, environment, 2)
    changes = TrafficChange.objects.count()

    response = rollback(client_for(world.user(actor)), fn, environment)

    assert response.status_code == expected, response.json()
    if expected != 200:
        assert TrafficChange.objects.count() == changes
        assert Binding.objects.get().traffic == [{"version": 2, "weight": 100}]


def test_rollback_needs_the_deploy_scope_on_a_token(world, client_for, fn):
    deploy(client_for(world.bob), fn, "dev", 1)
    deploy(client_for(world.bob), fn, "dev", 2)

    refused = rollback(client_for(world.bob, scopes=["read", "write"]), fn, "dev")

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "This token lacks the 'deploy' scope this request needs."
    assert rollback(client_for(world.bob, scopes=["deploy"]), fn, "dev").status_code == 200


def test_nothing_to_roll_back_is_409_naming_the_rule(world, client_for, fn):
    bob = client_for(world.bob)

    no_binding = rollback(bob, fn, "dev")
    deploy(bob, fn, "dev", 1)
    first_deploy_only = rollback(bob, fn, "dev")
    unknown_environment = rollback(bob, fn, "qa")

    assert no_binding.status_code == 409
    assert no_binding.json()["error"]["message"] == (
        "Function 'hello' has no binding in 'dev': deploy it there before rolling back."
    )
    assert first_deploy_only.status_code == 409
    assert first_deploy_only.json()["error"] == {
        "code": "nothing_to_roll_back",
        "message": "Nothing to roll back to in 'dev': no earlier version served 100% there (now serving v1 100%).",
        "fields": {},
    }
    assert unknown_environment.status_code == 404
    assert TrafficChange.objects.count() == 1


def test_rollback_body_is_validated(world, client_for, fn):
    response = client_for(world.bob).post(f"/api/v1/functions/{fn.pk}/rollback", {"version": 0}, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"environment", "version"}


# --- promote -------------------------------------------------------------------------------------


def test_promote_deploys_the_exact_version_from_staging_to_prod(world, client_for, fn):
    # Given v2 serving staging, v1 serving prod, and each environment with its own variables
    staging, prod = env(world, "staging"), env(world, "prod")
    environment_services.environment_var_set(actor=world.alice, environment=staging, name="DB", value="staging-db")
    environment_services.environment_var_set(actor=world.alice, environment=prod, name="DB", value="prod-db")
    alice = client_for(world.alice)
    deploy(alice, fn, "staging", 2)
    deploy(alice, fn, "prod", 1)

    # When alice promotes staging to prod
    response = promote(alice, fn, "staging", "prod")

    # Then prod serves the same Version row (same artifact), with prod's variables
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["environment"], body["traffic"], body["revision"]) == ("prod", [{"version": 2, "weight": 100}], 2)
    change = TrafficChange.objects.filter(binding__environment=prod).order_by("id").last()
    staging_change = TrafficChange.objects.filter(binding__environment=staging).get()
    assert (change.reason, change.note, change.actor) == ("promote", "from staging", world.alice)
    assert change.version_id == staging_change.version_id
    assert change.version.artifact.sha256 == fn.versions.get(number=2).artifact.sha256
    assert change.config_snapshot["variables"] == {"DB": "prod-db"}
    assert merged_env(version=change.version, environment=prod)["DB"] == "prod-db"
    assert AuditEvent.objects.filter(action="binding.promote").get().changes["version"] == 2


def test_promote_creates_the_target_binding_when_there_is_none(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 3)

    response = promote(bob, fn, "dev", "staging")

    assert response.status_code == 200, response.json()
    assert response.json()["traffic"] == [{"version": 3, "weight": 100}]
    assert Binding.objects.get(environment__name="staging").backend == "local"


def test_promote_refuses_a_split_nothing_or_an_active_release(world, client_for, fn):
    alice = client_for(world.alice)

    nothing = promote(alice, fn, "staging", "prod")
    deploy(alice, fn, "staging", 1)
    set_traffic(
        Binding.objects.get(),
        [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}],
        TrafficChange.Reason.STEP,
    )
    split = promote(alice, fn, "staging", "prod")

    assert nothing.status_code == 409
    assert nothing.json()["error"]["message"] == (
        "Function 'hello' has no binding in 'staging': deploy it there before promoting from it."
    )
    assert split.status_code == 409
    assert split.json()["error"]["message"] == (
        "'staging' serves v1 70%, v2 30%: promote needs one version at 100% there."
    )
    assert not Binding.objects.filter(environment__name="prod").exists()

    # And an active release on the target refuses, naming it
    deploy(alice, fn, "dev", 3)
    deploy(alice, fn, "prod", 1)
    release = start_release(fn, Binding.objects.get(environment__name="prod"), version=2, stable=1)
    blocked = promote(alice, fn, "dev", "prod")
    assert blocked.status_code == 409
    assert blocked.json()["error"]["message"] == (
        f"Release {release.pk} is running on 'prod': promote, abort or roll back first."
    )


@pytest.mark.parametrize(
    ("actor", "source", "target", "expected"),
    [
        ("alice", "staging", "prod", 200),
        ("bob", "staging", "prod", 403),  # the deploy right is needed on the target
        ("bob", "staging", "dev", 200),
        ("carol", "staging", "dev", 403),
        ("charlie", "staging", "dev", 404),
    ],
)
def test_who_may_promote(world, client_for, fn, actor, source, target, expected):
    deploy(client_for(world.alice), fn, source, 2)

    response = promote(client_for(world.user(actor)), fn, source, target)

    assert response.status_code == expected, response.json()
    assert Binding.objects.filter(environment__name=target).exists() == (expected == 200)


def test_promote_to_the_same_environment_is_refused(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)

    response = promote(bob, fn, "dev", "dev")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"environment": ["Must differ from from_environment."]}


# --- history -------------------------------------------------------------------------------------


def history(client, fn, environment, query=""):
    return client.get(f"/api/v1/functions/{fn.pk}/bindings/{environment}/history{query}")


def test_history_lists_the_timeline_newest_first(world, client_for, fn):
    bob = client_for(world.bob)
    deploy(bob, fn, "dev", 1)
    deploy(bob, fn, "dev", 2)
    release = start_release(fn, Binding.objects.get(), version=3, stable=2)
    rollback(bob, fn, "dev")

    response = history(client_for(world.carol), fn, "dev")  # a viewer may read it

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["count"] == 4
    rows = body["results"]
    assert [(r["reason"], r["actor"], r["version"], r["release"], r["note"]) for r in rows] == [
        ("rollback", "bob", 2, release.pk, "rollback to v2"),
        ("release_start", None, None, release.pk, ""),
        ("deploy", "bob", 2, None, ""),
        ("deploy", "bob", 1, None, ""),
    ]
    assert rows[0]["from_traffic"] == [
        {"version": 2, "weight": 90, "tag": "stable"},
        {"version": 3, "weight": 10, "tag": "canary"},
    ]
    assert rows[0]["to_traffic"] == [{"version": 2, "weight": 100}]
    assert rows[-1]["from_traffic"] == []
    assert set(rows[0]) == {
        "id",
        "created_at",
        "actor",
        "reason",
        "from_traffic",
        "to_traffic",
        "version",
        "release",
        "note",
    }
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)


def test_history_paginates_with_bounded_queries(world, client_for, fn):
    # Given a long timeline by several people
    for user, environment in ((world.alice, "dev"), (world.bob, "dev")):
        client = client_for(user)
        for number in (1, 2, 3, 1, 2, 3):
            deploy(client, fn, environment, number)
    carol = client_for(world.carol)
    carol.get("/api/v1/me/")  # warm the session

    # When a page of 5 and a page of all 12 are read
    with CaptureQueriesContext(connection) as small:
        first = history(carol, fn, "dev", "?limit=5").json()
    with CaptureQueriesContext(connection) as large:
        everything = history(carol, fn, "dev", "?limit=50").json()

    # Then both cost the same few queries (none per row)
    assert len(small.captured_queries) == len(large.captured_queries) <= 12

    # And the page size holds
    assert first["count"] == 12
    assert len(first["results"]) == 5
    assert first["next"].endswith("limit=5&offset=5")
    assert [r["id"] for r in first["results"]] == [r["id"] for r in everything["results"][:5]]
    assert [r["actor"] for r in everything["results"]] == ["bob"] * 6 + ["alice"] * 6


def test_history_of_an_unknown_environment_or_binding_is_404(world, client_for, fn):
    bob = client_for(world.bob)

    unknown = history(bob, fn, "qa")
    unbound = history(bob, fn, "staging")

    assert unknown.status_code == 404
    assert unbound.status_code == 404
    assert unbound.json()["error"]["message"] == "Function 'hello' has no binding in 'staging'."
