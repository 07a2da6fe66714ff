"""The function's Logs tab (/functions/{id}/logs/): the live tail over the websocket
(/ws/functions/{id}/logs/, the session's), with its filters, highlighted terms, pause with an
"N new" badge, a request's lines and invocation record, a search of stored history over a time
range and its download (the API's GET /api/v1/functions/{id}/logs and /invocations). The page
renders the newest lines on the server too, so it reads without JavaScript; frontend/static/
logs.js takes over from there."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET

from apps.core.page_utils import or_404
from apps.functions import selectors as function_selectors
from apps.functions.page_tabs import function_page_context
from apps.monitoring import selectors, tail
from apps.monitoring.levels import LEVELS
from apps.monitoring.models import Stream
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


urlpatterns: list[URLPattern] = [
    path("functions/<int:function_id>/logs/", function_log_tail, name="function-log-tail"),
]
