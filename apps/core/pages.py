"""The console's pages. For now the shell: login, and a home listing the caller's orgs and
projects; the console pages grow from here."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core.errors import json_error
from apps.tenancy import permissions, selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    orgs = list(selectors.org_list(user=request.user))
    projects = list(selectors.project_list(user=request.user))
    permissions.prefetch_project_permissions(request.user, projects)
    by_org = defaultdict(list)
    for project in projects:
        by_org[project.org_id].append({"project": project, "role": permissions.project_role(request.user, project)})
    rows = [
        {"org": org, "role": permissions.org_role(request.user, org), "projects": by_org.get(org.pk, [])}
        for org in orgs
    ]
    # Where functions answer: an origin of their own, which shares no cookies with the console.
    return render(request, "home.html", {"rows": rows, "functions_url": settings.STRATUS_FUNCTIONS_URL})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(404, "not_found", f"No API route matches {request.path}.")
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(500, "server_error", "An internal error occurred; it has been logged.")
    return render(request, "500.html", status=500)
