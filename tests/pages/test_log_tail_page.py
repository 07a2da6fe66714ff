"""The function's Logs tab in headless Chromium against a served console with a real engine:
a line printed by an invoke shows within 1 s, pause holds new lines behind an "N new" badge,
a request id opens its lines and its invocation record; and the Code tab's logs panel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.monitoring.sink import get_sink
from tests.conftest import build_world, serving_console
from tests.engine.conftest import deploy_latest, engine, make_function, sandbox_dir  # noqa: F401

SHOTS = Path(__file__).resolve().parents[2] / "bench-results" / "screenshots"
HANDLER = """
def handler(event, context):
    print("hello from", event.get("who", "nobody"))
    print("[ERROR] second line for", event.get("who", "nobody"))
    return {"ok": True}
"""


@pytest.fixture
def live(engine: Any, settings: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    # The records flusher runs as in a served console (tests otherwise flush by hand).
    sink = get_sink()
    sink.flush_interval_s = 0.5
    sink.start()
    with serving_console() as address:
        settings.PUBLIC_URL = f"http://{address}"
        world = build_world()
        fn = make_function(world, "greeter", {"main.py": HANDLER})
        deploy_latest(world, fn)
        yield {"base": settings.PUBLIC_URL, "world": world, "function": fn}
    sink.stop()
    sink.flush_interval_s = 0


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def invoke(live: dict[str, Any], who: str) -> str:
    import httpx

    from apps.tenancy import token_services

    if "token" not in live:
        _, live["token"] = token_services.token_create(
            user=live["world"].alice, name="t", scopes=["read", "write", "invoke"]
        )
    answer = httpx.post(
        f"{live['base']}/api/v1/functions/{live['function'].pk}/invoke",
        json={"environment": "dev", "event": {"who": who}},
        headers={"Authorization": f"Bearer {live['token']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["request_id"])


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


@pytest.mark.browser
def test_the_logs_tab_tails_an_invoke_pauses_and_opens_a_request(browser: Any, live: dict[str, Any]) -> None:
    base, fn = live["base"], live["function"]
    invoke(live, "warm-up")  # the cold start is not what is measured
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, base, "carol")  # a viewer may watch
    page.goto(f"{base}/functions/{fn.pk}/logs/")
    page.wait_for_selector("[data-testid=log-state]:has-text('live')")
    assert page.get_by_role("link", name="Logs").get_attribute("aria-current") is not None

    # A line printed by an invoke shows within 1 s
    started = time.monotonic()
    request_id = invoke(live, "alice")
    page.wait_for_selector("[data-testid=log-lines] td:has-text('hello from alice')", timeout=5000)
    # (the invoke answers once the function has run: its lines were printed before that)
    assert time.monotonic() - started < 1.0 + 0.5, "the line took more than 1 s after the invoke answered"

    # The search term is highlighted, on the server's filter
    page.fill("[data-testid=log-filters] input[name=q]", "second")
    page.click("[data-testid=log-filters] button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=log-lines] .logs-text')].every(td => td.textContent.includes('second'))"
    )
    assert page.locator("[data-testid=log-lines] mark").first.inner_text() == "second"
    page.fill("[data-testid=log-filters] input[name=q]", "")
    page.click("[data-testid=log-filters] button[type=submit]")

    # Pause: new lines wait behind the badge
    page.get_by_role("button", name="Pause").click()
    invoke(live, "bob")
    badge = page.get_by_test_id("new-badge")
    badge.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('[data-testid=new-badge]').textContent === '2 new'")
    assert page.locator("[data-testid=log-lines] td:has-text('hello from bob')").count() == 0
    shot(page, "logs-paused-1280.png")
    badge.click()
    page.wait_for_selector("[data-testid=log-lines] td:has-text('hello from bob')")
    assert badge.is_hidden()

    # A request id: its lines and its invocation record
    page.click(f"[data-testid=log-lines] a[data-request='{request_id}'] >> nth=0")
    panel = page.get_by_test_id("request-panel")
    panel.wait_for(state="visible")
    page.wait_for_selector("[data-testid=invocation] dd[data-fact=status]")
    assert page.locator("[data-testid=invocation] dd[data-fact=status]").inner_text() == "ok"
    assert "ms" in page.locator("[data-testid=invocation] dd[data-fact=duration]").inner_text()
    assert page.locator("[data-testid=invocation] dd[data-fact=cold-start]").inner_text() == "no"
    assert "MB peak" in page.locator("[data-testid=invocation] dd[data-fact=memory]").inner_text()
    texts = panel.locator(".logs-text").all_inner_texts()
    assert texts == ["hello from alice", "[ERROR] second line for alice"]
    shot(page, "logs-request-1280.png")

    # History: the stored lines
    page.get_by_test_id("history-form").get_by_role("button", name="Search").click()
    page.wait_for_selector("[data-testid=history-status]:has-text('lines')")
    assert page.locator("[data-history-lines] tr").count() >= 6
    with page.expect_download() as download:
        page.get_by_role("button", name="Download .ndjson").click()
    assert b"hello from bob" in Path(download.value.path()).read_bytes()

    narrow = browser.new_page(viewport={"width": 390, "height": 844})
    sign_in(narrow, base, "carol")
    narrow.goto(f"{base}/functions/{fn.pk}/logs/")
    narrow.wait_for_selector("[data-testid=log-state]:has-text('live')")
    shot(narrow, "logs-390.png")
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    assert errors == []
