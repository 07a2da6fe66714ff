"""Console pages of releases: a function's Releases tab (the plan builder, the live cards of
its active releases, its past releases), one release's page, the card's live fragment, the
release actions, and a project's releases.

Every read goes through a selector scoped to the caller (another org's function or release
answers 404, as in the API); every write calls the same service as the API
(apps/releases/api/views.py) and a refusal comes back in words on the page it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError
from apps.core.page_utils import or_404, refused
from apps.functions import selectors as function_selectors
from apps.functions import version_selectors
from apps.functions.models import Function, TrafficChange
from apps.functions.page_tabs import function_page_context
from apps.releases import selectors, services
from apps.releases.models import Release
from apps.releases.pages import builder
from apps.releases.pages.present import action_reason, badge_state, release_card
from apps.releases.selectors import RELEASE_RELATED
from apps.tenancy import permissions
from apps.tenancy import selectors as tenancy_selectors

PAGE_SIZE = 20
ACTIONS: dict[str, Callable[..., Release]] = {
    "promote": services.release_promote,
    "promote-all": services.release_promote_all,
    "pause": services.release_pause,
    "resume": services.release_resume,
    "abort": services.release_abort,
    "approve": services.release_approve,
    "reject": services.release_reject,
}
DONE = {
    "promote": "Promoted",
    "promote-all": "Promoted to 100%",
    "pause": "Paused",
    "resume": "Resumed",
    "abort": "Aborted",
    "approve": "Approved",
    "reject": "Rejected",
}


def _function(request: HttpRequest, function_id: int) -> Function:
    return or_404(function_selectors.function_get, user=request.user, function_id=function_id)


def _release(request: HttpRequest, function_id: int, release_id: int) -> Release:
    release = or_404(selectors.release_get, user=request.user, release_id=release_id)
    if release.binding.function_id != function_id:
        raise Http404
    return release


def _page(request: HttpRequest, releases: QuerySet[Release]) -> Any:
    """A page of releases (two queries: the count and the rows, related rows joined)."""
    return Paginator(releases, PAGE_SIZE).get_page(request.GET.get("page"))


def _rows(releases: Any) -> list[dict[str, Any]]:
    return [{"release": r, "badge": badge_state(r.state)} for r in releases]


def _tab_context(
    request: HttpRequest,
    function: Function,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    environments = list(tenancy_selectors.environment_list(project=function.project))
    versions = list(version_selectors.version_list(function=function))
    if values is None:
        values = builder.form_values(None, environments, versions)
        # A link may name the version and environment to start with (the Code tab's "Start a
        # release…" after a publish); anything else in the form keeps its default.
        values.update({key: request.GET[key].strip() for key in ("version", "environment") if request.GET.get(key)})
    preview = builder.preview(user=request.user, function=function, values=values, environments=environments)
    if errors:
        preview = {**preview, "errors": {**preview.get("errors", {}), **errors}}
    releases = selectors.release_list(function=function)
    here = reverse("function-releases", kwargs={"function_id": function.pk})
    active = [release_card(r, request.user, here=here) for r in releases.filter(state__in=Release.ACTIVE_STATES)]
    past = _page(request, releases.exclude(state__in=Release.ACTIVE_STATES))
    deployable = [e for e in environments if permissions.can_deploy(request.user, e)]
    start_reason = (
        ""
        if deployable
        else "Starting a release needs the developer role (or higher) on this project, or a deployer grant on "
        "an environment."
    )
    return function_page_context(
        function,
        "releases",
        environments=[{"env": e, "deployable": e in deployable} for e in environments],
        versions=versions,
        values=values,
        preview=preview,
        errors=preview.get("errors", {}),
        cards=active,
        past=past,
        past_rows=_rows(past),
        start_reason=start_reason,
        here=here,
    )


@login_required
@require_GET
def function_releases(request: HttpRequest, function_id: int) -> HttpResponse:
    function = _function(request, function_id)
    return render(request, "releases/function_releases.html", _tab_context(request, function))


@login_required
@require_POST
def release_preview(request: HttpRequest, function_id: int) -> HttpResponse:
    """The plan preview fragment (htmx, as the form changes): nothing is written."""
    function = _function(request, function_id)
    environments = list(tenancy_selectors.environment_list(project=function.project))
    values = builder.form_values(request.POST, environments, [])
    preview = builder.preview(user=request.user, function=function, values=values, environments=environments)
    return render(request, "releases/_preview.html", {"preview": preview, "errors": preview.get("errors", {})})


@login_required
@require_POST
def release_start(request: HttpRequest, function_id: int) -> HttpResponse:
    """Preview (intent=preview) or start the release; a refusal re-renders the form as it was
    filled, with the errors next to their fields."""
    function = _function(request, function_id)
    environments = list(tenancy_selectors.environment_list(project=function.project))
    values = builder.form_values(request.POST, environments, [])
    if request.POST.get("intent") == "preview":
        return render(request, "releases/function_releases.html", _tab_context(request, function, values))
    result = builder.start(user=request.user, function=function, values=values)
    if isinstance(result, Release):
        messages.success(
            request,
            f"Release {result.pk} started: v{result.version.number} in {result.binding.environment.name}"
            + (" is waiting for approval." if result.state == Release.State.AWAITING_APPROVAL else "."),
        )
        return redirect(reverse("function-release", kwargs={"function_id": function.pk, "release_id": result.pk}))
    context = _tab_context(request, function, values, errors=result)
    return render(request, "releases/function_releases.html", context, status=400)


def _card_context(request: HttpRequest, release: Release, here: str) -> dict[str, Any]:
    return {"card": release_card(release, request.user, here=here), "here": here}


@login_required
@require_GET
def release_page(request: HttpRequest, function_id: int, release_id: int) -> HttpResponse:
    release = _release(request, function_id, release_id)
    function = release.binding.function
    changes = list(
        TrafficChange.objects.filter(release=release).select_related("actor", "version").order_by("created_at", "id")
    )
    context = function_page_context(
        function,
        "releases",
        release=release,
        changes=changes,
        **_card_context(request, release, request.path),
    )
    context["tab_label"] = f"Releases / {release.pk}"
    return render(request, "releases/release.html", context)


@login_required
@require_GET
def release_card_fragment(request: HttpRequest, function_id: int, release_id: int) -> HttpResponse:
    """The live card (polled by htmx while the release is active). 204 when nothing changed
    since the fingerprint the page holds, so buttons a person is about to press stay put."""
    release = _release(request, function_id, release_id)
    context = _card_context(request, release, _safe_back(request.GET.get("here"), release))
    if request.GET.get("since") == context["card"].fingerprint:
        return HttpResponse(status=204)
    return render(request, "releases/_card.html", context)


def _safe_back(here: str | None, release: Release) -> str:
    """Where an action returns: the release's page or its function's Releases tab, nothing else."""
    function_id = release.binding.function_id
    allowed = {
        reverse("function-release", kwargs={"function_id": function_id, "release_id": release.pk}),
        reverse("function-releases", kwargs={"function_id": function_id}),
    }
    return (
        here
        if here in allowed
        else reverse("function-release", kwargs={"function_id": function_id, "release_id": release.pk})
    )


@login_required
@require_POST
def release_action(request: HttpRequest, function_id: int, release_id: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404
    release = _release(request, function_id, release_id)
    back = _safe_back(request.POST.get("next"), release)
    try:
        result = ACTIONS[action](actor=request.user, release=release)
    except DomainError as exc:
        # A refusal of rights reads as the disabled button's reason.
        if exc.status_code == 403:
            exc = DomainError(action_reason(request.user, release, action) or exc.message)
        return refused(request, exc, back)
    messages.success(
        request,
        f"{DONE[action]}: release {result.pk} is {badge_state(result.state).replace('_', ' ')} "
        f"at {result.canary_percent}%.",
    )
    return redirect(back)


@login_required
@require_GET
def project_releases(request: HttpRequest, project_id: int) -> HttpResponse:
    project = or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    releases = (
        Release.objects.filter(binding__function__project=project)
        .select_related(*RELEASE_RELATED)
        .order_by("-created_at", "-id")
    )
    active = list(releases.filter(state__in=Release.ACTIVE_STATES))
    past = _page(request, releases.exclude(state__in=Release.ACTIVE_STATES))
    context = {
        "project": project,
        "section": "releases",
        "active_rows": _rows(active),
        "past": past,
        "past_rows": _rows(past),
        "has_functions": Function.objects.filter(project=project).exists(),
    }
    return render(request, "releases/project_releases.html", context)


F = "functions/<int:function_id>/releases/"
R = F + "<int:release_id>/"
urlpatterns = [
    path("projects/<int:project_id>/releases/", project_releases, name="project-releases"),
    path(F, function_releases, name="function-releases"),
    path(F + "start", release_start, name="function-release-start"),
    path(F + "preview", release_preview, name="function-release-preview"),
    path(R, release_page, name="function-release"),
    path(R + "card", release_card_fragment, name="function-release-card"),
    path(R + "<str:action>", release_action, name="function-release-action"),
]
