"""Deploys: put a version on a binding (function × environment) at 100%."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from apps.audit.services import audit_record
from apps.core.errors import Conflict, DomainError
from apps.core.origins import functions_origin
from apps.core.outbox import enqueue_after_commit
from apps.functions.backends.base import BindingTarget, DeployedVersion, HeaderMatch, TrafficRules
from apps.functions.backends.registry import backend_name_for, get_backend
from apps.functions.models import Binding, Function, TrafficChange, Version
from apps.functions.routes import routes_changed
from apps.tenancy import permissions, quotas
from apps.tenancy.environment_values import environment_values
from apps.tenancy.models import Environment

logger = logging.getLogger(__name__)


def binding_url(binding: Binding) -> str:
    """The binding's invoke URL, on the functions' own origin (never the console's: a function
    there would receive a signed-in visitor's cookies; apps/engine/gateway.py)."""
    project = binding.environment.project
    return functions_origin().url_for(
        org=project.org.slug, project=project.slug, env=binding.environment.name, function=binding.function.name
    )


def environment_config_snapshot(*, function: Function, environment: Environment) -> dict[str, Any]:
    """What configuration a deploy used: variable names and values, secret names only."""
    return {
        "function_env": sorted(function.env),
        "variables": {v.name: v.value for v in environment.variables.order_by("name")},
        "secrets": sorted(environment.secrets.values_list("name", flat=True)),
    }


def merged_env(*, version: Version, environment: Environment, values: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment of a deployed version, for every backend and the engine: the
    version's own variables, then the environment's variables, then its secrets (later ones
    win; tenancy's ``environment_values``). ``values``: those environment values when the
    caller already read them (the route loader, once per environment for all its versions)."""
    if values is None:
        values = environment_values(environment=environment)
    return {**version.config.get("env", {}), **values}


def _validate_traffic(binding: Binding, traffic: list[dict[str, Any]]) -> None:
    numbers = [entry["version"] for entry in traffic]
    if not traffic or sum(int(entry["weight"]) for entry in traffic) != 100:
        raise DomainError("Traffic weights must sum to 100.", code="invalid")
    if len(set(numbers)) != len(numbers):
        raise DomainError("A version may appear once in the traffic.", code="invalid")
    if any(int(entry["weight"]) < 0 for entry in traffic):
        raise DomainError("Traffic weights must not be negative.", code="invalid")
    known = set(binding.function.versions.filter(number__in=numbers).values_list("number", flat=True))
    missing = sorted(set(numbers) - known)
    if missing:
        raise DomainError(f"Versions {missing} do not exist.", code="not_found", status_code=404)


# How a refusal names the change: "<verb> 'checkout' v3 in 'prod' adds 12".
_QUOTA_VERBS: dict[str, str] = {
    TrafficChange.Reason.DEPLOY: "deploying",
    TrafficChange.Reason.RELEASE_START: "starting the release of",
    TrafficChange.Reason.STEP: "this release step of",
    TrafficChange.Reason.COMPLETE: "completing the release of",
    TrafficChange.Reason.ROLLBACK: "rolling back",
    TrafficChange.Reason.PROMOTE: "promoting",
    TrafficChange.Reason.RULES: "the header rules of",
}


def _check_quotas(binding: Binding, traffic: list[dict[str, Any]], reason: str, version: Version | None) -> None:
    """The org's reserved instances and memory (min_instances of every version a binding
    serves) must still fit its quotas after this change (apps/tenancy/quotas.py; it locks the
    org's row after this binding's). binding_rules_set saves the new header rules on the row
    before calling traffic_apply, so for a rules change the "before" counts the traffic's
    versions only: a rule naming a version outside the traffic counts as newly reserved."""
    rules_before = [] if reason == TrafficChange.Reason.RULES else binding.header_rules
    what = f"'{binding.function.name}'" + (f" v{version.number}" if version is not None else "")
    quotas.check_binding_change(
        binding=binding,
        before_versions=quotas.served_versions(binding.traffic, rules_before),
        after_versions=quotas.served_versions(traffic, binding.header_rules),
        action=f"{_QUOTA_VERBS.get(reason, 'this change of')} {what} in '{binding.environment.name}'",
    )


def traffic_apply(
    *,
    actor: Any,
    binding: Binding,
    traffic: list[dict[str, Any]],
    reason: str,
    version: Version | None = None,
    release: Any = None,
    note: str = "",
) -> Binding:
    """The one way a binding's traffic changes (deploys, release steps, aborts, rollbacks):
    in the caller's transaction, lock the binding, check the org's quotas (403
    quota_exceeded when its reserved totals would exceed them), set the traffic, bump the
    revision, record the change on the timeline and in the audit log; after commit, announce
    the new routes (the gateway serves them at once) and let the backend apply them.

    ``traffic`` entries: {"version": n, "weight": w} plus optional "tag" ("stable" |
    "canary") and "warm" (instances to pre-start for that version)."""
    assert transaction.get_connection().in_atomic_block, "traffic_apply runs inside a transaction"
    binding = (
        Binding.objects.select_for_update().select_related("function", "environment__project__org").get(pk=binding.pk)
    )
    _validate_traffic(binding, traffic)
    _check_quotas(binding, traffic, reason, version)
    old = binding.traffic
    binding.traffic = traffic
    binding.revision += 1
    binding.status = Binding.Status.PENDING
    binding.status_message = ""
    binding.save()
    environment = binding.environment
    TrafficChange.objects.create(
        binding=binding,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        reason=reason,
        from_traffic=old,
        to_traffic=traffic,
        version=version,
        release=release,
        note=note[:500],
        config_snapshot=environment_config_snapshot(function=binding.function, environment=environment),
    )
    audit_record(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        org=environment.project.org,
        action=f"binding.{reason}",
        target=binding.function,
        changes={
            "environment": environment.name,
            **({"version": version.number} if version is not None else {}),
            "from": old,
            "to": traffic,
            **({"note": note} if note else {}),
        },
    )
    from apps.functions.tasks import binding_apply

    revision = binding.revision
    # Tell the gateways at once (they serve the new traffic, preparing code on first use if
    # the apply task has not yet), and let the task prepare and mark the binding ready.
    routes_changed.after_commit((binding.pk,))
    enqueue_after_commit(binding_apply, binding.pk, revision)
    return binding


@transaction.atomic
def deploy(
    *, actor: Any, function: Function, environment: Environment, version: Version, auth_mode: str | None = None
) -> Binding:
    """Serve ``version`` at 100% in ``environment``. The backend work (prepare, apply) runs
    after commit in the ``binding_apply`` task, which acts on this exact revision."""
    permissions.require_deploy(actor, environment)
    if environment.project_id != function.project_id or version.function_id != function.pk:
        raise DomainError("The version and environment must belong to this function's project.", code="invalid")
    binding, _ = Binding.objects.get_or_create(
        function=function,
        environment=environment,
        defaults={"backend": backend_name_for(environment), "auth_mode": auth_mode or Binding.AuthMode.TOKEN},
    )
    if auth_mode and binding.auth_mode != auth_mode:
        Binding.objects.filter(pk=binding.pk).update(auth_mode=auth_mode)
    from apps.releases.selectors import active_release

    running = active_release(binding=binding)
    if running is not None:
        raise Conflict(
            f"Release {running.pk} is {running.state} on '{environment.name}': promote, abort or roll back first.",
            code="release_active",
        )
    return traffic_apply(
        actor=actor,
        binding=binding,
        traffic=[{"version": version.number, "weight": 100}],
        reason=TrafficChange.Reason.DEPLOY,
        version=version,
    )


def binding_target(binding: Binding) -> BindingTarget:
    project = binding.environment.project
    return BindingTarget(
        binding_id=binding.pk,
        org=project.org.slug,
        project=project.slug,
        environment=binding.environment.name,
        function=binding.function.name,
    )


def environment_bindings_remove(*, environment: Environment) -> list[int]:
    """Stop serving every binding of ``environment``, which is about to be deleted (a preview
    whose branch is gone): each backend drops what it serves for the binding now, and after
    commit the routes of those bindings are announced as changed, so every gateway forgets
    them. The rows themselves go with the environment, in the caller's transaction. Best
    effort per binding: a backend that fails is logged (a stale local pool drains on the next
    reload). Returns the ids of the bindings removed."""
    bindings = list(environment.bindings.select_related("function", "environment__project__org").order_by("pk"))
    for binding in bindings:
        try:
            get_backend(binding.backend).remove(binding_target(binding))
        except Exception:  # noqa: BLE001 - the rows go anyway
            logger.exception("removing binding %s from its backend failed", binding.pk)
    binding_ids = [binding.pk for binding in bindings]
    if binding_ids:
        routes_changed.after_commit(tuple(binding_ids))
    return binding_ids


def environment_bindings_move(*, actor: Any, environment: Environment, backend: str) -> list[int]:
    """Move every binding of ``environment`` that is not on ``backend`` there (its execution
    backend changed), in the caller's transaction: each binding's ``backend`` and revision
    change (status pending, saying so). After commit each old backend drops the binding
    (best effort, logged), the routes are announced (the local gateway stops or starts
    serving it) and ``binding_apply`` re-applies its traffic on the new backend. Returns the
    ids of the bindings moved."""
    from apps.functions.tasks import binding_apply

    moved: list[tuple[Binding, str]] = []
    bindings = environment.bindings.select_for_update().select_related("function", "environment__project__org")
    for binding in bindings.exclude(backend=backend).order_by("pk"):
        old = binding.backend
        binding.backend = backend
        binding.revision += 1
        binding.status = Binding.Status.PENDING
        binding.status_message = f"moving from the {old} backend to {backend}"
        binding.save(update_fields=["backend", "revision", "status", "status_message", "updated_at"])
        audit_record(
            actor=actor if getattr(actor, "is_authenticated", False) else None,
            org=environment.project.org,
            action="binding.move",
            target=binding.function,
            changes={"environment": environment.name, "backend": [old, backend]},
        )
        moved.append((binding, old))

    def after_commit() -> None:
        for binding, old in moved:
            try:
                get_backend(old).remove(binding_target(binding))
            except Exception:  # noqa: BLE001 - the binding is served by its new backend anyway
                logger.exception("removing binding %s from its old backend %s failed", binding.pk, old)

    for binding, _ in moved:  # through the outbox: a broker outage delays the move, never loses it
        enqueue_after_commit(binding_apply, binding.pk, binding.revision)
    if moved:
        routes_changed.after_commit(tuple(binding.pk for binding, _ in moved))
        transaction.on_commit(after_commit)
    return [binding.pk for binding, _ in moved]


def deployed_versions(binding: Binding) -> list[DeployedVersion]:
    """The versions ``binding``'s traffic names, as a backend receives them."""
    numbers = binding.version_numbers()
    by_number = {v.number: v for v in binding.function.versions.select_related("artifact").filter(number__in=numbers)}
    return [
        DeployedVersion(
            number=n,
            artifact_sha256=by_number[n].artifact.sha256,
            config=by_number[n].config,
            env=merged_env(version=by_number[n], environment=binding.environment),
        )
        for n in numbers
    ]


def bindings_refresh() -> tuple[int, int]:
    """Let every backend renew what it handed out that expires (Knative: the signed artifact
    URLs revisions read when they start), for each binding that serves something. One failing
    binding is logged and does not stop the others. Returns (refreshed, failed)."""
    refreshed = failed = 0
    bindings = Binding.objects.exclude(backend="local").select_related("function", "environment__project__org")
    for binding in bindings.order_by("pk"):
        if not binding.version_numbers():
            continue
        try:
            get_backend(binding.backend).refresh(binding_target(binding), deployed_versions(binding))
            refreshed += 1
        except Exception:
            failed += 1
            logger.exception("refreshing binding %s on %s failed", binding.pk, binding.backend)
    return refreshed, failed


def binding_apply_revision(*, binding_id: int, revision: int) -> Binding | None:
    """Prepare the binding's versions on its backend and apply its traffic, if ``revision``
    is still the binding's current one. Safe to run twice; a stale revision does nothing."""
    binding = Binding.objects.select_related("function", "environment__project__org").filter(pk=binding_id).first()
    if binding is None or binding.revision != revision:
        return None
    backend = get_backend(binding.backend)
    target = binding_target(binding)
    versions = deployed_versions(binding)
    traffic = TrafficRules(
        weights=binding.split().weights(),
        tags=binding.split().tags(),
        header_rules=tuple(
            HeaderMatch(
                header=str(rule["name"]),
                value=str(rule["value"]),
                version=int(rule["version"]),
                kind=rule.get("match", "equals"),
                source=rule.get("source", "header"),
            )
            for rule in binding.header_rules or []
        ),
        sticky_key=binding.sticky_key or None,
    )
    try:
        for version in versions:
            backend.prepare(target, version)
        result = backend.apply(target, versions, traffic)
        # Rules the backend cannot express do not fail the binding (the weights applied): they are named.
        status = Binding.Status.READY if result.ready else Binding.Status.PENDING
        message = result.message
        if result.unsupported:
            message = f"{message}; not supported on {binding.backend}: " + "; ".join(result.unsupported)
        if len(message) > 500:  # Binding.status_message's max_length
            message = message[:499] + "…"
    except Exception as exc:  # noqa: BLE001 - any backend failure is shown on the binding
        status, message = Binding.Status.FAILED, f"{type(exc).__name__}: {exc}"[:500]
    # Conditional update: a newer deploy that raced this task keeps its own state.
    Binding.objects.filter(pk=binding.pk, revision=revision).update(
        status=status, status_message=message, applied_revision=revision
    )
    binding.refresh_from_db()
    return binding
