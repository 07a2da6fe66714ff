"""Rollback and promote: put a binding back on an earlier version, or deploy the version that
serves one environment into another. Both go through ``traffic_apply`` (one transaction:
traffic, revision, timeline, audit; routes announced after commit).

A binding's traffic only names versions: each Version row is an immutable snapshot (artifact
and config), and the engine and backends build instances from that row plus the target
environment's variables and secrets. So putting version 2 back at 100% restores version 2's
code *and* configuration; nothing on the binding overrides either."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.actors import Actor
from apps.core.errors import Conflict, DomainError
from apps.functions.backends.registry import backend_name_for
from apps.functions.deploy_services import traffic_apply
from apps.functions.models import Binding, Function, TrafficChange, Version
from apps.functions.traffic import Traffic
from apps.functions.version_selectors import version_get
from apps.releases.models import Release
from apps.releases.selectors import active_release
from apps.tenancy import permissions
from apps.tenancy.models import Environment


def sole_version(traffic: list[dict[str, Any]]) -> int | None:
    """The version serving 100% alone (entries at weight 0 do not count), else None."""
    return Traffic.parse(traffic).sole()


def describe_traffic(traffic: list[dict[str, Any]]) -> str:
    return Traffic.parse(traffic).describe()


def previous_stable(*, binding: Binding, release: Release | None = None) -> int | None:
    """The version to roll back to when none is named.

    During a release that has shifted traffic, the stable side of it (what served 100% when
    it started). Otherwise the version that served 100% alone immediately before the one
    serving now: walk the timeline newest first and take the first 100%-alone state on
    another version (release steps in between are splits and are skipped)."""
    current = sole_version(binding.traffic)
    if release is not None and release.stable_version_id is not None:
        stable = release.stable_version.number  # type: ignore[union-attr]
        if stable != current:
            return stable
    timeline = (
        TrafficChange.objects.filter(binding=binding)
        .order_by("-created_at", "-id")
        .values_list("to_traffic", flat=True)
    )
    for to_traffic in timeline.iterator(chunk_size=200):
        number = sole_version(to_traffic)
        if number is not None and number != current:
            return number
    return None


def _lock_active_release(binding: Binding) -> Release | None:
    """The binding's active release, locked (release row first, then the binding: the order
    the release workers take), or None. Re-read under the lock: a worker may have just
    finished it."""
    running = active_release(binding=binding)
    if running is None:
        return None
    return (
        Release.objects.select_for_update(of=("self",))
        .select_related("stable_version")
        .filter(pk=running.pk, state__in=Release.ACTIVE_STATES)
        .first()
    )


def _binding_of(function: Function, environment: Environment, action: str) -> Binding:
    binding = Binding.objects.filter(function=function, environment=environment).first()
    if binding is None:
        raise Conflict(
            f"Function '{function.name}' has no binding in '{environment.name}': deploy it there before {action}.",
            code="no_binding",
        )
    return binding


@transaction.atomic
def function_rollback(
    *, actor: Actor, function: Function, environment: Environment, version_number: int | None = None
) -> Binding:
    """Serve the previous stable version (or ``version_number``) at 100% in ``environment``.
    An active release on the binding is marked rolled back in the same transaction."""
    permissions.require_deploy(actor, environment)
    if environment.project_id != function.project_id:
        raise DomainError("The environment must belong to this function's project.", code="invalid")
    binding = _binding_of(function, environment, "rolling back")
    release = _lock_active_release(binding)
    binding = Binding.objects.select_for_update().get(pk=binding.pk)
    if release is None and active_release(binding=binding) is not None:
        raise Conflict(f"A release just started on '{environment.name}': try the rollback again.", code="retry")
    if version_number is None:
        number = previous_stable(binding=binding, release=release)
        if number is None:
            raise Conflict(
                f"Nothing to roll back to in '{environment.name}': no earlier version served 100% there "
                f"(now serving {describe_traffic(binding.traffic)}).",
                code="nothing_to_roll_back",
            )
    else:
        number = version_number
    version = version_get(function=function, number=number)  # 404 naming the version
    if sole_version(binding.traffic) == version.number:
        raise Conflict(
            f"Version {version.number} already serves 100% of '{environment.name}': nothing to roll back.",
            code="already_serving",
        )
    if release is not None:
        release.state = Release.State.ROLLED_BACK
        release.finished_at = timezone.now()
        release.failure = {"by": "rollback", "actor": getattr(actor, "username", None)}
        release.save(update_fields=["state", "finished_at", "failure", "updated_at"])
    return traffic_apply(
        actor=actor,
        binding=binding,
        traffic=[{"version": version.number, "weight": 100}],
        reason=TrafficChange.Reason.ROLLBACK,
        version=version,
        release=release,
        note=f"rollback to v{version.number}",
    )


@transaction.atomic
def function_promote(
    *, actor: Actor, function: Function, from_environment: Environment, to_environment: Environment
) -> Binding:
    """Deploy the exact version serving 100% in ``from_environment`` (the same Version row:
    same artifact and config) to ``to_environment`` at 100%. The target environment's
    variables and secrets apply when it runs there."""
    permissions.require_deploy(actor, to_environment)
    if from_environment.project_id != function.project_id or to_environment.project_id != function.project_id:
        raise DomainError("Both environments must belong to this function's project.", code="invalid")
    if from_environment.pk == to_environment.pk:
        raise DomainError(
            "Promote needs two different environments.",
            code="invalid",
            fields={"environment": ["Must differ from from_environment."]},
        )
    source = _binding_of(function, from_environment, "promoting from it")
    number = sole_version(source.traffic)
    if number is None:
        raise Conflict(
            f"'{from_environment.name}' serves {describe_traffic(source.traffic)}: promote needs one version "
            "at 100% there.",
            code="not_promotable",
        )
    version: Version = version_get(function=function, number=number)
    binding, _ = Binding.objects.get_or_create(
        function=function,
        environment=to_environment,
        defaults={"backend": backend_name_for(to_environment), "auth_mode": Binding.AuthMode.TOKEN},
    )
    running = active_release(binding=binding)
    if running is not None:
        raise Conflict(
            f"Release {running.pk} is {running.state} on '{to_environment.name}': promote, abort or roll back first.",
            code="release_active",
        )
    return traffic_apply(
        actor=actor,
        binding=binding,
        traffic=[{"version": version.number, "weight": 100}],
        reason=TrafficChange.Reason.PROMOTE,
        version=version,
        note=f"from {from_environment.name}",
    )
