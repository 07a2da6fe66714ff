"""Releases through the API: start, manual steps, pause/resume/abort, promote-all,
approval by a second person, one active release per binding, and the binding timeline."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.functions.models import Binding
from apps.releases.models import Release
from apps.releases.services import release_start
from tests.releases.conftest import act, binding, env, invocations, split, start, timeline, without_warm

MANUAL = {"steps": [10, 50, 100], "advance": "manual"}


def test_manual_release_10_50_100_shifts_traffic_and_records_each_step(world, client_for, fn):
    bob = client_for(world.bob, scopes=["read", "deploy"])

    # When bob starts a manual release of version 2 into dev
    response = start(bob, fn, MANUAL)

    # Then the first step serves 10% on the canary at once
    assert response.status_code == 201, response.json()
    body = response.json()
    rid = body["id"]
    assert {k: body[k] for k in ("function", "environment", "version", "stable_version", "state")} == {
        "function": fn.pk,
        "environment": "dev",
        "version": 2,
        "stable_version": 1,
        "state": "running",
    }
    assert (body["step_index"], body["percent"], body["steps"], body["requested_by"]) == (0, 10, [10, 50, 100], "bob")
    assert body["plan"] == {"steps": [10, 50, 100], "advance": "manual", "dwell_s": None, "gate": None}
    assert body["next_step_at"] is None and body["step_started_at"] is not None
    assert without_warm(binding(fn).traffic) == split(1, 2, 10)
    assert binding(fn).traffic[1]["warm"] >= 1

    # When bob promotes, twice
    second = act(bob, rid, "promote")
    assert second.status_code == 200, second.json()
    assert (second.json()["state"], second.json()["percent"], second.json()["step_index"]) == ("running", 50, 1)
    assert without_warm(binding(fn).traffic) == split(1, 2, 50)
    third = act(bob, rid, "promote").json()

    # Then the release completes with the canary at 100% and the timeline shows every step
    assert (third["state"], third["percent"], third["finished_at"] is not None) == ("completed", 100, True)
    assert binding(fn).traffic == [{"version": 2, "weight": 100}]
    assert timeline(fn) == [
        ("deploy", [{"version": 1, "weight": 100}]),
        ("release_start", split(1, 2, 10)),
        ("step", split(1, 2, 50)),
        ("complete", [{"version": 2, "weight": 100}]),
    ]
    notes = list(binding(fn).changes.order_by("id").values_list("note", "release_id"))[1:]
    assert notes == [("step 1/3: 10%", rid), ("step 2/3: 50%", rid), ("step 3/3: 100%", rid)]
    actions = set(AuditEvent.objects.filter(target_type="release").values_list("action", flat=True))
    assert {"release.start", "release.promote"} <= actions

    # And a completed release cannot be promoted again: 409 naming its state
    again = act(bob, rid, "promote")
    assert again.status_code == 409
    assert "completed" in again.json()["error"]["message"]


def test_a_second_active_release_on_the_binding_is_409_naming_the_first(world, client_for, fn):
    client = client_for(world.bob)
    first = start(client, fn, MANUAL).json()

    response = start(client, fn, MANUAL, version=3)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "release_active"
    assert f"Release {first['id']}" in response.json()["error"]["message"]
    # Another environment is another binding: allowed
    assert start(client_for(world.alice), fn, MANUAL, version=3, environment="prod").status_code == 201
    # And a plain deploy into the busy binding is refused too
    deploy = client.post(f"/api/v1/functions/{fn.pk}/deploy", {"environment": "dev", "version": 3}, format="json")
    assert deploy.status_code == 409


def test_the_database_enforces_one_active_release_per_binding(world, fn):
    from django.db import IntegrityError, transaction

    release_start(
        actor=world.alice, function=fn, environment=env(world), version=fn.versions.get(number=2), plan=MANUAL
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Release.objects.create(binding=binding(fn), version=fn.versions.get(number=3), plan={}, state="paused")


def test_nothing_to_shift_from_without_a_single_stable_version(world, client_for, fn):
    client = client_for(world.alice)
    # A binding serving a split is no stable to start from
    Binding.objects.filter(pk=binding(fn).pk).update(
        traffic=[{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
    )
    response = start(client, fn, MANUAL, version=3)
    assert response.status_code == 409
    assert "nothing to shift from: deploy first" in response.json()["error"]["message"].lower()
    # A function never deployed to an environment has no binding there
    Binding.objects.filter(pk=binding(fn, "prod").pk).delete()
    assert start(client, fn, MANUAL, environment="prod").status_code == 409
    # The version must differ from the stable one
    Binding.objects.filter(pk=binding(fn).pk).update(traffic=[{"version": 1, "weight": 100}])
    same = start(client, fn, MANUAL, version=1)
    assert same.status_code == 409 and "already serves" in same.json()["error"]["message"]


def test_direct_plan_serves_100_percent_and_completes_at_once(world, client_for, fn):
    response = start(client_for(world.bob), fn, "direct", version=3)

    assert response.status_code == 201, response.json()
    assert (response.json()["state"], response.json()["percent"]) == ("completed", 100)
    assert binding(fn).traffic == [{"version": 3, "weight": 100}]
    assert timeline(fn)[-1] == ("release_start", [{"version": 3, "weight": 100}])


def test_pause_resume_and_abort_put_all_traffic_back_on_the_stable_version(world, client_for, fn):
    client = client_for(world.bob)
    rid = start(client, fn, MANUAL).json()["id"]

    paused = act(client, rid, "pause").json()
    assert paused["state"] == "paused"
    assert act(client, rid, "pause").status_code == 409  # already paused
    assert act(client, rid, "resume").json()["state"] == "running"
    assert act(client, rid, "promote").json()["percent"] == 50

    aborted = act(client, rid, "abort")

    assert aborted.status_code == 200
    body = aborted.json()
    assert body["state"] == "aborted" and body["finished_at"] is not None
    assert body["failure"]["by"] == "user" and body["failure"]["user"] == "bob" and body["failure"]["percent"] == 50
    assert binding(fn).traffic == [{"version": 1, "weight": 100}]
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "step", "abort"]
    assert act(client, rid, "resume").status_code == 409
    # The binding is free again
    assert start(client, fn, MANUAL, version=3).status_code == 201


def test_promote_all_goes_straight_to_100_and_completes(world, client_for, fn):
    client = client_for(world.bob)
    rid = start(client, fn, {"steps": [5, 25, 50, 100]}).json()["id"]

    body = act(client, rid, "promote-all").json()

    assert (body["state"], body["percent"], body["step_index"]) == ("completed", 100, 3)
    assert binding(fn).traffic == [{"version": 2, "weight": 100}]
    assert [reason for reason, _ in timeline(fn)] == ["deploy", "release_start", "complete"]


def test_release_into_an_environment_needing_approval_waits_for_a_second_person(world, client_for, fn):
    # Given dev set to need release approval (through the environment API)
    patched = client_for(world.alice).patch(
        f"/api/v1/projects/{world.web.pk}/environments/dev/", {"requires_release_approval": True}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["requires_release_approval"] is True

    # When bob starts a release, nothing shifts yet
    bob = client_for(world.bob)
    body = start(bob, fn, MANUAL).json()
    assert (body["state"], body["approval_required"], body["step_index"]) == ("awaiting_approval", True, -1)
    assert binding(fn).traffic == [{"version": 1, "weight": 100}]
    rid = body["id"]

    # Then bob cannot approve his own release, carol (viewer) cannot approve at all
    own = act(bob, rid, "approve")
    assert own.status_code == 403 and "requester" in own.json()["error"]["message"]
    viewer = act(client_for(world.carol), rid, "approve")
    assert viewer.status_code == 403 and "deploy right" in viewer.json()["error"]["message"]
    # Nor can he promote past the approval
    assert act(bob, rid, "promote").status_code == 409

    # And alice's approval applies the first step
    approved = act(client_for(world.alice), rid, "approve").json()
    assert (approved["state"], approved["percent"], approved["approved_by"]) == ("running", 10, "alice")
    assert without_warm(binding(fn).traffic) == split(1, 2, 10)
    assert act(client_for(world.alice), rid, "approve").status_code == 409


def test_a_rejected_release_never_shifts_traffic(world, client_for, fn):
    dev = env(world)
    dev.requires_release_approval = True
    dev.save()
    rid = start(client_for(world.bob), fn, MANUAL).json()["id"]

    assert act(client_for(world.bob), rid, "reject").status_code == 403
    body = act(client_for(world.adam), rid, "reject").json()

    assert (body["state"], body["approved_by"]) == ("rejected", "adam")
    assert binding(fn).traffic == [{"version": 1, "weight": 100}]
    assert [reason for reason, _ in timeline(fn)] == ["deploy"]


def test_rights_viewer_and_read_token_cannot_act_outsider_sees_nothing(world, client_for, fn):
    assert start(client_for(world.carol), fn, MANUAL).status_code == 403
    assert start(client_for(world.bob, scopes=["read", "write"]), fn, MANUAL).status_code == 403
    rid = start(client_for(world.bob), fn, MANUAL).json()["id"]
    assert act(client_for(world.carol), rid, "abort").status_code == 403
    assert act(client_for(world.bob, scopes=["read"]), rid, "abort").status_code == 403
    # carol may read it
    assert client_for(world.carol, scopes=["read"]).get(f"/api/v1/releases/{rid}/").status_code == 200
    # charlie (another org) gets 404 exactly as for a release that does not exist
    charlie = client_for(world.charlie)
    assert charlie.get(f"/api/v1/releases/{rid}/").status_code == 404
    assert act(charlie, rid, "abort").status_code == 404
    assert charlie.get(f"/api/v1/functions/{fn.pk}/releases/").status_code == 404
    assert Release.objects.get(pk=rid).state == "running"


def test_protected_environment_needs_the_deploy_right_there(world, client_for, fn):
    prod = env(world, "prod")
    prod.protected = True
    prod.save()
    assert start(client_for(world.bob), fn, MANUAL, environment="prod").status_code == 403
    assert start(client_for(world.adam), fn, MANUAL, environment="prod").status_code == 201


def test_list_filters_by_environment_with_bounded_queries(world, client_for, fn, django_assert_max_num_queries):
    client = client_for(world.alice)
    for version in (2, 3):
        rid = start(client, fn, MANUAL, version=version).json()["id"]
        act(client, rid, "abort")
    start(client, fn, MANUAL, environment="prod")

    with django_assert_max_num_queries(12):
        everything = client.get(f"/api/v1/functions/{fn.pk}/releases/").json()
    with django_assert_max_num_queries(12):
        prod = client.get(f"/api/v1/functions/{fn.pk}/releases/?environment=prod").json()

    assert everything["count"] == 3
    assert [r["environment"] for r in prod["results"]] == ["prod"]
    assert [r["state"] for r in everything["results"]] == ["running", "aborted", "aborted"]


def test_list_query_count_does_not_grow_with_rows(world, client_for, fn, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(world.alice)
    url = f"/api/v1/functions/{fn.pk}/releases/"

    def count() -> int:
        client.get(url)  # warm per-request caches equally
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    rid = start(client, fn, MANUAL).json()["id"]
    act(client, rid, "abort")
    one = count()
    for version in (3, 2, 3):
        rid = start(client, fn, MANUAL, version=version).json()["id"]
        act(client, rid, "abort")
    assert count() == one


def test_canary_is_prewarmed_in_proportion_to_its_coming_share(world, client_for, fn):
    # Given the stable version busy: 60 requests of 3 s in the last minute = 3 in flight on
    # average; the canary serves 2 per instance (instance_concurrency) and at most 4 instances
    release = release_start(
        actor=world.alice, function=fn, environment=env(world), version=fn.versions.get(number=2), plan=MANUAL
    )
    invocations(release, 1, ok=60, duration_ms=3000.0)
    client = client_for(world.alice)

    # Then at 50%: ceil(3 × 0.5 / 2) = 1; at 100% nothing is split, no warm entry
    half = act(client, release.pk, "promote")
    assert half.status_code == 200
    assert binding(fn).traffic[1] == {"version": 2, "weight": 50, "tag": "canary", "warm": 1}
    invocations(release, 1, ok=300, duration_ms=3000.0)  # now 18 in flight: ceil(18 × .5 / 2) = 5 → cap 4
    from apps.releases.services import prewarm_count

    release.refresh_from_db()
    assert prewarm_count(release=release, percent=50) == 4
    assert prewarm_count(release=release, percent=10) == 1
    # The first step (10%) with no load still pre-starts one instance
    assert release.changes.order_by("id").first().to_traffic[1]["warm"] == 1


@pytest.mark.parametrize("action", ["promote", "promote-all", "pause", "resume"])
@pytest.mark.parametrize("who", ["viewer", "read_token"])
def test_without_the_deploy_right_no_release_action_changes_anything(world, client_for, fn, action, who):
    # Given a running release (paused, for resume) started by bob
    bob = client_for(world.bob)
    rid = start(bob, fn, MANUAL).json()["id"]
    if action == "resume":
        assert act(bob, rid, "pause").json()["state"] == "paused"
    before = Release.objects.get(pk=rid)
    traffic = binding(fn).traffic
    changes = len(timeline(fn))

    # When carol (viewer) or a read-only token of bob tries to act on it
    client = client_for(world.carol) if who == "viewer" else client_for(world.bob, scopes=["read"])
    response = act(client, rid, action)

    # Then 403 naming the right, and the release and its traffic are as they were
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "permission_denied"
    after = Release.objects.get(pk=rid)
    assert (after.state, after.step_index) == (before.state, before.step_index)
    assert binding(fn).traffic == traffic
    assert len(timeline(fn)) == changes
