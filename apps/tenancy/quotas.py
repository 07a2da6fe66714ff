"""Organization quotas: how many functions an organization may have, and how many function
instances and how much memory its bindings may reserve.

Limits: the organization's ``quota_*`` fields, which only the platform's staff set (Django
admin), or, where a field is empty, the ``STRATUS_ORG_QUOTA_*`` settings.

Usage at the API level is what is *reserved*, not what happens to run at this moment: each
binding with traffic keeps every version it serves (its traffic entries and the versions its
header rules name, as the engine loads them) at that version's ``min_instances``, and each of
those instances takes ``memory_mb + ephemeral_storage_mb`` (its private /tmp is a tmpfs, so
it is memory). Both come from the version's config snapshot: that is what runs, not the
function's current settings. On-demand instances above the reservation are counted by the
engine at run time, against ``org_quota_limits``.

Every refusal is one error, 403 ``quota_exceeded``, whose message names the quota, its limit,
the usage and what was asked, and whose ``fields`` are keyed by the quota's name.

The org's row is the lock: checks that count (functions, reserved totals) take it with
select_for_update inside the caller's transaction, so two concurrent creates or deploys
cannot both pass on the same remaining room. A change that reserves nothing more than the
binding already did is never refused and takes no lock: aborts, gate failures, rollbacks to
a smaller version and release steps between the same two versions always go through, even
after the operators lowered a quota below what is in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from apps.core.errors import QuotaExceeded
from apps.tenancy.models import Organization

if TYPE_CHECKING:
    from apps.functions.models import Binding

# Tenancy sits below apps.functions (which imports tenancy's models), so the functions'
# models are imported inside the functions below, never at module level.

QUOTA_FIELDS = ("quota_functions", "quota_instances", "quota_memory_mb")
RAISE_IT = "ask the platform's operators to raise the quota"
# Versions published before ephemeral_storage_mb existed have no such key in their config
# snapshot; they run with the field's default (Function.ephemeral_storage_mb).
DEFAULT_EPHEMERAL_STORAGE_MB = 128


@dataclass(frozen=True)
class QuotaLimits:
    functions: int
    instances: int
    memory_mb: int


@dataclass(frozen=True)
class Reservation:
    """Instances kept running (min_instances) and the memory they take, in MB."""

    instances: int = 0
    memory_mb: int = 0

    def __add__(self, other: Reservation) -> Reservation:
        return Reservation(self.instances + other.instances, self.memory_mb + other.memory_mb)

    def __sub__(self, other: Reservation) -> Reservation:
        return Reservation(self.instances - other.instances, self.memory_mb - other.memory_mb)


@dataclass(frozen=True)
class QuotaUsage:
    limits: QuotaLimits
    functions: int
    reserved: Reservation

    def as_json(self) -> dict[str, dict[str, int]]:
        return {
            "functions": {"limit": self.limits.functions, "used": self.functions},
            "instances": {"limit": self.limits.instances, "reserved": self.reserved.instances},
            "memory_mb": {"limit": self.limits.memory_mb, "reserved": self.reserved.memory_mb},
        }


# --- limits ----------------------------------------------------------------------------------


def default_limits() -> QuotaLimits:
    return QuotaLimits(
        functions=settings.STRATUS_ORG_QUOTA_FUNCTIONS,
        instances=settings.STRATUS_ORG_QUOTA_INSTANCES,
        memory_mb=settings.STRATUS_ORG_QUOTA_MEMORY_MB,
    )


def _limits(functions: int | None, instances: int | None, memory_mb: int | None) -> QuotaLimits:
    default = default_limits()
    return QuotaLimits(
        functions=default.functions if functions is None else functions,
        instances=default.instances if instances is None else instances,
        memory_mb=default.memory_mb if memory_mb is None else memory_mb,
    )


def org_limits(org: Organization) -> QuotaLimits:
    """The organization's limits: its own quota fields, or the settings' defaults."""
    return _limits(org.quota_functions, org.quota_instances, org.quota_memory_mb)


def orgs_quota_limits(org_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(instances, memory_mb) of each organization in one query; an unknown id gets the
    defaults (an organization deleted since the caller read its id)."""
    wanted = set(org_ids)
    rows = Organization.objects.filter(pk__in=wanted).values_list("pk", *QUOTA_FIELDS)
    found = {pk: _limits(functions, instances, memory) for pk, functions, instances, memory in rows}
    default = default_limits()
    return {pk: (found.get(pk, default).instances, found.get(pk, default).memory_mb) for pk in wanted}


def org_quota_limits(org_id: int) -> tuple[int, int]:
    """For the engine, which caps what an organization runs at once: (instances, memory_mb)."""
    return orgs_quota_limits([org_id])[org_id]


# --- usage -------------------------------------------------------------------------------------


def version_reservation(config: Mapping[str, Any]) -> Reservation:
    """What one served version reserves, from its config snapshot."""
    count = int(config.get("min_instances") or 0)
    per_instance = int(config.get("memory_mb") or 0) + int(
        config.get("ephemeral_storage_mb", DEFAULT_EPHEMERAL_STORAGE_MB) or 0
    )
    return Reservation(count, count * per_instance)


def served_versions(traffic: list[dict[str, Any]], header_rules: list[Any] | None) -> set[int]:
    """The version numbers a binding runs instances for (as the engine's route loading picks
    them): its traffic entries, and the versions its header rules name. A binding without
    traffic serves nothing, whatever its rules say."""
    if not traffic:
        return set()
    numbers = {int(entry["version"]) for entry in traffic}
    numbers |= {
        int(rule["version"])
        for rule in header_rules or []
        if isinstance(rule, dict) and str(rule.get("version", "")).isdigit()
    }
    return numbers


def _version_reservations(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], Reservation]:
    """(function id, version number) → reservation, in one query."""
    from apps.functions.models import Version

    if not pairs:
        return {}
    # A superset (every wanted function × every wanted number), narrowed below: one query.
    candidates = Version.objects.filter(function_id__in={f for f, _ in pairs}, number__in={n for _, n in pairs})
    rows = candidates.values_list("function_id", "number", "config")
    return {(f, n): version_reservation(config) for f, n, config in rows if (f, n) in pairs}


def org_reserved(org_id: int, *, exclude_binding_id: int | None = None) -> Reservation:
    """The organization's reserved instances and memory over all its bindings (two queries)."""
    from apps.functions.models import Binding

    bindings = Binding.objects.filter(environment__project__org_id=org_id).exclude(traffic=[])
    if exclude_binding_id is not None:
        bindings = bindings.exclude(pk=exclude_binding_id)
    served = [
        (function_id, served_versions(traffic, rules))
        for function_id, traffic, rules in bindings.values_list("function_id", "traffic", "header_rules")
    ]
    reservations = _version_reservations({(f, n) for f, numbers in served for n in numbers})
    total = Reservation()
    for function_id, numbers in served:
        for number in numbers:
            total += reservations.get((function_id, number), Reservation())
    return total


def org_quota_usage(org: Organization) -> QuotaUsage:
    """Limits and usage of one organization, in three queries whatever its size."""
    from apps.functions.models import Function

    return QuotaUsage(
        limits=org_limits(org),
        functions=Function.objects.filter(project__org_id=org.pk).count(),
        reserved=org_reserved(org.pk),
    )


# --- checks ------------------------------------------------------------------------------------


def _lock_org(org_id: int) -> Organization:
    """The organization's row, locked until the caller's transaction ends (fresh quota values
    too: staff may have changed them since the caller read the org)."""
    return Organization.objects.select_for_update().get(pk=org_id)


def check_function_create(*, org_id: int, name: str) -> Organization:
    """One more function must fit in quota_functions. Call inside the creating transaction;
    returns the organization's row, locked and fresh, for the checks that follow."""
    from apps.functions.models import Function

    org = _lock_org(org_id)
    limit = org_limits(org).functions
    count = Function.objects.filter(project__org_id=org.pk).count()
    if count + 1 > limit:
        raise QuotaExceeded(
            f"Organization '{org.slug}' is at its quota of {limit} functions (quota_functions): it has {count}, "
            f"and creating '{name}' would make {count + 1}. Delete one or {RAISE_IT}.",
            fields={"quota_functions": [f"limit {limit}, used {count}, asked 1 more"]},
        )
    return org


def check_function_config(
    *, org: Organization, name: str, config: Mapping[str, Any], before: Mapping[str, Any] | None = None
) -> None:
    """A function's own knobs must fit in its organization's quotas: ``min_instances`` and
    ``max_instances`` within quota_instances, one instance's memory (memory_mb +
    ephemeral_storage_mb) within quota_memory_mb. With ``before`` (an update), only a value
    that grows is refused, so lowering an over-quota knob is always possible."""
    limits = org_limits(org)
    problems: list[tuple[str, str, str]] = []  # (quota, field, message)

    def grows(key: str, value: int) -> bool:
        return before is None or value > int(before[key])

    for field in ("max_instances", "min_instances"):
        value = int(config[field])
        if value > limits.instances and grows(field, value):
            problems.append(
                (
                    "quota_instances",
                    field,
                    f"Function '{name}' asks for {field} {value}, more than organization '{org.slug}' may run: "
                    f"its quota is {limits.instances} instances (quota_instances). Lower {field} or {RAISE_IT}.",
                )
            )
    memory, ephemeral = int(config["memory_mb"]), int(config.get("ephemeral_storage_mb", DEFAULT_EPHEMERAL_STORAGE_MB))
    per_instance = memory + ephemeral
    old_per_instance = (
        None
        if before is None
        else int(before["memory_mb"]) + int(before.get("ephemeral_storage_mb", DEFAULT_EPHEMERAL_STORAGE_MB))
    )
    if per_instance > limits.memory_mb and (old_per_instance is None or per_instance > old_per_instance):
        message = (
            f"Function '{name}' asks for {per_instance} MB per instance (memory_mb {memory} + ephemeral_storage_mb "
            f"{ephemeral}), more than organization '{org.slug}' may reserve: its quota is {limits.memory_mb} MB "
            f"(quota_memory_mb). Lower memory_mb or ephemeral_storage_mb, or {RAISE_IT}."
        )
        problems += [("quota_memory_mb", "memory_mb", message), ("quota_memory_mb", "ephemeral_storage_mb", message)]
    if problems:
        fields: dict[str, list[str]] = {}
        for quota, field, message in problems:
            fields.setdefault(quota, [])
            if message not in fields[quota]:
                fields[quota].append(message)
            fields.setdefault(field, []).append(message)
        raise QuotaExceeded(problems[0][2], fields=fields)


def check_binding_change(
    *,
    binding: Binding,
    before_versions: set[int],
    after_versions: set[int],
    action: str,
) -> None:
    """The organization's reserved totals after ``binding`` serves ``after_versions`` instead of
    ``before_versions`` must fit in quota_instances and quota_memory_mb, for each total this
    change raises. Call inside the transaction that writes the traffic, holding the binding's
    lock: the org's row is locked here (binding first, then org, in every path), and the
    other bindings are summed after it is taken, so they include every deploy that committed
    before, and none that commits after can skip this one's reservation."""
    function_id = binding.function_id
    reservations = _version_reservations({(function_id, n) for n in before_versions | after_versions})

    def reserved(numbers: set[int]) -> Reservation:
        total = Reservation()
        for number in numbers:
            total += reservations.get((function_id, number), Reservation())
        return total

    before, after = reserved(before_versions), reserved(after_versions)
    if after.instances <= before.instances and after.memory_mb <= before.memory_mb:
        return
    org = _lock_org(binding.environment.project.org_id)
    limits = org_limits(org)
    others = org_reserved(org.pk, exclude_binding_id=binding.pk)
    now, then, added = others + before, others + after, after - before
    # What the binding's versions reserve after the change, for the message: "v3 12, v4 2".
    serving = [(n, reservations[(function_id, n)]) for n in sorted(after_versions) if (function_id, n) in reservations]
    if added.instances > 0 and then.instances > limits.instances:
        per_version = ", ".join(f"v{n} {r.instances}" for n, r in serving if r.instances)
        raise QuotaExceeded(
            f"Organization '{org.slug}' would reserve {then.instances} instances, over its quota of "
            f"{limits.instances} (quota_instances): {now.instances} are reserved now and {action} adds "
            f"{added.instances} (min_instances of the versions served: {per_version}). Lower min_instances, stop "
            f"serving versions that reserve instances elsewhere, or {RAISE_IT}.",
            fields={
                "quota_instances": [f"limit {limits.instances}, reserved {now.instances}, asked {added.instances}"]
            },
        )
    if added.memory_mb > 0 and then.memory_mb > limits.memory_mb:
        per_version = ", ".join(f"v{n} {r.memory_mb} MB" for n, r in serving if r.memory_mb)
        raise QuotaExceeded(
            f"Organization '{org.slug}' would reserve {then.memory_mb} MB of memory, over its quota of "
            f"{limits.memory_mb} MB (quota_memory_mb): {now.memory_mb} MB are reserved now and {action} adds "
            f"{added.memory_mb} MB ((memory_mb + ephemeral_storage_mb) x min_instances of the versions served: "
            f"{per_version}). Lower min_instances, memory_mb or ephemeral_storage_mb, stop serving versions that "
            f"reserve memory elsewhere, or {RAISE_IT}.",
            fields={
                "quota_memory_mb": [f"limit {limits.memory_mb}, reserved {now.memory_mb}, asked {added.memory_mb}"]
            },
        )
