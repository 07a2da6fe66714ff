"""Console pages for a project's pipeline: its runs and webhook deliveries; one run with its
steps and its log, live over ``/ws/runs/{id}/``; and buttons that call the same services as
the API (run a branch head, redeliver, cancel, retry, approve, reject).

Views stay thin: a selector scopes every object to the signed-in user (another org's run
answers 404), a service does the work and enforces the rights, and a refusal comes back as a
message on the page it was asked from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError, NotFound
from apps.pipelines import delivery_services, repository_services, run_selectors, run_services
from apps.pipelines.models import Repository, Run
from apps.tenancy import selectors as tenancy_selectors

LIST_LIMIT = 50
RUN_ACTIONS: dict[str, Callable[..., Run]] = {
    "cancel": run_services.run_cancel,
    "retry": run_services.run_retry,
    "approve": run_services.run_approve,
    "reject": run_services.run_reject,
}
# Which actions a run in each state offers (the page hides the others as the state changes).
ACTION_STATES = {
    "cancel": "queued running waiting_approval",
    "retry": "succeeded failed canceled",
    "approve": "waiting_approval",
    "reject": "waiting_approval",
}


def _or_404(read: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return read(**kwargs)
    except NotFound:
        raise Http404 from None


def _refused(request: HttpRequest, exc: DomainError, back: str) -> HttpResponseRedirect:
    messages.error(request, exc.message)
    return redirect(back)


@login_required
@require_GET
def pipeline_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    repository = Repository.objects.filter(project=project).first()
    context = {
        "project": project,
        "repository": repository,
        "webhooks": repository_services.webhook_urls(repository) if repository else {},
        "runs": list(run_selectors.run_list(project=project)[:LIST_LIMIT]),
        "deliveries": list(delivery_services.delivery_list(project=project).select_related("run")[:LIST_LIMIT]),
    }
    return render(request, "pipelines/pipeline.html", context)


@login_required
@require_POST
def pipeline_run(request: HttpRequest, project_id: int) -> HttpResponse:
    """Run the head of a branch (the "redeploy latest" button)."""
    project = _or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    back = f"/projects/{project.pk}/pipeline/"
    try:
        run = run_services.run_create_manual(
            actor=request.user, project=project, branch=request.POST.get("branch", "").strip()
        )
    except DomainError as exc:
        return _refused(request, exc, back)
    return redirect(f"/runs/{run.pk}/")


@login_required
@require_POST
def delivery_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _or_404(delivery_services.delivery_get, user=request.user, delivery_id=delivery_id)
    back = f"/projects/{delivery.repository.project_id}/pipeline/"
    try:
        again = delivery_services.delivery_redeliver(actor=request.user, delivery=delivery)
    except DomainError as exc:
        return _refused(request, exc, back)
    run = f", run #{again.run.number}" if again.run else ""
    messages.success(request, f"Delivery {delivery.delivery_id or delivery.pk} redelivered: {again.outcome}{run}.")
    return redirect(back)


@login_required
@require_GET
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _or_404(run_selectors.run_get, user=request.user, run_id=run_id)
    context = {
        "run": run,
        "project": run.project,
        "steps": list(run.steps.order_by("index")),
        "actions": ACTION_STATES,
    }
    return render(request, "pipelines/run.html", context)


@login_required
@require_POST
def run_action(request: HttpRequest, run_id: int, action: str) -> HttpResponse:
    if action not in RUN_ACTIONS:
        raise Http404
    run = _or_404(run_selectors.run_get, user=request.user, run_id=run_id)
    try:
        result = RUN_ACTIONS[action](actor=request.user, run=run)
    except DomainError as exc:
        return _refused(request, exc, f"/runs/{run.pk}/")
    return redirect(f"/runs/{result.pk}/")  # retry: the new run
