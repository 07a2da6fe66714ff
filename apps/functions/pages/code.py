"""A function's Code tab (the WebIDE, issue 15): Monaco, self-hosted, on the draft API.

The page renders the draft's file list (readable without JavaScript) and the settings the
editor script (frontend/static/code.js) reads: the API's URLs, whether the user may write
and, if not, why. It also carries what the editor would first ask the API for (the tree and
the first file, as the draft API answers them, ETags included: ``draft_state``), so the file
opens as soon as Monaco is up. Every later read and every write goes through the draft API
with the session and the CSRF header, so the API's rules (roles, ETags, limits) are the
editor's rules.

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
from apps.functions import draft_selectors, draft_services, selectors, version_selectors
from apps.functions.api.draft_serializers import DraftTreeSerializer
from apps.functions.api.version_serializers import file_payload
from apps.functions.models import DraftFile, Function
from apps.functions.page_tabs import function_page_context
from apps.functions.pages.common import can_edit, route
from apps.tenancy import selectors as tenancy_selectors

CODE_PAGE_CSP = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
# code.js opens files up to 1 MB (bigger ones read-only); the first one comes in the page
# when it is at most this big, else code.js asks the API for it.
EDITABLE_BYTES = 1024 * 1024
EMBEDDED_FILE_BYTES = 256 * 1024


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


def first_file(tree: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The file the editor opens first (code.js's firstFile): a text file it can edit, at the
    top of the tree if there is one (the handler usually is), in path order."""
    editable = [f for f in tree if not f["binary"] and f["size"] <= EDITABLE_BYTES]
    return next((f for f in editable if "/" not in f["path"]), editable[0] if editable else None)


def draft_state(function: Function, tree: list[dict[str, Any]]) -> dict[str, Any]:
    """What code.js would first ask the draft API for, in the page: GET draft/'s answer and,
    unless it is over EMBEDDED_FILE_BYTES, GET draft/files/<first file>'s with its ETag. The
    editor opens the file as soon as Monaco is up, without a round trip (bench/ide.py)."""
    etag = draft_services.revision_etag(function.draft_revision)
    state: dict[str, Any] = {
        "tree": DraftTreeSerializer({"revision": function.draft_revision, "etag": etag, "files": tree}).data,
        "first": None,
    }
    first = first_file(tree)
    if first is not None and first["size"] <= EMBEDDED_FILE_BYTES:
        draft_file = DraftFile.objects.filter(function=function, path=first["path"]).first()
        if draft_file is not None:  # else deleted meanwhile: code.js asks for the tree's first file
            payload = file_payload(draft_file.path, bytes(draft_file.content))
            state["first"] = {"path": draft_file.path, "etag": payload["sha256"], "data": payload}
    return state


@login_required
@require_GET
def code_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    right = can_edit(request.user, function.project, "Editing the code")
    api = reverse("draft", kwargs={"function_id": function.pk})
    files = draft_selectors.draft_tree(function=function)
    context = function_page_context(
        function,
        "code",
        files=files,
        draft_state=draft_state(function, files),
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
