"""Render Knative Serving manifests for a function binding.

Pure functions over plain frozen dataclasses: no Django models, no Kubernetes client. The Knative
backend turns a binding (function x environment) into one `serving.knative.dev/v1` Service:

- each Stratus version is one Knative Revision with a deterministic name (`<service>-v<number>`),
  stamped out when that version is the Service's template;
- the Service's `traffic` block pins every weight to a named Revision (`latestRevision: false`), so
  publishing or preparing a new version never moves traffic by itself;
- every version in the traffic gets its own route tag `v<number>` (its own URL), and a version with a
  release tag (`stable`, `canary`) gets that tag too. Knative allows one tag per traffic target, so such
  a version has two targets on the same Revision: the weight under the release tag, and a 0% target
  under `v<number>`. The percents still sum to 100;
- header rules and sticky keys are not expressible in Knative Serving (it routes by weight, and by
  its own `Knative-Serving-Tag` header when that feature is on): unsupported_rules() names each one
  so the binding reports it instead of silently serving weights alone;
- the knobs mean what they mean on every backend: min/max instances are the autoscaler's min/max
  scale, instance_concurrency is the hard per-instance limit (`containerConcurrency`) and the
  autoscaler's target, timeout_s is the request timeout, memory_mb is the memory limit.

A Revision is immutable: Knative refuses a template whose name already exists with a different spec.
The caller must therefore render a version's template from the same inputs every time (including
its artifact URL) and must have applied a version as the template once before it can carry traffic
as an older revision.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

API_VERSION = "serving.knative.dev/v1"
KIND = "Service"

# DNS-1035 label: what Kubernetes and Knative require of Service and Revision names.
DNS_LABEL_MAX = 63
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A Kubernetes label value (the stratus.dev/* labels carry the raw slugs).
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# The service name is kept well under 63 so that everything Knative derives from it stays a valid
# DNS label too: the revision names `<service>-v<number>` and the tagged route hosts
# `<tag>-<service>` (Knative's default tag template). 48 leaves 15 characters for either.
SERVICE_NAME_MAX = 48
_HASH_LEN = 8
TAG_MAX = DNS_LABEL_MAX - SERVICE_NAME_MAX - 1

# Knative's webhook rejects these in a user container (serving's k8s_validation.go), and the STRATUS_*
# names below are how the runtime image learns what to run; a function's env may set neither.
KNATIVE_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
STRATUS_ENV_PREFIX = "STRATUS_"

CONTAINER_NAME = "function"
# The runtime image's entrypoint (runtime/stratus_bootstrap/serve_http.py) listens on $PORT, which
# Knative sets from containerPort, and answers its readiness probe on HEALTH_PATH once the
# version's artifact is fetched and its handler loaded.
CONTAINER_PORT = 8080
HEALTH_PATH = "/_stratus/healthz"
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
LABEL_PREFIX = "stratus.dev"
MANAGED_BY = {"app.kubernetes.io/managed-by": "stratus"}

Runtime = Literal["python3.11", "node20"]
Kind = Literal["event", "http"]
RUNTIMES: frozenset[str] = frozenset({"python3.11", "node20"})
KINDS: frozenset[str] = frozenset({"event", "http"})


@dataclass(frozen=True)
class KnativeFunctionSpec:
    """A version's configuration snapshot: where it is deployed and how it runs."""

    org: str
    project: str
    environment: str
    function: str
    runtime: Runtime
    handler: str
    kind: Kind
    memory_mb: int
    timeout_s: int
    min_instances: int
    max_instances: int
    instance_concurrency: int
    env: Mapping[str, str] = field(default_factory=dict)
    event_format: str = "apigw-v1"
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnativeVersion:
    number: int
    artifact_sha256: str
    artifact_url: str
    spec: KnativeFunctionSpec


@dataclass(frozen=True)
class HeaderRule:
    """Route requests whose header (or cookie) `header` equals (or, with match "regex", matches) `value`
    to `version`: the binding's header rules, which Knative cannot express."""

    header: str
    value: str
    version: int
    match: str = "equals"  # "equals" | "regex"
    source: str = "header"  # "header" | "cookie"


@dataclass(frozen=True)
class KnativeTraffic:
    """A binding's traffic rules: (version number, percent) entries summing to 100.

    `tags` are release tags (e.g. {3: "stable", 4: "canary"}); Knative gives each tag its own URL. Every
    version also gets the tag `v<number>` (version_tag), so a release tag may not look like one.
    `header_rules` and `sticky_key` are rules Knative Serving cannot express; see unsupported_rules().
    """

    entries: tuple[tuple[int, int], ...]
    tags: Mapping[int, str] = field(default_factory=dict)
    header_rules: tuple[HeaderRule, ...] = ()
    sticky_key: str | None = None


def _slug_hash(spec: KnativeFunctionSpec) -> str:
    # "/" cannot occur in a slug, so the joined key is unambiguous even where the readable part is not
    # ("a-b"+"c" and "a"+"b-c" both read "a-b-c"): the hash is what keeps distinct bindings apart.
    key = "/".join((spec.org, spec.project, spec.environment, spec.function))
    return hashlib.sha256(key.encode()).hexdigest()[:_HASH_LEN]


def service_name(spec: KnativeFunctionSpec) -> str:
    """The Knative Service name of a binding: readable prefix + hash, a DNS-1035 label of at most 48 chars.

    The hash suffix is always present (not only when truncating): the readable part is lossy
    (hyphens join the slugs, case and underscores are folded, long names are cut) and the hash of the
    exact slugs is what guarantees two bindings never share a Service.
    """
    _check_slugs(spec)
    readable = "-".join((spec.org, spec.project, spec.environment, spec.function)).lower()
    readable = re.sub(r"[^a-z0-9]+", "-", readable).strip("-")
    if not readable[:1].isalpha():
        readable = f"fn-{readable}".rstrip("-")
    readable = readable[: SERVICE_NAME_MAX - _HASH_LEN - 1].rstrip("-")
    name = f"{readable}-{_slug_hash(spec)}"
    assert _DNS_1035.match(name) and len(name) <= SERVICE_NAME_MAX, name
    return name


def revision_name(spec: KnativeFunctionSpec, number: int) -> str:
    """The Revision name of version `number`: `<service>-v<number>`.

    Knative requires a named template to be prefixed by its Service's name and a DNS-1035 label.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"version number must be a positive integer, got {number!r}")
    name = f"{service_name(spec)}-v{number}"
    if len(name) > DNS_LABEL_MAX:
        raise ValueError(f"revision name {name!r} is longer than {DNS_LABEL_MAX} characters")
    return name


_VERSION_TAG = re.compile(r"^v[0-9]+$")


def version_tag(number: int) -> str:
    """The route tag every version in the traffic carries: `v<number>` (URL `v<number>-<service>...`)."""
    return f"v{number}"


def validate_traffic(traffic: KnativeTraffic) -> None:
    """Raise ValueError naming the broken rule unless the weights are a valid split of 100%."""
    if not traffic.entries:
        raise ValueError("traffic must have at least one (version, percent) entry")
    seen: set[int] = set()
    for number, percent in traffic.entries:
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"traffic version must be a positive integer, got {number!r}")
        if number in seen:
            raise ValueError(f"traffic lists version {number} more than once")
        seen.add(number)
        if len(version_tag(number)) > TAG_MAX:
            raise ValueError(f"version {number} is too large for its route tag {version_tag(number)!r}")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"traffic percent for version {number} must be an integer from 0 to 100, got {percent!r}")
    total = sum(percent for _, percent in traffic.entries)
    if total != 100:
        raise ValueError(f"traffic percents must sum to 100, got {total}")
    tag_names: set[str] = set()
    for number, tag in traffic.tags.items():
        if number not in seen:
            raise ValueError(f"tag {tag!r} is on version {number}, which has no traffic entry")
        if not _DNS_1035.match(tag) or len(tag) > TAG_MAX:
            raise ValueError(
                f"tag {tag!r} must be a lowercase DNS label of at most {TAG_MAX} characters starting with a letter"
            )
        if _VERSION_TAG.match(tag):
            raise ValueError(f"tag {tag!r} is reserved: every version has its own v<number> tag")
        if tag in tag_names:
            raise ValueError(f"tag {tag!r} is used by more than one version")
        tag_names.add(tag)


def unsupported_rules(traffic: KnativeTraffic) -> list[str]:
    """The binding's rules that Knative Serving cannot express, one readable line each, named.

    Knative routes by weight (and tag) only; header and cookie matching and sticky assignment need a
    gateway in front of it. The backend reports these instead of silently applying weights alone.
    """
    in_traffic = {number for number, _ in traffic.entries}
    problems = []
    for index, rule in enumerate(traffic.header_rules, start=1):
        verb = "matches" if rule.match == "regex" else "equals"
        what = f"header rule {index} ({rule.source} {rule.header} {verb} {rule.value} -> v{rule.version})"
        if rule.version in in_traffic:
            hint = f"use the tag URL or the Knative-Serving-Tag header (tag {version_tag(rule.version)})"
        else:
            hint = f"version {rule.version} has no traffic target on this binding"
        problems.append(f"{what}: Knative routes by weight only; {hint}")
    if traffic.sticky_key:
        problems.append(
            f"sticky key {traffic.sticky_key}: Knative has no sticky routing; each request is split by weight"
        )
    return problems


def render_service(
    *,
    versions: list[KnativeVersion],
    traffic: KnativeTraffic,
    image: str,
    namespace: str,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    region: str = "",
) -> dict[str, Any]:
    """The `serving.knative.dev/v1` Service for a binding.

    The template is the highest-numbered version in `versions` (the one being prepared or most
    recently deployed); the traffic block pins every weight to a named Revision.
    """
    if not versions:
        raise ValueError("render_service needs at least one version")
    if not image:
        raise ValueError("render_service needs a runtime image")
    if not _DNS_1035.match(namespace) or len(namespace) > DNS_LABEL_MAX:
        raise ValueError(f"namespace {namespace!r} must be a lowercase DNS label")
    validate_traffic(traffic)

    by_number: dict[int, KnativeVersion] = {}
    for version in versions:
        if version.number in by_number:
            raise ValueError(f"version {version.number} is given more than once")
        by_number[version.number] = version
    latest = by_number[max(by_number)]
    name = service_name(latest.spec)
    for version in versions:
        if service_name(version.spec) != name:
            raise ValueError(
                f"version {version.number} belongs to another binding "
                f"({version.spec.org}/{version.spec.project}/{version.spec.environment}/{version.spec.function})"
            )
    missing = [number for number, _ in traffic.entries if number not in by_number]
    if missing:
        raise ValueError(f"traffic names versions that were not given: {missing}")

    targets = [
        target
        for number, percent in traffic.entries
        for target in _traffic_targets(latest.spec, number, percent, traffic.tags.get(number))
    ]
    assert sum(t["percent"] for t in targets) == 100, targets
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(latest.spec)},
        "spec": {
            "template": _template(latest, image=image, max_body_bytes=max_body_bytes, region=region),
            "traffic": targets,
        },
    }


def _template(version: KnativeVersion, *, image: str, max_body_bytes: int, region: str = "") -> dict[str, Any]:
    spec = version.spec
    _check_knobs(spec)
    memory = f"{spec.memory_mb}Mi"
    return {
        "metadata": {
            "name": revision_name(spec, version.number),
            "labels": {**_labels(spec), f"{LABEL_PREFIX}/version": str(version.number)},
            # Annotation values are strings in Kubernetes; Knative parses them.
            "annotations": {
                "autoscaling.knative.dev/min-scale": str(spec.min_instances),
                "autoscaling.knative.dev/max-scale": str(spec.max_instances),
                "autoscaling.knative.dev/target": str(spec.instance_concurrency),
                f"{LABEL_PREFIX}/artifact-sha256": version.artifact_sha256,
            },
        },
        "spec": {
            "containerConcurrency": spec.instance_concurrency,
            "timeoutSeconds": spec.timeout_s,
            "containers": [
                {
                    "name": CONTAINER_NAME,
                    "image": image,
                    "ports": [{"name": "http1", "containerPort": CONTAINER_PORT}],
                    "env": _env(version, max_body_bytes=max_body_bytes, region=region),
                    "readinessProbe": {"httpGet": {"path": HEALTH_PATH}, "periodSeconds": 1},
                    # Requests equal to limits: the memory a function is promised is the memory it gets,
                    # as on the local engine, rather than whatever the node has spare.
                    "resources": {"limits": {"memory": memory}, "requests": {"memory": memory}},
                }
            ],
        },
    }


def _env(
    version: KnativeVersion, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, region: str = ""
) -> list[dict[str, str]]:
    spec = version.spec
    for key in spec.env:
        if key in KNATIVE_RESERVED_ENV:
            raise ValueError(f"environment variable {key} is reserved by Knative")
        if key.startswith(STRATUS_ENV_PREFIX):
            raise ValueError(f"environment variable {key} is reserved: names starting with {STRATUS_ENV_PREFIX}")
    env = [{"name": key, "value": str(spec.env[key])} for key in sorted(spec.env)]
    env += [
        {"name": "STRATUS_ARTIFACT_URL", "value": version.artifact_url},
        {"name": "STRATUS_ARTIFACT_SHA256", "value": version.artifact_sha256},
        {"name": "STRATUS_HANDLER", "value": spec.handler},
        {"name": "STRATUS_RUNTIME", "value": spec.runtime},
        {"name": "STRATUS_KIND", "value": spec.kind},
        # What the local engine gives its instances too (apps/engine/sandbox/spawner.py) and the
        # entrypoint's limits and event fields (the gateway's, apps/engine/gateway.py).
        {"name": "STRATUS_FUNCTION_NAME", "value": spec.function},
        {"name": "STRATUS_FUNCTION_VERSION", "value": str(version.number)},
        {"name": "STRATUS_MEMORY_MB", "value": str(spec.memory_mb)},
        {"name": "STRATUS_TIMEOUT_S", "value": str(spec.timeout_s)},
        {"name": "STRATUS_MAX_BODY_BYTES", "value": str(max_body_bytes)},
        {"name": "STRATUS_ORG", "value": spec.org},
        {"name": "STRATUS_PROJECT", "value": spec.project},
        {"name": "STRATUS_ENVIRONMENT", "value": spec.environment},
    ]
    if region:  # the bootstrap's AWS_REGION / TENCENTCLOUD_REGION (console setting STRATUS_FUNCTION_REGION)
        env.append({"name": "STRATUS_REGION", "value": region})
    # The event shape (runtime/stratus_bootstrap/events.py), set only when not the default: the
    # manifests of functions that never changed it stay as they were, so a console upgrade rolls
    # out no new revisions.
    if spec.event_format != "apigw-v1":
        env.append({"name": "STRATUS_EVENT_FORMAT", "value": spec.event_format})
    if spec.routes:
        env.append({"name": "STRATUS_ROUTES", "value": json.dumps(list(spec.routes), separators=(",", ":"))})
    return env


def _traffic_targets(spec: KnativeFunctionSpec, number: int, percent: int, tag: str | None) -> list[dict[str, Any]]:
    """A version's traffic targets: its weight under its release tag (if any) or its version tag; with a
    release tag, a second 0% target carries the version tag (Knative allows one tag per target)."""
    revision = revision_name(spec, number)
    if tag is None:
        return [{"revisionName": revision, "percent": percent, "latestRevision": False, "tag": version_tag(number)}]
    return [
        {"revisionName": revision, "percent": percent, "latestRevision": False, "tag": tag},
        {"revisionName": revision, "percent": 0, "latestRevision": False, "tag": version_tag(number)},
    ]


def _labels(spec: KnativeFunctionSpec) -> dict[str, str]:
    return {
        **MANAGED_BY,
        f"{LABEL_PREFIX}/org": spec.org,
        f"{LABEL_PREFIX}/project": spec.project,
        f"{LABEL_PREFIX}/environment": spec.environment,
        f"{LABEL_PREFIX}/function": spec.function,
    }


def _check_slugs(spec: KnativeFunctionSpec) -> None:
    for field_name in ("org", "project", "environment", "function"):
        value = getattr(spec, field_name)
        if not value or len(value) > DNS_LABEL_MAX or not _LABEL_VALUE.match(value):
            raise ValueError(
                f"{field_name} slug {value!r} must be 1-{DNS_LABEL_MAX} letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit"
            )


def _check_knobs(spec: KnativeFunctionSpec) -> None:
    if spec.runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {spec.runtime!r}")
    if spec.kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {spec.kind!r}")
    if not spec.handler:
        raise ValueError("handler must not be empty")
    for knob, low in (("memory_mb", 1), ("timeout_s", 1), ("min_instances", 0), ("instance_concurrency", 1)):
        value = getattr(spec, knob)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{knob} must be an integer >= {low}, got {value!r}")
    # Knative reads max-scale 0 as "unlimited"; Stratus's max_instances is always a real cap.
    if isinstance(spec.max_instances, bool) or not isinstance(spec.max_instances, int) or spec.max_instances < 1:
        raise ValueError(f"max_instances must be an integer >= 1, got {spec.max_instances!r}")
    if spec.max_instances < spec.min_instances:
        raise ValueError(f"max_instances ({spec.max_instances}) must be >= min_instances ({spec.min_instances})")
