"""A project's git repository: connect, change, disconnect, rotate the webhook secret.

Credentials (a token or an SSH deploy key) and the webhook secret are stored encrypted
with apps.core.crypto and never returned; the webhook secret is shown in plaintext once,
when it is created or rotated (the caller gets it from ``repository_set``'s result)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.core import crypto
from apps.core.actors import Actor
from apps.core.errors import DomainError, NotFound
from apps.pipelines import remote
from apps.pipelines.models import Repository
from apps.pipelines.webhooks import PROVIDERS
from apps.tenancy import permissions, roles
from apps.tenancy.models import Project

_UNSET: Any = object()
_SCP_RE = remote.SCP_RE  # git@github.com:org/repo.git
_BRANCH_RE = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![/.])$")


@dataclass
class RepositoryResult:
    repository: Repository
    created: bool
    webhook_secret: str | None  # plaintext, only when just created or rotated


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def new_hook_id() -> str:
    return secrets.token_urlsafe(24)


def webhook_urls(repository: Repository) -> dict[str, str]:
    return {p: f"{settings.PUBLIC_URL}/hooks/{p}/{repository.hook_id}/" for p in PROVIDERS}


def webhook_secret(repository: Repository) -> str:
    """Internal: the plaintext secret, for signature checks only."""
    return crypto.decrypt(repository.webhook_secret_ciphertext)


def credentials_value(repository: Repository) -> str | None:
    """Internal: the plaintext credentials, for fetching only."""
    if not repository.credentials_ciphertext:
        return None
    return crypto.decrypt(repository.credentials_ciphertext)


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(message, code="invalid", fields={field: [message]})


def validate_url(url: str) -> str:
    """The URL, stripped; DomainError naming the rule when it is malformed, or when it leads to
    a local path or to a loopback, link-local, private... address, or one of this server's
    (``remote.check``: the name is resolved now, and again before every fetch)."""
    url = url.strip()
    if not url:
        raise _invalid("url", "A repository URL is required.")
    if not _SCP_RE.match(url):
        parts = urlsplit(url)
        if parts.scheme in remote.NETWORK_SCHEMES:
            if not parts.hostname:
                raise _invalid("url", "The repository URL has no host.")
            if parts.password:
                raise _invalid("url", "Put the token in 'credentials', not in the URL.")
        elif not (parts.scheme == "file" or (not parts.scheme and url.startswith("/"))):
            raise _invalid("url", "Use an https://, ssh:// or git@host:path URL.")
    remote.check(url, at_fetch=False)
    return url


def validate_branch(branch: str) -> str:
    if not _BRANCH_RE.match(branch) or branch.endswith(".lock"):
        raise _invalid("default_branch", f"'{branch}' is not a valid branch name.")
    return branch


def validate_pipeline_yaml(text: str) -> None:
    """A console-held pipeline is checked when it is saved, with the same line-numbered
    rules as a stratus.yaml read at run time."""
    from apps.pipelines.pipeline_config import parse_pipeline

    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise _invalid("pipeline_yaml", f"pipeline_yaml is not valid YAML{where}: {problem}.") from None
    if text.strip():
        try:
            parse_pipeline(text)
        except DomainError as exc:
            raise _invalid("pipeline_yaml", exc.message) from None


def _require_admin(actor: Actor, project: Project, action: str) -> None:
    permissions.require_project_permission(actor, project, roles.CHANGE_PROJECT, action)


def repository_get(*, project: Project) -> Repository:
    repository = Repository.objects.filter(project=project).select_related("project__org").first()
    if repository is None:
        raise NotFound("This project has no repository.")
    return repository


@transaction.atomic
def repository_set(
    *,
    actor: Actor,
    project: Project,
    url: str,
    default_branch: str = _UNSET,
    credentials: dict[str, str] | None = _UNSET,
    pipeline_source: str = _UNSET,
    pipeline_yaml: str = _UNSET,
    approver_not_pusher: bool = _UNSET,
    rotate_secret: bool = False,
) -> RepositoryResult:
    """Connect (create) or change the project's repository. Omitted fields keep their value
    (defaults on creation); ``credentials=None`` removes stored credentials."""
    _require_admin(actor, project, "Connecting a repository")
    url = validate_url(url)
    repository = Repository.objects.select_for_update().filter(project=project).first()
    created = repository is None
    if repository is None:
        repository = Repository(project=project, hook_id=new_hook_id())
    changes: dict[str, Any] = {}

    def change(field: str, value: Any) -> None:
        old = getattr(repository, field)
        if created or old != value:
            changes[field] = value if created else [old, value]
        setattr(repository, field, value)

    change("url", url)
    if default_branch is not _UNSET:
        change("default_branch", validate_branch(default_branch))
    if pipeline_source is not _UNSET:
        change("pipeline_source", pipeline_source)
    if pipeline_yaml is not _UNSET:
        validate_pipeline_yaml(pipeline_yaml)
        repository.pipeline_yaml = pipeline_yaml
        changes["pipeline_yaml"] = "changed"
    if approver_not_pusher is not _UNSET:
        change("approver_not_pusher", approver_not_pusher)
    if repository.pipeline_source == Repository.PipelineSource.CONSOLE and not repository.pipeline_yaml.strip():
        raise _invalid("pipeline_yaml", "A pipeline held in the console needs pipeline_yaml.")
    if credentials is not _UNSET:
        if credentials is None:
            repository.credentials_kind = Repository.Credentials.NONE
            repository.credentials_ciphertext = None
            changes["credentials"] = "removed"
        else:
            repository.credentials_kind = credentials["kind"]
            repository.credentials_ciphertext = crypto.encrypt(credentials["value"])
            changes["credentials"] = f"set ({credentials['kind']})"  # never the value

    secret: str | None = None
    if created or rotate_secret:
        secret = new_webhook_secret()
        repository.webhook_secret_ciphertext = crypto.encrypt(secret)
        changes["webhook_secret"] = "created" if created else "rotated"
    repository.save()
    audit_record(
        actor=actor,
        org=project.org,
        action="repository.create" if created else "repository.update",
        target=repository,
        changes=changes,
    )
    return RepositoryResult(repository=repository, created=created, webhook_secret=secret)


@transaction.atomic
def repository_delete(*, actor: Actor, project: Project) -> None:
    """Disconnect: the repository, its deliveries and its runs go."""
    _require_admin(actor, project, "Disconnecting a repository")
    repository = Repository.objects.select_for_update().filter(project=project).first()
    if repository is None:
        raise NotFound("This project has no repository.")
    audit_record(
        actor=actor, org=project.org, action="repository.delete", target=repository, changes={"url": repository.url}
    )
    repository.delete()
