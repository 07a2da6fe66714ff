"""Headless Chromium (Debian's `chromium` package) driven by Playwright.

Playwright's own browser download is not used (no network here): we pass
executable_path. `.ci/run` installs chromium; on a developer machine without it these
tests are skipped with that reason, except under CI where a missing browser is an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("STRATUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


# Module scope, not session: while it is open, Playwright's sync API keeps an event loop
# running in this thread, and later tests that start their own loop (asyncio.run) would fail.
@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run
    # in a thread with a running loop unless told it is safe (it is: one thread here).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing browser test is reported with Python's own traceback format. Playwright's sync
    API switches greenlets, which on CPython 3.11 can leave the AST constructor's recursion
    counter off; pytest's long format parses the test's source with ``ast`` and then dies with
    ``SystemError: AST constructor recursion depth mismatch``, an INTERNALERROR that ends the
    whole session and hides the failure (pytest-dev/pytest#10763, python/cpython#106905)."""
    if item.get_closest_marker("browser") is None:
        yield
        return
    option = item.config.option
    previous = option.tbstyle
    option.tbstyle = "native"
    try:
        yield
    finally:
        option.tbstyle = previous
