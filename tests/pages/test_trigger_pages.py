"""The Triggers tab in a real browser against the served console: a developer creates a
schedule with the live preview (typed, debounced, the API's message for a bad expression),
runs it now, pauses and resumes it; a viewer sees the actions disabled with the reason; the
fires table links to the Logs tab by request id. Screenshots at 1280 and 390 px
(STRATUS_SCREENSHOT_DIR, default a temp dir), no CSP violation, no sideways scroll."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from apps.functions import services as function_services
from apps.tenancy.models import Environment
from apps.triggers import services as trigger_services
from apps.triggers.models import FireStatus, Trigger, TriggerFire
from tests.conftest import build_world, serving_console
from tests.pages.test_alert_pages import RECORD_CSP, sign_in

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def console() -> Iterator[str]:
    with serving_console() as address:
        yield f"http://{address}"


def trigger_world() -> tuple[Any, Any]:
    world = build_world()
    fn = function_services.function_create(
        actor=world.alice, project=world.web, name="reports", runtime="python3.11", handler="main.handler"
    )
    return world, fn


def test_create_with_live_preview_run_pause_resume(browser, console, transactional_db) -> None:
    world, fn = trigger_world()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        sign_in(page, console, "bob")
        page.goto(f"{console}/functions/{fn.pk}/")
        page.get_by_test_id("function-tabs").get_by_text("Triggers").click()
        page.wait_for_url(f"{console}/functions/{fn.pk}/triggers/")
        # The default expression's preview shows on load
        expect(page.locator(".preview-description")).to_have_text("at 02:00, Monday through Friday, UTC")
        # Typing a bad expression: the API's message naming the rule
        page.get_by_test_id("expression").fill("0 25 * * *")
        expect(page.locator(".preview .error")).to_have_text("expression: hour: '25' is outside 0-23.")
        # A good one in New York: the description and ten times
        page.get_by_test_id("expression").fill("30 1 * * *")
        page.get_by_test_id("timezone").fill("America/New_York")
        expect(page.locator(".preview-description")).to_have_text("at 01:30, America/New_York")
        expect(page.locator(".preview-times li")).to_have_count(10)
        form = page.get_by_test_id("trigger-create")
        form.locator("input[name=name]").fill("nightly")
        form.locator("textarea[name=payload]").fill('{"report": "daily"}')
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        created = Trigger.objects.get(name="nightly")
        assert (created.expression, created.timezone, created.payload) == (
            "30 1 * * *",
            "America/New_York",
            {"report": "daily"},
        )
        assert "Trigger 'nightly' created" in page.content()
        assert page.get_by_test_id("trigger-nightly").is_visible()

        # A bad payload comes back next to its field, the form kept
        form.locator("input[name=name]").fill("broken")
        page.get_by_test_id("expression").fill("rate(10 minutes)")
        form.locator("textarea[name=payload]").fill("{not json")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert "Not JSON" in page.content() and not Trigger.objects.filter(name="broken").exists()
        assert page.get_by_test_id("expression").input_value() == "rate(10 minutes)"

        # Pause, resume
        page.goto(f"{console}/functions/{fn.pk}/triggers/")
        page.get_by_test_id("pause-nightly").locator("button").click()
        page.wait_for_load_state("load")
        assert "paused" in page.get_by_test_id("trigger-nightly").inner_text()
        assert Trigger.objects.get(name="nightly").enabled is False
        page.get_by_test_id("resume-nightly").locator("button").click()
        page.wait_for_load_state("load")
        assert Trigger.objects.get(name="nightly").enabled is True

        # Run now (not deployed: the fire fails with the reason) and the fires table links to logs
        page.get_by_test_id("run-nightly").locator("button").click()
        page.wait_for_load_state("load")
        fire = TriggerFire.objects.get(trigger=created, manual=True)
        for _ in range(100):
            fire.refresh_from_db()
            if fire.status != FireStatus.RUNNING:
                break
            page.wait_for_timeout(100)
        assert fire.status == "failed"
        page.reload()
        row = page.get_by_test_id(f"fire-{fire.pk}")
        assert "not deployed to 'dev'" in row.inner_text()
        href = row.locator("a").get_attribute("href")
        assert href == f"/functions/{fn.pk}/logs/?request_id={fire.request_id}&environment=dev"
        page.context.clear_cookies()

        # A viewer reads; the actions are disabled with the reason shown
        sign_in(page, console, "carol")
        page.goto(f"{console}/functions/{fn.pk}/triggers/")
        assert page.get_by_test_id("run-nightly").locator("button").is_disabled()
        assert "needs the developer role" in page.get_by_test_id("run-nightly").inner_text()
        assert page.locator("[data-testid=trigger-create] button[type=submit]").is_disabled()
    finally:
        page.close()


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("STRATUS_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_of_the_triggers_tab(browser, console, transactional_db, tmp_path, width) -> None:
    world, fn = trigger_world()
    dev = Environment.objects.get(project=world.web, name="dev")
    nightly = trigger_services.trigger_create(
        actor=world.bob,
        function=fn,
        environment=dev,
        fields={"name": "nightly-report", "expression": "0 2 * * 1-5", "timezone": "Europe/Berlin"},
    )
    trigger_services.trigger_create(
        actor=world.bob,
        function=fn,
        environment=dev,
        fields={"name": "sync", "expression": "rate(5 minutes)", "enabled": False},
    )
    from django.utils import timezone

    now = timezone.now()
    TriggerFire.objects.create(
        trigger=nightly,
        scheduled_at=now,
        status="ok",
        request_id="3f1c1f0e-1d7a-4bb5-9d53-000000000001",
        fired_at=now,
        finished_at=now,
        duration_ms=41.7,
        version=3,
    )
    TriggerFire.objects.create(
        trigger=nightly,
        scheduled_at=now,
        manual=True,
        status="error",
        request_id="3f1c1f0e-1d7a-4bb5-9d53-000000000002",
        fired_at=now,
        finished_at=now,
        duration_ms=12.0,
        version=3,
        error="ValueError: no rows for 2026-11-30",
    )
    shots = shots_dir(tmp_path)
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(RECORD_CSP)
    page = context.new_page()
    try:
        sign_in(page, console, "bob")
        page.goto(f"{console}/functions/{fn.pk}/triggers/")
        page.locator(".preview-description").wait_for()
        page.screenshot(path=str(shots / f"function-triggers-{width}.png"), full_page=True)
        assert page.evaluate("window.__csp") == []
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the Triggers tab scrolls sideways by {overflow}px at {width}px"
    finally:
        context.close()
