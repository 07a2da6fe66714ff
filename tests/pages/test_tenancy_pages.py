"""The tenancy pages (issue 14): organizations, members, teams, invitations, the audit log,
personal API tokens, and a project's environments, settings and activity.

Browser tests drive Debian's chromium against one console served per module (uvicorn in a
thread; each test builds its own world on the transactional test database): issue 14's
test 1 (invite by email, accept from the mailed link, grant a project role) and test 6 (a
token created on the page, used against the API, revoked, refused). Client tests cover the
rules: another org's objects answer 404 and change nothing, a viewer sees write controls
disabled with the reason and a forged POST is refused with nothing changed, list pages do
not run a query per row, failed forms keep their values and show errors beside the field.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.tenancy import (
    environment_services,
    invitation_services,
    org_services,
    permissions,
    project_services,
    team_services,
    token_services,
)
from apps.tenancy.models import (
    ApiToken,
    EnvironmentSecret,
    EnvironmentVariable,
    Invitation,
    Membership,
    Project,
    ProjectGrant,
    Team,
)
from apps.tenancy.roles import Role
from tests.conftest import World, build_world, make_user, serving_console
from tests.tenancy.test_outsider_routes import assert_db_unchanged, db_snapshot

# --- browser: one served console for the module --------------------------------------------------


@pytest.fixture(scope="module")
def console(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    with serving_console() as address:
        yield f"http://{address}"


@pytest.fixture(scope="module")
def embedded_worker(django_db_setup: None) -> Iterator[None]:
    """The in-process Celery worker `manage.py serve` runs: it sends the invitation email."""
    from django.conf import settings

    from apps.core import worker
    from console.celery import app

    if not settings.CELERY_BROKER_URL.startswith("memory://"):
        pytest.skip("the embedded worker consumes the in-memory broker")
    app.control.purge()  # tasks other tests queued (their rows are gone)
    worker.start()
    yield
    worker.stop()


def sign_in(page: Any, base: str, username: str, password: str | None = None) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password or f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.browser
def test_alice_invites_by_email_the_invitee_joins_from_the_mailed_link_and_gets_developer_on_web(
    browser: Any, transactional_db: None, console: str, embedded_worker: None
) -> None:
    world = build_world()
    mail.outbox.clear()
    alice = browser.new_context(viewport={"width": 1280, "height": 900})
    invitee = browser.new_context(viewport={"width": 390, "height": 844})  # on a phone
    try:
        page = alice.new_page()
        sign_in(page, console, "alice")
        page.get_by_test_id("org-alpha").get_by_role("link", name="Alpha").click()
        page.wait_for_url(console + "/orgs/alpha/")
        page.get_by_role("navigation", name="Organization").get_by_role("link", name="Members").click()
        form = page.get_by_test_id("invite-form")
        form.locator("input[name=email]").fill("Newbie@Example.com")
        form.locator("select[name=role]").select_option("developer")
        form.locator("button[type=submit]").click()
        assert "Invitation sent to newbie@example.com as developer" in page.get_by_role("status").inner_text()

        # The mail (locmem in tests; sent by the worker after commit) carries the link.
        message = wait_for(lambda: mail.outbox[0] if mail.outbox else None)
        assert message.to == ["newbie@example.com"]
        link = re.search(r"Accept: (\S+)", message.body).group(1)
        from django.conf import settings

        assert link.startswith(f"{settings.PUBLIC_URL}/invitations/accept?token=")
        link = console + link[len(settings.PUBLIC_URL) :]  # the served console's own address

        # The invitee has no account: they make one on the link's page and land on the org.
        new = invitee.new_page()
        new.goto(link)
        assert new.locator("h1").inner_text() == "Join Alpha"
        assert "as developer" in new.get_by_test_id("invitation").inner_text()
        signup = new.get_by_test_id("signup")
        signup.locator("input[name=username]").fill("newbie")
        signup.locator("input[name=password]").fill("a-long-pass-phrase-42")
        signup.locator("input[name=password2]").fill("a-long-pass-phrase-43")
        signup.locator("button[type=submit]").click()
        # A mistake keeps the form filled in, with the error beside the field.
        assert new.locator("#password2-error").inner_text() == "The two passwords differ."
        assert signup.locator("input[name=username]").input_value() == "newbie"
        signup.locator("input[name=password]").fill("a-long-pass-phrase-42")
        signup.locator("input[name=password2]").fill("a-long-pass-phrase-42")
        signup.locator("button[type=submit]").click()
        new.wait_for_url(console + "/orgs/alpha/")
        assert "Welcome to Alpha, newbie: you are developer." in new.get_by_role("status").inner_text()
        newbie = Membership.objects.select_related("user").get(org=world.alpha, user__username="newbie")
        assert newbie.role == Role.DEVELOPER and newbie.user.email == "newbie@example.com"
        assert Invitation.objects.get().status == Invitation.Status.ACCEPTED

        # They sign out and in again with the new account: no project of theirs yet.
        new.get_by_test_id("username").click()
        new.get_by_role("menuitem", name="Sign out").click()
        sign_in(new, console, "newbie", "a-long-pass-phrase-42")
        assert new.get_by_test_id("project-web").count() == 0

        # alice grants them developer on web in the project's settings.
        page.goto(f"{console}/projects/{world.web.pk}/settings/")
        grant = page.get_by_test_id("grant-form")
        grant.locator("select[name=principal]").select_option("user:newbie")
        grant.locator("select[name=role]").select_option("developer")
        grant.locator("button[type=submit]").click()
        assert page.get_by_role("status").inner_text() == "newbie is now developer on Web."
        assert "Developer" in page.get_by_test_id("grant-user:newbie").locator("select option:checked").inner_text()
        assert ProjectGrant.objects.get(project=world.web, user=newbie.user).role == Role.DEVELOPER
        assert permissions.project_role(newbie.user, world.web) == Role.DEVELOPER

        new.reload()
        assert new.get_by_test_id("project-web").locator("td").nth(2).inner_text() == "developer"
    finally:
        alice.close()
        invitee.close()


@pytest.mark.browser
def test_a_token_made_on_the_page_works_against_the_api_until_revoked_there(
    browser: Any, transactional_db: None, console: str
) -> None:
    world = build_world()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, console, "bob")
        page.get_by_test_id("username").click()
        page.get_by_role("menuitem", name="API tokens").click()
        page.wait_for_url(console + "/account/tokens/")
        form = page.get_by_test_id("token-form")
        form.locator("input[name=name]").fill("laptop")
        form.locator("input[value=read]").check()
        form.locator("select[name=expires]").select_option("7")
        form.locator("button[type=submit]").click()
        plaintext = page.get_by_test_id("token-value").locator("code").inner_text()
        assert plaintext.startswith(token_services.TOKEN_PREFIX)
        token = ApiToken.objects.get(user=world.bob, name="laptop")
        assert token.scopes == ["read"] and token.expires_at is not None

        headers = {"Authorization": f"Bearer {plaintext}"}
        answer = httpx.get(f"{console}/api/v1/projects/", headers=headers, timeout=10)
        assert answer.status_code == 200
        assert [p["slug"] for p in answer.json()["results"]] == ["web"]

        # Shown once: a fresh visit lists it (with its last use) but not its value.
        page.goto(console + "/account/tokens/")
        assert plaintext not in page.content()
        row = page.get_by_test_id(f"token-{token.pk}")
        assert "ago" in row.locator("td").nth(4).inner_text()  # last used
        row.locator("button", has_text="Revoke").click()
        page.get_by_test_id("confirm").click()  # the confirm dialog
        page.get_by_role("status").wait_for()
        assert "Token laptop" in page.get_by_role("status").inner_text()
        assert row.locator(".badge").inner_text() == "revoked"

        refused = httpx.get(f"{console}/api/v1/projects/", headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "This token has been revoked."
    finally:
        context.close()


# --- client tests ---------------------------------------------------------------------------------


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response: Any) -> str:
    return response.content.decode()


@pytest.fixture
def rich(db: None) -> World:
    """build_world plus a team, a pending invitation, a variable, a secret, a deployer grant
    on prod, a token of alice's and a pending invitation: an object for every page action."""
    world = build_world()
    team = team_services.team_create(actor=world.alice, org=world.alpha, slug="ops", name="Ops")
    team_services.team_member_add(actor=world.alice, team=team, user=world.bob)
    project_services.project_grant_set(actor=world.alice, project=world.web, role=Role.VIEWER, team=team)
    envs = {e.name: e for e in world.web.environments.all()}
    environment_services.environment_var_set(
        actor=world.alice, environment=envs["dev"], name="LOG_LEVEL", value="debug"
    )
    environment_services.environment_secret_set(
        actor=world.alice, environment=envs["dev"], name="DB_PASSWORD", value="hunter2-secret"
    )
    environment_services.environment_deployer_add(actor=world.alice, environment=envs["prod"], user=world.bob)
    world.invitation, _ = invitation_services.invitation_create(
        actor=world.alice, org=world.alpha, email="someone@example.com", role=Role.VIEWER
    )
    world.token, _ = token_services.token_create(user=world.alice, name="alice-cli", scopes=["read"])
    world.team, world.envs = team, envs
    world.grant = ProjectGrant.objects.get(project=world.web, user=world.carol)
    return world


def page_actions(w: World) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """Every page and every form action of the tenancy pages, aimed at alpha's objects."""
    p, e = f"/projects/{w.web.pk}", f"/projects/{w.web.pk}/environments/dev"
    pages = [
        "/orgs/alpha/",
        "/orgs/alpha/members/",
        "/orgs/alpha/teams/",
        "/orgs/alpha/invitations/",
        "/orgs/alpha/audit/",
        f"{p}/environments/",
        f"{p}/settings/",
        f"{p}/activity/",
    ]
    actions = [
        ("/orgs/alpha/members/invite", {"email": "x@example.com", "role": "viewer"}),
        ("/orgs/alpha/members/bob/role", {"role": "viewer"}),
        ("/orgs/alpha/members/bob/remove", {}),
        ("/orgs/alpha/members/alice/remove", {}),
        ("/orgs/alpha/teams/new", {"slug": "evil", "name": "Evil"}),
        ("/orgs/alpha/teams/ops/rename", {"name": "Evil"}),
        ("/orgs/alpha/teams/ops/delete", {}),
        ("/orgs/alpha/teams/ops/members/add", {"user": "carol"}),
        ("/orgs/alpha/teams/ops/members/bob/remove", {}),
        (f"/orgs/alpha/invitations/{w.invitation.pk}/resend", {}),
        (f"/orgs/alpha/invitations/{w.invitation.pk}/revoke", {}),
        (f"{e}/settings", {"protected": "on", "execution_backend": "knative"}),
        (f"{e}/vars/set", {"name": "LOG_LEVEL", "value": "evil", "existing": "1"}),
        (f"{e}/vars/set", {"name": "NEW_ONE", "value": "evil"}),
        (f"{e}/vars/delete", {"name": "LOG_LEVEL"}),
        (f"{e}/secrets/set", {"name": "DB_PASSWORD", "value": "evil", "existing": "1"}),
        (f"{e}/secrets/delete", {"name": "DB_PASSWORD"}),
        (f"{p}/environments/prod/deployers/add", {"principal": "user:carol"}),
        (f"{p}/environments/prod/deployers/remove", {"principal": "user:bob"}),
        (f"{p}/settings/general", {"name": "Evil", "description": ""}),
        (f"{p}/settings/grants/add", {"principal": "user:dora", "role": "admin"}),
        (f"{p}/settings/grants/{w.grant.pk}/role", {"role": "admin"}),
        (f"{p}/settings/grants/{w.grant.pk}/remove", {}),
        (f"{p}/settings/delete", {"confirm": "web"}),
    ]
    return pages, actions


def test_an_outsider_gets_404_on_every_tenancy_page_and_action_and_nothing_changes(rich: World) -> None:
    pages, actions = page_actions(rich)
    # alice's token, seen by charlie, is as absent as a token that does not exist.
    actions.append((f"/account/tokens/{rich.token.pk}/revoke", {}))
    charlie = signed_in(rich.charlie)
    before = db_snapshot(rich.charlie)
    for path in pages:
        assert charlie.get(path).status_code == 404, path
    for path, body in actions:
        assert charlie.post(path, body).status_code == 404, path
    assert_db_unchanged(before, db_snapshot(rich.charlie))
    # His own pages work; alpha is not in them.
    assert charlie.get("/account/tokens/").status_code == 200
    assert "alpha" not in text(charlie.get("/orgs/other/")).lower()


def test_a_viewer_sees_write_controls_disabled_with_the_reason(rich: World) -> None:
    carol = signed_in(rich.carol)
    members = text(carol.get("/orgs/alpha/members/"))
    assert "Inviting members needs an owner or admin role" in members
    assert 'data-testid="invite-form"' not in members
    assert "Changing roles and removing members needs an owner or admin role" in members
    assert "Managing teams needs an owner or admin role" in text(carol.get("/orgs/alpha/teams/"))
    envs = text(carol.get(f"/projects/{rich.web.pk}/environments/"))
    assert "Changing variables and secrets of dev needs a developer role on the project" in envs
    assert "Changing variables and secrets of prod needs an admin role on the project" in envs
    assert "Changing protection and backends needs an admin role on the project" in envs
    assert "Granting deploy rights needs an admin role on the project" in envs
    assert 'data-testid="var-add-dev"' not in envs
    settings_page = text(carol.get(f"/projects/{rich.web.pk}/settings/"))
    assert "Changing who has which role needs an admin role on the project" in settings_page
    assert "Deleting the project needs an admin role on the project" in settings_page
    assert 'data-testid="grant-form"' not in settings_page and 'data-testid="delete-form"' not in settings_page
    for path in ("/orgs/alpha/invitations/", "/orgs/alpha/audit/", f"/projects/{rich.web.pk}/activity/"):
        response = carol.get(path)
        assert response.status_code == 403 and "needs an owner or admin role" in text(response), path
    # A developer configures dev but not prod (protected).
    bob_envs = text(signed_in(rich.bob).get(f"/projects/{rich.web.pk}/environments/"))
    assert 'data-testid="var-add-dev"' in bob_envs and 'data-testid="var-add-prod"' not in bob_envs


def test_a_viewers_forged_posts_are_refused_on_the_page_and_change_nothing(rich: World) -> None:
    _, actions = page_actions(rich)
    actions = [(path, body) for path, body in actions if not path.endswith("/alice/remove")]
    carol = signed_in(rich.carol)
    before = db_snapshot(rich.carol)
    for path, body in actions:
        response = carol.post(path, body, follow=True)
        assert response.status_code in (200, 400, 403), (path, response.status_code)
        shown = text(response)
        assert re.search(
            r"needs (the admin role|an admin|a developer|the 'manage_access'|the 'change_project'|the '[a-z_]+' permission)",
            shown,
        ), (
            path,
            shown[:200],
        )
        assert 'role="alert"' in shown, path
    after = db_snapshot(rich.carol)
    assert_db_unchanged(before, after)


def test_the_last_owner_cannot_be_demoted_or_removed_and_the_page_says_why(rich: World) -> None:
    alice = signed_in(rich.alice)
    response = alice.post("/orgs/alpha/members/alice/role", {"role": "admin"}, follow=True)
    assert "An organization must keep at least one owner." in text(response)
    response = alice.post("/orgs/alpha/members/alice/remove", follow=True)
    assert "An organization must keep at least one owner." in text(response)
    assert Membership.objects.get(org=rich.alpha, user=rich.alice).role == Role.OWNER
    # An admin cannot touch an owner: the control says so, a forged POST is refused.
    adam = signed_in(rich.adam)
    assert "Only an owner can change or remove an owner" in text(adam.get("/orgs/alpha/members/"))
    response = adam.post("/orgs/alpha/members/alice/role", {"role": "viewer"}, follow=True)
    assert "Only an owner can grant, change or remove the owner role." in text(response)
    # An owner changes a role; the audit log records it.
    response = alice.post("/orgs/alpha/members/bob/role", {"role": "admin"}, follow=True)
    assert "bob is now admin (was developer)." in text(response)
    assert AuditEvent.objects.filter(action="member.role_change", target_repr="bob").count() == 1


def test_a_failed_invitation_keeps_the_form_filled_with_the_error_beside_the_field(rich: World) -> None:
    alice = signed_in(rich.alice)
    response = alice.post("/orgs/alpha/members/invite", {"email": "not-an-email", "role": "developer"})
    assert response.status_code == 400
    page = text(response)
    assert re.search(
        r'<ul class="field-error" id="email-error" role="alert"><li>Enter a valid email address.</li>', page
    )
    assert 'value="not-an-email"' in page
    assert '<option value="developer" selected>' in page
    # A refusal of the service (already a member) also stays on the form.
    response = alice.post("/orgs/alpha/members/invite", {"email": "bob@example.com", "role": "viewer"})
    assert response.status_code == 400
    assert "&#x27;bob@example.com&#x27; is already a member of &#x27;alpha&#x27;." in text(response)
    assert Invitation.objects.count() == 1  # rich's own


def test_environment_page_edits_variables_and_never_renders_a_secret(rich: World) -> None:
    bob = signed_in(rich.bob)
    base = f"/projects/{rich.web.pk}/environments/dev"
    response = bob.post(f"{base}/vars/set", {"name": "LOG_LEVEL", "value": "info", "existing": "1"}, follow=True)
    assert "dev: variable LOG_LEVEL saved." in text(response)
    assert EnvironmentVariable.objects.get(environment=rich.envs["dev"], name="LOG_LEVEL").value == "info"
    response = bob.post(f"{base}/vars/set", {"name": "9bad", "value": "x"})
    assert response.status_code == 400
    assert "Use letters, digits and underscores, not starting with a digit (at most 128)." in text(response)
    assert 'value="9bad"' in text(response)
    response = bob.post(
        f"{base}/secrets/set", {"name": "DB_PASSWORD", "value": "rotated-value-77", "existing": "1"}, follow=True
    )
    assert "dev: secret DB_PASSWORD rotated." in text(response)
    page = text(bob.get(f"/projects/{rich.web.pk}/environments/"))
    assert "DB_PASSWORD" in page
    assert "rotated-value-77" not in page and "hunter2-secret" not in page
    assert environment_services.environment_secret_values(environment=rich.envs["dev"]) == {
        "DB_PASSWORD": "rotated-value-77"
    }
    # A failed secret form does not echo the value either.
    response = bob.post(f"{base}/secrets/set", {"name": "bad name", "value": "echo-me-not"})
    assert response.status_code == 400 and "echo-me-not" not in text(response)
    assert EnvironmentSecret.objects.filter(environment=rich.envs["dev"]).count() == 1


def test_a_token_is_shown_once_and_scopes_are_validated_like_the_api(rich: World) -> None:
    bob = signed_in(rich.bob)
    response = bob.post("/account/tokens/new", {"name": "ci", "expires": "30"})
    assert response.status_code == 400
    assert "This list may not be empty." in text(response) or "Ensure this field has at least 1 elements." in text(
        response
    )
    assert 'value="ci"' in text(response)
    response = bob.post("/account/tokens/new", {"name": "ci", "scopes": ["read", "deploy"], "expires": "never"})
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    plaintext = re.search(r"(stt_[A-Za-z0-9_-]+)", text(response)).group(1)
    token = ApiToken.objects.get(user=rich.bob, name="ci")
    assert token_services.token_hash(plaintext) == token.token_hash and token.expires_at is None
    assert plaintext not in text(bob.get("/account/tokens/"))


def test_team_and_grant_forms_go_through_the_services(rich: World) -> None:
    alice = signed_in(rich.alice)
    response = alice.post("/orgs/alpha/teams/new", {"slug": "Bad Slug", "name": "Web team"})
    assert response.status_code == 400 and 'value="Web team"' in text(response)
    assert "Use 1-50 lowercase letters, digits and dashes" in text(response)
    alice.post("/orgs/alpha/teams/new", {"slug": "webteam", "name": "Web team"})
    alice.post("/orgs/alpha/teams/webteam/members/add", {"user": "dora"})
    team = Team.objects.get(org=rich.alpha, slug="webteam")
    assert list(team.group.user_set.values_list("username", flat=True)) == ["dora"]
    response = alice.post(
        f"/projects/{rich.web.pk}/settings/grants/add", {"principal": "team:webteam", "role": "developer"}, follow=True
    )
    assert "team webteam is now developer on Web." in text(response)
    assert permissions.project_role(rich.dora, Project.objects.get(pk=rich.web.pk)) == Role.DEVELOPER
    # A name outside the org reads as not found, beside the field.
    response = alice.post(
        f"/projects/{rich.web.pk}/settings/grants/add", {"principal": "user:charlie", "role": "viewer"}
    )
    assert response.status_code == 400 and "Member &#x27;charlie&#x27; not found in &#x27;alpha&#x27;." in text(
        response
    )
    # Delete needs the slug typed.
    response = alice.post(f"/projects/{rich.web.pk}/settings/delete", {"confirm": "Web"})
    assert response.status_code == 400 and "Type web to confirm." in text(response)
    response = alice.post(f"/projects/{rich.web.pk}/settings/delete", {"confirm": "web"}, follow=True)
    assert response.redirect_chain[-1][0] == "/orgs/alpha/" and "Project Web deleted" in text(response)
    assert not Project.objects.filter(pk=rich.web.pk).exists()


def test_invitations_are_resent_and_revoked_from_the_page(rich: World, django_capture_on_commit_callbacks: Any) -> None:
    alice = signed_in(rich.alice)
    page = text(alice.get("/orgs/alpha/invitations/"))
    assert "someone@example.com" in page
    mail.outbox.clear()
    from unittest import mock

    from apps.tenancy.tasks import invitation_send_email

    # The task runs at once here (the browser test runs it on the embedded worker).
    with (
        mock.patch.object(
            invitation_send_email, "apply_async", side_effect=lambda args, **_: invitation_send_email(*args)
        ) as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = alice.post(f"/orgs/alpha/invitations/{rich.invitation.pk}/resend", follow=True)
    apply_async.assert_called_once()
    assert apply_async.call_args.kwargs["args"] == (rich.invitation.pk,)
    assert "Invitation sent again to someone@example.com." in text(response)
    assert [m.to for m in mail.outbox] == [["someone@example.com"]]
    response = alice.post(f"/orgs/alpha/invitations/{rich.invitation.pk}/revoke", follow=True)
    assert "its link no longer works" in text(response)
    assert Invitation.objects.get(pk=rich.invitation.pk).status == Invitation.Status.REVOKED
    response = alice.post(f"/orgs/alpha/invitations/{rich.invitation.pk}/revoke", follow=True)
    assert "The invitation is already revoked." in text(response)


def test_a_signed_in_invitee_accepts_and_a_wrong_account_is_told_why(rich: World) -> None:
    dave = make_user("dave")
    invitation, token = invitation_services.invitation_create(
        actor=rich.alice, org=rich.alpha, email="dave@example.com", role="viewer"
    )
    anonymous = Client().get(f"/invitations/accept?token={token}")
    assert "Sign in to accept" in text(anonymous)
    # Signing in from that link comes back to the invitation.
    import html
    from urllib.parse import parse_qs, urlsplit

    href = html.unescape(re.search(r'href="([^"]+)" data-testid="sign-in-to-accept"', text(anonymous)).group(1))
    nxt = parse_qs(urlsplit(href).query)["next"][0]
    assert urlsplit(nxt).path == "/invitations/accept" and parse_qs(urlsplit(nxt).query)["token"] == [token]
    signin = Client().post("/login/", {"username": "dave", "password": "dave-pw-123", "next": nxt})
    assert signin.status_code == 302 and signin["Location"] == nxt
    wrong = signed_in(rich.dora).post("/invitations/accept", {"token": token})
    assert wrong.status_code == 403 and "This invitation was sent to another email address." in text(wrong)
    response = signed_in(dave).post("/invitations/accept", {"token": token})
    assert response.status_code == 302 and response["Location"] == "/orgs/alpha/"
    assert Membership.objects.get(org=rich.alpha, user=dave).role == Role.VIEWER
    assert "already been used" in text(Client().get(f"/invitations/accept?token={token}"))
    assert "not valid" in text(Client().get("/invitations/accept?token=forged"))


def _count_queries(client: Client, path: str) -> int:
    client.get(path)  # warm the process-wide caches (content types) so both sizes count alike
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured.captured_queries)


def test_members_and_audit_pages_do_not_run_a_query_per_row(db: None) -> None:
    counts = {}
    for n in (3, 30):
        world = build_world()
        for i in range(n):
            user = make_user(f"m{n}-{i}")
            org_services.membership_ensure(user=user, org=world.alpha, role=Role.DEVELOPER)
        for i in range(n):
            environment_services.environment_var_set(
                actor=world.alice, environment=world.web.environments.first(), name=f"V{i}", value="x"
            )
        alice = signed_in(world.alice)
        counts[n] = (
            _count_queries(alice, "/orgs/alpha/members/"),
            _count_queries(alice, "/orgs/alpha/audit/"),
            _count_queries(alice, f"/projects/{world.web.pk}/activity/"),
            _count_queries(alice, f"/projects/{world.web.pk}/environments/"),
            _count_queries(alice, "/orgs/alpha/teams/"),
        )
        from django.contrib.auth import get_user_model

        AuditEvent.objects.all().delete()
        for model in (Project, Team, Invitation, ApiToken):
            model.objects.all().delete()
        from apps.tenancy.models import Organization

        Organization.objects.all().delete()
        get_user_model().objects.all().delete()
    assert counts[3] == counts[30]
