"""Alerts in the console, in a real browser against the served console: the firing banner
on the function's and project's pages links to the rule; the Alerts page creates a rule;
the rule page shows its history. Screenshots at 1280 and 390 px (STRATUS_SCREENSHOT_DIR,
default a temp dir), no CSP violation, no horizontal scroll of the page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.alerts import services as alert_services
from apps.alerts.models import AlertRule
from apps.functions import services as function_services
from apps.monitoring.models import Invocation
from apps.tenancy.models import Environment
from tests.conftest import build_world, serving_console

pytestmark = [pytest.mark.browser]

RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture(scope="module")
def console() -> Iterator[str]:
    with serving_console() as address:
        yield f"http://{address}"


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def firing_world() -> tuple[Any, Any, AlertRule]:
    """alpha/web with function `api`: a rule on prod's error rate, firing after 6 errors of 10."""
    world = build_world()
    fn = function_services.function_create(
        actor=world.alice, project=world.web, name="api", runtime="python3.11", handler="main.handler"
    )
    prod = Environment.objects.get(project=world.web, name="prod")
    rule, _ = alert_services.alert_rule_create(
        actor=world.bob,
        function=fn,
        environment=prod,
        fields={
            "name": "checkout errors",
            "metric": "error_rate",
            "comparison": ">",
            "threshold": 0.05,
            "window_s": 300,
            "min_invocations": 5,
            "for_s": 0,
            "severity": "critical",
            "notify_email": False,
        },
    )
    alert_services.alert_rule_create(
        actor=world.bob,
        function=fn,
        environment=prod,
        fields={"name": "slow p99", "metric": "duration_p99", "comparison": ">", "threshold": 800, "window_s": 600},
    )
    now = timezone.now()
    Invocation.objects.bulk_create(
        Invocation(
            request_id=f"r{i}",
            function=fn,
            environment=prod,
            version=1,
            trigger="http",
            started_at=now - timedelta(seconds=5),
            duration_ms=12.0,
            status="error" if i < 6 else "ok",
        )
        for i in range(10)
    )
    assert alert_services.alert_rule_evaluate(rule_id=rule.pk, now=now) == "firing"
    return world, fn, rule


def test_banner_links_to_the_firing_rule_and_the_rules_page_creates_one(browser, console, transactional_db) -> None:
    world, fn, rule = firing_world()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        sign_in(page, console, "carol")  # a viewer sees the banner too
        # The function's overview: the banner names the firing rule
        page.goto(f"{console}/functions/{fn.pk}/")
        banner = page.get_by_test_id("alert-banner")
        assert banner.is_visible()
        assert "checkout errors" in banner.inner_text() and "error_rate > 0.05 over 5 min" in banner.inner_text()
        assert "slow p99" not in banner.inner_text()
        # A page of another project section shows it as well; the link leads to the rule
        page.goto(f"{console}/projects/{world.web.pk}/releases/")
        page.get_by_test_id("alert-banner-rule").click()
        page.wait_for_url(f"{console}/projects/{world.web.pk}/alerts/{rule.pk}/")
        assert page.get_by_test_id("alert-rule-state").inner_text() == "firing"
        assert "ok" in page.get_by_test_id("alert-rule-history").inner_text()
        assert page.get_by_test_id("alert-event").count() == 1
        # A viewer's forms are disabled, with the reason shown
        assert page.locator("[data-testid=alert-rule-edit] button[type=submit]").is_disabled()
        assert "needs the developer role" in page.get_by_test_id("alert-rule-edit").inner_text()
        page.context.clear_cookies()

        # bob (developer) creates a rule from the Alerts page
        sign_in(page, console, "bob")
        page.goto(f"{console}/projects/{world.web.pk}/alerts/")
        assert page.get_by_test_id("alert-rule-row").count() == 2
        form = page.get_by_test_id("alert-rule-create")
        form.locator("input[name=name]").fill("cold starts")
        form.locator("select[name=metric]").select_option("cold_starts")
        form.locator("select[name=comparison]").select_option(">=")
        form.locator("input[name=threshold]").fill("10")
        form.locator("input[name=window_min]").fill("15")
        form.locator("button[type=submit]").click()
        created = AlertRule.objects.get(name="cold starts")
        page.wait_for_url(f"{console}/projects/{world.web.pk}/alerts/{created.pk}/")
        assert (created.metric, created.comparison, created.threshold, created.window_s) == (
            "cold_starts",
            ">=",
            10,
            900,
        )
        assert "Alert rule 'cold starts' created." in page.content()
        # A bad threshold comes back naming the rule
        page.goto(f"{console}/projects/{world.web.pk}/alerts/")
        form.locator("input[name=name]").fill("rate")
        form.locator("select[name=metric]").select_option("error_rate")
        form.locator("input[name=threshold]").fill("5")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert page.url == f"{console}/projects/{world.web.pk}/alerts/"
        assert not AlertRule.objects.filter(name="rate").exists()
        assert "the threshold must be from 0 to 1" in page.content()
        # Silencing the firing rule shows it on the rule
        page.goto(f"{console}/projects/{world.web.pk}/alerts/{rule.pk}/")
        page.locator("[data-testid=alert-rule-silence] button[type=submit]").first.click()
        page.wait_for_url(f"{console}/projects/{world.web.pk}/alerts/{rule.pk}/")
        assert page.get_by_test_id("alert-silenced").is_visible()
    finally:
        page.close()


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("STRATUS_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_of_the_alert_pages(browser, console, transactional_db, tmp_path, width) -> None:
    world, fn, rule = firing_world()
    shots = shots_dir(tmp_path)
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(RECORD_CSP)
    page = context.new_page()
    try:
        sign_in(page, console, "bob")
        for name, url in (
            ("function-overview-banner", f"/functions/{fn.pk}/"),
            ("project-alerts", f"/projects/{world.web.pk}/alerts/"),
            ("alert-rule", f"/projects/{world.web.pk}/alerts/{rule.pk}/"),
        ):
            page.goto(console + url)
            page.wait_for_load_state("load")
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
            assert page.evaluate("window.__csp") == [], name
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
    finally:
        context.close()
