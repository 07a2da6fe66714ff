"""The audit log of an organization and a project's activity: the events of
selectors.audit_event_list (the API's: only the orgs the viewer manages), filtered by actor,
action, object and time range with the API's filter serializer, newest first, 50 a page.
Two queries for the filter choices and one for the page, whatever the number of rows."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from apps.audit.api.views import AuditFilterSerializer
from apps.audit.models import AuditEvent
from apps.tenancy import selectors
from apps.tenancy.models import Organization, Project
from apps.tenancy.pages.common import (
    PAGE_SIZE,
    is_org_manager,
    org_context,
    org_or_404,
    org_reason,
    parse,
    project_or_404,
)

FILTERS = ("actor", "action", "target_type", "target_id", "since", "until")
TARGET_TYPES = (
    "project",
    "environment",
    "function",
    "release",
    "repository",
    "team",
    "invitation",
    "user",
    "organization",
    "apitoken",
)


def _changes(value: Any) -> list[str]:
    """An event's summary of changes as short lines: ``name: old → new``."""
    if not isinstance(value, dict):
        return [str(value)] if value else []
    lines = []
    for key, change in value.items():
        if isinstance(change, list) and len(change) == 2:
            old, new = ("—" if v in (None, "") else v for v in change)
            lines.append(f"{key}: {old} → {new}")
        else:
            lines.append(f"{key}: {change}")
    return lines


def _page(request: HttpRequest, qs: QuerySet[AuditEvent], base: str) -> dict[str, Any]:
    """Validate the filters (the API's serializer and messages), then one page of events."""
    raw = {key: request.GET.get(key, "").strip() for key in (*FILTERS, "q")}
    data, errors = parse(AuditFilterSerializer, {k: v for k, v in raw.items() if v and k != "q"})
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    events: list[AuditEvent] = []
    if not errors:
        qs = qs.filter(**_extra_filters(data))
        if raw["q"]:
            qs = qs.filter(target_repr__icontains=raw["q"])
        start = (number - 1) * PAGE_SIZE
        events = list(qs[start : start + PAGE_SIZE + 1])
    has_next = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    for event in events:
        event.change_lines = _changes(event.changes)  # type: ignore[attr-defined]
    kept = {k: v for k, v in raw.items() if v}

    def link(n: int) -> str:
        return f"{base}?{urlencode({**kept, 'page': str(n)})}"

    return {
        "events": events,
        "filters": raw,
        "filter_errors": errors,
        "filtered": bool(kept),
        "page_number": number,
        "newer_url": link(number - 1) if number > 1 else "",
        "older_url": link(number + 1) if has_next else "",
        "target_types": TARGET_TYPES,
    }


def _extra_filters(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.get("actor"):
        out["actor_repr"] = data["actor"]
    for key in ("action", "target_type", "target_id"):
        if data.get(key):
            out[key] = data[key]
    if data.get("since"):
        out["created_at__gte"] = data["since"]
    if data.get("until"):
        out["created_at__lt"] = data["until"]
    return out


def _choices(qs: QuerySet[AuditEvent]) -> dict[str, list[str]]:
    return {
        "actors": list(qs.order_by("actor_repr").values_list("actor_repr", flat=True).distinct()),
        "actions": list(qs.order_by("action").values_list("action", flat=True).distinct()),
    }


def org_events(user: Any, org: Organization) -> QuerySet[AuditEvent]:
    return selectors.audit_event_list(user=user, filters={"org": org.slug})


@login_required
@require_GET
def org_audit_page(request: HttpRequest, org: str) -> HttpResponse:
    obj = org_or_404(request, org)
    if not is_org_manager(request, obj):
        context = org_context(request, obj, "audit", refusal=org_reason("Reading the audit log"))
        return render(request, "tenancy/audit.html", context, status=403)
    events = org_events(request.user, obj)
    page = _page(request, events, f"/orgs/{obj.slug}/audit/")
    context = org_context(request, obj, "audit", **page, **_choices(events))
    return render(request, "tenancy/audit.html", context)


def project_events(user: Any, project: Project) -> QuerySet[AuditEvent]:
    """The project's events: about the project itself, its environments, functions and
    releases (by id), and objects deleted since (by the project's path in their name)."""
    from django.apps import apps

    ids: dict[str, list[str]] = {
        "project": [str(project.pk)],
        "environment": [str(pk) for pk in project.environments.values_list("pk", flat=True)],
    }
    for target_type, label, lookup in (
        ("function", "functions.Function", "project"),
        ("release", "releases.Release", "binding__function__project"),
        ("repository", "pipelines.Repository", "project"),
    ):
        try:
            model = apps.get_model(label)
            pks = model.objects.filter(**{lookup: project}).values_list("pk", flat=True)
            ids[target_type] = [str(pk) for pk in pks]
        except LookupError:  # an app not installed: its events by name only
            continue
    match = Q(target_repr__startswith=f"{project}/")
    for target_type, pks in ids.items():
        if pks:
            match |= Q(target_type=target_type, target_id__in=pks)
    return org_events(user, project.org).filter(match)


@login_required
@require_GET
def project_activity_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    context: dict[str, Any] = {"project": project, "section": "activity", "org": project.org}
    if not is_org_manager(request, project.org):
        context["refusal"] = org_reason("Reading a project's activity (the audit log)")
        return render(request, "tenancy/activity.html", context, status=403)
    events = project_events(request.user, project)
    context.update(_page(request, events, f"/projects/{project.pk}/activity/"), **_choices(events))
    return render(request, "tenancy/activity.html", context)


urlpatterns: list[URLPattern] = [
    path("orgs/<str:org>/audit/", org_audit_page, name="org-audit"),
    path("projects/<int:project_id>/activity/", project_activity_page, name="project-activity"),
]
