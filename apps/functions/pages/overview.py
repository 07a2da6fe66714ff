"""Console pages: a project's overview (functions table, environments, recent activity), its
functions page (the table and the create-function form), and a function's overview tab (the
invoke URL, auth mode and traffic of each environment). The settings tab and delete live in
function_settings.py and are listed here, as page_urls.py includes this module's routes.

Views stay thin: a selector scoped to the caller (another org's object is a 404), the API's
own serializer for input (the same messages next to the same fields), the API's service for
the write (the same rights, audit and refusals)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_http_methods

from apps.core.errors import DomainError, NotFound
from apps.core.origins import functions_origin
from apps.core.page_utils import domain_field_errors, field_errors, or_404
from apps.functions import selectors, services, version_selectors
from apps.functions.api.serializers import FunctionCreateSerializer
from apps.functions.deploy_services import binding_url
from apps.functions.models import Kind, Runtime
from apps.functions.page_tabs import function_page_context
from apps.functions.pages import function_settings
from apps.functions.pages.common import (
    KIND_SHORT,
    active_canaries,
    can_edit,
    environment_summary,
    form_errors,
    function_rows_html,
    function_table,
    project_activity,
    route,
    traffic_segments,
)
from apps.monitoring.metric_selectors import project_metrics_summary
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Project

CREATE_FIELDS = ("name", "runtime", "handler", "kind", "description", "memory_mb", "timeout_s")
DEFAULT_HANDLER = {Runtime.PYTHON311: "main.handler", Runtime.NODE20: "index.handler"}
ACTIVITY_WORDS = {
    "function.create": "created function",
    "function.update": "changed the settings of",
    "function.delete": "deleted function",
    "version.create": "created a version of",
    "binding.deploy": "deployed",
    "binding.rollback": "rolled back",
    "binding.promote": "promoted",
    "binding.rules": "changed the routing rules of",
    "project.create": "created the project",
    "project.update": "changed the project",
    "project.grant_set": "changed who has access to the project",
    "project.grant_remove": "removed someone's access to the project",
}


def _project_context(request: HttpRequest, project: Project, section: str, **extra: Any) -> dict[str, Any]:
    environments = list(tenancy_selectors.environment_list(project=project))
    rows = function_table(project=project, environments=environments)
    return {
        "project": project,
        "section": section,
        "environments": environments,
        "rows": rows,
        "rows_html": function_rows_html(rows),
        "create_right": can_edit(request.user, project, "Creating functions"),
        "runtimes": Runtime.choices,
        "kinds": KIND_SHORT,
        "pipeline_url": route("pipeline", project_id=project.pk),
        **extra,
    }


@login_required
@require_GET
def project_overview(request: HttpRequest, project_id: int) -> HttpResponse:
    project = or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    context = _project_context(request, project, "overview")
    context["env_summary"] = environment_summary(context["rows"], context["environments"])
    # Sparklines of the last 24 h per function (the metrics API's project summary selector).
    summary = project_metrics_summary(project=project, environment=None)
    sparks = {f["function_id"]: f.get("sparkline") for f in summary["functions"]}
    context["rows_html"] = function_rows_html(context["rows"], sparks)
    context["sparklines"] = True
    context["activity"] = [
        {
            "event": e,
            "words": ACTIVITY_WORDS.get(e.action, e.action.replace(".", " ").replace("_", " ")),
            "target": "" if e.target_repr == str(project) else e.target_repr.removeprefix(f"{project}/"),
        }
        for e in project_activity(project=project)
    ]
    context["environments_url"] = route("project-environments", project_id=project.pk)
    return render(request, "functions/project_overview.html", context)


def _create_input(post: Any) -> dict[str, Any]:
    """The form as the API's JSON body: blank optional fields are left out, as a client would."""
    return {name: post.get(name, "").strip() for name in CREATE_FIELDS if post.get(name, "").strip()}


@login_required
@require_http_methods(["GET", "POST"])
def project_functions(request: HttpRequest, project_id: int) -> HttpResponse:
    project = or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    if request.method == "GET":
        form = {"runtime": Runtime.PYTHON311, "handler": DEFAULT_HANDLER[Runtime.PYTHON311], "kind": Kind.EVENT}
        return render(request, "functions/functions.html", _project_context(request, project, "functions", form=form))

    form = {name: request.POST.get(name, "") for name in CREATE_FIELDS}
    serializer = FunctionCreateSerializer(data=_create_input(request.POST))
    if not serializer.is_valid():
        errors = field_errors(serializer.errors)
        status = 400
    else:
        try:
            function = services.function_create(actor=request.user, project=project, **serializer.validated_data)
        except NotFound:
            raise Http404 from None
        except DomainError as exc:
            errors = domain_field_errors(exc)
            if exc.code == "already_exists":
                errors = {"name": [exc.message]}
            status = exc.status_code
        else:
            messages.success(request, f"Function {function.name} created. Upload a zip to make its first version.")
            return redirect("function-versions", function_id=function.pk)
    errors = form_errors(errors, CREATE_FIELDS)
    context = _project_context(request, project, "functions", form=form, errors=errors, open_create=True)
    return render(request, "functions/functions.html", context, status=status)


@login_required
@require_GET
def function_overview(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    project = function.project
    environments = list(tenancy_selectors.environment_list(project=project))
    bindings = {b.environment_id: b for b in selectors.binding_list(function=function)}
    canaries = active_canaries(b.pk for b in bindings.values()) if bindings else {}
    origin = functions_origin()
    cards = []
    for env in environments:
        binding = bindings.get(env.pk)
        if binding is not None:
            binding.function = function  # the URL needs names only: no query per card
            binding.environment = env
        cards.append(
            {
                "environment": env,
                "binding": binding,
                # The URL the API's binding serializer reports (the functions' own origin).
                "url": binding_url(binding)
                if binding
                else origin.url_for(org=project.org.slug, project=project.slug, env=env.name, function=function.name),
                "segments": traffic_segments(binding.traffic, canaries.get(binding.pk)) if binding else [],
                "canary": canaries.get(binding.pk) if binding else None,
            }
        )
    latest = version_selectors.version_list(function=function).first()
    context = function_page_context(
        function,
        "overview",
        cards=cards,
        latest=latest,
        environments_url=route("function-environments", function_id=function.pk),
    )
    return render(request, "functions/overview.html", context)


urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/", project_overview, name="project"),
    path("projects/<int:project_id>/functions/", project_functions, name="project-functions"),
    path("functions/<int:function_id>/", function_overview, name="function"),
    *function_settings.urlpatterns,
]
