"""The function's Metrics tab in headless Chromium against a served console with a real
engine: invocations through the gateway during a release (v1 stable, v2 canary that fails),
the tab draws its four charts with the timeline's markers from the data it fetched, shows
canary vs stable side by side, refetches on a range switch; and the project overview's
sparklines. Screenshots at 1280 and 390 px in bench-results/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from apps.functions import version_services
from apps.functions.deploy_services import binding_apply_revision
from apps.functions.models import Binding
from apps.monitoring.models import MetricMinute
from apps.monitoring.sink import get_sink
from apps.releases import services as release_services
from apps.tenancy.models import Environment
from tests.conftest import build_world, serving_console
from tests.engine.conftest import deploy_latest, engine, make_function, sandbox_dir, wait_for, wait_revision  # noqa: F401

SHOTS = Path(__file__).resolve().parents[2] / "bench-results" / "screenshots"
STABLE = "def handler(event, context):\n    return {'ok': True}\n"
CANARY = "def handler(event, context):\n    raise RuntimeError('canary breaks')\n"


@pytest.fixture
def live(engine: Any, settings: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    # The records flusher runs as in a served console (tests otherwise flush by hand).
    sink = get_sink()
    sink.flush_interval_s = 0.3
    sink.start()
    with serving_console() as address:
        settings.PUBLIC_URL = f"http://{address}"
        world = build_world()
        fn = make_function(world, "checkout", {"main.py": STABLE})
        deploy_latest(world, fn, "prod")
        yield {"base": settings.PUBLIC_URL, "world": world, "function": fn, "engine": engine}
    sink.stop()
    sink.flush_interval_s = 0


def release_canary(live: dict[str, Any]) -> Any:
    """v2 (which fails) released into prod at 50 %, applied as the worker would."""
    world, fn = live["world"], live["function"]
    version_services.version_create(actor=world.alice, function=fn, files={"main.py": CANARY.encode()}, source="files")
    release = release_services.release_start(
        actor=world.alice,
        function=fn,
        environment=Environment.objects.get(project=world.web, name="prod"),
        version=fn.versions.get(number=2),
        plan={"steps": [50, 100], "advance": "manual"},
    )
    binding = Binding.objects.get(function=fn, environment__name="prod")
    applied = binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    assert applied is not None and applied.status == "ready", applied and applied.status_message
    wait_revision(live["engine"], fn, "prod")
    return release


def call_gateway(live: dict[str, Any], n: int) -> dict[str, int]:
    fn = live["function"]
    path = f"/fn/{fn.project.org.slug}/{fn.project.slug}/prod/{fn.name}/"
    served: dict[str, int] = {}
    with httpx.Client(base_url=live["base"], timeout=30) as http:
        for _ in range(n):
            version = http.get(path).headers.get("X-Stratus-Version", "?")
            served[version] = served.get(version, 0) + 1
    return served


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pw-123")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def metrics_response(page: Any, action: Any, **wanted: str) -> dict[str, Any]:
    """The body of the metrics API answer (matching ``wanted`` query values) that ``action``
    makes the page fetch."""

    def matches(response: Any) -> bool:
        if "/metrics?" not in response.url:
            return False
        query = {k: v[0] for k, v in parse_qs(urlparse(response.url).query).items()}
        return all(query.get(k) == v for k, v in wanted.items()) and ("group_by" in query) == ("group_by" in wanted)

    with page.expect_response(matches, timeout=15000) as info:
        action()
    response = info.value
    assert response.status == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.browser
def test_the_metrics_tab_draws_charts_markers_and_canary_vs_stable(browser: Any, live: dict[str, Any]) -> None:
    base, fn = live["base"], live["function"]
    # Given traffic on v1, then a release of v2 at 50 % and traffic on both
    assert call_gateway(live, 6) == {"1": 6}
    release = release_canary(live)
    served = call_gateway(live, 30)
    assert set(served) == {"1", "2"}, served
    # (the sink flushes every 0.3 s: wait until the rollups hold all 36)
    everything = MetricMinute.objects.filter(function=fn, environment_id=0, version=0)
    wait_for(lambda: sum(everything.values_list("invocations", flat=True)) == 36)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, base, "carol")  # a viewer may read metrics
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # (after /favicon.ico)

    # When the Metrics tab opens (1 h by default)
    body = metrics_response(page, lambda: page.goto(f"{base}/functions/{fn.pk}/metrics/"), step="60")
    # Then it fetched the last hour at a 1-minute step, with every invocation and error in it
    assert len(body["timestamps"]) in (60, 61)
    assert sum(body["series"]["invocations"]) == 36
    assert sum(body["series"]["errors"]) == served["2"]
    page.wait_for_selector("[data-testid=metrics][data-range='1h']")
    assert page.get_by_role("link", name="Metrics").get_attribute("aria-current") is not None
    # and drew the four charts (a uPlot canvas each), sharing the fetched points
    for chart in ("traffic", "duration", "starts", "capacity"):
        figure = page.locator(f"[data-chart={chart}]")
        assert figure.locator("canvas").count() == 1, chart
        assert figure.get_attribute("data-points") == str(len(body["timestamps"]))
    # and the timeline's markers: the deploy of v1 and the release's start, in prod
    markers = page.get_by_test_id("metrics-markers").locator("li")
    assert [m.get_attribute("data-kind") for m in markers.all()] == ["deploy", "release"]
    assert "release started v2" in markers.nth(1).inner_text()
    # and, with the release running, canary vs stable side by side from group_by=version
    card = page.get_by_test_id("metrics-release")
    card.wait_for(state="visible")
    assert card.get_attribute("data-versions") == "1,2"
    rows = card.locator("tbody tr")
    assert rows.nth(0).locator("th").inner_text() == "v1 (stable)"
    assert rows.nth(1).locator("th").inner_text() == "v2 (canary)"
    assert rows.nth(1).locator("td").nth(0).inner_text() == str(served["2"])
    assert rows.nth(1).locator("td").nth(1).inner_text() == "100 %"
    assert rows.nth(0).locator("td").nth(1).inner_text() == "0 %"
    assert card.locator("[data-chart=release-errors] canvas").count() == 1
    assert f"Release {release.pk} in prod" in card.inner_text()
    # the cursor is shared: hovering one chart moves the others' cursors
    other_cursor = page.locator("[data-chart=duration] .u-cursor-x")
    before = other_cursor.evaluate("e => e.style.transform")
    page.locator("[data-chart=traffic] .u-over").hover(position={"x": 300, "y": 50})
    page.wait_for_function(
        "b => document.querySelector('[data-chart=duration] .u-cursor-x').style.transform !== b", arg=before
    )
    assert "300px" in other_cursor.evaluate("e => e.style.transform")
    shot(page, "metrics-1280.png")

    # When the range switches to 7 days, the page refetches at a 1-hour step
    body = metrics_response(page, lambda: page.locator("input[name=range][value='7d']").check(), step="3600")
    assert len(body["timestamps"]) in (168, 169)
    assert sum(body["series"]["invocations"]) == 36
    page.wait_for_selector("[data-testid=metrics][data-range='7d']")
    assert page.locator("[data-chart=traffic]").get_attribute("data-points") == str(len(body["timestamps"]))
    assert "range=7d" in page.url
    # and to 24 h with one environment (dev saw nothing: zero invocations, no markers)
    page.select_option("select[name=environment]", "dev")
    page.wait_for_function("() => new URL(location.href).searchParams.get('environment') === 'dev'")
    body = metrics_response(page, lambda: page.locator("input[name=range][value='24h']").check(), environment="dev")
    assert sum(body["series"]["invocations"]) == 0
    page.wait_for_selector("[data-testid=metrics][data-range='24h']")
    assert markers.count() == 0
    assert not errors, errors

    # At 390 px the charts stack and fit the screen
    narrow = browser.new_page(viewport={"width": 390, "height": 844})
    sign_in(narrow, base, "carol")
    metrics_response(narrow, lambda: narrow.goto(f"{base}/functions/{fn.pk}/metrics/"), step="60")
    narrow.wait_for_selector("[data-chart=capacity] canvas")
    narrow.get_by_test_id("metrics-release").wait_for(state="visible")
    width = narrow.locator("[data-chart=traffic]").bounding_box()["width"]
    assert width <= 390
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    shot(narrow, "metrics-390.png")

    # And the project overview draws a sparkline of the last 24 h per function
    page.goto(f"{base}/projects/{fn.project_id}/")
    spark = page.get_by_test_id("spark-checkout").locator("svg")
    assert spark.get_attribute("aria-label") == f"36 invocations, {served['2']} errors in the last 24 hours"
    assert spark.locator("polyline").count() == 2
    shot(page, "project-sparklines-1280.png")
