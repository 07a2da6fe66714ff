"""The function's Logs tab and Metrics tab.

Logs (/functions/{id}/logs/): the live tail over the websocket
(/ws/functions/{id}/logs/, the session's), with its filters, highlighted terms, pause with an
"N new" badge, a request's lines and invocation record, a search of stored history over a time
range and its download (the API's GET /api/v1/functions/{id}/logs and /invocations). The page
renders the newest lines on the server too, so it reads without JavaScript; frontend/static/
logs.js takes over from there.

Metrics (/functions/{id}/metrics/): charts of the metrics API (GET /api/v1/functions/{id}/
metrics, drawn by frontend/static/metrics.js with uPlot) over 1 h, 24 h or 7 d, with the
binding timeline's deploys, release steps and rollbacks as markers and, while a release runs,
its canary beside its stable version (group_by=version). The page holds what the script
needs (the markers, the active releases) and, without JavaScript, a table of the last hour."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.core.page_utils import or_404
from apps.functions import selectors as function_selectors
from apps.functions.models import TrafficChange
from apps.functions.page_tabs import function_page_context
from apps.functions.pages.environments import REASON_WORDS
from apps.monitoring import metric_selectors, selectors, tail
from apps.monitoring.levels import LEVELS
from apps.monitoring.models import Stream
from apps.releases import selectors as release_selectors
from apps.tenancy import selectors as tenancy_selectors

SERVER_LINES = 100


@login_required
@require_GET
def function_log_tail(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(function_selectors.function_get, user=request.user, function_id=function_id)
    environments = list(tenancy_selectors.environment_list(project=function.project))
    wanted = {k: request.GET.get(k, "") for k in ("environment", "level", "q", "request_id", "version")}
    lines: list = []
    filter_error = ""
    try:
        filters = tail.resolve_environment(
            function.project_id, tail.parse_filters({k: v for k, v in wanted.items() if v})
        )
    except tail.FilterError as exc:
        filter_error = exc.message
    else:
        qs = filters.narrow(selectors.log_line_list(function=function, environment=None, filters={}))
        if filters.pattern is None:
            lines = list(qs[:SERVER_LINES])[::-1]
    context = function_page_context(
        function,
        "logs",
        environments=environments,
        levels=LEVELS,
        streams=Stream.values,
        wanted=wanted,
        lines=lines,
        filter_error=filter_error,
        ws_path=f"/ws/functions/{function.pk}/logs/",
        api=f"/api/v1/functions/{function.pk}/",
    )
    return render(request, "monitoring/log_tail.html", context)


# The chart ranges: (label, seconds, step). Each step is a rollup table's own (minute rows up
# to 24 h, hour rows for 7 d), so every point is one stored row (metric_selectors).
METRIC_RANGES = (("1h", 3600, 60), ("24h", 86400, 60), ("7d", 7 * 86400, 3600))
# Which timeline entries are markers, and their kind (metrics.js colours them).
MARKER_KINDS: dict[str, str] = {
    TrafficChange.Reason.DEPLOY: "deploy",
    TrafficChange.Reason.PROMOTE: "deploy",
    TrafficChange.Reason.RELEASE_START: "release",
    TrafficChange.Reason.STEP: "release",
    TrafficChange.Reason.COMPLETE: "release",
    TrafficChange.Reason.GATE_FAILURE: "rollback",
    TrafficChange.Reason.ABORT: "rollback",
    TrafficChange.Reason.ROLLBACK: "rollback",
}
MAX_MARKERS = 500


def metric_markers(*, function: Any) -> list[dict[str, Any]]:
    """The binding timeline's deploys, release steps and rollbacks of the last 7 days (the
    widest range), oldest first: {ts (Unix s), kind, environment, label}."""
    since = timezone.now() - timedelta(seconds=METRIC_RANGES[-1][1])
    changes = (
        function_selectors.function_history(function=function)
        .filter(created_at__gte=since, reason__in=list(MARKER_KINDS))
        .order_by("-created_at", "-id")[:MAX_MARKERS]
    )
    markers = []
    for change in changes:
        version = f" v{change.version.number}" if change.version is not None else ""
        markers.append(
            {
                "ts": int(change.created_at.timestamp()),
                "kind": MARKER_KINDS[change.reason],
                "environment": change.binding.environment.name,
                "label": f"{REASON_WORDS.get(change.reason, change.reason)}{version}",
            }
        )
    return markers[::-1]


@cache
def uplot_version() -> str:
    """The pinned uplot of frontend/package.json: the name of its static folder (build.mjs)."""
    package = json.loads((settings.BASE_DIR / "frontend" / "package.json").read_text())
    return str(package["dependencies"]["uplot"])


@login_required
@require_GET
def function_metrics(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(function_selectors.function_get, user=request.user, function_id=function_id)
    environments = list(tenancy_selectors.environment_list(project=function.project))
    names = {e.name for e in environments}
    wanted_env = request.GET.get("environment", "")
    if wanted_env not in names:
        wanted_env = ""
    wanted_range = request.GET.get("range", "1h")
    if wanted_range not in {r[0] for r in METRIC_RANGES}:
        wanted_range = "1h"
    # Releases running now, canary vs stable (metrics.js reads group_by=version for them).
    releases = []
    for binding in function_selectors.binding_list(function=function).select_related("environment"):
        release = release_selectors.active_release(binding=binding)
        if release is not None:
            releases.append(
                {
                    "id": release.pk,
                    "environment": binding.environment.name,
                    "canary": release.version.number,
                    "stable": release.stable_version.number if release.stable_version is not None else None,
                    "state": release.state,
                }
            )
    # Without JavaScript: this hour's figures (the same selector as the API).
    environment = next((e for e in environments if e.name == wanted_env), None)
    query = metric_selectors.series_query_parse(
        start=None, end=None, step=3600, names="invocations,errors,duration_p99"
    )
    hour = metric_selectors.metric_series(function=function, environment=environment, version=None, query=query)
    context = function_page_context(
        function,
        "metrics",
        environments=environments,
        wanted_env=wanted_env,
        wanted_range=wanted_range,
        ranges=[r[0] for r in METRIC_RANGES],
        uplot_version=uplot_version(),
        this_hour={name: values[-1] for name, values in hour["series"].items()},
        metrics_config={
            "api": f"/api/v1/functions/{function.pk}/metrics",
            "ranges": {label: {"seconds": seconds, "step": step} for label, seconds, step in METRIC_RANGES},
            "markers": metric_markers(function=function),
            "releases": releases,
            "refresh_s": 30,
        },
    )
    return render(request, "monitoring/metrics.html", context)


urlpatterns: list[URLPattern] = [
    path("functions/<int:function_id>/logs/", function_log_tail, name="function-log-tail"),
    path("functions/<int:function_id>/metrics/", function_metrics, name="function-metrics"),
]
