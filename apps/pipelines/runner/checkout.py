"""Phase 1, the checkout: the exact commit into the run's workspace, its pipeline, its
trigger and target, and the rows of the steps to come.

- Workspace ``DATA_DIR/pipelines/runs/<run id>/``: ``git archive`` of the exact commit from
  the mirror (fetched first). The pipeline is ``stratus.yaml`` at that commit, or the
  console-held ``repository.pipeline_yaml`` when ``pipeline_source`` is console.
- A run a push (or a redelivered push) started goes on only while its commit is its branch's
  (or tag's) head after that fetch: otherwise (a replayed old body, pushes delivered out of
  order, a force-push away from it) it is canceled before any step with "superseded: branch
  main is at <head> (this push was for <commit>)", deploys nothing, its deliveries become
  ``stale`` with that reason, and the head's own run starts again if this run had superseded
  it (``behind_branch``). Manual runs and retries run the commit they name.
- No trigger matching the branch/tag: the run **succeeds** with reason "no trigger matches
  branch x": checks (the steps) still run, packaging and deploying are skipped. A push to a
  branch the pipeline does not deploy is then still tested.
- Before any step: the secrets rule (environment.py) may fail the run or park it for an
  approval.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from apps.core.errors import DomainError
from apps.pipelines import delivery_services, mirror, run_services
from apps.pipelines.models import Repository, Run, RunStep
from apps.pipelines.pipeline_config import FILENAME, parse_pipeline, trigger_for
from apps.pipelines.runner.claim import finish, park_for_approval
from apps.pipelines.runner.environment import secrets_rule, target_environment
from apps.pipelines.runner.job import Job, Plan
from apps.pipelines.runner.logs import LogWriter
from apps.pipelines.runner.steps import step_end, step_start
from apps.tenancy.models import Environment


def checkout(job: Job) -> Plan | str:
    """The commit, its pipeline and the rows of its steps; the run's final state instead when
    it ends (or parks for an approval) here."""
    repository = Repository.objects.get(pk=job.run.repository_id)
    run = job.run = Run.objects.select_related("project__org").get(pk=job.run.pk)
    log = job.log
    log.system(f"run {run.number}: {run.branch or run.tag} @ {run.commit_sha[:12]} on {run.worker}")

    step = RunStep.objects.create(run=run, index=0, name="checkout", kind="checkout", command=run.commit_sha)
    started = step_start(step, log)
    try:
        # A run a push started deploys its commit only while that is the branch's head: a
        # replayed old push body must not deploy an old commit over a newer one.
        behind = export_commit(
            run, repository, job.workspace, log, head_check=run.trigger in (Run.Trigger.PUSH, Run.Trigger.REDELIVER)
        )
        if behind:
            return behind_branch(run, repository, step, started, log, behind)
        info = mirror.resolve_commit(repository, run.commit_sha)
        if info is not None:  # the commit's own message and author, not the webhook's say-so
            run.commit_message, run.commit_author = info["message"][:10000], info["author"][:200]
            run.save(update_fields=["commit_message", "commit_author"])
        pipeline = load_pipeline(run, repository)
    except DomainError as exc:
        log.add(exc.message, "stderr")
        step_end(step, started, RunStep.State.FAILED, None, log)
        finish(run, Run.State.FAILED, exc.message, log=log)
        return Run.State.FAILED
    trigger = trigger_for(pipeline, branch=run.branch, tag=run.tag)
    environment: Environment | None = None
    if trigger is not None:
        run.preview = bool(trigger.get("preview"))
        run.environment = run_services.preview_environment_name(run.branch) if run.preview else trigger["environment"]
        environment = target_environment(run, trigger, create=False)
    run.pipeline = {**pipeline, "trigger": trigger}
    run.save(update_fields=["pipeline", "preview", "environment"])
    step_end(step, started, RunStep.State.SUCCEEDED, 0, log)
    plan = Plan(repository, pipeline, trigger, environment, *_step_rows(run, pipeline, trigger))

    # Before any step runs: a protected environment's secrets reach approved steps only.
    rule = secrets_rule(pipeline, environment)
    if rule is not None and rule[0] == "refuse":
        log.add(rule[1], "stderr")
        finish(run, Run.State.FAILED, rule[1], log=log)
        return Run.State.FAILED
    if rule is not None:
        return park_for_approval(run, log, reason=rule[1], before_steps=True)
    return plan


def checkout_again(job: Job) -> Plan | str:
    """For a run approved before its steps: the commit exported again (a worker's workspace
    goes when it lets go of a run) and the pipeline stored at its checkout, what the approver
    saw, even if the console-held pipeline changed since; the run's final state instead when
    it ends here."""
    run, log = job.run, job.log
    repository = Repository.objects.get(pk=run.repository_id)
    pipeline = {key: run.pipeline.get(key) or [] for key in ("functions", "steps", "triggers")}
    trigger = run.pipeline.get("trigger")
    environment = target_environment(run, trigger, create=False) if trigger else None
    rule = secrets_rule(pipeline, environment)
    if rule is not None and rule[0] == "refuse":  # the setting was turned off while it waited
        log.add(rule[1], "stderr")
        finish(run, Run.State.FAILED, rule[1], log=log)
        return Run.State.FAILED
    try:
        export_commit(run, repository, job.workspace, log)
    except DomainError as exc:
        log.add(exc.message, "stderr")
        finish(run, Run.State.FAILED, f"checkout: {exc.message}", log=log)
        return Run.State.FAILED
    return Plan(
        repository,
        pipeline,
        trigger,
        environment,
        steps=list(run.steps.filter(kind="run").order_by("index")),
        package=run.steps.filter(kind="package").first(),
        deploy=run.steps.filter(kind="deploy").first(),
        approver=run.approved_by,
    )


def _step_rows(
    run: Run, pipeline: dict[str, Any], trigger: dict[str, Any] | None
) -> tuple[list[RunStep], RunStep | None, RunStep | None]:
    """The rows of the steps, and of packaging and the deploy when there is something to
    deploy, all pending: a reader sees the whole run ahead."""
    steps = [
        RunStep.objects.create(run=run, index=i + 1, name=s["name"], kind="run", command=s["run"])
        for i, s in enumerate(pipeline["steps"])
    ]
    n = len(steps) + 1
    package = deploy = None
    if trigger is not None and pipeline["functions"]:
        package = RunStep.objects.create(run=run, index=n, name="package", kind="package")
        deploy = RunStep.objects.create(
            run=run, index=n + 1, name=f"deploy to {run.environment}", kind="deploy", command=run.environment
        )
    return steps, package, deploy


def load_pipeline(run: Run, repository: Repository) -> dict[str, Any]:
    if repository.pipeline_source == Repository.PipelineSource.CONSOLE:
        return parse_pipeline(repository.pipeline_yaml)
    data = mirror.read_file_at(repository, run.commit_sha, FILENAME)
    if data is None:
        raise DomainError(f"No {FILENAME} at the repository root in commit {run.commit_sha[:12]}.", code="no_pipeline")
    return parse_pipeline(data)


def export_commit(
    run: Run, repository: Repository, workspace: Path, log: LogWriter, *, head_check: bool = False
) -> str:
    """The exact commit from the mirror (fetched first) into a fresh workspace. With
    ``head_check`` (a run a push started): when the commit is not its branch's head after the
    fetch, nothing is exported and the answer says why ("" otherwise)."""
    mirror.mirror_fetch(repository)
    if not mirror.has_commit(repository, run.commit_sha):
        raise DomainError(f"commit {run.commit_sha} is not in {repository.url}", code="no_commit")
    if head_check:
        behind = run_services.head_problem(
            repository=repository, branch=run.branch, tag=run.tag, commit_sha=run.commit_sha
        )
        if behind:
            return behind
    shutil.rmtree(workspace, ignore_errors=True)
    count = mirror.export_commit(repository, run.commit_sha, workspace)
    log.add(f"exported {count} files of {run.commit_sha[:12]}", "system")
    return ""


def behind_branch(run: Run, repository: Repository, checkout: RunStep, started: float, log: LogWriter, why: str) -> str:
    """A pushed run whose commit is not its branch's head after the fetch (a replayed body, or
    pushes delivered out of order): it ends without deploying, and its deliveries say why.
    Where it had superseded the head's own run, that one starts again."""
    log.system(f"{why}: nothing deployed")
    step_end(checkout, started, RunStep.State.SKIPPED, None, log, "not the branch head")
    finish(run, Run.State.CANCELED, why, log=log)
    delivery_services.deliveries_stale(run_id=run.pk, reason=f"{why}: nothing deployed (run {run.number})")
    head = mirror.resolve_commit(repository, f"refs/heads/{run.branch}" if run.branch else f"refs/tags/{run.tag}")
    if head is not None:
        run_services.run_again_for_head(run=run, head_sha=head["sha"])
    return Run.State.CANCELED
