"""Phase 4, the deploy: every packaged version into the trigger's environment
(``preview-<branch>`` created for preview triggers), directly, or by ``release_start`` with
the trigger's plan when a version already serves there. A protected environment parks the
run in ``waiting_approval`` before the deploy (``run.pipeline["approval"] = "deploy"``),
unless it was approved before its steps; ``run_approve`` resumes it (``run_resume``) and
the deploy runs as the approver."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.core.errors import DomainError
from apps.functions.deploy_services import binding_url
from apps.functions.deploy_services import deploy as binding_deploy
from apps.functions.models import Binding, Function, Version
from apps.pipelines import run_services
from apps.pipelines.models import Run, RunStep
from apps.pipelines.runner.claim import finish, ours, park_for_approval, stop_if_canceled
from apps.pipelines.runner.environment import target_environment
from apps.pipelines.runner.job import Job, Plan
from apps.pipelines.runner.logs import LogWriter
from apps.pipelines.runner.steps import step_end, step_start
from apps.releases.services import release_start
from apps.tenancy.models import Environment


def deploy(job: Job, plan: Plan) -> str:
    """The deploy, as the pipeline into an unprotected environment, as the approver when the
    run was approved before its steps; a protected one parks the run for an approval."""
    run, log = job.run, job.log
    assert plan.trigger is not None and plan.deploy is not None  # package() ended the run otherwise
    if stopped := stop_if_canceled(run):
        return stopped
    try:
        environment = target_environment(run, plan.trigger, create=True)
    except DomainError as exc:
        finish(run, Run.State.FAILED, f"deploy: {exc.message}", log=log)
        return Run.State.FAILED
    if environment is None:
        finish(run, Run.State.FAILED, f"deploy: environment '{run.environment}' does not exist in {run.project}")
        return Run.State.FAILED
    if plan.approver is not None:  # approved before its steps: one approval covers the deploy
        return deploy_step(run, plan.deploy, plan.approver, log)
    if environment.protected:
        return park_for_approval(run, log)
    return deploy_step(run, plan.deploy, run_services.pipeline_actor(run.project), log)


def deploy_step(run: Run, step: RunStep, actor: Any, log: LogWriter) -> str:
    """The deploy step as ``actor``; the run ends with it."""
    if not ours(run).exists():
        return Run.State.CANCELED  # queued again and another worker's now: its steps are not ours to mark
    started = step_start(step, log)
    try:
        with transaction.atomic():
            # Under the run's row lock: a cancel either lands before (nothing is deployed)
            # or waits until the deploy committed.
            # And still this worker's: one that froze and woke after a retry deploys nothing.
            if not ours(run).select_for_update().filter(state=Run.State.RUNNING).exists():
                step_end(step, started, RunStep.State.SKIPPED, None, log, "canceled")
                finish(run, Run.State.CANCELED, "canceled", from_states=())
                return Run.State.CANCELED
            notes = deploy_versions(run, actor)
    except DomainError as exc:
        log.add(exc.message, "stderr")
        step_end(step, started, RunStep.State.FAILED, None, log)
        finish(run, Run.State.FAILED, f"deploy: {exc.message}", log=log)
        return Run.State.FAILED
    for note in notes:
        log.add(note, "system")
    step_end(step, started, RunStep.State.SUCCEEDED, 0, log)
    finish(run, Run.State.SUCCEEDED, "; ".join(notes)[:500], log=log)
    log.system(f"run {run.number} succeeded")
    return Run.State.SUCCEEDED


def deploy_versions(run: Run, actor: Any) -> list[str]:
    """Deploy every packaged version; returns what was done, per function."""
    trigger = run.pipeline.get("trigger") or {}
    environment = Environment.objects.select_related("project__org").get(project=run.project, name=run.environment)
    plan = trigger.get("release")
    notes = []
    for name, version_id in (run.pipeline.get("versions") or {}).items():
        function = Function.objects.get(project=run.project, name=name)
        version = Version.objects.get(pk=version_id)
        binding = Binding.objects.filter(function=function, environment=environment).first()
        sole = binding.split().sole() if binding is not None else None
        if sole == version.number:
            notes.append(f"{name} v{version.number} already serves 100% in {environment.name}")
            continue
        if plan and plan["steps"] != [100] and sole is not None:  # a stable version to release from
            release = release_start(actor=actor, function=function, environment=environment, version=version, plan=plan)
            notes.append(f"{name} v{version.number}: release {release.pk} {release.state} in {environment.name}")
        else:
            binding = binding_deploy(actor=actor, function=function, environment=environment, version=version)
            notes.append(f"{name} v{version.number} deployed to {environment.name}: {binding_url(binding)}")
    return notes
