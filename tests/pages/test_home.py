import pytest

from tests.conftest import build_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_anonymous_visitor_is_sent_to_login_and_sees_their_projects_after_signing_in(live_server, page):
    # Given bob, a developer granted on alpha/web, and charlie's project in another org
    build_world()

    # When an anonymous visitor opens the console
    page.goto(live_server.url + "/")

    # Then they land on the login page
    assert page.url == live_server.url + "/login/?next=/"
    assert page.locator("h1").inner_text() == "Sign in"

    # When bob signs in
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "bob-pw-123")
    page.click("button[type=submit]")

    # Then the home page lists his org and the project he may see, with its environments
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_test_id("username").inner_text() == "bob"
    org = page.get_by_test_id("org-alpha")
    assert "Alpha" in org.locator("h2").inner_text()
    row = page.get_by_test_id("project-web")
    assert row.locator("td").nth(2).inner_text() == "developer"
    assert row.locator(".pill").all_inner_texts() == ["dev", "staging", "prod"]
    assert row.locator(".pill.protected").all_inner_texts() == ["prod"]
    # and nothing of the other org
    assert page.get_by_test_id("org-other").count() == 0
    assert page.get_by_test_id("project-secret-project").count() == 0
    # and the stylesheet and htmx were served
    assert page.evaluate("typeof window.htmx") == "object"


def test_wrong_password_shows_an_error(live_server, page):
    build_world()
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "Your username and password didn't match. Please try again."


def test_sign_out_returns_to_login(live_server, page):
    build_world()
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    page.get_by_test_id("username").click()  # the user menu
    page.get_by_role("menuitem", name="Sign out").click()
    page.wait_for_url(live_server.url + "/login/")
    page.goto(live_server.url + "/")
    assert page.url == live_server.url + "/login/?next=/"
