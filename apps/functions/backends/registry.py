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


def check_backend_choice(name: str) -> None:
    """A backend an environment may be set to: registered, and configured on this installation.
    DomainError (400) naming the choices, or what is missing, on the ``execution_backend`` field."""
    known = ", ".join(sorted(settings.STRATUS_EXECUTION_BACKENDS))
    path = settings.STRATUS_EXECUTION_BACKENDS.get(name)
    if path is None:
        raise DomainError(
            f"execution_backend: unknown backend '{name}'; known: {known} (or '' for the default).",
            fields={"execution_backend": [f"Use one of: {known}, or '' for the default."]},
        )
    backend_class: type[ExecutionBackend] = import_string(path)
    problem = backend_class.configuration_problem()
    if problem:
        raise DomainError(
            f"execution_backend: {problem}.",
            code="backend_not_configured",
            fields={"execution_backend": [problem]},
        )
