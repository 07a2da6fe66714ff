"""What a worker holds while it is on a run (``Job``), and what the checkout decided about
the rest of it (``Plan``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.pipelines import mirror
from apps.pipelines.models import Repository, Run, RunStep
from apps.pipelines.runner.heartbeat import Heartbeat
from apps.pipelines.runner.logs import LogWriter
from apps.tenancy.models import Environment


def workspace_path(run_id: int) -> Path:
    """``DATA_DIR/pipelines/runs/<run id>/``: the commit's files; it goes when the worker lets
    go of the run."""
    return mirror.pipelines_dir() / "runs" / str(run_id)


@dataclass
class Job:
    run: Run
    workspace: Path
    heartbeat: Heartbeat
    log: LogWriter


@dataclass
class Plan:
    """The pipeline as checked out, its trigger (None: no trigger matches the branch or tag,
    so the steps run and nothing is packaged or deployed), the target environment when it
    exists already, and the RunStep rows of the phases to come (``package`` and ``deploy``
    are None when nothing is to be deployed). ``approver``: set when the run was approved
    before its steps; that approval covers the deploy too."""

    repository: Repository
    pipeline: dict[str, Any]
    trigger: dict[str, Any] | None
    environment: Environment | None
    steps: list[RunStep]
    package: RunStep | None
    deploy: RunStep | None
    approver: Any = None
