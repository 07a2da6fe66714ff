"""The `knative` execution backend: a binding is a Knative Serving Service.

The manifest comes from the pure renderer (knative_manifests.render_service); this module adds
what needs a cluster: the Kubernetes Secrets a revision reads, and create-or-replace of the
Service with optimistic concurrency.

Two kinds of Secret per binding, both labelled ``stratus.dev/service=<service name>`` so that
``remove`` finds them:

* ``<revision name>-env`` (one per binding x version) holds the version's merged environment
  (function variables, environment config and decrypted secrets). The backend cannot tell
  which values are secret, so every value goes there and the container's env only carries
  ``secretKeyRef``s: no value ever appears in the Service, its Revisions or `kubectl get -o yaml`.
* ``<service name>-artifacts`` (one per binding) maps each version's artifact sha256 to a signed,
  expiring download URL. A Revision is immutable but the URL expires, so the URL cannot be in
  the revision spec: the container reads it through ``secretKeyRef`` when it starts, and Stratus
  rewrites the Secret with fresh URLs (``refresh_artifact_urls``) on every prepare and apply.
  A container started after STRATUS_ARTIFACT_URL_TTL_S without an apply in between (scale from
  zero hours later) would get an expired URL, so the ``bindings_refresh`` task (beat, every
  third of the TTL) calls ``refresh`` for every knative binding.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from django.conf import settings
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from apps.functions.backends import knative_manifests as km
from apps.functions.backends.base import (
    ApplyResult,
    BackendStatus,
    BindingTarget,
    DeployedVersion,
    ExecutionBackend,
    TrafficRules,
)

GROUP = "serving.knative.dev"
VERSION = "v1"
PLURAL = "services"
# A 409 on replace means someone (Knative's own controllers, another Stratus worker) wrote the
# object after we read it: re-read and try again, a few times, then give up loudly.
CONFLICT_RETRIES = 3
SERVICE_LABEL = f"{km.LABEL_PREFIX}/service"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _default_artifact_url(sha256: str) -> str:
    # Imported here: the backend module is importable (and its renderer usable) without the ORM.
    from apps.functions.artifact_urls import artifact_signed_url
    from apps.functions.models import Artifact

    artifact = Artifact.objects.get(sha256=sha256)
    return artifact_signed_url(artifact=artifact, ttl_s=settings.STRATUS_ARTIFACT_URL_TTL_S)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class KnativeBackend(ExecutionBackend):
    name: ClassVar[str] = "knative"

    def __init__(
        self,
        api_client: Any | None = None,
        *,
        namespace: str | None = None,
        image: str | None = None,
        artifact_url: Callable[[str], str] | None = None,
    ) -> None:
        """``api_client`` (a kubernetes.client.ApiClient) is built lazily from settings when omitted:
        STRATUS_KNATIVE_KUBECONFIG (+ STRATUS_KNATIVE_CONTEXT), or the in-cluster config.
        ``artifact_url(sha256)`` returns a download URL; by default a signed console URL."""
        self._api_client = api_client
        self.namespace = namespace or settings.STRATUS_KNATIVE_NAMESPACE
        self.image = image or settings.STRATUS_KNATIVE_IMAGE
        self._artifact_url = artifact_url or _default_artifact_url

    @classmethod
    def configuration_problem(cls) -> str | None:
        """No cluster to talk to: neither a kubeconfig nor an in-cluster service account (what
        ``_client`` would otherwise fail on at the first apply: ``Service host/port is not set``)."""
        kubeconfig = settings.STRATUS_KNATIVE_KUBECONFIG
        if kubeconfig:
            if not os.path.isfile(kubeconfig):
                return f"the knative backend's STRATUS_KNATIVE_KUBECONFIG ({kubeconfig}) is not a readable file"
            return None
        if not (os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT")):
            return (
                "the knative backend needs a cluster: set STRATUS_KNATIVE_KUBECONFIG or run the console in a "
                "cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)"
            )
        if not os.path.isfile(SERVICE_ACCOUNT_TOKEN):
            return f"the knative backend runs in a cluster but has no service account token ({SERVICE_ACCOUNT_TOKEN})"
        return None

    # --- clients -----------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._api_client is None:
            kubeconfig = settings.STRATUS_KNATIVE_KUBECONFIG
            if kubeconfig:
                self._api_client = k8s_config.new_client_from_config(
                    config_file=kubeconfig, context=settings.STRATUS_KNATIVE_CONTEXT or None
                )
            else:
                configuration = k8s.Configuration()
                k8s_config.load_incluster_config(client_configuration=configuration)
                self._api_client = k8s.ApiClient(configuration)
        return self._api_client

    def _custom(self) -> Any:
        return k8s.CustomObjectsApi(self._client())

    def _core(self) -> Any:
        return k8s.CoreV1Api(self._client())

    # --- names -------------------------------------------------------------------------------
    def _spec(self, target: BindingTarget, version: DeployedVersion) -> km.KnativeFunctionSpec:
        config = version.config
        return km.KnativeFunctionSpec(
            org=target.org,
            project=target.project,
            environment=target.environment,
            function=target.function,
            runtime=config["runtime"],
            handler=config["handler"],
            kind=config["kind"],
            memory_mb=int(config["memory_mb"]),
            timeout_s=int(config["timeout_s"]),
            min_instances=int(config.get("min_instances", 0)),
            max_instances=int(config["max_instances"]),
            instance_concurrency=int(config.get("instance_concurrency", 1)),
            env=dict(version.env),
            event_format=str(config.get("event_format") or "apigw-v1"),
            routes=tuple(config.get("routes") or ()),
        )

    def service_name(self, target: BindingTarget) -> str:
        return km.service_name(self._slug_spec(target))

    def _slug_spec(self, target: BindingTarget) -> km.KnativeFunctionSpec:
        # Only the slugs matter for names; the knobs are placeholders.
        return km.KnativeFunctionSpec(
            org=target.org,
            project=target.project,
            environment=target.environment,
            function=target.function,
            runtime="python3.11",
            handler="-",
            kind="event",
            memory_mb=1,
            timeout_s=1,
            min_instances=0,
            max_instances=1,
            instance_concurrency=1,
        )

    def artifacts_secret_name(self, target: BindingTarget) -> str:
        return f"{self.service_name(target)}-artifacts"

    def env_secret_name(self, target: BindingTarget, number: int) -> str:
        return f"{km.revision_name(self._slug_spec(target), number)}-env"

    def _secret_labels(self, target: BindingTarget) -> dict[str, str]:
        return {
            **km.MANAGED_BY,
            SERVICE_LABEL: self.service_name(target),
            f"{km.LABEL_PREFIX}/org": target.org,
            f"{km.LABEL_PREFIX}/project": target.project,
            f"{km.LABEL_PREFIX}/environment": target.environment,
            f"{km.LABEL_PREFIX}/function": target.function,
        }

    # --- secrets -----------------------------------------------------------------------------
    def refresh_artifact_urls(self, target: BindingTarget, versions: Sequence[DeployedVersion]) -> None:
        """Write fresh signed artifact URLs for ``versions`` into the binding's artifacts Secret.

        Keys of other versions are kept (an older revision may still scale up and must find its
        key); their URLs are refreshed the next time they are applied. Called by prepare, apply
        and refresh (the periodic task, every third of STRATUS_ARTIFACT_URL_TTL_S).
        """
        urls = {v.artifact_sha256: _b64(self._artifact_url(v.artifact_sha256)) for v in versions}
        name = self.artifacts_secret_name(target)
        core = self._core()
        for _attempt in range(1 + CONFLICT_RETRIES):
            try:
                current = core.read_namespaced_secret(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body = self._secret_body(target, name, urls)
                try:
                    core.create_namespaced_secret(self.namespace, body)
                    return
                except ApiException as create_exc:
                    if create_exc.status != 409:  # created concurrently: merge into theirs
                        raise
                    continue
            data = {**(current.data or {}), **urls}
            body = self._secret_body(target, name, data, resource_version=current.metadata.resource_version)
            try:
                core.replace_namespaced_secret(name, self.namespace, body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"secret {name}: still conflicting after {CONFLICT_RETRIES} retries")

    def _write_env_secret(self, target: BindingTarget, version: DeployedVersion) -> None:
        """The version's merged env, whole: replaced unconditionally (it is ours alone), so a rotated
        secret reaches the revision's next container without a new revision."""
        name = self.env_secret_name(target, version.number)
        body = self._secret_body(target, name, {key: _b64(str(value)) for key, value in version.env.items()})
        core = self._core()
        try:
            core.create_namespaced_secret(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_secret(name, self.namespace, body)

    def _secret_body(
        self, target: BindingTarget, name: str, data: Mapping[str, str], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": self._secret_labels(target)}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": dict(data)}

    # --- manifest ----------------------------------------------------------------------------
    def render(
        self, target: BindingTarget, versions: Sequence[DeployedVersion], traffic: TrafficRules
    ) -> dict[str, Any]:
        """The Service for the binding, with every env value and the artifact URL behind a secretKeyRef."""
        kversions = [
            # The URL lives in the artifacts Secret, not the (immutable) revision spec.
            km.KnativeVersion(
                number=v.number, artifact_sha256=v.artifact_sha256, artifact_url="", spec=self._spec(target, v)
            )
            for v in versions
        ]
        manifest = km.render_service(
            versions=kversions,
            traffic=self._ktraffic(traffic),
            image=self.image,
            namespace=self.namespace,
            max_body_bytes=int(settings.STRATUS_GATEWAY_MAX_BODY_BYTES),
            region=str(settings.STRATUS_FUNCTION_REGION),
        )
        latest = max(versions, key=lambda v: v.number)
        env_secret = self.env_secret_name(target, latest.number)
        user_keys = set(latest.env)
        (container,) = manifest["spec"]["template"]["spec"]["containers"]
        env: list[dict[str, Any]] = []
        for item in container["env"]:
            name = item["name"]
            if name in user_keys:
                env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": env_secret, "key": name}}})
            elif name == "STRATUS_ARTIFACT_URL":
                ref = {"name": self.artifacts_secret_name(target), "key": latest.artifact_sha256}
                env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
            else:
                env.append(copy.deepcopy(item))
        container["env"] = env
        return manifest

    @staticmethod
    def _ktraffic(traffic: TrafficRules) -> km.KnativeTraffic:
        return km.KnativeTraffic(
            entries=tuple(traffic.weights),
            tags=dict(traffic.tags),
            header_rules=tuple(
                km.HeaderRule(
                    header=rule.header, value=rule.value, version=rule.version, match=rule.kind, source=rule.source
                )
                for rule in traffic.header_rules
            ),
            sticky_key=traffic.sticky_key,
        )

    # --- interface -----------------------------------------------------------------------------
    def prepare(self, target: BindingTarget, version: DeployedVersion) -> bool:
        """Nothing to build: the cluster pulls the runtime image and the runtime fetches the
        artifact. Only the artifact URL must be in place before a revision can start."""
        self.refresh_artifact_urls(target, [version])
        return True

    def refresh(self, target: BindingTarget, versions: Sequence[DeployedVersion]) -> None:
        """Fresh artifact URLs for the versions the binding serves, before the old ones expire."""
        self.refresh_artifact_urls(target, versions)

    def apply(self, target: BindingTarget, versions: Sequence[DeployedVersion], traffic: TrafficRules) -> ApplyResult:
        """Serve the weights (and tags) as the Service's traffic block. Header rules and the sticky key
        cannot be expressed in Knative: they are named in ``unsupported``, the weights still apply."""
        if not versions:
            raise ValueError("apply needs at least one version")
        manifest = self.render(target, versions, traffic)
        # Secrets first: a revision whose secretKeyRef is missing fails to start.
        self.refresh_artifact_urls(target, versions)
        for version in versions:
            self._write_env_secret(target, version)
        service = self._create_or_replace(manifest)
        ready, message = _ready(service)
        return ApplyResult(ready=ready, message=message, unsupported=km.unsupported_rules(self._ktraffic(traffic)))

    def _create_or_replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        custom = self._custom()
        for _attempt in range(1 + CONFLICT_RETRIES):
            try:
                current = custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                try:
                    created: dict[str, Any] = custom.create_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL, manifest
                    )
                    return created
                except ApiException as create_exc:
                    if create_exc.status != 409:  # created concurrently: replace it on the next turn
                        raise
                    continue
            body = copy.deepcopy(manifest)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                replaced: dict[str, Any] = custom.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, body
                )
                return replaced
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"Knative Service {name}: still conflicting after {CONFLICT_RETRIES} retries")

    def status(self, target: BindingTarget) -> BackendStatus:
        try:
            service = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.service_name(target)
            )
        except ApiException as exc:
            if exc.status == 404:
                return BackendStatus(ready=False, message="not deployed")
            raise
        ready, message = _ready(service)
        latest = (service.get("status") or {}).get("latestReadyRevisionName")
        instances = [{"revision": latest}] if latest else []
        return BackendStatus(ready=ready, message=message, instances=instances)

    def remove(self, target: BindingTarget) -> None:
        name = self.service_name(target)
        try:
            self._custom().delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        core = self._core()
        secrets = core.list_namespaced_secret(self.namespace, label_selector=f"{SERVICE_LABEL}={name}")
        for secret in secrets.items:
            try:
                core.delete_namespaced_secret(secret.metadata.name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _ready(service: Mapping[str, Any]) -> tuple[bool, str]:
    """The Service's Ready condition, if Knative has reported one for its current generation."""
    status = service.get("status") or {}
    generation = (service.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return False, f"Knative has not reconciled generation {generation} yet (observed {observed})"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            message = condition.get("message") or condition.get("reason") or ("ready" if ready else "not ready")
            latest = status.get("latestReadyRevisionName")
            if ready and latest:
                message = f"ready: latest ready revision {latest}"
            return ready, message
    return False, "Knative has not reported readiness yet"
