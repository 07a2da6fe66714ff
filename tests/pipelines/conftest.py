"""Fixtures for pipeline tests: real git repositories made with the git CLI (a work tree and
a bare "origin" it pushes to), a Repository pointing at the origin, and the engine fixtures
(a served console + in-process engine) for end-to-end runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apps.core import crypto
from apps.pipelines.models import Repository
from tests.engine.conftest import engine, sandbox_dir, served  # noqa: F401

WEBHOOK_SECRET = "test-webhook-secret"


@pytest.fixture(autouse=True)
def _local_repositories(settings: Any) -> None:
    """The repositories here are local paths (a bare "origin" on disk) and git servers on
    127.0.0.1, which a server refuses unless the operator allows them; the tests of that rule
    (test_repository_addresses.py) turn it off again."""
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True


GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Ann Author",
    "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Ann Author",
    "GIT_COMMITTER_EMAIL": "ann@example.com",
    "LANG": "C.UTF-8",
}

HELLO = 'def handler(event, context):\n    return {"statusCode": 200, "body": "hello from git %s"}\n'

PIPELINE = """\
functions:
  - name: hello
    path: functions/hello
    runtime: python3.11
    handler: main.handler
steps:
  - name: test
    run: python3 -c "import sys; print('testing'); sys.exit(0)"
    timeout_s: 60
triggers:
  - branch: main
    environment: dev
  - branch: "*"
    preview: true
"""


class GitRepo:
    def __init__(self, root: Path) -> None:
        self.origin = root / "origin.git"
        self.work = root / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.origin)], check=True, env=GIT_ENV)
        self.work.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("remote", "add", "origin", str(self.origin))

    def git(self, *args: str) -> str:
        out = subprocess.run(["git", *args], cwd=self.work, check=True, env=GIT_ENV, capture_output=True, text=True)
        return out.stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, branch: str = "main") -> None:
        self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")

    def checkout(self, branch: str, create: bool = False) -> None:
        self.git("checkout", "-q", *(["-b"] if create else []), branch)


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path)


def make_repository(project: Any, url: str, **fields: Any) -> Repository:
    return Repository.objects.create(
        project=project,
        url=url,
        hook_id=f"hook-{project.pk}",
        webhook_secret_ciphertext=crypto.encrypt(WEBHOOK_SECRET),
        **fields,
    )


@pytest.fixture
def hello_repo(git_repo: GitRepo) -> GitRepo:
    """A repository with functions/hello and stratus.yaml, pushed to main."""
    git_repo.commit("first", {"functions/hello/main.py": HELLO % "v1", "stratus.yaml": PIPELINE})
    git_repo.push("main")
    return git_repo
