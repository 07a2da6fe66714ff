"""The role matrix: who may perform which write, written out as a table.

Actors in org alpha (see tests/conftest.py): alice owner, adam admin, bob developer with a
direct developer grant on project `web`, carol viewer (viewer grant on `web`), dora
developer with no grant (cannot see `web` at all: 404), and dora_via_team: dora again,
but in team `releasers` which holds a developer grant on `web` (she then acts like bob).

Every refused write must leave the database exactly as it was; every allowed write must
make exactly its change and record exactly one audit event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.utils import timezone
from guardian.models import UserObjectPermission
from guardian.shortcuts import get_perms
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.tenancy import (
    environment_services,
    invitation_services,
    org_services,
    project_services,
    roles,
    team_services,
    token_services,
)
from apps.tenancy.models import (
    ApiToken,
    Environment,
    EnvironmentVariable,
    Invitation,
    Membership,
    Organization,
    Project,
    ProjectGrant,
    Team,
)
from apps.tenancy.permissions import can_deploy
from apps.tenancy.roles import Role

User = get_user_model()

VAR, SECRET = "API_BASE_URL", "PAYMENT_KEY"
DEVELOPER_PERMS = sorted(roles.project_permissions_for(Role.DEVELOPER))
VIEWER_PERMS = sorted(roles.project_permissions_for(Role.VIEWER))


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # The world creates six users; the production hasher would make every test ~2 s slower.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Alpha:
    """The world plus the targets of the writes below."""

    world: Any
    erin: Any  # developer in alpha, no project grant, in team `platform`, deployer on prod
    platform: Team
    invitation: Invitation
    carol_grant: ProjectGrant

    @property
    def web(self) -> Project:
        return self.world.web

    def env(self, name: str) -> Environment:
        return Environment.objects.get(project=self.web, name=name)

    def actor(self, name: str) -> Any:
        if name == "dora_via_team":
            return dora_via_team(self)
        return self.world.user(name)


def dora_via_team(a: Alpha) -> Any:
    """Put dora in team `releasers` and grant the team developer on web."""
    w = a.world
    team = team_services.team_create(actor=w.alice, org=w.alpha, slug="releasers", name="Releasers")
    team_services.team_member_add(actor=w.alice, team=team, user=w.dora)
    project_services.project_grant_set(actor=w.alice, project=w.web, role=Role.DEVELOPER, team=team)
    return User.objects.get(pk=w.dora.pk)


@pytest.fixture
def alpha(world: Any) -> Alpha:
    w = world
    erin = User.objects.create_user(username="erin", email="erin@example.com", password="erin-pw-123")
    org_services.membership_ensure(user=erin, org=w.alpha, role=Role.DEVELOPER)
    platform = team_services.team_create(actor=w.alice, org=w.alpha, slug="platform", name="Platform")
    team_services.team_member_add(actor=w.alice, team=platform, user=erin)
    invitation, _ = invitation_services.invitation_create(
        actor=w.alice, org=w.alpha, email="newhire@example.com", role=Role.DEVELOPER
    )
    for env in Environment.objects.filter(project=w.web, name__in=["dev", "prod"]):
        environment_services.environment_var_set(actor=w.alice, environment=env, name=VAR, value="v1")
        environment_services.environment_secret_set(actor=w.alice, environment=env, name=SECRET, value="s1")
    prod = Environment.objects.get(project=w.web, name="prod")
    environment_services.environment_deployer_add(actor=w.alice, environment=prod, user=erin)
    return Alpha(w, erin, platform, invitation, w.web.grants.get(user=w.carol))


# --- database snapshot ---------------------------------------------------------------------------


def db_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of the tenancy, audit, auth and guardian tables (m2m included), by pk.
    Tokens may record their use (last_used_at); nothing else may change on a refusal."""
    snapshot = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in ("tenancy", "audit", "auth", "guardian"):
            continue
        rows = []
        for row in model._base_manager.order_by("pk").values():
            row = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}
            if model is ApiToken:
                del row["last_used_at"]
            rows.append(row)
        snapshot[model._meta.label] = rows
    return snapshot


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    return body["error"]["code"]


REFUSAL_CODES = {403: "permission_denied", 404: "not_found"}


# --- reads of the rows each write targets ----------------------------------------------------------


def var_value(a: Alpha, env: str) -> str | None:
    return EnvironmentVariable.objects.filter(environment=a.env(env), name=VAR).values_list("value", flat=True).first()


def secret_value(a: Alpha, env: str) -> str | None:
    return environment_services.environment_secret_values(environment=a.env(env)).get(SECRET)


def in_team(team: Team, user: Any) -> bool:
    return team.group.user_set.filter(pk=user.pk).exists()


def can_deploy_directly(user: Any, env: Environment) -> bool:
    return roles.DEPLOY_ENVIRONMENT in get_perms(User.objects.get(pk=user.pk), env)


def carol_grant_state(a: Alpha) -> tuple[str | None, list[str]]:
    role = ProjectGrant.objects.filter(pk=a.carol_grant.pk).values_list("role", flat=True).first()
    return role, sorted(get_perms(User.objects.get(pk=a.world.carol.pk), Project.objects.get(pk=a.web.pk)))


def erin_membership_state(a: Alpha) -> tuple[bool, bool, bool]:
    return (
        Membership.objects.filter(org=a.world.alpha, user=a.erin).exists(),
        in_team(a.platform, a.erin),
        can_deploy_directly(a.erin, a.env("prod")),
    )


# --- the operations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    method: str
    path: Callable[[Alpha], str]
    body: dict[str, Any] | None
    audit_action: str
    read: Callable[[Alpha], Any]  # the state of the targeted row(s)
    after: Any  # what ``read`` must return after the write succeeded


def P(suffix: str = "") -> Callable[[Alpha], str]:
    return lambda a: f"/api/v1/projects/{a.web.pk}/{suffix}"


def O(suffix: str = "") -> Callable[[Alpha], str]:  # noqa: E743
    return lambda a: f"/api/v1/orgs/alpha/{suffix}"


def var_ops(env: str) -> dict[str, Op]:
    return {
        f"var.set@{env}": Op(
            "PUT", P(f"environments/{env}/vars/{VAR}"), {"value": "v2"}, "environment.var_set",
            lambda a: var_value(a, env), "v2",
        ),
        f"var.delete@{env}": Op(
            "DELETE", P(f"environments/{env}/vars/{VAR}"), None, "environment.var_delete",
            lambda a: var_value(a, env), None,
        ),
        f"secret.set@{env}": Op(
            "PUT", P(f"environments/{env}/secrets/{SECRET}"), {"value": "s2"}, "environment.secret_set",
            lambda a: secret_value(a, env), "s2",
        ),
        f"secret.delete@{env}": Op(
            "DELETE", P(f"environments/{env}/secrets/{SECRET}"), None, "environment.secret_delete",
            lambda a: secret_value(a, env), None,
        ),
    }  # fmt: skip


OPS: dict[str, Op] = {
    "project.update": Op(
        "PATCH", P(), {"name": "Web 2"}, "project.update",
        lambda a: Project.objects.get(pk=a.web.pk).name, "Web 2",
    ),
    "project.delete": Op(
        "DELETE", P(), None, "project.delete",
        lambda a: Project.objects.filter(pk=a.web.pk).exists(), False,
    ),
    "grant.create": Op(
        "POST", P("grants/"), {"user": "erin", "role": "viewer"}, "project.grant_set",
        lambda a: (
            list(ProjectGrant.objects.filter(project=a.web, user=a.erin).values_list("role", flat=True)),
            sorted(get_perms(User.objects.get(pk=a.erin.pk), Project.objects.get(pk=a.web.pk))),
        ),
        (["viewer"], VIEWER_PERMS),
    ),
    "grant.update": Op(
        "PATCH", lambda a: P(f"grants/{a.carol_grant.pk}/")(a), {"role": "developer"}, "project.grant_set",
        carol_grant_state, ("developer", DEVELOPER_PERMS),
    ),
    "grant.delete": Op(
        "DELETE", lambda a: P(f"grants/{a.carol_grant.pk}/")(a), None, "project.grant_remove",
        carol_grant_state, (None, []),
    ),
    "environment.create": Op(
        "POST", P("environments/"), {"name": "qa"}, "environment.create",
        lambda a: Environment.objects.filter(project=a.web, name="qa").exists(), True,
    ),
    "environment.update": Op(
        "PATCH", P("environments/dev/"), {"protected": True}, "environment.update",
        lambda a: a.env("dev").protected, True,
    ),
    "environment.delete": Op(
        "DELETE", P("environments/dev/"), None, "environment.delete",
        lambda a: Environment.objects.filter(project=a.web, name="dev").exists(), False,
    ),
    **var_ops("dev"),
    **var_ops("prod"),
    "deployer.add@prod": Op(
        "POST", P("environments/prod/deployers/"), {"user": "carol"}, "environment.deployer_add",
        lambda a: can_deploy_directly(a.world.carol, a.env("prod")), True,
    ),
    "deployer.remove@prod": Op(
        "DELETE", P("environments/prod/deployers/user:erin"), None, "environment.deployer_remove",
        lambda a: can_deploy_directly(a.erin, a.env("prod")), False,
    ),
    "team.create": Op(
        "POST", O("teams/"), {"slug": "new-team", "name": "New"}, "team.create",
        lambda a: Team.objects.filter(org=a.world.alpha, slug="new-team").exists(), True,
    ),
    "team.update": Op(
        "PATCH", O("teams/platform/"), {"name": "Renamed"}, "team.update",
        lambda a: Team.objects.filter(pk=a.platform.pk).values_list("name", flat=True).first(), "Renamed",
    ),
    "team.delete": Op(
        "DELETE", O("teams/platform/"), None, "team.delete",
        lambda a: Team.objects.filter(pk=a.platform.pk).exists(), False,
    ),
    "team.member_add": Op(
        "POST", O("teams/platform/members/"), {"user": "carol"}, "team.member_add",
        lambda a: in_team(a.platform, a.world.carol), True,
    ),
    "team.member_remove": Op(
        "DELETE", O("teams/platform/members/erin/"), None, "team.member_remove",
        lambda a: in_team(a.platform, a.erin), False,
    ),
    "invitation.create": Op(
        "POST", O("invitations/"), {"email": "second@example.com", "role": "developer"}, "invitation.create",
        lambda a: list(Invitation.objects.filter(org=a.world.alpha, email="second@example.com").values_list(
            "role", "status"
        )),
        [("developer", "pending")],
    ),
    "invitation.revoke": Op(
        "DELETE", lambda a: O(f"invitations/{a.invitation.pk}/")(a), None, "invitation.revoke",
        lambda a: Invitation.objects.get(pk=a.invitation.pk).status, "revoked",
    ),
    "member.role_change": Op(
        "PATCH", O("members/erin/"), {"role": "viewer"}, "member.role_change",
        lambda a: Membership.objects.get(org=a.world.alpha, user=a.erin).role, "viewer",
    ),
    "member.remove": Op(
        "DELETE", O("members/erin/"), None, "member.remove",
        erin_membership_state, (False, False, False),
    ),
    "org.update": Op(
        "PATCH", O(), {"name": "Alpha 2"}, "org.update",
        lambda a: Organization.objects.get(pk=a.world.alpha.pk).name, "Alpha 2",
    ),
    "org.delete": Op(
        "DELETE", O(), None, "org.delete",
        lambda a: Organization.objects.filter(pk=a.world.alpha.pk).exists(), False,
    ),
}  # fmt: skip

# The policy. Project writes: dora cannot see `web` (404); org writes: she is a member (403).
ACTORS = ("alice", "adam", "bob", "carol", "dora", "dora_via_team")
EXPECTED: dict[str, tuple[int, int, int, int, int, int]] = {
    #                         alice adam  bob  carol dora  dora_via_team
    "project.update":        (200,  200,  403, 403,  404,  403),
    "project.delete":        (204,  204,  403, 403,  404,  403),
    "grant.create":          (201,  201,  403, 403,  404,  403),
    "grant.update":          (200,  200,  403, 403,  404,  403),
    "grant.delete":          (204,  204,  403, 403,  404,  403),
    "environment.create":    (201,  201,  403, 403,  404,  403),
    "environment.update":    (200,  200,  403, 403,  404,  403),
    "environment.delete":    (204,  204,  403, 403,  404,  403),
    # unprotected env: developers configure it; protected env: admins only
    "var.set@dev":           (200,  200,  200, 403,  404,  200),
    "var.delete@dev":        (204,  204,  204, 403,  404,  204),
    "secret.set@dev":        (200,  200,  200, 403,  404,  200),
    "secret.delete@dev":     (204,  204,  204, 403,  404,  204),
    "var.set@prod":          (200,  200,  403, 403,  404,  403),
    "var.delete@prod":       (204,  204,  403, 403,  404,  403),
    "secret.set@prod":       (200,  200,  403, 403,  404,  403),
    "secret.delete@prod":    (204,  204,  403, 403,  404,  403),
    "deployer.add@prod":     (201,  201,  403, 403,  404,  403),
    "deployer.remove@prod":  (204,  204,  403, 403,  404,  403),
    "team.create":           (201,  201,  403, 403,  403,  403),
    "team.update":           (200,  200,  403, 403,  403,  403),
    "team.delete":           (204,  204,  403, 403,  403,  403),
    "team.member_add":       (201,  201,  403, 403,  403,  403),
    "team.member_remove":    (204,  204,  403, 403,  403,  403),
    "invitation.create":     (201,  201,  403, 403,  403,  403),
    "invitation.revoke":     (200,  200,  403, 403,  403,  403),
    "member.role_change":    (200,  200,  403, 403,  403,  403),
    "member.remove":         (204,  204,  403, 403,  403,  403),
    "org.update":            (200,  403,  403, 403,  403,  403),
    "org.delete":            (204,  403,  403, 403,  403,  403),
}  # fmt: skip

MATRIX = [(op, actor, EXPECTED[op][i]) for op in EXPECTED for i, actor in enumerate(ACTORS)]


def test_the_table_covers_every_operation() -> None:
    assert set(EXPECTED) == set(OPS)


def send(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return getattr(client, method.lower())(path, body, format="json")


@pytest.mark.parametrize(("op_name", "actor", "expected"), MATRIX, ids=[f"{o}-{a}-{e}" for o, a, e in MATRIX])
def test_role_matrix(op_name: str, actor: str, expected: int, alpha: Alpha, client_for: Any) -> None:
    op = OPS[op_name]
    # Given the actor signed in, the targeted row and the whole database as they are
    user = alpha.actor(actor)
    client = client_for(user)
    row_before = op.read(alpha)
    assert row_before != op.after, "the fixture must start from a state the write changes"
    db_before = db_snapshot()
    last_event = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()

    # When the actor performs the write
    response = send(client, op.method, op.path(alpha), op.body)

    # Then the status is exactly the policy's
    assert response.status_code == expected, response.content
    if expected < 300:
        # And the write made exactly its change, recorded by one audit event naming the actor
        assert op.read(alpha) == op.after
        events = list(AuditEvent.objects.filter(pk__gt=last_event).values_list("actor_repr", "action"))
        assert events == [(user.username, op.audit_action)]
    else:
        # And a refusal changed nothing: not the row, not any other row
        assert error_code(response) == REFUSAL_CODES[expected]
        assert op.read(alpha) == row_before
        assert db_snapshot() == db_before


# --- the owner role ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v1/orgs/alpha/members/carol/", {"role": "owner"}),  # grant owner
        ("PATCH", "/api/v1/orgs/alpha/members/alice/", {"role": "admin"}),  # change an owner
        ("DELETE", "/api/v1/orgs/alpha/members/alice/", None),  # remove an owner
        ("POST", "/api/v1/orgs/alpha/invitations/", {"email": "boss@example.com", "role": "owner"}),  # invite one
    ],
    ids=["grant-owner", "demote-owner", "remove-owner", "invite-owner"],
)
def test_admin_cannot_grant_change_or_remove_the_owner_role(
    method: str, path: str, body: Any, world: Any, client_for: Any
) -> None:
    # Given adam, an admin, and a second owner so that no last-owner rule is in play
    org_services.membership_ensure(user=world.dora, org=world.alpha, role=Role.OWNER)
    client = client_for(world.adam)
    before = db_snapshot()

    # When adam touches the owner role
    response = send(client, method, path, body)

    # Then it is refused and nothing changed
    assert response.status_code == 403, response.content
    assert error_code(response) == "permission_denied"
    assert db_snapshot() == before


def test_owner_can_grant_change_and_remove_the_owner_role(world: Any, client_for: Any) -> None:
    # Given alice, the owner
    client = client_for(world.alice)

    # When she makes carol an owner, Then carol is one
    response = client.patch("/api/v1/orgs/alpha/members/carol/", {"role": "owner"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "owner"
    assert Membership.objects.get(org=world.alpha, user=world.carol).role == Role.OWNER

    # When she demotes carol to admin, Then carol is an admin
    response = client.patch("/api/v1/orgs/alpha/members/carol/", {"role": "admin"}, format="json")
    assert response.status_code == 200, response.content
    assert Membership.objects.get(org=world.alpha, user=world.carol).role == Role.ADMIN

    # When she makes adam an owner and then removes him, Then adam is no longer a member
    assert client.patch("/api/v1/orgs/alpha/members/adam/", {"role": "owner"}, format="json").status_code == 200
    response = client.delete("/api/v1/orgs/alpha/members/adam/")
    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(org=world.alpha, user=world.adam).exists()

    # When she invites an owner, Then the invitation carries the owner role
    response = client.post(
        "/api/v1/orgs/alpha/invitations/", {"email": "boss@example.com", "role": "owner"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Invitation.objects.get(org=world.alpha, email="boss@example.com").role == Role.OWNER


@pytest.mark.parametrize(
    ("method", "body"), [("PATCH", {"role": "admin"}), ("DELETE", None)], ids=["demote-self", "leave"]
)
def test_last_owner_cannot_be_demoted_or_removed(method: str, body: Any, world: Any, client_for: Any) -> None:
    # Given alice, the only owner of alpha
    client = client_for(world.alice)
    before = db_snapshot()

    # When she demotes or removes herself
    response = send(client, method, "/api/v1/orgs/alpha/members/alice/", body)

    # Then it is refused as a conflict, and she is still the owner
    assert response.status_code == 409, response.content
    assert error_code(response) == "last_owner"
    assert Membership.objects.get(org=world.alpha, user=world.alice).role == Role.OWNER
    assert db_snapshot() == before


def test_an_owner_can_step_down_once_another_owner_exists(world: Any, client_for: Any) -> None:
    # Given alice made adam an owner
    client = client_for(world.alice)
    assert client.patch("/api/v1/orgs/alpha/members/adam/", {"role": "owner"}, format="json").status_code == 200

    # When alice demotes herself, Then she is an admin
    response = client.patch("/api/v1/orgs/alpha/members/alice/", {"role": "admin"}, format="json")
    assert response.status_code == 200, response.content
    assert Membership.objects.get(org=world.alpha, user=world.alice).role == Role.ADMIN

    # And adam, now the last owner, cannot demote himself
    response = client_for(world.adam).patch("/api/v1/orgs/alpha/members/adam/", {"role": "admin"}, format="json")
    assert response.status_code == 409, response.content
    assert error_code(response) == "last_owner"


# --- member removal -------------------------------------------------------------------------------


def test_removing_a_member_removes_grants_team_memberships_and_permissions(world: Any, client_for: Any) -> None:
    # Given bob with a direct grant on web, in a team granted on web, deployer on prod,
    # and admin of a project he created himself
    w = world
    team = team_services.team_create(actor=w.alice, org=w.alpha, slug="backend", name="Backend")
    team_services.team_member_add(actor=w.alice, team=team, user=w.bob)
    project_services.project_grant_set(actor=w.alice, project=w.web, role=Role.DEVELOPER, team=team)
    prod = Environment.objects.get(project=w.web, name="prod")
    environment_services.environment_deployer_add(actor=w.alice, environment=prod, user=w.bob)
    own = project_services.project_create(actor=w.bob, org=w.alpha, slug="bobs-tool", name="Bob's tool")
    bob = client_for(w.bob)
    assert bob.get(f"/api/v1/projects/{w.web.pk}/").status_code == 200
    assert sorted(ProjectGrant.objects.filter(user=w.bob).values_list("project__slug", "role")) == [
        ("bobs-tool", "admin"),
        ("web", "developer"),
    ]

    # When alice removes bob from alpha
    response = client_for(w.alice).delete("/api/v1/orgs/alpha/members/bob/")

    # Then his membership, grants, team membership and guardian permissions are gone
    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(user=w.bob, org=w.alpha).exists()
    assert ProjectGrant.objects.filter(user=w.bob).count() == 0
    assert list(w.bob.groups.all()) == []
    assert UserObjectPermission.objects.filter(user=w.bob).count() == 0
    # And the team keeps its grant (it is the team's, not bob's); the project he made stays the org's
    assert ProjectGrant.objects.filter(team=team, project=w.web, role=Role.DEVELOPER).count() == 1
    assert Project.objects.filter(pk=own.pk, org=w.alpha).exists()
    # And bob now gets 404 on the projects and on the org, and lists nothing
    for path in (f"/api/v1/projects/{w.web.pk}/", f"/api/v1/projects/{own.pk}/", "/api/v1/orgs/alpha/"):
        response = bob.get(path)
        assert response.status_code == 404, (path, response.content)
        assert error_code(response) == "not_found"
    assert bob.get("/api/v1/projects/").json()["results"] == []
    assert can_deploy(User.objects.get(pk=w.bob.pk), prod) is False


# --- project visibility -------------------------------------------------------------------------------

VISIBLE = {
    "alice": [("alpha", "api", "owner"), ("alpha", "web", "owner")],
    "adam": [("alpha", "api", "admin"), ("alpha", "web", "admin")],
    "bob": [("alpha", "web", "developer")],
    "carol": [("alpha", "web", "viewer")],
    "dora": [],
    "dora_via_team": [("alpha", "web", "developer")],
    "charlie": [("other", "secret-project", "owner")],
}


@pytest.mark.parametrize("actor", list(VISIBLE))
def test_project_list_shows_managers_every_project_and_others_only_granted_ones(
    actor: str, alpha: Alpha, client_for: Any
) -> None:
    # Given a second project in alpha, granted to nobody
    project_services.project_create(actor=alpha.world.alice, org=alpha.world.alpha, slug="api", name="API")
    user = alpha.actor(actor) if actor != "charlie" else alpha.world.charlie

    # When the actor lists projects
    response = client_for(user).get("/api/v1/projects/")

    # Then org owners/admins see every alpha project, others only those granted to them
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(p["org"], p["slug"], p["role"]) for p in body["results"]] == VISIBLE[actor]
    assert body["count"] == len(VISIBLE[actor])


# --- deploy rights on a protected environment ------------------------------------------------------


def test_deployers_endpoint_grants_deploy_on_the_protected_environment(alpha: Alpha, client_for: Any) -> None:
    # Given bob (developer on web) and dora (developer on web through her team), neither able to deploy prod
    w = alpha.world
    dora = alpha.actor("dora_via_team")
    prod, dev = alpha.env("prod"), alpha.env("dev")
    assert can_deploy(User.objects.get(pk=w.bob.pk), prod) is False
    assert can_deploy(User.objects.get(pk=w.bob.pk), dev) is True

    # When alice adds bob as a deployer of prod
    response = client_for(w.alice).post(
        f"/api/v1/projects/{w.web.pk}/environments/prod/deployers/", {"user": "bob"}, format="json"
    )

    # Then bob holds deploy_environment on prod and can deploy there; dora still cannot
    assert response.status_code == 201, response.content
    assert response.json() == {"users": ["bob", "erin"], "teams": []}
    assert can_deploy(User.objects.get(pk=w.bob.pk), prod) is True
    assert can_deploy(User.objects.get(pk=dora.pk), prod) is False
    assert can_deploy(User.objects.get(pk=w.carol.pk), prod) is False

    # When alice adds dora's team instead, Then dora can deploy prod too
    response = client_for(w.alice).post(
        f"/api/v1/projects/{w.web.pk}/environments/prod/deployers/", {"team": "releasers"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"users": ["bob", "erin"], "teams": ["releasers"]}
    assert can_deploy(User.objects.get(pk=dora.pk), prod) is True


# --- token scopes ----------------------------------------------------------------------------------


def test_read_token_cannot_write(world: Any, client_for: Any) -> None:
    # Given alice (owner) with a read-only token
    client = client_for(world.alice, scopes=["read"])
    assert client.get(f"/api/v1/projects/{world.web.pk}/").status_code == 200
    before = db_snapshot()

    # When the token is used for a write
    response = client.patch(f"/api/v1/projects/{world.web.pk}/", {"name": "Hacked"}, format="json")

    # Then it is refused for lack of scope, and nothing changed
    assert response.status_code == 403, response.content
    assert error_code(response) == "permission_denied"
    assert Project.objects.get(pk=world.web.pk).name == "Web"
    assert db_snapshot() == before


def test_write_token_can_write(world: Any, client_for: Any) -> None:
    # Given alice with a write token, When she renames the project, Then it is renamed
    client = client_for(world.alice, scopes=["read", "write"])
    response = client.patch(f"/api/v1/projects/{world.web.pk}/", {"name": "Web 2"}, format="json")
    assert response.status_code == 200, response.content
    assert Project.objects.get(pk=world.web.pk).name == "Web 2"


ADMIN_SCOPED_WRITES = [
    ("POST", lambda a: f"/api/v1/projects/{a.web.pk}/grants/", {"user": "erin", "role": "viewer"}),
    ("PATCH", lambda a: f"/api/v1/projects/{a.web.pk}/grants/{a.carol_grant.pk}/", {"role": "admin"}),
    ("DELETE", lambda a: f"/api/v1/projects/{a.web.pk}/grants/{a.carol_grant.pk}/", None),
    ("POST", lambda a: f"/api/v1/projects/{a.web.pk}/environments/prod/deployers/", {"user": "bob"}),
    ("POST", lambda a: "/api/v1/orgs/alpha/teams/", {"slug": "t2", "name": "T2"}),
    ("PATCH", lambda a: "/api/v1/orgs/alpha/teams/platform/", {"name": "Renamed"}),
    ("POST", lambda a: "/api/v1/orgs/alpha/teams/platform/members/", {"user": "bob"}),
    ("POST", lambda a: "/api/v1/orgs/alpha/invitations/", {"email": "x@example.com", "role": "viewer"}),
    ("DELETE", lambda a: f"/api/v1/orgs/alpha/invitations/{a.invitation.pk}/", None),
    ("PATCH", lambda a: "/api/v1/orgs/alpha/members/erin/", {"role": "admin"}),
    ("PATCH", lambda a: "/api/v1/orgs/alpha/", {"name": "Renamed"}),
    ("POST", lambda a: "/api/v1/tokens/", {"name": "more", "scopes": ["read"]}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    ADMIN_SCOPED_WRITES,
    ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(ADMIN_SCOPED_WRITES)],
)
def test_write_token_cannot_use_admin_scoped_endpoints(
    method: str, path: Callable[[Alpha], str], body: Any, alpha: Alpha, client_for: Any
) -> None:
    # Given alice (owner, so only the token's scope can stop her) with a read+write+deploy token
    client = client_for(alpha.world.alice, scopes=["read", "write", "deploy"])
    before = db_snapshot()

    # When the token is used on an admin-scoped write
    response = send(client, method, path(alpha), body)

    # Then it is refused for lack of the admin scope, and nothing changed
    assert response.status_code == 403, response.content
    assert error_code(response) == "permission_denied"
    assert "'admin' scope" in response.json()["error"]["message"]
    assert db_snapshot() == before


def test_expired_token_is_rejected(world: Any, client_for: Any) -> None:
    # Given a token that worked, whose expiry then passed
    client = client_for(world.alice, scopes=["read"], expires_at=timezone.now() + timedelta(hours=1))
    assert client.get("/api/v1/me/").status_code == 200
    token = ApiToken.objects.get(token_hash=token_services.token_hash(client.token))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # When it is used
    response = client.get("/api/v1/me/")

    # Then the request is unauthenticated
    assert response.status_code == 401, response.content
    assert error_code(response) == "authentication_failed"
    assert response.json()["error"]["message"] == "This token has expired."


def test_revoked_token_is_rejected(world: Any, client_for: Any) -> None:
    # Given alice created a token through the API, and it works
    session = client_for(world.alice)
    created = session.post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"]}, format="json")
    assert created.status_code == 201, created.content
    token_id, plaintext = created.json()["id"], created.json()["token"]
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert bearer.get("/api/v1/me/").json()["token_scopes"] == ["read"]

    # When she revokes it
    revoked = session.delete(f"/api/v1/tokens/{token_id}/")
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["revoked"] is True

    # Then the token no longer authenticates
    response = bearer.get("/api/v1/me/")
    assert response.status_code == 401, response.content
    assert error_code(response) == "authentication_failed"
    assert response.json()["error"]["message"] == "This token has been revoked."


def test_a_token_cannot_mint_a_token_with_scopes_it_lacks(world: Any, client_for: Any) -> None:
    # Given alice with a read+admin token
    client = client_for(world.alice, scopes=["read", "admin"])
    tokens_before = list(ApiToken.objects.order_by("pk").values_list("pk", flat=True))

    # When the token mints a write token
    response = client.post("/api/v1/tokens/", {"name": "escalate", "scopes": ["read", "write"]}, format="json")

    # Then it is refused and no token was created
    assert response.status_code == 403, response.content
    assert error_code(response) == "permission_denied"
    assert list(ApiToken.objects.order_by("pk").values_list("pk", flat=True)) == tokens_before

    # When it mints a token within its own scopes, Then that works
    response = client.post("/api/v1/tokens/", {"name": "narrower", "scopes": ["read"]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["scopes"] == ["read"]
