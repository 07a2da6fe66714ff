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

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError, NotFound
from apps.pipelines import delivery_selectors, delivery_services, repository_services, run_selectors, run_services
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


class RepositoryForm(forms.Form):
    """Connect or change the project's repository. The credentials are write-only: the page
    never shows them back, only their kind."""

    url = forms.CharField(max_length=500)
    default_branch = forms.CharField(max_length=200, initial="main")
    credentials = forms.ChoiceField(
        choices=[
            ("keep", "Keep what is stored"),
            ("none", "None (a public repository)"),
            (Repository.Credentials.TOKEN, "HTTPS token (token, or user:token)"),
            (Repository.Credentials.SSH_KEY, "SSH deploy key (private key)"),
        ],
        initial="keep",
    )
    credentials_value = forms.CharField(required=False, max_length=16384, strip=False, widget=forms.Textarea)
    rotate_secret = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (
            data.get("credentials") in (Repository.Credentials.TOKEN, Repository.Credentials.SSH_KEY)
            and not (data.get("credentials_value") or "").strip()
        ):
            self.add_error("credentials_value", "Paste the token or the private key.")
        return data


def _pipeline_context(project: Any, **extra: Any) -> dict[str, Any]:
    repository = Repository.objects.filter(project=project).first()
    initial = {"url": repository.url, "default_branch": repository.default_branch} if repository else {}
    return {
        "project": project,
        "section": "pipeline",
        "repository": repository,
        "form": RepositoryForm(initial=initial),
        "webhooks": repository_services.webhook_urls(repository) if repository else {},
        "runs": list(run_selectors.run_list(project=project)[:LIST_LIMIT]),
        "deliveries": list(delivery_selectors.delivery_list(project=project).select_related("run")[:LIST_LIMIT]),
        "bad_signatures": delivery_selectors.bad_signatures(project=project),
        **extra,
    }


@login_required
@require_GET
def pipeline_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    return render(request, "pipelines/pipeline.html", _pipeline_context(project))


@login_required
@require_POST
def pipeline_repository(request: HttpRequest, project_id: int) -> HttpResponse:
    """Connect or change the repository; a new webhook secret is shown on this answer only."""
    project = _or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)
    back = f"/projects/{project.pk}/pipeline/"
    form = RepositoryForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")
        return redirect(back)
    data = form.cleaned_data
    changes: dict[str, Any] = {}
    if data["credentials"] == "none":
        changes["credentials"] = None
    elif data["credentials"] != "keep":
        changes["credentials"] = {"kind": data["credentials"], "value": data["credentials_value"]}
    try:
        result = repository_services.repository_set(
            actor=request.user,
            project=project,
            url=data["url"],
            default_branch=data["default_branch"],
            rotate_secret=data["rotate_secret"],
            **changes,
        )
    except DomainError as exc:
        return _refused(request, exc, back)
    if result.webhook_secret is None:
        messages.success(request, "Repository saved.")
        return redirect(back)
    # Rendered, not redirected: the secret goes into this page and nowhere else (no session).
    return render(request, "pipelines/pipeline.html", _pipeline_context(project, webhook_secret=result.webhook_secret))


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
    delivery = _or_404(delivery_selectors.delivery_get, user=request.user, delivery_id=delivery_id)
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
        "section": "pipeline",
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
