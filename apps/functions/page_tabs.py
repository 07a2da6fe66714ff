"""The tabs of a function's pages, in one place (frontend/templates/functions/function_base.html).
A tab shows once its route exists: Code, Logs and Metrics appear when the WebIDE and the
live-log pages add page routes named function-code, function-log-tail and function-metrics
(function-logs is the API's log query, not a page)."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

FUNCTION_TABS = (
    ("overview", "Overview", "function"),
    ("code", "Code", "function-code"),
    ("versions", "Versions", "function-versions"),
    ("environments", "Environments & traffic", "function-environments"),
    ("releases", "Releases", "function-releases"),
    ("timeline", "Timeline", "function-timeline"),
    ("logs", "Logs", "function-log-tail"),
    ("metrics", "Metrics", "function-metrics"),
    ("triggers", "Triggers", "function-triggers"),
    ("settings", "Settings", "function-settings"),
)


def function_tabs(function: Any) -> list[dict[str, str]]:
    tabs = []
    for key, label, name in FUNCTION_TABS:
        try:
            url = reverse(name, kwargs={"function_id": function.pk})
        except NoReverseMatch:
            continue
        tabs.append({"key": key, "label": label, "url": url})
    return tabs


def function_page_context(function: Any, tab: str, **extra: Any) -> dict[str, Any]:
    """What function_base.html needs: the project (sidebar, breadcrumbs), the tabs, the current one."""
    labels = {key: label for key, label, _ in FUNCTION_TABS}
    return {
        "project": function.project,
        "section": "functions",
        "function": function,
        "function_tabs": function_tabs(function),
        "tab": tab,
        "tab_label": labels.get(tab, "") if tab != "overview" else "",
        **extra,
    }
