"""A function's Code tab (the WebIDE, issue 15): Monaco, self-hosted, on the draft API.

The page renders the draft's file list (readable without JavaScript) and the settings the
editor script (frontend/static/code.js) reads: the API's URLs, whether the user may write
and, if not, why. Every read and write then goes through the draft API with the session and
the CSRF header, so the API's rules (roles, ETags, limits) are the editor's rules.

Monaco injects inline styles, so this page, and only this page, answers with the console's
Content-Security-Policy plus ``style-src 'unsafe-inline'``; the middleware keeps a policy a
view sets. Scripts and workers stay 'self'-only.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET

from apps.core.middleware import CONTENT_SECURITY_POLICY
from apps.core.page_utils import or_404
from apps.functions import draft_selectors, selectors, version_selectors
from apps.functions.models import Function
from apps.functions.page_tabs import function_page_context
from apps.functions.pages.common import can_edit, route
from apps.tenancy import selectors as tenancy_selectors

CODE_PAGE_CSP = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@cache
def monaco_version() -> str:
    """The pinned monaco-editor of frontend/package.json: the name of its static folder."""
    package = json.loads((settings.BASE_DIR / "frontend" / "package.json").read_text())
    return str(package["dependencies"]["monaco-editor"])


def run_environments(function: Function) -> list[dict[str, Any]]:
    """The run panel's targets: each environment of the project, whether the draft may run
    there (not in a protected one) and what it serves now ("v3", "v3 90% · v4 10%")."""
    serving: dict[int, tuple[str, list[int]]] = {}
    for binding in selectors.binding_list(function=function):
        weights = binding.split().weights()
        if weights:
            label = f"v{weights[0][0]}" if len(weights) == 1 else " · ".join(f"v{n} {w}%" for n, w in weights)
            serving[binding.environment_id] = (label, [number for number, _ in weights])
    return [
        {
            "name": environment.name,
            "protected": environment.protected,
            "serving": serving.get(environment.pk, ("", []))[0],
            "versions": serving.get(environment.pk, ("", []))[1],
        }
        for environment in tenancy_selectors.environment_list(project=function.project)
    ]


COMPARE_VERSIONS = 50  # the Changes view offers the newest versions; older ones are on the Versions tab


@login_required
@require_GET
def code_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    right = can_edit(request.user, function.project, "Editing the code")
    api = reverse("draft", kwargs={"function_id": function.pk})
    context = function_page_context(
        function,
        "code",
        files=draft_selectors.draft_tree(function=function),
        edit_right=right,
        api=api,
        monaco_base=static(f"vendor/monaco/{monaco_version()}/vs"),
        environments_url=reverse("function-environments", kwargs={"function_id": function.pk}),
        run_environments=run_environments(function),
        lsp_path=f"/ws/functions/{function.pk}/lsp/",  # console/routing.py (websocket routes have no reverse)
        run_right=can_edit(request.user, function.project, "Running the function"),
        compare_versions=version_selectors.version_list(function=function)[:COMPARE_VERSIONS],
        urls={
            "draft_invoke": reverse("draft-invoke", kwargs={"function_id": function.pk}),
            "invoke": reverse("function-invoke", kwargs={"function_id": function.pk}),
            "test_events": reverse("test-event-list", kwargs={"function_id": function.pk}),
            "templates": reverse("test-event-templates"),
            "versions": reverse("version-list", kwargs={"function_id": function.pk}),
            "deploy": reverse("function-deploy", kwargs={"function_id": function.pk}),
            "bindings": reverse("binding-list", kwargs={"function_id": function.pk}),
            "releases": route("function-releases", function_id=function.pk),
        },
    )
    response = render(request, "functions/code.html", context)
    response["Content-Security-Policy"] = CODE_PAGE_CSP
    return response


urlpatterns: list[URLPattern] = [
    path("functions/<int:function_id>/code/", code_page, name="function-code"),
]
