"""The console's home (/): the caller's organizations, each with its projects and the caller's
role in both, and where functions answer."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path

from apps.tenancy import permissions, selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    orgs = list(selectors.org_list(user=request.user))
    projects = list(selectors.project_list(user=request.user))
    permissions.prefetch_project_permissions(request.user, projects)
    by_org: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for project in projects:
        by_org[project.org_id].append({"project": project, "role": permissions.project_role(request.user, project)})
    rows = [
        {"org": org, "role": permissions.org_role(request.user, org), "projects": by_org.get(org.pk, [])}
        for org in orgs
    ]
    # Where functions answer: an origin of their own, which shares no cookies with the console.
    return render(request, "tenancy/home.html", {"rows": rows, "functions_url": settings.STRATUS_FUNCTIONS_URL})


urlpatterns: list[URLPattern] = [
    path("", home, name="home"),
]
