"""Phase 3, packaging: each function's directory of the workspace becomes a version
(source ``git``, identical content reuses the version it already has), created as the
pipeline itself. Nothing is packaged without a trigger for the branch or tag (the steps
were checks only) or without functions in the pipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from apps.core.errors import DomainError
from apps.core.isolation.hardening import chown_tree
from apps.functions import services as function_services
from apps.functions.models import Function
from apps.functions.version_services import version_create
from apps.pipelines import run_services
from apps.pipelines.models import Run, RunStep
from apps.pipelines.runner.claim import finish, stop_if_canceled
from apps.pipelines.runner.job import Job, Plan
from apps.pipelines.runner.steps import step_end, step_start, step_uid

MAX_PACKAGE_BYTES = 50 * 1024 * 1024
MAX_PACKAGE_FILES = 10000
SKIP_DIRS = {".git", ".home", "__pycache__", "node_modules/.cache"}


def package(job: Job, plan: Plan) -> str | None:
    """A version of every function of the pipeline, recorded as ``run.pipeline["versions"]``
    for the deploy; the run's final state when it ends here (nothing to deploy, canceled, a
    function directory missing or too large), else None."""
    run, log = job.run, job.log
    if plan.trigger is None:
        what = f"branch {run.branch}" if run.branch else f"tag {run.tag}"
        reason = f"no trigger matches {what}"
        log.system(reason + ": nothing deployed")
        finish(run, Run.State.SUCCEEDED, reason, log=log)
        return Run.State.SUCCEEDED
    if plan.package is None or plan.deploy is None:
        finish(run, Run.State.SUCCEEDED, "no functions to deploy", log=log)
        return Run.State.SUCCEEDED

    if plan.steps and step_uid(run) is not None:
        # Take the workspace back: whatever the steps left running (a daemon that escaped
        # the process group) can no longer swap files or symlinks under the packager.
        chown_tree(job.workspace, 0)
    if stopped := stop_if_canceled(run):  # canceled (or reaped) between steps
        return stopped
    # Packaging is the pipeline's own work even after an approval: an approver may hold only
    # the deploy right on the environment, not the right to create functions and versions.
    actor = run_services.pipeline_actor(run.project)
    started = step_start(plan.package, log)
    versions: dict[str, int] = {}
    try:
        for spec in plan.pipeline["functions"]:
            files = read_function_dir(_function_root(job.workspace, spec))
            function = function_for(actor, run, spec)
            version, created = version_create(
                actor=actor,
                function=function,
                files=files,
                source="git",
                message=(run.commit_message.splitlines() or [""])[0][:500],
                source_info={
                    "repo": plan.repository.url,
                    "branch": run.branch,
                    "tag": run.tag,
                    "commit": run.commit_sha,
                    "author": run.commit_author,
                    "message": run.commit_message[:2000],
                    "run": run.number,
                },
                reuse_identical=True,
            )
            versions[spec["name"]] = version.pk
            log.add(
                f"{spec['name']}: {'new ' if created else 'unchanged, '}version {version.number} ({len(files)} files)",
                "system",
            )
    except DomainError as exc:
        log.add(exc.message, "stderr")
        step_end(plan.package, started, RunStep.State.FAILED, None, log)
        finish(run, Run.State.FAILED, f"package: {exc.message}", log=log)
        return Run.State.FAILED
    run.pipeline = {**run.pipeline, "versions": versions}
    run.save(update_fields=["pipeline"])
    step_end(plan.package, started, RunStep.State.SUCCEEDED, 0, log)
    return None


def _function_root(workspace: Path, spec: dict[str, Any]) -> Path:
    root = workspace / spec["path"]
    real, ws = root.resolve(), workspace.resolve()
    if real != ws and ws not in real.parents:
        raise DomainError(f"functions {spec['name']}: '{spec['path']}' leads outside the workspace.")
    if not root.is_dir():
        raise DomainError(f"functions {spec['name']}: directory '{spec['path']}' is not in the commit.")
    return root


def read_function_dir(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not Path(dirpath, d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            data = path.read_bytes()
            total += len(data)
            if total > MAX_PACKAGE_BYTES or len(files) >= MAX_PACKAGE_FILES:
                raise DomainError(
                    f"{root.name}: the function directory is larger than {MAX_PACKAGE_BYTES // 1024 // 1024} MB "
                    f"or {MAX_PACKAGE_FILES} files.",
                    code="package_too_large",
                )
            files[rel] = data
    return files


def function_for(actor: Any, run: Run, spec: dict[str, Any]) -> Function:
    """The project's function of that name, created or brought to the pipeline's config."""
    config = {k: v for k, v in spec.items() if k not in ("name", "path")}
    function = Function.objects.filter(project=run.project, name=spec["name"]).first()
    if function is None:
        return function_services.function_create(actor=actor, project=run.project, name=spec["name"], **config)
    changed = {k: v for k, v in config.items() if getattr(function, k) != v}
    if changed:
        function = function_services.function_update(actor=actor, function=function, **changed)
    return function
