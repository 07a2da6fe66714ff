"""The function's "Environments & traffic" tab, one-click rollback, the timeline, and the
binding status that updates by itself (issue 14).

Browser tests drive Debian's chromium against one console served by uvicorn for the whole
module (the data is made afresh by each test), with a real engine: the functions really run
and the gateway is polled with httpx. Client tests cover tenancy (another org's function
answers 404 on every page and action, nothing changes), rights (a viewer and a developer on
a protected prod see the controls disabled with the reason; forged POSTs get the same words)
and form errors (next to the field, the form still filled).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.functions import services as function_services
from apps.functions import version_services
from apps.functions.deploy_services import binding_apply_revision, deploy
from apps.functions.models import Binding, Function, TrafficChange
from apps.tenancy.models import Environment
from tests.conftest import World, build_world, serving_console
from tests.engine.conftest import engine, sandbox_dir  # noqa: F401  (a real engine)

HANDLER = 'def handler(event, context):\n    return {"statusCode": 200, "body": "hello from %s"}\n'
SHOTS = Path(os.environ.get("STRATUS_SCREENSHOT_DIR") or "/tmp/shots/env")


def make_function(world: World, versions: int = 2, name: str = "hello") -> Function:
    """A function of alpha/web with ``versions`` published versions; version n answers 'hello from vn'."""
    function = function_services.function_create(
        actor=world.alice, project=world.web, name=name, runtime="python3.11", handler="main.handler"
    )
    for n in range(1, versions + 1):
        version_services.version_create(
            actor=world.alice,
            function=function,
            files={"main.py": (HANDLER % f"v{n}").encode()},
            source="files",
            message=f"release {n}",
        )
    return function


def env(world: World, name: str) -> Environment:
    return Environment.objects.get(project=world.web, name=name)


def deploy_as(world: World, user: Any, function: Function, environment: str, number: int) -> Binding:
    return deploy(
        actor=user,
        function=function,
        environment=env(world, environment),
        version=function.versions.get(number=number),
        auth_mode="public",
    )


def state_of(function: Function) -> list[tuple[str, list[dict[str, Any]], int, str, str, str]]:
    """Everything an action could change: traffic, revision and rules of every binding."""
    return [
        (b.environment.name, b.traffic, b.revision, b.sticky_key, b.auth_mode, str(b.header_rules))
        for b in Binding.objects.filter(function=function).select_related("environment").order_by("id")
    ]


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- tenancy -------------------------------------------------------------------------------------


def test_another_orgs_function_answers_404_on_every_page_and_action_and_nothing_changes(world: World) -> None:
    function = make_function(world)
    deploy_as(world, world.alice, function, "dev", 1)
    deploy_as(world, world.alice, function, "dev", 2)
    before, changes = state_of(function), TrafficChange.objects.count()
    charlie = signed_in(world.charlie)  # owner of org other

    base = f"/functions/{function.pk}"
    for url in (
        f"{base}/environments/",
        f"{base}/environments/dev/",
        f"{base}/environments/dev/status",
        f"{base}/timeline/",
        f"{base}/timeline/?env=dev",
    ):
        assert charlie.get(url).status_code == 404, url
    for url, data in (
        (f"{base}/environments/dev/deploy", {"version": "1"}),
        (f"{base}/environments/staging/promote", {"from_environment": "dev"}),
        (f"{base}/environments/dev/rollback", {}),
        (f"{base}/environments/dev/rollback", {"version": "1"}),
        (f"{base}/environments/dev/rules", {"sticky_source": "header", "sticky_name": "X-U", "auth_mode": "token"}),
    ):
        assert charlie.post(url, data).status_code == 404, url
    assert (state_of(function), TrafficChange.objects.count()) == (before, changes)

    # Signed out: to the login page.
    response = Client().get(f"{base}/environments/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    # An environment of another project (charlie's) is not one of this function's: 404.
    alice = signed_in(world.alice)
    assert alice.get(f"{base}/environments/no-such-env/").status_code == 404
    assert alice.post(f"{base}/environments/no-such-env/deploy", {"version": "1"}).status_code == 404


# --- rights --------------------------------------------------------------------------------------

PROD_REASON = "Deploying to prod needs an admin or a deployer grant on prod"


@pytest.mark.parametrize("who", ["carol", "bob"])
def test_without_the_right_on_prod_the_controls_are_disabled_with_the_reason_and_forged_posts_are_refused(
    world: World, who: str
) -> None:
    function = make_function(world)
    deploy_as(world, world.alice, function, "prod", 1)
    deploy_as(world, world.alice, function, "prod", 2)
    deploy_as(world, world.alice, function, "dev", 2)
    client = signed_in(world.user(who))

    page = client.get(f"/functions/{function.pk}/environments/").content.decode()
    prod = _card(page, "prod")
    assert PROD_REASON in prod
    assert re.search(r'data-testid="rollback-prod"><button type="button" class="danger" disabled', prod)
    assert f'<form method="post" action="/functions/{function.pk}/environments/prod/rollback"' not in prod
    assert re.search(r'data-testid="deploy-prod">.*?<fieldset disabled>', prod, re.S)
    assert re.search(r'data-testid="promote-prod">.*?<fieldset disabled>', prod, re.S)
    assert re.search(r'data-testid="rules-prod">.*?<fieldset disabled>', prod, re.S)

    before, changes = state_of(function), TrafficChange.objects.count()
    base = f"/functions/{function.pk}/environments/prod"
    for action, data in (
        ("deploy", {"version": "1"}),
        ("promote", {"from_environment": "dev"}),
        ("rollback", {}),
        ("rollback", {"version": "1"}),
        ("rules", {"sticky_source": "header", "sticky_name": "X-U", "auth_mode": "public"}),
    ):
        response = client.post(f"{base}/{action}", data)
        assert response.status_code == 403, action
        html = response.content.decode()
        assert f'<p role="alert" class="flash error">{PROD_REASON}.</p>' in html, action  # the same words
        assert PROD_REASON in _card(html, "prod").split('class="field-error"')[1], action  # at the form
    assert (state_of(function), TrafficChange.objects.count()) == (before, changes)


def test_a_viewer_sees_dev_disabled_too_and_a_developer_acts_on_dev(world: World) -> None:
    function = make_function(world)
    deploy_as(world, world.alice, function, "dev", 1)
    carol_page = signed_in(world.carol).get(f"/functions/{function.pk}/environments/").content.decode()
    assert "Deploying to dev needs the developer role or higher on this project" in _card(carol_page, "dev")

    bob = signed_in(world.bob)
    bob_page = bob.get(f"/functions/{function.pk}/environments/").content.decode()
    assert "Deploying to dev needs" not in bob_page
    response = bob.post(f"/functions/{function.pk}/environments/dev/deploy", {"version": "2"})
    assert response.status_code == 302
    assert response["Location"] == f"/functions/{function.pk}/environments/#env-dev"
    assert Binding.objects.get(function=function, environment__name="dev").traffic == [{"version": 2, "weight": 100}]


def test_an_admin_deploys_promotes_rolls_back_and_sets_rules_with_the_apis_services(world: World) -> None:
    function = make_function(world, versions=3)
    adam = signed_in(world.adam)
    base = f"/functions/{function.pk}/environments"
    assert adam.post(f"{base}/dev/deploy", {"version": "3", "auth_mode": "public"}).status_code == 302
    assert adam.post(f"{base}/prod/promote", {"from_environment": "dev"}).status_code == 302
    prod = Binding.objects.get(function=function, environment__name="prod")
    assert prod.traffic == [{"version": 3, "weight": 100}]
    assert adam.post(f"{base}/prod/rollback", {"version": "1"}).status_code == 302
    response = adam.post(
        f"{base}/prod/rules",
        {
            "rule_source": ["header", "cookie"],
            "rule_name": ["X-Beta", ""],
            "rule_match": ["equals", "equals"],
            "rule_value": ["1", ""],
            "rule_version": ["3", ""],
            "sticky_source": "cookie",
            "sticky_name": "uid",
            "auth_mode": "public",
        },
    )
    assert response.status_code == 302
    prod.refresh_from_db()
    assert prod.traffic == [{"version": 1, "weight": 100}]
    assert prod.header_rules == [{"source": "header", "name": "X-Beta", "match": "equals", "value": "1", "version": 3}]
    assert (prod.sticky_key, prod.auth_mode) == ("cookie:uid", "public")
    reasons = list(TrafficChange.objects.filter(binding=prod).order_by("id").values_list("reason", "actor__username"))
    assert reasons == [("promote", "adam"), ("rollback", "adam"), ("rules", "adam")]
    # The page shows them.
    page = adam.get(f"{base}/prod/").content.decode()
    assert "v1 100%" in _card(page, "prod") and "cookie:uid" in _card(page, "prod")


# --- form errors ---------------------------------------------------------------------------------


def test_a_bad_rule_is_named_next_to_its_row_and_the_form_stays_filled(world: World) -> None:
    function = make_function(world)
    deploy_as(world, world.alice, function, "dev", 1)
    before = state_of(function)
    response = signed_in(world.bob).post(
        f"/functions/{function.pk}/environments/dev/rules",
        {
            "rule_source": ["header", "header"],
            "rule_name": ["X-Beta", "Bad Name"],
            "rule_match": ["equals", "regex"],
            "rule_value": ["1", "("],
            "rule_version": ["9", "2"],
            "sticky_source": "header",
            "sticky_name": "X-User",
            "auth_mode": "public",
        },
    )
    assert response.status_code == 400
    card = _card(response.content.decode(), "dev")
    rows = re.findall(r'<tr class="rule-row">(.*?)</tr>', card, re.S)
    assert 'value="X-Beta"' in rows[0] and "&#x27;version&#x27; 9 does not exist" in rows[0]
    assert 'value="Bad Name"' in rows[1] and "not a valid header name" in rows[1]
    assert "not a valid regular expression" in rows[1]
    assert 'name="sticky_name" value="X-User"' in card
    assert '<option value="public" selected>' in card.split('name="auth_mode"')[1]
    assert '<details class="env-rules" open>' in card
    assert state_of(function) == before


def test_a_deploy_of_a_missing_version_says_so_next_to_the_picker(world: World) -> None:
    function = make_function(world)
    response = signed_in(world.bob).post(f"/functions/{function.pk}/environments/dev/deploy", {"version": "7"})
    assert response.status_code == 400
    card = _card(response.content.decode(), "dev")
    errors = card.split('id="deploy-dev-errors"')[1].split("</div>")[0]
    assert "Version 7 of function &#x27;hello&#x27; not found." in errors
    assert not Binding.objects.filter(function=function).exists()
    response = signed_in(world.bob).post(f"/functions/{function.pk}/environments/dev/deploy", {"version": "x"})
    assert response.status_code == 400 and "A valid integer is required." in response.content.decode()


def test_rollback_with_nothing_before_is_disabled_with_the_reason_and_refused(world: World) -> None:
    function = make_function(world)
    deploy_as(world, world.alice, function, "dev", 1)
    bob = signed_in(world.bob)
    card = _card(bob.get(f"/functions/{function.pk}/environments/").content.decode(), "dev")
    assert "Nothing to roll back to: no earlier version served 100% in dev" in card
    assert "Not deployed to staging yet: nothing to roll back" in _card(
        bob.get(f"/functions/{function.pk}/environments/").content.decode(), "staging"
    )
    response = bob.post(f"/functions/{function.pk}/environments/dev/rollback")
    assert response.status_code == 409
    assert "Nothing to roll back to in &#x27;dev&#x27;" in response.content.decode()


# --- the rollback dialog and the timeline -------------------------------------------------------


def test_the_rollback_dialog_names_the_version_who_deployed_it_and_its_configuration(world: World) -> None:
    from apps.tenancy.environment_services import environment_var_set

    function = make_function(world, versions=3)
    environment_var_set(actor=world.alice, environment=env(world, "dev"), name="COLOR", value="blue")
    deploy_as(world, world.bob, function, "dev", 1)
    deploy_as(world, world.alice, function, "dev", 2)
    environment_var_set(actor=world.alice, environment=env(world, "dev"), name="COLOR", value="green")
    deploy_as(world, world.alice, function, "dev", 3)
    page = signed_in(world.bob).get(f"/functions/{function.pk}/environments/").content.decode()
    dialog = page.split('data-testid="rollback-dialog-dev"')[1].split("</dialog>")[0]
    v2 = dialog.split('data-testid="rollback-detail-dev-2"')[1].split("</div>\n    </dl>")[0]
    assert "v2 at 100%" in v2 and "release 2" in v2 and '<strong class="deployed-by">alice</strong>' in v2
    assert "<code>COLOR=green</code>" in v2 and "python3.11" in v2
    v1 = dialog.split('data-testid="rollback-detail-dev-1"')[1]
    assert "hidden" in v1.split(">")[0]  # shown once picked in the select
    assert (
        '<strong class="deployed-by">bob</strong>' in v1 and "<code>COLOR=blue</code>" in v1 and "changed since" in v1
    )
    options = re.findall(r'<option value="(\d+)"( selected)?>', dialog.split('name="version"')[1].split("</select>")[0])
    assert options == [("2", " selected"), ("1", "")]
    assert "Roll back to v2" in dialog


def test_the_timeline_lists_changes_filters_by_environment_and_pages_without_a_query_per_row(world: World) -> None:
    function = make_function(world, versions=2)
    for i in range(14):
        deploy_as(world, world.alice if i % 2 else world.bob, function, "dev", 1 + i % 2)
    deploy_as(world, world.alice, function, "staging", 2)
    alice = signed_in(world.alice)
    url = f"/functions/{function.pk}/timeline/"

    page = alice.get(url).content.decode()
    rows = re.findall(r'<tr data-testid="change-\d+" data-reason="(\w+)">(.*?)</tr>', page, re.S)
    assert len(rows) == 15
    first = re.sub(r"<[^>]+>", "", rows[0][1])  # newest first: staging
    assert "staging" in first and "alice" in first and "nothing → v2 100%" in first

    only_dev = alice.get(url + "?env=dev").content.decode()
    assert len(re.findall(r'data-testid="change-', only_dev)) == 14
    assert ">staging</td>" not in only_dev

    for i in range(20):
        deploy_as(world, world.alice, function, "dev", 1 + i % 2)
    page1 = alice.get(url).content.decode()
    assert len(re.findall(r'data-testid="change-', page1)) == 25 and "Page 1 of 2 · 35 changes" in page1
    page2 = alice.get(url + "?page=2").content.decode()
    assert len(re.findall(r'data-testid="change-', page2)) == 10

    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert alice.get(path).status_code == 200
        return len(ctx.captured_queries)

    assert queries(url + "?page=2") == queries(url)  # 10 rows or 25: the same count


def test_the_environments_page_reads_in_a_count_of_queries_that_does_not_grow_with_history(world: World) -> None:
    function = make_function(world)
    for i in range(2):
        deploy_as(world, world.alice, function, "dev", 1 + i % 2)
        deploy_as(world, world.alice, function, "staging", 1 + i % 2)
    alice = signed_in(world.alice)
    url = f"/functions/{function.pk}/environments/"
    with CaptureQueriesContext(connection) as few:
        alice.get(url)
    for i in range(30):
        deploy_as(world, world.alice, function, "dev", 1 + i % 2)
        deploy_as(world, world.alice, function, "staging", 1 + i % 2)
    with CaptureQueriesContext(connection) as many:
        alice.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_status_fragment_polls_only_while_the_binding_is_in_motion(world: World) -> None:
    function = make_function(world)
    binding = deploy_as(world, world.alice, function, "dev", 1)
    bob = signed_in(world.bob)
    url = f"/functions/{function.pk}/environments/dev/status"
    pending = bob.get(url).content.decode()
    assert 'data-state="pending"' in pending and 'hx-trigger="every 500ms"' in pending
    binding.status = Binding.Status.READY
    binding.save(update_fields=["status"])
    ready = bob.get(url).content.decode()
    assert 'data-state="ready"' in ready and "hx-trigger" not in ready and "hx-get" not in ready
    assert 'hx-trigger="every' not in bob.get(f"/functions/{function.pk}/environments/").content.decode()


def _card(page: str, name: str) -> str:
    """The HTML of one environment card."""
    start = page.index(f'data-testid="env-{name}"')
    end = page.find('<section class="card env-card"', start)
    return page[start : end if end != -1 else len(page)]


# --- in the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console_address() -> Iterator[str]:
    """One served console for the module's browser tests (each test makes its own data)."""
    with serving_console() as address:
        yield address


@pytest.fixture
def live(engine: Any, settings: Any, console_address: str) -> dict[str, Any]:  # noqa: F811
    """The console on 127.0.0.1:<port> and functions on localhost:<port> (another origin),
    with a real engine; alice's hello has v1 and v2 published."""
    port = console_address.rsplit(":", 1)[1]
    settings.PUBLIC_URL = f"http://127.0.0.1:{port}"
    settings.STRATUS_FUNCTIONS_URL = f"http://localhost:{port}"
    world = build_world()
    function = make_function(world)
    return {"base": settings.PUBLIC_URL, "world": world, "function": function}


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def binding_url_from_api(user: Any, function: Function, environment: str) -> str:
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/v1/functions/{function.pk}/bindings/{environment}")
    assert response.status_code == 200, response.content
    return str(response.json()["url"])


def screenshot(page: Any, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


@pytest.mark.browser
def test_alice_deploys_twice_then_rolls_back_in_one_click_and_the_gateway_serves_v1_within_a_second(
    browser: Any, live: dict[str, Any]
) -> None:
    base, world, function = live["base"], live["world"], live["function"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        sign_in(page, base, "alice")
        page.goto(f"{base}/functions/{function.pk}/environments/")
        dev = page.get_by_test_id("env-dev")
        assert "Not deployed to dev yet" in dev.inner_text()

        # Deploy v1 (public URL), then v2, from the card's form.
        deploy_form = page.get_by_test_id("deploy-dev")
        deploy_form.locator("select[name=version]").select_option("1")
        deploy_form.locator("select[name=auth_mode]").select_option("public")
        deploy_form.get_by_role("button", name="Deploy to dev").click()
        page.get_by_role("status").filter(has_text="v1 deployed to dev").wait_for()
        assert page.get_by_test_id("serving-dev").inner_text() == "v1 100%"
        page.get_by_test_id("deploy-dev").locator("select[name=version]").select_option("2")
        page.get_by_test_id("deploy-dev").get_by_role("button", name="Deploy to dev").click()
        page.get_by_role("status").filter(has_text="v2 deployed to dev").wait_for()
        assert page.get_by_test_id("serving-dev").inner_text() == "v2 100%"

        url = binding_url_from_api(world.alice, function, "dev")
        assert url.startswith(base.replace("127.0.0.1", "localhost") + "/fn/alpha/web/dev/hello/")
        with httpx.Client(timeout=10) as gateway:
            assert _wait_body(gateway, url, "hello from v2", 15) is not None

            # Rollback: the dialog names what comes back, and who put it there.
            page.get_by_test_id("rollback-dev").get_by_role("button", name="Roll back dev").click()
            dialog = page.get_by_test_id("rollback-dialog-dev")
            dialog.wait_for()
            assert dialog.evaluate("d => d.open")
            detail = dialog.get_by_test_id("rollback-detail-dev-1")
            assert detail.is_visible()
            text = detail.inner_text()
            assert "v1 at 100% of dev" in text and "release 1" in text
            assert detail.locator(".deployed-by").inner_text() == "alice"
            assert "python3.11" in text
            screenshot(page, "rollback-dialog-1280.png")
            confirm = dialog.locator("button[value=confirm]")
            assert confirm.inner_text() == "Roll back to v1"
            confirm.click()
            clicked = time.monotonic()
            served = _wait_body(gateway, url, "hello from v1", 1.0)
            elapsed = time.monotonic() - clicked
        assert served is not None, f"the gateway did not serve v1 within 1 s of the click ({elapsed:.2f} s)"

        # The page shows the restored state.
        page.get_by_role("status").filter(has_text="dev rolled back").wait_for()
        assert page.get_by_test_id("serving-dev").inner_text() == "v1 100%"
        change = TrafficChange.objects.filter(reason="rollback").get()
        assert (change.actor, change.to_traffic) == (world.alice, [{"version": 1, "weight": 100}])
    finally:
        page.close()


def _wait_body(client: httpx.Client, url: str, body: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = client.get(url)
            if answer.status_code == 200 and answer.text == body:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    return None


@pytest.mark.browser
def test_another_version_picked_in_the_rollback_dialog_is_the_one_that_comes_back(
    browser: Any, live: dict[str, Any]
) -> None:
    base, world, function = live["base"], live["world"], live["function"]
    version_services.version_create(
        actor=world.alice, function=function, files={"main.py": (HANDLER % "v3").encode()}, source="files"
    )
    for number in (1, 2, 3):
        deploy_as(world, world.bob, function, "dev", number)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        sign_in(page, base, "bob")
        page.goto(f"{base}/functions/{function.pk}/environments/")
        page.get_by_test_id("rollback-dev").get_by_role("button").click()
        dialog = page.get_by_test_id("rollback-dialog-dev")
        dialog.wait_for()
        assert dialog.get_by_test_id("rollback-detail-dev-2").is_visible()
        assert not dialog.get_by_test_id("rollback-detail-dev-1").is_visible()
        dialog.locator("select[name=version]").select_option("1")
        assert dialog.get_by_test_id("rollback-detail-dev-1").is_visible()
        assert not dialog.get_by_test_id("rollback-detail-dev-2").is_visible()
        assert dialog.locator("button[value=confirm]").inner_text() == "Roll back to v1"
        dialog.locator("button[value=confirm]").click()
        page.get_by_role("status").filter(has_text="dev rolled back").wait_for()
        assert page.get_by_test_id("serving-dev").inner_text() == "v1 100%"
        assert Binding.objects.get(function=function, environment__name="dev").traffic == [
            {"version": 1, "weight": 100}
        ]
    finally:
        page.close()


@pytest.mark.browser
def test_the_binding_status_goes_from_pending_to_ready_without_a_reload(browser: Any, live: dict[str, Any]) -> None:
    base, world, function = live["base"], live["world"], live["function"]
    binding = deploy_as(world, world.alice, function, "dev", 1)  # pending: no worker applies it here
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        sign_in(page, base, "bob")
        page.goto(f"{base}/functions/{function.pk}/environments/")
        status = page.get_by_test_id("status-dev")
        assert status.get_attribute("data-state") == "pending"
        assert page.locator(".env-status-live[aria-live=polite]").count() == 1
        page.evaluate("window.__marker = 'same page'")

        applied = binding_apply_revision(binding_id=binding.pk, revision=binding.revision)  # what the worker does
        assert applied is not None and applied.status == "ready", applied and applied.status_message
        done = time.monotonic()
        page.locator("[data-testid=status-dev][data-state=ready]").wait_for(timeout=1_000)
        assert time.monotonic() - done < 1.0
        assert page.evaluate("window.__marker") == "same page"  # no reload
        assert page.get_by_test_id("status-dev").inner_text().startswith("ready")
        # Settled: the fragment no longer polls.
        assert page.get_by_test_id("status-dev").get_attribute("hx-trigger") is None
        screenshot(page, "environments-1280.png")
    finally:
        page.close()


@pytest.mark.browser
def test_screenshots_of_the_environments_and_timeline_tabs(browser: Any, live: dict[str, Any]) -> None:
    """For a person to look at (STRATUS_SCREENSHOT_DIR, default /tmp/shots/env)."""
    base, world, function = live["base"], live["world"], live["function"]
    for number in (1, 2):
        deploy_as(world, world.alice, function, "dev", number)
    deploy_as(world, world.alice, function, "staging", 1)
    deploy_as(world, world.adam, function, "prod", 1)
    deploy_as(world, world.adam, function, "prod", 2)
    for b in Binding.objects.filter(function=function):
        binding_apply_revision(binding_id=b.pk, revision=b.revision)
    for user, width in (("bob", 1280), ("bob", 390), ("alice", 390)):
        page = browser.new_page(viewport={"width": width, "height": 900})
        try:
            sign_in(page, base, user)
            page.goto(f"{base}/functions/{function.pk}/environments/")
            page.locator("details.env-rules").first.evaluate("d => d.open = true")
            screenshot(page, f"environments-{user}-{width}.png")
            if width == 390:  # what a phone shows of prod's card, at full size
                page.get_by_test_id("env-prod").scroll_into_view_if_needed()
                screenshot(page, f"environments-{user}-{width}-prod.png", full_page=False)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.goto(f"{base}/functions/{function.pk}/timeline/")
            screenshot(page, f"timeline-{user}-{width}.png")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            if user == "alice" and width == 390:
                page.goto(f"{base}/functions/{function.pk}/environments/")
                page.get_by_test_id("rollback-prod").get_by_role("button").click()
                page.get_by_test_id("rollback-dialog-prod").wait_for()
                screenshot(page, "rollback-dialog-390.png")
                page.keyboard.press("Escape")
                assert not page.get_by_test_id("rollback-dialog-prod").evaluate("d => d.open")
        finally:
            page.close()
