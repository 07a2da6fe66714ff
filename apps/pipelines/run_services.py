"""Runs: start (push, manual, retry), cancel, approve/reject, and the per-branch queue.

Concurrency rule: one run per (project, branch or tag) executes at a time. A newer push
cancels the queued (and approval-waiting) runs of its branch with "superseded by run N"
and queues itself; while a run of the branch is running, the newest one waits and starts
when that run ends (``branch_advance``), so the newest commit is never dropped. Numbering is
per project, serialised by a row lock on the project.

Who acts: pipelines act as the built-in user ``stratus:pipeline`` (inactive, cannot sign
in, not a member of any org) holding, in memory only, the deploy right on unprotected
environments of the run's project. Deploys into protected environments wait for a person
with the deploy right there; the deploy then runs as that approver. A run with a step that
asks for a protected environment's secrets (``secrets: true``, allowed by the environment's
``pipeline_secrets``) waits before its first step instead: the one approval covers the steps,
which then get the secrets, and the deploy.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import Conflict, DomainError, Forbidden, NotFound
from apps.core.outbox import enqueue_after_commit
from apps.pipelines.models import Repository, Run, RunStep
from apps.pipelines.step_processes import running_steps
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment, Project
from apps.tenancy.roles import Role

logger = logging.getLogger(__name__)

PIPELINE_USERNAME = "stratus:pipeline"  # ':' is not allowed in sign-up names
PREVIEW_PREFIX = "preview-"
# A cancel sets this flag, which the runner polls; a step running in this process is killed
# at once as well (step_processes.running_steps).
_CANCEL_KEY = "stratus:pipelines:run:{}:cancel"


# --- actor -------------------------------------------------------------------------------


def pipeline_actor(project: Project) -> Any:
    """The pipeline's own user, with the developer's rights (code, unprotected deploys) on
    ``project`` only, held by this object in memory, never in the database
    (``permissions.hold_project_role``)."""
    User = get_user_model()
    user: Any
    user, _ = User.objects.get_or_create(
        username=PIPELINE_USERNAME, defaults={"is_active": False, "email": "", "password": "!"}
    )
    permissions.hold_project_role(user, project, Role.DEVELOPER)
    return user


# --- refs --------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, str]:
    """``refs/heads/x`` → (x, ""), ``refs/tags/v1`` → ("", v1), a bare name → a branch."""
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :], ""
    if ref.startswith("refs/tags/"):
        return "", ref[len("refs/tags/") :]
    return ref, ""


def preview_environment_name(branch: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-") or "branch"
    name = (PREVIEW_PREFIX + slug)[:63].rstrip("-")
    return name


# --- queueing ----------------------------------------------------------------------------


class Lane(TypedDict):
    """The runs of one branch (or tag) of a project: one of them executes at a time."""

    project_id: int
    branch: str
    tag: str


def lane_of(run: Run) -> Lane:
    """``branch_advance(**lane_of(run))`` starts the lane's next run."""
    return {"project_id": run.project_id, "branch": run.branch, "tag": run.tag}


def _queue_execute(run_id: int) -> None:
    from apps.pipelines.tasks import run_execute

    enqueue_after_commit(run_execute, run_id)


def _next_number(project: Project) -> int:
    return (Run.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1


def _create_run(
    *,
    project: Project,
    repository: Repository,
    branch: str,
    tag: str,
    commit_sha: str,
    commit_message: str,
    author: str,
    pusher: str,
    trigger: str,
    created_by: Any = None,
    retry_of: Run | None = None,
) -> Run:
    """Inside a transaction holding the project's row lock: create the run, supersede the
    waiting runs of its lane, and queue its execution after commit."""
    run = Run.objects.create(
        project=project,
        repository=repository,
        number=_next_number(project),
        branch=branch,
        tag=tag,
        commit_sha=commit_sha,
        commit_message=commit_message[:10000],
        commit_author=author[:200],
        pusher=pusher[:200],
        trigger=trigger,
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        retry_of=retry_of,
    )
    waiting = Run.objects.filter(
        project=project, branch=branch, tag=tag, state__in=(Run.State.QUEUED, Run.State.WAITING_APPROVAL)
    ).exclude(pk=run.pk)
    now = timezone.now()
    for old in waiting.select_for_update():
        Run.objects.filter(pk=old.pk).update(
            state=Run.State.CANCELED,
            reason=f"superseded by run {run.number}",
            superseded_by=run,
            finished_at=now,
        )
        # A run waiting for approval may not have started its steps: they will never run.
        RunStep.objects.filter(run_id=old.pk, state=RunStep.State.PENDING).update(state=RunStep.State.SKIPPED)
        _publish_state_after_commit(old.pk)
    _queue_execute(run.pk)
    return run


def lock_project(project_id: int) -> Project:
    """The project's row lock: run numbering and the lanes' queues are serialised by it."""
    return Project.objects.select_for_update().select_related("org").get(pk=project_id)


def run_for_push(
    *,
    repository: Repository,
    ref: str,
    commit_sha: str,
    commit_message: str,
    author: str,
    pusher: str,
    trigger: str = "push",
    delivery: Any = None,
) -> Run:
    """Start (or join) the run for a push of ``commit_sha`` to ``ref``.

    The same commit on the same branch whose newest run is queued, running, waiting or
    succeeded returns that run; anything else starts a new one (superseding queued ones)."""
    branch, tag = parse_ref(ref)
    if not commit_sha:
        raise DomainError("A push needs a commit sha.", code="invalid")
    with transaction.atomic():
        project = lock_project(repository.project_id)
        latest = Run.objects.filter(project=project, branch=branch, tag=tag).order_by("-number").first()
        if (
            latest is not None
            and latest.commit_sha == commit_sha
            and latest.state in (Run.State.QUEUED, Run.State.RUNNING, Run.State.WAITING_APPROVAL, Run.State.SUCCEEDED)
        ):
            return latest
        run = _create_run(
            project=project,
            repository=repository,
            branch=branch,
            tag=tag,
            commit_sha=commit_sha,
            commit_message=commit_message,
            author=author,
            pusher=pusher,
            trigger=trigger,
        )
        audit_record(
            actor=None,
            org=project.org,
            action="run.create",
            target=project,
            changes={"run": run.number, "ref": ref, "commit": commit_sha, "trigger": trigger, "pusher": pusher},
        )
    return run


def _lane_name(branch: str, tag: str) -> str:
    return f"branch {branch}" if branch else f"tag {tag}"


def push_needs_check(*, repository: Repository, branch: str, tag: str, commit_sha: str) -> str:
    """Why a push of ``commit_sha`` must wait for a fetch before it may start a run ("" when
    it may start now): its commit looks older than what the lane last ran, being an earlier
    run's commit, or an ancestor of the newest run's commit in the mirror as last fetched (no
    network here: intake answers in milliseconds). A replayed old body looks like that, and so
    does a force-push back to an earlier commit; only a fetch tells them apart (the head).

    Called under the project's row lock (delivery intake)."""
    from apps.pipelines import mirror

    lane = Run.objects.filter(project_id=repository.project_id, branch=branch, tag=tag)
    latest = lane.order_by("-number").only("number", "commit_sha").first()
    if latest is None or latest.commit_sha == commit_sha:
        return ""
    where, short, newest = _lane_name(branch, tag), commit_sha[:12], latest.commit_sha[:12]
    earlier = lane.filter(commit_sha=commit_sha).order_by("-number").values_list("number", flat=True).first()
    if earlier is not None:
        return f"commit {short} ran before (run {earlier}) and {where} has run {newest} since (run {latest.number})"
    if mirror.known_ancestor(repository, commit_sha, latest.commit_sha):
        return f"commit {short} is older than {newest}, which {where} ran last (run {latest.number})"
    return ""


def head_problem(*, repository: Repository, branch: str, tag: str, commit_sha: str) -> str:
    """Why ``commit_sha`` is not what its branch (or tag) points at in the freshly fetched
    mirror ("" when it is): a run for it would deploy something older than, or no longer on,
    the branch."""
    from apps.pipelines import mirror

    where, short = _lane_name(branch, tag), commit_sha[:12]
    pushed = mirror.resolve_commit(repository, commit_sha)
    if pushed is None:
        return f"commit {short} is not in the repository"
    head = mirror.resolve_commit(repository, f"refs/heads/{branch}" if branch else f"refs/tags/{tag}")
    if head is None:
        return f"{where} no longer exists (this push was for {short})"
    if head["sha"] == pushed["sha"]:
        return ""
    at = head["sha"][:12]
    if mirror.is_ancestor(repository, pushed["sha"], head["sha"]):
        return f"superseded: {where} is at {at} (this push was for {short})"
    return f"superseded: {where} is at {at}, which does not contain {short} (force-pushed; this push was for {short})"


def run_again_for_head(*, run: Run, head_sha: str) -> Run | None:
    """``run`` ended without deploying because its branch had moved on to ``head_sha``. When a
    run for the head was canceled as superseded by ``run`` (pushes delivered out of order), and
    nothing else of the lane runs or ran that commit, start it again: the head is never dropped."""
    with transaction.atomic():
        project = lock_project(run.project_id)
        lane = Run.objects.filter(project=project, branch=run.branch, tag=run.tag)
        live = (Run.State.QUEUED, Run.State.RUNNING, Run.State.WAITING_APPROVAL, Run.State.SUCCEEDED)
        if lane.filter(commit_sha=head_sha, state__in=live).exists() or lane.filter(number__gt=run.number).exists():
            return None
        dropped = lane.filter(superseded_by=run, commit_sha=head_sha).order_by("-number").first()
        if dropped is None:
            return None
        again = _create_run(
            project=project,
            repository=run.repository,
            branch=dropped.branch,
            tag=dropped.tag,
            commit_sha=dropped.commit_sha,
            commit_message=dropped.commit_message,
            author=dropped.commit_author,
            pusher=dropped.pusher,
            trigger=dropped.trigger,
            created_by=dropped.created_by,
            retry_of=dropped,
        )
        audit_record(
            actor=None,
            org=project.org,
            action="run.create",
            target=project,
            changes={"run": again.number, "commit": head_sha, "trigger": again.trigger, "again_after": run.number},
        )
    return again


def run_create_manual(*, actor: Actor, project: Project, branch: str = "", commit: str = "") -> Run:
    """ "Redeploy latest": run the head of ``branch`` (default: the repository's default
    branch) as fetched now, or the given ``commit`` on that branch."""
    from apps.pipelines import mirror

    permissions.require_project_permission(actor, project, roles.DEPLOY_UNPROTECTED, "Starting a run")
    repository = Repository.objects.filter(project=project).first()
    if repository is None:
        raise Conflict("Connect a repository to this project first.", code="no_repository")
    branch = branch or repository.default_branch
    mirror.mirror_fetch(repository)
    info = mirror.resolve_commit(repository, commit or f"refs/heads/{branch}")
    if info is None:
        what = f"commit '{commit}'" if commit else f"branch '{branch}'"
        raise DomainError(
            f"No {what} in the repository.", code="invalid", fields={"commit" if commit else "branch": ["Not found."]}
        )
    with transaction.atomic():
        project = lock_project(project.pk)
        run = _create_run(
            project=project,
            repository=repository,
            branch=branch,
            tag="",
            commit_sha=info["sha"],
            commit_message=info["message"],
            author=info["author"],
            pusher=actor.get_username(),
            trigger=Run.Trigger.MANUAL,
            created_by=actor,
        )
        audit_record(
            actor=actor,
            org=project.org,
            action="run.create",
            target=project,
            changes={"run": run.number, "branch": branch, "commit": run.commit_sha, "trigger": "manual"},
        )
    return run


def run_retry(*, actor: Actor, run: Run) -> Run:
    permissions.require_project_permission(actor, run.project, roles.DEPLOY_UNPROTECTED, "Retrying a run")
    if run.state in Run.ACTIVE_STATES:
        raise Conflict(f"Run {run.number} is still {run.state}: cancel it first.", code="run_active")
    with transaction.atomic():
        project = lock_project(run.project_id)
        new = _create_run(
            project=project,
            repository=run.repository,
            branch=run.branch,
            tag=run.tag,
            commit_sha=run.commit_sha,
            commit_message=run.commit_message,
            author=run.commit_author,
            pusher=run.pusher,
            trigger=Run.Trigger.RETRY,
            created_by=actor,
            retry_of=run,
        )
        audit_record(
            actor=actor,
            org=project.org,
            action="run.retry",
            target=project,
            changes={"run": new.number, "of": run.number},
        )
    return new


# --- cancel / approve / reject -------------------------------------------------------------


def cancel_requested(run_id: int) -> bool:
    return bool(cache.get(_CANCEL_KEY.format(run_id)))


def run_cancel(*, actor: Actor, run: Run) -> Run:
    permissions.require_project_permission(actor, run.project, roles.DEPLOY_UNPROTECTED, "Canceling a run")
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.state not in Run.ACTIVE_STATES:
            raise Conflict(f"Run {locked.number} is already {locked.state}.", code="run_finished")
        was = locked.state
        locked.state = Run.State.CANCELED
        locked.reason = f"canceled by {actor.get_username()}"
        locked.finished_at = timezone.now()
        locked.save(update_fields=["state", "reason", "finished_at"])
        if was != Run.State.RUNNING:  # a running run's runner skips its own steps
            locked.steps.filter(state=RunStep.State.PENDING).update(state=RunStep.State.SKIPPED)
        audit_record(
            actor=actor,
            org=run.project.org,
            action="run.cancel",
            target=run.project,
            changes={"run": run.number, "was": was},
        )
        run_id = locked.pk
        lane = lane_of(locked)
        transaction.on_commit(lambda: cache.set(_CANCEL_KEY.format(run_id), 1, timeout=3600))
        transaction.on_commit(lambda: running_steps.kill(run_id))
        _publish_state_after_commit(run_id)
        if was != Run.State.RUNNING:
            # A running run's runner starts the next one when it stops.
            transaction.on_commit(lambda: branch_advance(**lane))
    return locked


def _is_pusher(actor: Actor, run: Run) -> bool:
    pusher = run.pusher.strip().lower()
    if not pusher:
        return False
    names = {actor.get_username().lower(), (getattr(actor, "email", "") or "").lower()}
    names.discard("")
    return pusher in names


def _approval_target(actor: Actor, run: Run, action: str) -> Environment:
    if run.state != Run.State.WAITING_APPROVAL:
        raise Conflict(f"Run {run.number} is {run.state}, not waiting for approval.", code="run_not_waiting")
    environment = (
        Environment.objects.select_related("project__org").filter(project=run.project, name=run.environment).first()
    )
    if environment is None:
        raise NotFound(f"Environment '{run.environment}' not found.")
    if not permissions.can_deploy(actor, environment):
        raise Forbidden(f"{action} run {run.number} needs the deploy right on environment '{environment.name}'.")
    if run.repository.approver_not_pusher and _is_pusher(actor, run):
        raise Forbidden(f"{action} run {run.number} needs someone other than its pusher ({run.pusher}).")
    return environment


def _approval_for(run: Run) -> str:
    """What a waiting run waits to do: "steps" (a step asks for a protected environment's
    secrets: the approval lets the steps run with them, then deploy) or "deploy"."""
    return "steps" if (run.pipeline or {}).get("approval") == "steps" else "deploy"


def run_approve(*, actor: Actor, run: Run) -> Run:
    """Approve a run waiting for a protected environment (the deploy right there, and not its
    pusher when the repository asks so). It resumes as the approver: the deploy, or the
    steps with the environment's secrets and then the deploy, with no second approval."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().select_related("repository", "project__org").get(pk=run.pk)
        _approval_target(actor, locked, "Approving")
        locked.state = Run.State.RUNNING
        locked.approved_by = signed_in(actor)
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["state", "approved_by", "heartbeat_at"])
        audit_record(
            actor=actor,
            org=locked.project.org,
            action="run.approve",
            target=locked.project,
            changes={"run": locked.number, "environment": locked.environment, "for": _approval_for(locked)},
        )
        run_id = locked.pk
        from apps.pipelines.tasks import run_resume

        enqueue_after_commit(run_resume, run_id)
        _publish_state_after_commit(run_id)
    return locked


def run_reject(*, actor: Actor, run: Run) -> Run:
    with transaction.atomic():
        locked = Run.objects.select_for_update().select_related("repository", "project__org").get(pk=run.pk)
        _approval_target(actor, locked, "Rejecting")
        now = timezone.now()
        locked.state = Run.State.CANCELED
        what = (
            f"steps with the secrets of '{locked.environment}'"
            if _approval_for(locked) == "steps"
            else f"deploy to '{locked.environment}'"
        )
        locked.reason = f"{what} rejected by {actor.get_username()}"
        locked.finished_at = now
        locked.save(update_fields=["state", "reason", "finished_at"])
        locked.steps.filter(state__in=(RunStep.State.PENDING, RunStep.State.RUNNING)).update(
            state=RunStep.State.SKIPPED
        )
        audit_record(
            actor=actor,
            org=locked.project.org,
            action="run.reject",
            target=locked.project,
            changes={"run": locked.number, "environment": locked.environment, "for": _approval_for(locked)},
        )
        lane = lane_of(locked)
        _publish_state_after_commit(locked.pk)
        transaction.on_commit(lambda: branch_advance(**lane))
    return locked


def branch_advance(*, project_id: int, branch: str, tag: str) -> Run | None:
    """After a run of this lane stopped (or parked waiting for approval): queue the newest
    queued run, if nothing of the lane is running."""
    lane = Run.objects.filter(project_id=project_id, branch=branch, tag=tag)
    if lane.filter(state=Run.State.RUNNING).exists():
        return None
    nxt = lane.filter(state=Run.State.QUEUED).order_by("-number").first()
    if nxt is not None:
        from apps.pipelines.tasks import run_execute

        enqueue_after_commit(run_execute, nxt.pk)
    return nxt


# --- previews ----------------------------------------------------------------------------


def preview_delete(*, repository: Repository, branch: str) -> None:
    """The branch was deleted: remove its preview environment (and so its bindings), and
    cancel its waiting runs."""
    from apps.functions.deploy_services import environment_bindings_remove
    from apps.tenancy.environment_services import environment_delete

    name = preview_environment_name(branch)
    project = repository.project
    with transaction.atomic():
        now = timezone.now()
        for old in Run.objects.select_for_update().filter(
            project=project, branch=branch, tag="", state__in=(Run.State.QUEUED, Run.State.WAITING_APPROVAL)
        ):
            Run.objects.filter(pk=old.pk).update(
                state=Run.State.CANCELED, reason=f"branch {branch} was deleted", finished_at=now
            )
            _publish_state_after_commit(old.pk)
        environment = Environment.objects.filter(project=project, name=name).first()
        if environment is None:
            return
        actor = pipeline_actor(project)
        # The backends drop the bindings and, after commit, the gateways hear that their
        # routes changed (a functions service: pipelines never speak to the engine).
        environment_bindings_remove(environment=environment)
        with permissions.acting_as(actor, project, Role.ADMIN):  # deleting an environment
            environment_delete(actor=actor, environment=environment)


# --- notifications -------------------------------------------------------------------------


def run_group(run_id: int) -> str:
    return f"run.{run_id}"


def publish(run_id: int, message: dict[str, Any]) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(run_group(run_id), message)
    except Exception:  # noqa: BLE001 - live updates are best effort; the rows are the truth
        logger.exception("publishing to run %s failed", run_id)


def publish_state(run_id: int) -> None:
    run = Run.objects.filter(pk=run_id).values("state", "reason", "number", "finished_at").first()
    if run is None:
        return
    finished = run["finished_at"].isoformat() if run["finished_at"] else None
    publish(
        run_id,
        {
            "type": "run.state",
            "state": run["state"],
            "reason": run["reason"],
            "number": run["number"],
            "finished_at": finished,
        },
    )


def _publish_state_after_commit(run_id: int) -> None:
    transaction.on_commit(lambda: publish_state(run_id))
