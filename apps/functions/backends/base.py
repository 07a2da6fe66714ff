"""The interface every execution backend implements.

The control plane (bindings, deploys, releases) speaks only in these terms; a backend maps
them onto its engine: `local` onto processes on this host, `knative` onto Knative Serving
Services and Revisions. Knobs in a version's config (memory_mb, timeout_s,
min_instances, max_instances, instance_concurrency, idle_timeout_s) mean the same on every
backend. Calls of functions do not pass through it: the local engine (apps/engine) serves
the routes of `local` bindings on `/fn/`, Knative serves its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class BindingTarget:
    """Where: one function in one environment."""

    binding_id: int
    org: str
    project: str
    environment: str
    function: str


@dataclass(frozen=True)
class DeployedVersion:
    """What: one version as the backend needs it. ``env`` is the merged environment
    (function variables, environment variables and decrypted secrets): never log it."""

    number: int
    artifact_sha256: str
    config: Mapping[str, Any]
    env: Mapping[str, str] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class HeaderMatch:
    """Send requests whose header (or cookie) matches to ``version``."""

    header: str
    value: str
    version: int
    kind: str = "equals"  # "equals" | "regex"
    source: str = "header"  # "header" | "cookie"


@dataclass(frozen=True)
class TrafficRules:
    """How requests split: (version number, weight) pairs summing to 100, optional tags,
    header rules and a sticky key (used by releases)."""

    weights: tuple[tuple[int, int], ...]
    tags: Mapping[int, str] = field(default_factory=dict)
    header_rules: tuple[HeaderMatch, ...] = ()
    sticky_key: str | None = None

    def versions(self) -> list[int]:
        return [number for number, _ in self.weights]


@dataclass
class ApplyResult:
    ready: bool
    message: str = ""
    # Rules this backend cannot express, named (reported to the user, never silently dropped).
    unsupported: list[str] = field(default_factory=list)


@dataclass
class BackendStatus:
    ready: bool
    message: str = ""
    instances: list[dict[str, Any]] = field(default_factory=list)


class ExecutionBackend(ABC):
    name: ClassVar[str]

    @classmethod
    def configuration_problem(cls) -> str | None:
        """Why this backend cannot run on this installation's settings, in words for the person
        choosing it for an environment; None when it can. No network: settings and files only."""
        return None

    @abstractmethod
    def prepare(self, target: BindingTarget, version: DeployedVersion) -> bool:
        """Make ``version`` ready to serve (fetch/unpack/pre-create); True when ready."""

    @abstractmethod
    def apply(self, target: BindingTarget, versions: Sequence[DeployedVersion], traffic: TrafficRules) -> ApplyResult:
        """Serve ``traffic`` over ``versions`` (every version the rules name)."""

    @abstractmethod
    def status(self, target: BindingTarget) -> BackendStatus:
        """Readiness and instances of the binding."""

    @abstractmethod
    def remove(self, target: BindingTarget) -> None:
        """Stop serving the binding and release what it holds. Safe to call twice."""

    def refresh(self, target: BindingTarget, versions: Sequence[DeployedVersion]) -> None:  # noqa: B027
        """Periodic upkeep of what the backend handed out that expires (a no-op unless a
        backend has such a thing): called for every binding by the refresh task."""
