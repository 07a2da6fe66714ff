"""Reads of runs, scoped to the caller: runs of projects outside their reach answer 404."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core.actors import Actor
from apps.core.errors import NotFound
from apps.pipelines.models import Run, RunLogLine
from apps.tenancy import permissions
from apps.tenancy.models import Project


def run_list(*, project: Project, branch: str | None = None, state: str | None = None) -> QuerySet[Run]:
    runs = Run.objects.filter(project=project).select_related("created_by", "approved_by", "retry_of", "superseded_by")
    if branch:
        runs = runs.filter(branch=branch)
    if state:
        runs = runs.filter(state=state)
    return runs.order_by("-number")


def run_get(*, user: Actor, run_id: int | str) -> Run:
    try:
        pk = int(run_id)
    except (TypeError, ValueError):
        raise NotFound("Run not found.") from None
    run = (
        Run.objects.select_related(
            "project__org", "repository", "created_by", "approved_by", "retry_of", "superseded_by"
        )
        .filter(pk=pk, project__in=permissions.visible_projects(user))
        .first()
    )
    if run is None:
        raise NotFound("Run not found.")
    return run


def run_log(*, run: Run, after: int = 0) -> QuerySet[RunLogLine]:
    return RunLogLine.objects.filter(run=run, seq__gt=after).order_by("seq")
