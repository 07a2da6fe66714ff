"""The gateway's routing table: every binding served by the local engine, in memory.

Loaded from the database in one pass (on start, when a deploy or traffic change is
announced, and periodically as a safety net) and swapped in whole, so the hot path is a dict
lookup and never a query. Each version carries everything needed to start its instances.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from apps.core.event_shapes import DEFAULT_FORMAT, compile_routes
from apps.core.event_shapes import Route as PathRoute
from apps.engine.pool import ScalingPolicy
from apps.engine.sandbox import InstanceSpec
from apps.functions.backends.local import version_dir
from apps.functions.deploy_services import merged_env
from apps.functions.identities import execution_identities, execution_identity
from apps.functions.models import Binding, Function, Version
from apps.tenancy.environment_values import environment_values
from apps.tenancy.models import Environment
from apps.tenancy.quotas import org_quota_limits, orgs_quota_limits

RouteKey = tuple[str, str, str, str]  # org, project, environment, function
PROCESSES_PER_INSTANCE = 64  # processes + threads (a Node instance uses about 11)


@dataclass(frozen=True)
class RouteVersion:
    number: int
    artifact_sha256: str
    spec: InstanceSpec = field(repr=False)
    policy: ScalingPolicy
    # Instances are shared by requests with the same key: a new key (new code, config or
    # environment variables) gets fresh instances and the old ones drain.
    pool_key: tuple[Any, ...]
    # How the gateway shapes this version's events and answers (runtime/stratus_bootstrap/events.py):
    # part of the version's config, so a canary may change them and a rollback restores them.
    event_format: str = DEFAULT_FORMAT
    paths: tuple[PathRoute, ...] = ()


@dataclass(frozen=True)
class Rule:
    """Send requests whose header (or cookie) matches to ``version`` (traffic coloring)."""

    source: str  # header | cookie
    name: str  # lower-case for headers
    match: str  # equals | regex
    value: str
    version: int
    pattern: re.Pattern[str] | None = None

    def matches(self, found: str | None) -> bool:
        if found is None:
            return False
        if self.pattern is not None:
            return self.pattern.fullmatch(found) is not None
        return found == self.value


class NotServed(Exception):
    """An X-Stratus-Version header names something this binding does not serve."""


BUCKETS = 10_000  # sticky buckets: 0.01% of traffic each


@dataclass(frozen=True)
class Route:
    key: RouteKey
    binding_id: int
    function_id: int
    environment_id: int
    project_id: int
    kind: str
    auth_mode: str
    revision: int
    versions: dict[int, RouteVersion]
    # Canary first: sticky buckets [0, canary share) go to the canary, so a growing share
    # only ever moves buckets from stable to canary.
    weights: tuple[tuple[int, int], ...]
    tags: dict[str, int] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    sticky: tuple[str, str] | None = None  # (header | cookie, name)
    _cumulative: tuple[int, ...] = field(default=(), repr=False)

    @property
    def needs_headers(self) -> bool:
        return bool(self.rules or self.sticky)

    def pick(self, rng: random.Random | None = None) -> RouteVersion:
        """A version drawn by the traffic weights."""
        if len(self.weights) == 1:
            return self.versions[self.weights[0][0]]
        point = (rng or random).randrange(self._cumulative[-1])
        return self.versions[self.weights[bisect.bisect_right(self._cumulative, point)][0]]

    def bucket_version(self, sticky_value: str) -> RouteVersion:
        """The version of a sticky caller: its bucket (a hash of the binding and the value)
        against the cumulative weights, canary first."""
        digest = hashlib.sha256(f"{self.binding_id}:{sticky_value}".encode()).digest()
        bucket = int.from_bytes(digest[:8], "big") % BUCKETS
        point = bucket * self._cumulative[-1] // BUCKETS
        return self.versions[self.weights[bisect.bisect_right(self._cumulative, point)][0]]

    def select(self, override: str | None, header: Any, cookie: Any) -> RouteVersion:
        """The version for one request: the X-Stratus-Version override, then the first
        matching rule, then the caller's sticky bucket, then the weights. ``header(name)``
        and ``cookie(name)`` read the request (called only when a rule or key needs them)."""
        if override:
            return self.version_named(override)
        for rule in self.rules:
            if rule.matches(header(rule.name) if rule.source == "header" else cookie(rule.name)):
                return self.versions[rule.version]
        if self.sticky is not None and len(self.weights) > 1:
            source, name = self.sticky
            value = header(name) if source == "header" else cookie(name)
            if value:
                return self.bucket_version(value)
        return self.pick()

    def version_named(self, name: str) -> RouteVersion:
        name = name.strip().lower()
        number = self.tags.get(name)
        if number is None and name.removeprefix("v").isdigit():
            number = int(name.removeprefix("v"))
        if number is None or number not in self.versions:
            serving = ", ".join(f"v{n}" for n, _ in self.weights)
            tags = ", ".join(sorted(self.tags))
            raise NotServed(
                f"X-Stratus-Version: {name!r} is not served here (serving {serving}"
                + (f"; tags {tags}" if tags else "")
                + ")."
            )
        return self.versions[number]


def make_route(**kwargs: Any) -> Route:
    weights = tuple(kwargs["weights"])
    tags: dict[str, int] = kwargs.get("tags") or {}
    canary = tags.get("canary")
    if canary is not None:
        weights = tuple(sorted(weights, key=lambda entry: entry[0] != canary))
    running, cumulative = 0, []
    for _, weight in weights:
        running += weight
        cumulative.append(running)
    return Route(**{**kwargs, "weights": weights}, _cumulative=tuple(cumulative))


def parse_rules(raw: Any, known: set[int]) -> tuple[Rule, ...]:
    """The binding's header rules as the gateway matches them (validated when they were
    set; a rule naming a version that is gone is skipped)."""
    rules = []
    for entry in raw or []:
        try:
            version = int(entry["version"])
            if version not in known:
                continue
            source = entry.get("source", "header")
            name = str(entry["name"]).lower() if source == "header" else str(entry["name"])
            pattern = re.compile(entry["value"]) if entry.get("match") == "regex" else None
            rules.append(Rule(source, name, entry.get("match", "equals"), str(entry["value"]), version, pattern))
        except (KeyError, TypeError, ValueError, re.error):
            continue
    return tuple(rules)


def parse_sticky(raw: str) -> tuple[str, str] | None:
    source, _, name = (raw or "").partition(":")
    if source not in ("header", "cookie") or not name:
        return None
    return (source, name.lower() if source == "header" else name)


def spec_digest(spec: InstanceSpec, sha256: str) -> str:
    payload = {
        "runtime": spec.runtime,
        "kind": spec.kind,
        "handler": spec.handler,
        "memory_mb": spec.memory_mb,
        "timeout_s": spec.timeout_s,
        "tmp_mb": spec.tmp_mb,
        "identity": spec.identity,
        "egress_allow": list(spec.egress_allow),
        "env": sorted(spec.env.items()),
        "artifact": sha256,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def route_version(
    *,
    function: Function,
    environment: Environment,
    version: Version,
    binding_id: int | None,
    warm: int = 0,
    env: dict[str, str] | None = None,
    identity: int | None = None,
    org_quota: tuple[int, int] | None = None,
) -> RouteVersion:
    """The one way a RouteVersion is built from the database: a Version row (its config
    snapshot) as it runs in ``environment``. The routing table (``routes_from``), the invoke
    API and the supervisor all build versions here. ``binding_id``: the binding whose pools
    it shares (None: it runs apart); ``warm``: instances a release pre-starts for it.
    ``env``, ``identity`` and ``org_quota`` are looked up when not given (the route loader
    reads them for many versions at once): the process environment (functions'
    ``merged_env``, the one merge of version, variables and secrets), the function's execution
    identity in ``environment``, the organization's (instances, memory_mb) quota."""
    if env is None:
        env = merged_env(version=version, environment=environment)
    config = version.config
    spec = _instance_spec(
        function=function,
        environment=environment,
        config=config,
        code_dir=Path(version_dir(version.artifact.sha256)),
        label=str(version.number),
        env=env,
        identity=identity,
        org_quota=org_quota,
    )
    policy = ScalingPolicy(
        # "warm": instances a release pre-starts for a canary about to take a share.
        min_instances=min(max(int(config.get("min_instances", 0)), warm), int(config.get("max_instances", 10))),
        max_instances=int(config.get("max_instances", 10)),
        concurrency=int(config.get("instance_concurrency", 1)),
        idle_timeout_s=float(config.get("idle_timeout_s", 300)),
        queue_timeout_s=min(float(settings.STRATUS_QUEUE_TIMEOUT_S), float(config["timeout_s"])),
    )
    sha = version.artifact.sha256
    key = (binding_id, environment.pk, function.pk, version.number, spec_digest(spec, sha))
    return RouteVersion(
        number=version.number,
        artifact_sha256=sha,
        spec=spec,
        policy=policy,
        pool_key=key,
        event_format=str(config.get("event_format") or DEFAULT_FORMAT),
        paths=compile_routes(config.get("routes") or ()),
    )


DRAFT_NUMBER = 0  # a draft run's "version" in its records and pool key: versions start at 1
DRAFT_IDLE_S = 120.0  # a draft's instance outlives a pause in typing, not an editing session


def draft_route_version(*, function: Function, environment: Environment, digest: str, code_dir: Path) -> RouteVersion:
    """The draft (its files written out in ``code_dir``, named by ``digest``) as it would run
    in ``environment`` if published and deployed now: the function's current configuration,
    its variables and the environment's variables and secrets, the same execution identity,
    sandbox and limits. One instance at a time, apart from any binding's pools; a changed
    draft gets a new pool key (and the engine retires the old draft's instance)."""
    from apps.functions.version_services import function_config_snapshot

    config = function_config_snapshot(function)
    env = {**config.get("env", {}), **environment_values(environment=environment)}
    spec = _instance_spec(
        function=function,
        environment=environment,
        config=config,
        code_dir=code_dir,
        label="draft",
        env=env,
        identity=None,
        org_quota=None,
    )
    policy = ScalingPolicy(
        min_instances=0,
        max_instances=1,
        concurrency=1,
        idle_timeout_s=DRAFT_IDLE_S,
        queue_timeout_s=min(float(settings.STRATUS_QUEUE_TIMEOUT_S), float(config["timeout_s"])),
    )
    key = (None, environment.pk, function.pk, DRAFT_NUMBER, spec_digest(spec, digest))
    return RouteVersion(
        number=DRAFT_NUMBER,
        artifact_sha256=digest,
        spec=spec,
        policy=policy,
        pool_key=key,
        event_format=str(config.get("event_format") or DEFAULT_FORMAT),
        paths=compile_routes(config.get("routes") or ()),
    )


def _instance_spec(
    *,
    function: Function,
    environment: Environment,
    config: dict[str, Any],
    code_dir: Path,
    label: str,
    env: dict[str, str],
    identity: int | None,
    org_quota: tuple[int, int] | None,
) -> InstanceSpec:
    org_id = int(environment.project.org_id)  # the function's project is the environment's
    max_instances = max(1, int(config.get("max_instances", 10)))
    return InstanceSpec(
        runtime=config["runtime"],
        kind=config["kind"],
        handler=config["handler"],
        code_dir=code_dir,
        function_id=function.pk,
        function_name=function.name,
        function_version=label,
        memory_mb=int(config["memory_mb"]),
        timeout_s=float(config["timeout_s"]),
        env=env,
        identity=identity if identity is not None else execution_identity(function.pk, environment.pk),
        max_processes=PROCESSES_PER_INSTANCE,
        # RLIMIT_NPROC counts per uid, and all instances of an identity share its uid: a
        # ceiling for them together that does not grow past the setting with max_instances.
        identity_max_processes=min(
            PROCESSES_PER_INSTANCE * max_instances, int(settings.STRATUS_IDENTITY_MAX_PROCESSES)
        ),
        tmp_mb=int(config.get("ephemeral_storage_mb", 128)),
        egress_allow=tuple(environment.egress_allow or ()),
        org_id=org_id,
        org_quota=org_quota if org_quota is not None else org_quota_limits(org_id),
        project=environment.project.slug,
        environment=environment.name,
        region=str(settings.STRATUS_FUNCTION_REGION),
    )


def load_routes(binding_ids: Iterable[int] | None = None) -> dict[RouteKey, Route]:
    """Every local binding with traffic (or just ``binding_ids``), keyed by URL path parts.
    Runs in a worker thread of the engine; its connection is closed after each load (loads
    are rare: on change announcements and every resync) so no idle connection lingers."""
    try:
        return _load_routes(binding_ids)
    finally:
        connection.close()


def _load_routes(binding_ids: Iterable[int] | None) -> dict[RouteKey, Route]:
    bindings = Binding.objects.filter(backend="local").exclude(traffic=[])
    if binding_ids is not None:
        bindings = bindings.filter(pk__in=list(binding_ids))
    return routes_from(bindings)


def binding_route(binding: Binding) -> Route | None:
    """The route of one binding, as the gateway's table holds it (None: it serves nothing)."""
    routes = routes_from(Binding.objects.filter(pk=binding.pk))
    return next(iter(routes.values()), None)


def version_from_db(
    *, function_id: int, environment_id: int, number: int, binding_id: int | None
) -> RouteVersion | None:
    """One version straight from the database, outside any route (the supervisor asked for a
    version it has not routed, or not yet); None when the function, environment or version is
    gone."""
    function = Function.objects.filter(pk=function_id).first()
    environment = Environment.objects.select_related("project").filter(pk=environment_id).first()
    if function is None or environment is None:
        return None
    version = Version.objects.select_related("artifact").filter(function=function, number=number).first()
    if version is None:
        return None
    return route_version(function=function, environment=environment, version=version, binding_id=binding_id)


def draft_version_from_db(*, function_id: int, environment_id: int) -> RouteVersion | None:
    """A function's draft as it runs in an environment, straight from the database (the
    supervisor asked for a draft run); None when the function or environment is gone."""
    from apps.functions.draft_code import draft_code_prepare

    function = Function.objects.filter(pk=function_id).first()
    environment = Environment.objects.select_related("project").filter(pk=environment_id).first()
    if function is None or environment is None:
        return None
    digest, code_dir = draft_code_prepare(function)
    return draft_route_version(function=function, environment=environment, digest=digest, code_dir=code_dir)


def routes_from(bindings: QuerySet[Binding]) -> dict[RouteKey, Route]:
    """The routes of ``bindings``, keyed by URL path parts: the versions their traffic and
    rules name, built by ``route_version`` with versions, environment values, identities and
    quotas each read in one pass for all of them."""
    bindings_list = list(
        bindings.select_related("function", "environment__project__org").prefetch_related(
            "environment__variables", "environment__secrets"
        )
    )
    wanted = {(b.function_id, number) for b in bindings_list for number in b.split().versions()}
    wanted |= {
        (b.function_id, int(rule["version"]))
        for b in bindings_list
        for rule in b.header_rules or []
        if isinstance(rule, dict) and str(rule.get("version", "")).isdigit()
    }
    versions: dict[tuple[int, int], Version] = {}
    if wanted:
        function_ids = {f for f, _ in wanted}
        for version in Version.objects.filter(function_id__in=function_ids).select_related("artifact"):
            if (version.function_id, version.number) in wanted:
                versions[(version.function_id, version.number)] = version
    values: dict[int, dict[str, str]] = {}  # environment id -> its variables and secrets
    identities = execution_identities((b.function_id, b.environment_id) for b in bindings_list)
    quotas = orgs_quota_limits({b.environment.project.org_id for b in bindings_list})
    table: dict[RouteKey, Route] = {}
    for binding in bindings_list:
        environment = binding.environment
        project = environment.project
        if environment.pk not in values:
            values[environment.pk] = environment_values(environment=environment)
        route_versions: dict[int, RouteVersion] = {}
        split = binding.split()
        warm = split.warm()
        rule_numbers = [int(r["version"]) for r in binding.header_rules or [] if str(r.get("version", "")).isdigit()]
        for number in [*split.versions(), *rule_numbers]:
            found = versions.get((binding.function_id, number))
            if found is None or found.number in route_versions:
                continue
            route_versions[found.number] = route_version(
                function=binding.function,
                environment=environment,
                version=found,
                env=merged_env(version=found, environment=environment, values=values[environment.pk]),
                binding_id=binding.pk,
                warm=warm.get(found.number, 0),
                identity=identities[(binding.function_id, environment.pk)],
                org_quota=quotas[project.org_id],
            )
        weights = [(number, weight) for number, weight in split.weights() if number in route_versions]
        tags = {tag: number for number, tag in split.tags().items()}
        if not weights or sum(w for _, w in weights) <= 0:
            continue
        key = (project.org.slug, project.slug, environment.name, binding.function.name)
        table[key] = make_route(
            key=key,
            binding_id=binding.pk,
            function_id=binding.function_id,
            environment_id=environment.pk,
            project_id=project.pk,
            kind=binding.function.kind,
            auth_mode=binding.auth_mode,
            revision=binding.revision,
            versions=route_versions,
            weights=weights,
            tags=tags,
            rules=parse_rules(binding.header_rules, set(route_versions)),
            sticky=parse_sticky(binding.sticky_key),
        )
    return table
