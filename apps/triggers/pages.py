"""The Triggers tab of a function's pages: its schedules (create with a live preview, Run
now, pause/resume, delete) and their last 20 fires with links to their logs. Reads go
through the caller-scoped selectors (another org's function or trigger is a 404, as in the
API); writes call the same services as the API, and a refusal comes back as the service's
own message on the page."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError
from apps.core.page_utils import domain_field_errors, or_404, refused
from apps.functions import selectors as function_selectors
from apps.functions.page_tabs import function_page_context
from apps.tenancy import permissions, roles
from apps.tenancy import selectors as tenancy_selectors
from apps.triggers import selectors, services
from apps.triggers.models import MisfirePolicy, OverlapPolicy

WRITE_REASON = "Changing triggers needs the developer role (or higher) on this project."
ACTIONS = {
    "run": services.trigger_run_now,
    "pause": services.trigger_pause,
    "resume": services.trigger_resume,
    "delete": services.trigger_delete,
}
COMMON_ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"]


def _rows(triggers: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for t in triggers:
        # Formatted here: the template's date filter would show it in the server's zone.
        local = t.next_fire_at.astimezone(ZoneInfo(t.timezone)).strftime("%a %Y-%m-%d %H:%M") if t.next_fire_at else ""
        state = "paused" if not t.enabled else ("active" if t.next_fire_at else "finished")
        misfire = "run once" if t.misfire_policy == MisfirePolicy.RUN_ONCE else "skip"
        rows.append({"t": t, "next_local": local, "state": state, "misfire": misfire})
    return rows


def _render(
    request: HttpRequest,
    function: Any,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    can_write = roles.EDIT_CODE in permissions.project_permissions(request.user, function.project)
    fires = selectors.recent_fires(function=function, limit=20)
    logs_url = reverse("function-log-tail", kwargs={"function_id": function.pk})
    context = function_page_context(
        function,
        "triggers",
        rows=_rows(list(selectors.trigger_list(function=function))),
        fires=fires,
        logs_url=logs_url,
        environments=list(tenancy_selectors.environment_list(project=function.project)),
        can_write=can_write,
        write_reason=WRITE_REASON,
        overlap_choices=OverlapPolicy.choices,
        misfire_choices=MisfirePolicy.choices,
        zones=COMMON_ZONES,
        form=form
        or {
            "timezone": "UTC",
            "expression": "0 2 * * 1-5",
            "payload": "{}",
            "overlap_policy": "skip",
            "misfire_policy": "run_once",
            "environment": "dev",
        },
        errors=errors or {},
        general_errors=(errors or {}).get("__all__", []),
    )
    return render(request, "triggers/triggers.html", context, status=status)


@login_required
@require_GET
def triggers_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(function_selectors.function_get, user=request.user, function_id=function_id)
    return _render(request, function)


@login_required
@require_POST
def trigger_create_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(function_selectors.function_get, user=request.user, function_id=function_id)
    post = request.POST
    form = {
        k: post.get(k, "")
        for k in ("environment", "name", "expression", "timezone", "payload", "overlap_policy", "misfire_policy")
    }
    try:
        payload = json.loads(form["payload"] or "{}")
    except ValueError as exc:
        errors = {"payload": [f"Not JSON: {exc}."]}
        return _render(request, function, form=form, errors=errors, status=400)
    fields = {k: form[k] for k in ("name", "expression", "timezone", "overlap_policy", "misfire_policy")}
    try:
        environment = tenancy_selectors.environment_get(project=function.project, name=form["environment"])
        trigger = services.trigger_create(
            actor=request.user, function=function, environment=environment, fields={**fields, "payload": payload}
        )
    except DomainError as exc:
        if exc.status_code == 404 and "environment" not in exc.message.lower():
            raise Http404 from None
        return _render(request, function, form=form, errors=domain_field_errors(exc), status=exc.status_code)
    messages.success(request, f"Trigger '{trigger.name}' created: {trigger.expression} ({trigger.timezone}).")
    return redirect("function-triggers", function_id=function.pk)


@login_required
@require_POST
def trigger_action_page(request: HttpRequest, trigger_id: int, action: str) -> HttpResponse:
    trigger = or_404(selectors.trigger_get, user=request.user, trigger_id=trigger_id)
    if action not in ACTIONS:
        raise Http404
    back = reverse("function-triggers", kwargs={"function_id": trigger.function_id})
    try:
        result = ACTIONS[action](actor=request.user, trigger=trigger)
    except DomainError as exc:
        return refused(request, exc, back)
    words = {
        "run": f"Trigger '{trigger.name}' is running now (request {getattr(result, 'request_id', '')}).",
        "pause": f"Trigger '{trigger.name}' paused: it fires no more until resumed.",
        "resume": f"Trigger '{trigger.name}' resumed: occurrences while paused are not run.",
        "delete": f"Trigger '{trigger.name}' deleted.",
    }
    messages.success(request, words[action])
    return redirect(back)


urlpatterns = [
    path("functions/<int:function_id>/triggers/", triggers_page, name="function-triggers"),
    path("functions/<int:function_id>/triggers/create", trigger_create_page, name="function-trigger-create"),
    path("triggers/<int:trigger_id>/<str:action>", trigger_action_page, name="function-trigger-action"),
]
