"""Execution identities: the OS identity each function runs as in each environment.

The engine runs a function's instances in environment E as uid ``STRATUS_SANDBOX_UID_BASE +
identity id`` (when it runs as root), so the dev and prod instances of one function are two
users: neither can read the other's memory, environment (its secrets) or files, trace it or
signal it. An identity is made the first time the engine needs it and lives as long as the
function and the environment.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from apps.functions.models import ExecutionIdentity


def execution_identities(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The identity id of each (function id, environment id), made where missing (two
    processes making the same one at once both end with the one that won)."""
    wanted = set(pairs)
    if not wanted:
        return {}
    function_ids = {f for f, _ in wanted}
    found = {
        (row.function_id, row.environment_id): row.pk
        for row in ExecutionIdentity.objects.filter(function_id__in=function_ids)
        if (row.function_id, row.environment_id) in wanted
    }
    for function_id, environment_id in sorted(wanted - found.keys()):
        try:
            with transaction.atomic():
                row = ExecutionIdentity.objects.create(function_id=function_id, environment_id=environment_id)
        except IntegrityError:
            row = ExecutionIdentity.objects.get(function_id=function_id, environment_id=environment_id)
        found[(function_id, environment_id)] = row.pk
    return found


def execution_identity(function_id: int, environment_id: int) -> int:
    return execution_identities([(function_id, environment_id)])[(function_id, environment_id)]
