"""The run's target environment and what it gives the steps.

Secrets (checked after checkout, before any step runs, ``secrets_rule``): when a step has
``secrets: true`` and the trigger targets an environment,

* the environment's ``pipeline_secrets`` setting (``allows_pipeline_secrets()``: unset = yes
  when unprotected, no when protected; set in the console only, stratus.yaml has no key for
  it) says no → the run fails before any step, its steps skipped, with a reason naming the
  rule;
* it says yes and the environment is protected → the run parks in ``waiting_approval``
  before its first step (``run.pipeline["approval"] = "steps"``), as GitHub holds a job for
  an environment's required reviewers. ``run_approve`` (deploy right there, not the pusher)
  resumes it: ``run_resume`` exports the commit again (the workspace went with the worker),
  re-checks the setting, runs the steps with the secrets, packages (as the pipeline) and
  deploys as the approver with no second approval;
* unprotected → the steps get them now. Previews are created unprotected.

``environment_values`` loads the values once per run and is a second lock (nothing for a
protected environment unless approved). Each secret value, and each line of a multi-line
one, is masked as ``***`` by the LogWriter in every line before it is stored or published,
and in the run's reason (``finish(..., log=log)``; step notes are log lines): the rows, the
log API and the websocket carry only masked text, for every reader. Values shorter than
``MIN_MASK_LEN`` (4) are not masked (they would blank ordinary text); the log says so by the
secret's name. Masking is a safety net, not a boundary: a step that transforms a value
(base64, reversed) prints it unmasked; the approval is the boundary.
"""

from __future__ import annotations

from typing import Any

from apps.pipelines import run_services
from apps.pipelines.models import Run
from apps.pipelines.runner.logs import MIN_MASK_LEN, LogWriter
from apps.tenancy import permissions
from apps.tenancy.environment_services import environment_create, environment_secret_values
from apps.tenancy.environment_values import environment_values as merged_environment_values
from apps.tenancy.models import Environment
from apps.tenancy.roles import Role


def target_environment(run: Run, trigger: dict[str, Any], *, create: bool) -> Environment | None:
    """The trigger's environment, or the branch's ``preview-<branch>`` (created with
    ``create`` when missing, as the pipeline acting as a project admin)."""
    if trigger.get("preview"):
        name = run_services.preview_environment_name(run.branch)
        env = Environment.objects.filter(project=run.project, name=name).first()
        if env is None and create:
            actor = run_services.pipeline_actor(run.project)
            with permissions.acting_as(actor, run.project, Role.ADMIN):  # creating an environment
                env = environment_create(actor=actor, project=run.project, name=name)
        return env
    return Environment.objects.filter(project=run.project, name=trigger["environment"]).first()


def secrets_rule(pipeline: dict[str, Any], environment: Environment | None) -> tuple[str, str] | None:
    """May this run start its steps? ``("refuse", why)`` when a step asks for the secrets of
    an environment that does not give them to pipelines (its ``pipeline_secrets`` setting,
    off by default when protected: stratus.yaml cannot turn it on); ``("approval", why)``
    when they are a protected environment's: the steps wait for an approval, as GitHub's
    environments with required reviewers do; None when the steps may run now."""
    asking = [spec["name"] for spec in pipeline["steps"] if spec.get("secrets")]
    if not asking or environment is None:
        return None
    name = environment.name
    if not environment.allows_pipeline_secrets():
        return "refuse", (
            f"step '{asking[0]}' asks for the secrets of environment '{name}' (secrets: true), but '{name}' "
            "does not let pipeline steps use its secrets (environment setting pipeline_secrets)"
        )
    if environment.protected:
        return "approval", (
            f"waiting for approval to run steps with {name}'s secrets (step '{asking[0]}' has secrets: true; "
            f"the deploy to {name} then needs no second approval)"
        )
    return None


def environment_values(
    *, environment: Environment | None, pipeline: dict[str, Any], log: LogWriter, approved: bool
) -> dict[str, str] | None:
    """The variables and secrets that steps with ``secrets: true`` get, or None when none may:
    no step asks, no target environment, its setting forbids it, or it is protected and the
    run is not approved (``secrets_rule`` stops such a run before its steps; this is the
    second lock). From here on, the secret values are masked in the run's log."""
    if environment is None or not any(spec.get("secrets") for spec in pipeline["steps"]):
        return None
    if not environment.allows_pipeline_secrets() or (environment.protected and not approved):
        return None
    secrets = environment_secret_values(environment=environment)
    for name in log.mask_secrets(secrets):
        log.system(f"secret {name} is shorter than {MIN_MASK_LEN} characters: it is not masked in this log")
    return merged_environment_values(environment=environment, secrets=secrets)
