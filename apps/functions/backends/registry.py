"""Which backend runs an environment's functions: the environment's own choice, else the
setting's default. Backends are built once per process."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from apps.core.errors import DomainError
from apps.functions.backends.base import ExecutionBackend
from apps.tenancy.models import Environment


def backend_name_for(environment: Environment) -> str:
    return environment.execution_backend or settings.STRATUS_DEFAULT_BACKEND


@cache
def _build(name: str, path: str) -> ExecutionBackend:
    backend: ExecutionBackend = import_string(path)()
    return backend


def get_backend(name: str) -> ExecutionBackend:
    path = settings.STRATUS_EXECUTION_BACKENDS.get(name)
    if path is None:
        raise DomainError(
            f"Unknown execution backend '{name}'; known: {', '.join(sorted(settings.STRATUS_EXECUTION_BACKENDS))}.",
            code="unknown_backend",
        )
    return _build(name, path)
