"""Lists paginate with limit/offset and cost a bounded number of queries whatever their
length; every write leaves an audit event that only the org's admins can list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.tenancy import org_services, project_services, team_services, token_services
from apps.tenancy.models import ApiToken, Environment, Invitation, Membership, Project, ProjectGrant, Team
from apps.tenancy.roles import Role

User = get_user_model()
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The world's users get passwords; a fast hasher keeps setup from dominating (no test
    here checks a password)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- pagination -----------------------------------------------------------------------------


def add_projects(world, count: int, start: int = 0) -> list[Project]:
    return [
        project_services.project_create(actor=world.alice, org=world.alpha, slug=f"p{i:03d}", name=f"P{i}")
        for i in range(start, start + count)
    ]


def test_projects_paginate_with_limit_and_offset(world, client_for):
    add_projects(world, 7)  # alice sees p000..p006 and web: 8 projects
    client = client_for(world.alice)

    page = client.get("/api/v1/projects/", {"limit": 3, "offset": 3}).json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 8
    assert page["next"] == "http://testserver/api/v1/projects/?limit=3&offset=6"
    assert page["previous"] == "http://testserver/api/v1/projects/?limit=3"
    assert [p["slug"] for p in page["results"]] == ["p003", "p004", "p005"]

    first = client.get("/api/v1/projects/", {"limit": 3}).json()
    assert first["previous"] is None
    assert [p["slug"] for p in first["results"]] == ["p000", "p001", "p002"]

    last = client.get("/api/v1/projects/", {"limit": 3, "offset": 6}).json()
    assert last["next"] is None
    assert [p["slug"] for p in last["results"]] == ["p006", "web"]

    everything = client.get("/api/v1/projects/").json()  # default limit 50
    assert everything["count"] == 8
    assert everything["next"] is None
    assert everything["previous"] is None
    assert len(everything["results"]) == 8


def test_limit_is_capped(world, client_for):
    add_projects(world, 3)
    page = client_for(world.alice).get("/api/v1/projects/", {"limit": 100000}).json()
    assert page["count"] == 4
    assert page["next"] is None
    assert len(page["results"]) == 4


def test_pagination_counts_only_what_the_caller_sees(world, client_for):
    projects = add_projects(world, 4)
    project_services.project_grant_set(actor=world.alice, project=projects[1], role=Role.VIEWER, user=world.bob)
    page = client_for(world.bob).get("/api/v1/projects/", {"limit": 1}).json()
    assert page["count"] == 2
    assert page["next"] == "http://testserver/api/v1/projects/?limit=1&offset=1"
    assert [p["slug"] for p in page["results"]] == ["p001"]
    assert page["results"][0]["role"] == "viewer"
    assert client_for(world.charlie).get("/api/v1/projects/").json()["count"] == 1


# --- bounded queries --------------------------------------------------------------------------


def grow(world, size: int) -> None:
    """Make every list at least ``size`` long: projects (granted to bob as developer),
    members (granted on web), teams with a member, and the audit events all that writes."""
    have = Project.objects.filter(org=world.alpha).exclude(slug="web").count()
    for project in add_projects(world, size - have, start=have):
        project_services.project_grant_set(actor=world.alice, project=project, role=Role.DEVELOPER, user=world.bob)
    for i in range(have, size):
        user = User.objects.create(username=f"member{i:03d}", email=f"member{i:03d}@example.com")
        org_services.membership_ensure(user=user, org=world.alpha, role=Role.VIEWER)
        project_services.project_grant_set(actor=world.alice, project=world.web, role=Role.VIEWER, user=user)
        team = team_services.team_create(actor=world.alice, org=world.alpha, slug=f"team{i:03d}", name=f"Team {i}")
        team_services.team_member_add(actor=world.alice, team=team, user=user)
        team_services.team_member_add(actor=world.alice, team=team, user=world.bob)


# (who, path, rows expected at size n, query bound). The bound is the same for 5 and 40 rows.
LISTS = [
    ("alice", "/api/v1/projects/", lambda n: n + 1, 8),
    ("alice", "/api/v1/orgs/alpha/members/", lambda n: n + 5, 5),
    ("alice", "/api/v1/orgs/alpha/teams/", lambda n: n, 6),
    ("alice", "/api/v1/projects/{web}/grants/", lambda n: n + 2, 5),
    ("alice", "/api/v1/audit-events/", None, 4),
    ("bob", "/api/v1/projects/", lambda n: n + 1, 8),  # guardian: granted projects only
    ("bob", "/api/v1/projects/{web}/grants/", lambda n: n + 2, 5),
    ("bob", "/api/v1/orgs/alpha/teams/", lambda n: n, 6),
    ("carol", "/api/v1/orgs/alpha/members/", lambda n: n + 5, 5),
]


@pytest.mark.parametrize(("who", "path", "rows", "bound"), LISTS, ids=[f"{w}:{p}" for w, p, _, _ in LISTS])
def test_lists_cost_a_bounded_number_of_queries(
    world, client_for, django_assert_max_num_queries, who, path, rows, bound
):
    client = client_for(world.user(who))
    url = path.format(web=world.web.pk)
    counts = {}
    for size in (5, 40):
        grow(world, size)
        client.get(url, {"limit": 500})  # warm process-wide caches (content types)
        with django_assert_max_num_queries(bound) as captured:
            response = client.get(url, {"limit": 500})
        assert response.status_code == 200, response.content
        body = response.json()
        expected = rows(size) if rows else AuditEvent.objects.filter(org=world.alpha).count()
        assert body["count"] == expected
        assert len(body["results"]) == expected
        counts[size] = len(captured)
    assert counts[40] == counts[5], counts


def test_bob_sees_his_role_on_each_granted_project(world, client_for):
    grow(world, 5)
    results = client_for(world.bob).get("/api/v1/projects/").json()["results"]
    assert {(p["slug"], p["role"]) for p in results} == {("web", "developer")} | {
        (f"p{i:03d}", "developer") for i in range(5)
    }
    results = client_for(world.dora).get("/api/v1/projects/").json()
    assert results["count"] == 0


# --- audit ---------------------------------------------------------------------------------------

IP = "203.0.113.7"


def test_every_write_records_who_what_where(world, client_for):
    client = client_for(world.alice)
    n = iter(range(100))

    def call(method: str, path: str, data=None):
        rid = f"req-{next(n)}"
        response = getattr(client, method)(path, data, format="json", REMOTE_ADDR=IP, HTTP_X_REQUEST_ID=rid)
        assert response.status_code in (200, 201, 204), (path, response.content)
        return rid, response

    before = AuditEvent.objects.count()
    rid_create, created = call("post", "/api/v1/projects/", {"org": "alpha", "slug": "api", "name": "API"})
    project = Project.objects.get(pk=created.json()["id"])
    base = f"/api/v1/projects/{project.pk}"
    prod = Environment.objects.get(project=project, name="prod")
    dev = Environment.objects.get(project=project, name="dev")
    rid_update, _ = call("patch", f"{base}/", {"name": "API 2"})
    rid_team, _ = call("post", "/api/v1/orgs/alpha/teams/", {"slug": "ops", "name": "Ops"})
    team = Team.objects.get(org=world.alpha, slug="ops")
    rid_team_add, _ = call("post", "/api/v1/orgs/alpha/teams/ops/members/", {"user": "bob"})
    rid_grant, _ = call("post", f"{base}/grants/", {"team": "ops", "role": "developer"})
    rid_role, _ = call("patch", "/api/v1/orgs/alpha/members/carol/", {"role": "developer"})
    rid_var, _ = call("put", f"{base}/environments/dev/vars/FOO", {"value": "bar"})
    rid_env, _ = call("patch", f"{base}/environments/prod/", {"protected": False})
    rid_env_new, _ = call("post", f"{base}/environments/", {"name": "qa"})
    qa = Environment.objects.get(project=project, name="qa")
    rid_deployer, _ = call("post", f"{base}/environments/prod/deployers/", {"user": "bob"})
    rid_remove, _ = call("delete", "/api/v1/orgs/alpha/members/dora/")
    rid_org, _ = call("patch", "/api/v1/orgs/alpha/", {"name": "Alpha Inc"})
    rid_invite, invited = call("post", "/api/v1/orgs/alpha/invitations/", {"email": "x@example.com", "role": "viewer"})
    rid_token, token = call("post", "/api/v1/tokens/", {"name": "ci", "scopes": ["read"]})
    rid_delete, _ = call("delete", f"{base}/")

    expected = [
        (rid_create, world.alpha, "project.create", "project", project.pk, {"slug": "api", "name": "API"}),
        (rid_update, world.alpha, "project.update", "project", project.pk, {"name": ["API", "API 2"]}),
        (rid_team, world.alpha, "team.create", "team", team.pk, {"slug": "ops", "name": "Ops"}),
        (rid_team_add, world.alpha, "team.member_add", "team", team.pk, {"user": "bob"}),
        (
            rid_grant,
            world.alpha,
            "project.grant_set",
            "project",
            project.pk,
            {"principal": "team:ops", "role": [None, "developer"]},
        ),
        (rid_role, world.alpha, "member.role_change", "user", world.carol.pk, {"role": ["viewer", "developer"]}),
        (rid_var, world.alpha, "environment.var_set", "environment", dev.pk, {"name": "FOO", "value": [None, "bar"]}),
        (rid_env, world.alpha, "environment.update", "environment", prod.pk, {"protected": [True, False]}),
        (rid_env_new, world.alpha, "environment.create", "environment", qa.pk, {"name": "qa", "protected": False}),
        (rid_deployer, world.alpha, "environment.deployer_add", "environment", prod.pk, {"principal": "user:bob"}),
        (rid_remove, world.alpha, "member.remove", "user", world.dora.pk, {"role": "developer"}),
        (rid_org, world.alpha, "org.update", "organization", world.alpha.pk, {"name": ["Alpha", "Alpha Inc"]}),
        (
            rid_invite,
            world.alpha,
            "invitation.create",
            "invitation",
            invited.json()["id"],
            {"email": "x@example.com", "role": "viewer"},
        ),
        (rid_token, None, "token.create", "apitoken", token.json()["id"], {"name": "ci", "scopes": ["read"]}),
        (rid_delete, world.alpha, "project.delete", "project", project.pk, {}),
    ]
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert len(events) == len(expected)  # one event per write, nothing more
    for event, (rid, org, action, target_type, target_id, changes) in zip(events, expected, strict=True):
        assert event.request_id == rid
        assert event.source_ip == IP
        assert event.actor == world.alice
        assert event.actor_repr == "alice"
        assert event.org == org
        assert event.action == action
        assert event.target_type == target_type
        assert event.target_id == str(target_id)
        assert event.changes == changes, action
    # The deleted project stays readable in its events.
    assert events[-1].target_repr == "alpha/api"
    assert ApiToken.objects.filter(pk=token.json()["id"]).exists()
    assert Invitation.objects.filter(pk=invited.json()["id"]).exists()
    assert not Membership.objects.filter(org=world.alpha, user=world.dora).exists()


def test_a_refused_write_records_nothing(world, client_for):
    before = AuditEvent.objects.count()
    response = client_for(world.carol).patch(f"/api/v1/projects/{world.web.pk}/", {"name": "X"}, format="json")
    assert response.status_code == 403
    response = client_for(world.bob).post(
        "/api/v1/projects/", {"org": "alpha", "slug": "web", "name": "dup"}, format="json"
    )
    assert response.status_code == 409
    assert AuditEvent.objects.count() == before


def test_api_shows_the_recorded_event(world, client_for):
    client = client_for(world.adam)
    response = client.post(
        "/api/v1/orgs/alpha/teams/",
        {"slug": "sre", "name": "SRE"},
        format="json",
        REMOTE_ADDR=IP,
        HTTP_X_REQUEST_ID="shown-1",
    )
    assert response.status_code == 201
    team = Team.objects.get(slug="sre")
    [row] = client.get("/api/v1/audit-events/", {"action": "team.create"}).json()["results"]
    event = AuditEvent.objects.get(action="team.create")
    assert row == {
        "id": event.pk,
        "org": "alpha",
        "actor": "adam",
        "action": "team.create",
        "target_type": "team",
        "target_id": str(team.pk),
        "target_repr": "alpha/sre",
        "changes": {"slug": "sre", "name": "SRE"},
        "source_ip": IP,
        "request_id": "shown-1",
        "created_at": row["created_at"],
    }
    assert row["created_at"].startswith(event.created_at.strftime("%Y-%m-%dT%H:%M:%S"))


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["results"])
    return [r["id"] for r in body["results"]]


def alpha_event_ids() -> list[int]:
    return list(
        AuditEvent.objects.filter(org__slug="alpha").order_by("-created_at", "-id").values_list("id", flat=True)
    )


@pytest.mark.parametrize("admin", ["alice", "adam"])
def test_admins_list_and_filter_their_orgs_events(world, client_for, admin):
    client = client_for(world.user(admin))
    assert ids(client.get("/api/v1/audit-events/")) == alpha_event_ids()
    assert ids(client.get("/api/v1/audit-events/", {"org": "alpha"})) == alpha_event_ids()
    assert len(alpha_event_ids()) == 4  # org.create, project.create and two grants from the fixture

    grants = client.get("/api/v1/audit-events/", {"action": "project.grant_set"}).json()
    assert [(r["actor"], r["changes"]["principal"]) for r in grants["results"]] == [
        ("alice", "user:carol"),
        ("alice", "user:bob"),
    ]

    mid = timezone.now()
    team = team_services.team_create(actor=world.adam, org=world.alpha, slug="late", name="Late")
    team_services.team_update(actor=world.adam, team=team, name="Later")
    late = list(
        AuditEvent.objects.filter(created_at__gte=mid).order_by("-created_at", "-id").values_list("id", flat=True)
    )
    assert len(late) == 2
    assert ids(client.get("/api/v1/audit-events/", {"since": mid.isoformat()})) == late
    assert ids(client.get("/api/v1/audit-events/", {"until": mid.isoformat()})) == [
        i for i in alpha_event_ids() if i not in late
    ]
    assert ids(client.get("/api/v1/audit-events/", {"actor": "adam"})) == late
    assert ids(client.get("/api/v1/audit-events/", {"actor": "adam", "action": "team.update"})) == late[:1]
    assert ids(client.get("/api/v1/audit-events/", {"actor": "nobody"})) == []
    assert ids(client.get("/api/v1/audit-events/", {"target_type": "team", "target_id": str(team.pk)})) == late
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert ids(client.get("/api/v1/audit-events/", {"since": future})) == []


def test_filter_on_another_org_is_404_and_bad_dates_are_400(world, client_for):
    client = client_for(world.adam)
    other = client.get("/api/v1/audit-events/", {"org": "other"})
    assert other.status_code == 404
    assert other.json()["error"] == {"code": "not_found", "message": "Organization 'other' not found.", "fields": {}}
    bad = client.get("/api/v1/audit-events/", {"since": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid"
    assert list(bad.json()["error"]["fields"]) == ["since"]


@pytest.mark.parametrize("name", ["bob", "carol", "dora"])
def test_developers_and_viewers_see_none_of_the_orgs_events(world, client_for, name):
    team_services.team_create(actor=world.adam, org=world.alpha, slug="x", name="X")
    client = client_for(world.user(name))
    assert ids(client.get("/api/v1/audit-events/")) == []
    assert ids(client.get("/api/v1/audit-events/", {"org": "alpha"})) == []
    assert ids(client.get("/api/v1/audit-events/", {"action": "team.create"})) == []


def test_outsider_sees_only_their_own_org(world, client_for):
    client = client_for(world.charlie)
    own = list(AuditEvent.objects.filter(org=world.other).order_by("-created_at", "-id").values_list("id", flat=True))
    assert len(own) == 2  # org.create and project.create
    assert ids(client.get("/api/v1/audit-events/")) == own
    assert ids(client.get("/api/v1/audit-events/", {"action": "project.grant_set"})) == []
    assert ids(client.get("/api/v1/audit-events/", {"actor": "alice"})) == []
    assert client.get("/api/v1/audit-events/", {"org": "alpha"}).status_code == 404


def test_events_outside_any_org_are_visible_to_their_actor_only(world, client_for):
    token, _ = token_services.token_create(user=world.bob, name="mine", scopes=["read"])
    event = AuditEvent.objects.get(action="token.create", actor=world.bob)
    assert event.org is None
    assert ids(client_for(world.bob).get("/api/v1/audit-events/")) == [event.pk]
    assert event.pk not in ids(client_for(world.alice).get("/api/v1/audit-events/"))
    assert event.pk not in ids(client_for(world.charlie).get("/api/v1/audit-events/"))


def test_member_who_leaves_loses_the_events(world, client_for):
    client = client_for(world.adam)
    assert ids(client.get("/api/v1/audit-events/")) == alpha_event_ids()
    org_services.member_remove(actor=world.alice, membership=Membership.objects.get(org=world.alpha, user=world.adam))
    assert ids(client.get("/api/v1/audit-events/")) == []
    assert ProjectGrant.objects.filter(user=world.adam).count() == 0


def test_audit_list_queries_are_bounded_by_page(world, client_for, django_assert_max_num_queries):
    for i in range(60):
        team_services.team_create(actor=world.alice, org=world.alpha, slug=f"t{i}", name=f"T{i}")
    client = client_for(world.alice)
    client.get("/api/v1/audit-events/")
    with django_assert_max_num_queries(4):
        page = client.get("/api/v1/audit-events/").json()
    assert page["count"] == 64
    assert len(page["results"]) == 50
    assert page["next"] == "http://testserver/api/v1/audit-events/?limit=50&offset=50"
    with CaptureQueriesContext(connection) as small:
        client.get("/api/v1/audit-events/", {"limit": 2})
    with CaptureQueriesContext(connection) as large:
        client.get("/api/v1/audit-events/", {"limit": 500})
    assert len(small) == len(large)
