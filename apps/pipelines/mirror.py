"""A bare mirror per repository (GitPython), the source of every run's checkout.

``DATA_DIR/pipelines/mirrors/<repository id>.git``: ``git clone --mirror`` the first time,
then ``git fetch --prune``. Credentials never reach the mirror's config: an HTTPS token is
answered by a GIT_ASKPASS helper reading it from the fetch's environment; an SSH deploy key
goes to a 0600 temporary file named by GIT_SSH_COMMAND for the fetch only. Local paths
(tests) need nothing. A per-repository file lock serialises fetches across processes.

Right before git runs (inside that lock), the URL is checked again with its name resolved
anew (``remote.check``: no loopback, link-local, private... address and no local path unless
STRATUS_REPOSITORY_ALLOW_LOCAL), and git is pinned to the addresses just checked (libcurl's
resolve list, ssh's HostName), with redirects off and only the transports the URL may use
(GIT_ALLOW_PROTOCOL; ``file`` only when local repositories are allowed).
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import git
from django.conf import settings
from django.utils import timezone

from apps.core.errors import DomainError
from apps.pipelines import remote
from apps.pipelines.models import Repository

FETCH_TIMEOUT_S = 300
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "${STRATUS_GIT_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "$STRATUS_GIT_TOKEN" ;;
esac
"""


def pipelines_dir() -> Path:
    path = Path(settings.DATA_DIR) / "pipelines"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror_path(repository: Repository) -> Path:
    return pipelines_dir() / "mirrors" / f"{repository.pk}.git"


def _askpass() -> Path:
    path = pipelines_dir() / "askpass.sh"
    if not path.exists() or path.read_text() != _ASKPASS:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_ASKPASS)
        tmp.chmod(0o700)
        tmp.replace(path)
    return path


@contextmanager
def _git_env(repository: Repository, plan: remote.Plan | None = None) -> Iterator[dict[str, str]]:
    """The environment of one git network command: no prompts, no global config, the
    repository's credentials for this command only, and (with ``plan``) the checked
    addresses it is pinned to, no redirects, only the transports allowed here."""
    pin = plan.ssh_options() if plan is not None else ""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(pipelines_dir()),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": f"ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new {pin}".strip(),
        "GIT_ALLOW_PROTOCOL": "https:http:ssh:git" + (":file" if settings.STRATUS_REPOSITORY_ALLOW_LOCAL else ""),
    }
    config = plan.git_config() if plan is not None else []
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for n, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    key_file: str | None = None
    try:
        kind = repository.credentials_kind
        if kind:
            from apps.pipelines.repository_services import credentials_value

            secret = credentials_value(repository) or ""
            if kind == Repository.Credentials.TOKEN:
                user, _, token = secret.partition(":") if ":" in secret else ("", "", secret)
                env["GIT_ASKPASS"] = str(_askpass())
                env["STRATUS_GIT_TOKEN"] = token
                if user:
                    env["STRATUS_GIT_USERNAME"] = user
            elif kind == Repository.Credentials.SSH_KEY:
                fd, key_file = tempfile.mkstemp(prefix="key-", dir=pipelines_dir())
                with os.fdopen(fd, "w") as fh:
                    fh.write(secret if secret.endswith("\n") else secret + "\n")
                os.chmod(key_file, stat.S_IRUSR | stat.S_IWUSR)
                known = pipelines_dir() / "known_hosts"
                env["GIT_SSH_COMMAND"] = (
                    f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
                    f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known} {pin}"
                ).strip()
        yield env
    finally:
        if key_file:
            Path(key_file).unlink(missing_ok=True)


@contextmanager
def _locked(repository: Repository) -> Iterator[None]:
    lock_path = pipelines_dir() / "mirrors" / f"{repository.pk}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_error(exc: git.GitCommandError, repository: Repository) -> str:
    text = (exc.stderr or str(exc)).strip().replace("stderr:", "").strip().strip("'").strip()
    return text[-500:] or f"git exited with {exc.status}"


def mirror_fetch(repository: Repository) -> git.Repo:
    """Bring the mirror up to date with the remote (cloning it the first time)."""
    path = mirror_path(repository)
    with _locked(repository):
        # Checked here, after the lock (which may have waited), right before git runs: the
        # name's answer now is the one git connects to.
        try:
            plan = remote.check(repository.url, at_fetch=True)
        except DomainError as exc:
            raise DomainError(f"Fetching {repository.url} refused: {exc.message}", code=exc.code) from None
        with _git_env(repository, plan) as env:
            _fetch_into(repository, path, env)
    Repository.objects.filter(pk=repository.pk).update(last_fetched_at=timezone.now())
    return git.Repo(path)


def _fetch_into(repository: Repository, path: Path, env: dict[str, str]) -> None:
    try:
        if not (path / "HEAD").exists():
            if path.exists():
                shutil.rmtree(path)
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            git.Repo.clone_from(repository.url, tmp, mirror=True, env=env, kill_after_timeout=FETCH_TIMEOUT_S)
            tmp.replace(path)
        else:
            repo = git.Repo(path)
            # The URL may have changed since the clone; credentials never live here.
            repo.git.remote("set-url", "origin", repository.url)
            repo.git.fetch("origin", "--prune", "--tags", "--force", env=env, kill_after_timeout=FETCH_TIMEOUT_S)
    except git.GitCommandError as exc:
        raise DomainError(
            f"Fetching {repository.url} failed: {_clean_error(exc, repository)}", code="fetch_failed"
        ) from None


def _repo(repository: Repository) -> git.Repo:
    path = mirror_path(repository)
    if not (path / "HEAD").exists():
        return mirror_fetch(repository)
    return git.Repo(path)


def resolve_commit(repository: Repository, rev: str) -> dict[str, Any] | None:
    """{sha, message, author} of a commit (sha, branch ref, tag), or None if unknown."""
    repo = _repo(repository)
    try:
        commit = repo.commit(rev)
    except (git.BadName, ValueError, git.GitCommandError):
        return None
    message = commit.message if isinstance(commit.message, str) else commit.message.decode("utf-8", "replace")
    author = commit.author.name or ""
    email = commit.author.email or ""
    return {"sha": commit.hexsha, "message": message.strip(), "author": f"{author} <{email}>" if email else author}


def has_commit(repository: Repository, sha: str) -> bool:
    try:
        _repo(repository).commit(sha)
        return True
    except (git.BadName, ValueError, git.GitCommandError):
        return False


def is_ancestor(repository: Repository, older: str, newer: str) -> bool:
    """Whether commit ``older`` is ``newer`` or an ancestor of it (False when either is unknown)."""
    return _merge_base_is_ancestor(_repo(repository), older, newer)


def known_ancestor(repository: Repository, older: str, newer: str) -> bool:
    """Like ``is_ancestor``, on the mirror as last fetched: no fetch, no network (the webhook
    intake asks it, and answers in milliseconds); False when there is no mirror yet or it does
    not know both commits."""
    path = mirror_path(repository)
    if not (path / "HEAD").exists():
        return False
    try:
        return _merge_base_is_ancestor(git.Repo(path), older, newer)
    except (git.GitError, OSError, ValueError):  # a mirror half made: cannot tell
        return False


def _merge_base_is_ancestor(repo: git.Repo, older: str, newer: str) -> bool:
    try:
        repo.git.merge_base("--is-ancestor", older, newer)
    except git.GitCommandError:  # 1: not an ancestor; 128: an unknown commit
        return False
    return True


def read_file_at(repository: Repository, sha: str, path: str) -> bytes | None:
    """The file's bytes at that exact commit, or None when it is not there."""
    repo = _repo(repository)
    try:
        blob = repo.commit(sha).tree / path
    except KeyError:
        return None
    if blob.type != "blob":
        return None
    data: bytes = blob.data_stream.read()
    return data


def export_commit(repository: Repository, sha: str, dest: Path) -> int:
    """Write the tree of exactly ``sha`` into ``dest`` (``git archive``); returns the
    number of files. Symlinks pointing outside the workspace are dropped."""
    repo = _repo(repository)
    dest.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    repo.archive(buf, sha, format="tar")
    buf.seek(0)
    count = 0
    root = dest.resolve()
    with tarfile.open(fileobj=buf, mode="r:") as tar:
        members = []
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not str(target).startswith(str(root) + os.sep) and target != root:
                continue
            if member.issym() or member.islnk():
                link = (target.parent / member.linkname).resolve()
                if not str(link).startswith(str(root) + os.sep):
                    continue
            if not (member.isfile() or member.isdir() or member.issym()):
                continue
            members.append(member)
            count += member.isfile()
        tar.extractall(dest, members=members, filter="tar")
    return count
