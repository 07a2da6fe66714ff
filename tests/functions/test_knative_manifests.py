"""Knative manifests rendered for a binding, checked against the released Knative Serving CRD schema.

The CRD is tests/data/knative-serving-v1.23.0/service.yaml, unchanged (see SOURCE.md there). No cluster
runs here, so the schema is applied with jsonschema. Kubernetes does not reject unknown fields of a
structural schema, it silently prunes them; `strict_schema()` turns that pruning into an error so a
misspelled field (which a cluster would drop without a word) fails the test instead.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from apps.functions.backends.knative_manifests import (
    HeaderRule,
    KnativeFunctionSpec,
    KnativeTraffic,
    KnativeVersion,
    render_service,
    revision_name,
    service_name,
    unsupported_rules,
)

CRD_DIR = Path(__file__).resolve().parent.parent / "data" / "knative-serving-v1.23.0"
IMAGE = "registry.example.com/stratus/runtime-python:1"
NAMESPACE = "stratus-acme"


def crd_schema(filename: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / filename).read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def strict_schema(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever Kubernetes would prune unknown fields."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: strict_schema(sub) for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            out["additionalProperties"] = False
    return out


SERVICE_SCHEMA = crd_schema("service.yaml")
STRICT_SERVICE_SCHEMA = strict_schema(SERVICE_SCHEMA)
VALIDATOR = jsonschema.Draft7Validator(STRICT_SERVICE_SCHEMA)


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(manifest))


def make_spec(**overrides: Any) -> KnativeFunctionSpec:
    base = KnativeFunctionSpec(
        org="acme",
        project="shop",
        environment="prod",
        function="resize",
        runtime="python3.11",
        handler="main.handler",
        kind="event",
        memory_mb=512,
        timeout_s=30,
        min_instances=1,
        max_instances=10,
        instance_concurrency=4,
        env={"LOG_LEVEL": "info", "API_BASE": "https://api.example.com"},
    )
    return replace(base, **overrides)


def make_version(number: int, spec: KnativeFunctionSpec | None = None) -> KnativeVersion:
    return KnativeVersion(
        number=number,
        artifact_sha256=f"{number:064x}",
        artifact_url=f"https://console.example.com/artifacts/{number}?sig=abc&exp=1700000000",
        spec=spec or make_spec(),
    )


def test_crd_is_the_released_v1_service_schema():
    # Given the shipped CRD, then it is the v1 Service schema, and it types the fields we rely on.
    props = SERVICE_SCHEMA["properties"]["spec"]["properties"]
    assert set(props) == {"template", "traffic"}
    revision_spec = props["template"]["properties"]["spec"]["properties"]
    assert revision_spec["containerConcurrency"]["type"] == "integer"
    assert revision_spec["timeoutSeconds"]["type"] == "integer"
    assert props["traffic"]["items"]["properties"]["percent"]["type"] == "integer"
    assert props["traffic"]["items"]["properties"]["latestRevision"]["type"] == "boolean"


def test_release_state_stable_90_canary_10_renders_tagged_targets_and_validates():
    # Given a release in progress: version 3 is stable at 90%, version 4 the canary at 10%
    v3, v4 = make_version(3), make_version(4)
    traffic = KnativeTraffic(entries=((3, 90), (4, 10)), tags={3: "stable", 4: "canary"})

    # When rendered
    manifest = render_service(versions=[v3, v4], traffic=traffic, image=IMAGE, namespace=NAMESPACE)

    # Then it validates against the CRD and the traffic block is exactly the split, pinned to revisions:
    # the weight under the release tag, and (one tag per target) a 0% target under the version's own tag.
    assert schema_errors(manifest) == []
    name = service_name(v4.spec)
    assert manifest["apiVersion"] == "serving.knative.dev/v1"
    assert manifest["kind"] == "Service"
    assert manifest["metadata"]["name"] == name
    assert manifest["metadata"]["namespace"] == NAMESPACE
    assert manifest["spec"]["traffic"] == [
        {"revisionName": f"{name}-v3", "percent": 90, "latestRevision": False, "tag": "stable"},
        {"revisionName": f"{name}-v3", "percent": 0, "latestRevision": False, "tag": "v3"},
        {"revisionName": f"{name}-v4", "percent": 10, "latestRevision": False, "tag": "canary"},
        {"revisionName": f"{name}-v4", "percent": 0, "latestRevision": False, "tag": "v4"},
    ]
    targets = manifest["spec"]["traffic"]
    assert sum(t["percent"] for t in targets) == 100
    tags = [t["tag"] for t in targets]
    assert sorted(tags) == ["canary", "stable", "v3", "v4"]  # one URL each, no tag twice
    # The template is the latest version, named as its own Revision (Knative needs the service prefix).
    assert manifest["spec"]["template"]["metadata"]["name"] == f"{name}-v4"
    assert manifest["spec"]["template"]["metadata"]["name"].startswith(f"{name}-")
    assert manifest["spec"]["template"]["metadata"]["labels"]["stratus.dev/version"] == "4"


@pytest.mark.parametrize(
    ("entries", "tags"),
    [
        (((3, 90), (4, 10)), {3: "stable", 4: "canary"}),
        (((3, 50), (4, 50)), {3: "stable", 4: "canary"}),
        (((3, 0), (4, 100)), {3: "stable", 4: "canary"}),  # promoted, stable kept at 0 for an abort
        (((3, 70), (4, 20), (5, 10)), {3: "stable", 5: "canary"}),  # a version without a release tag
        (((4, 100),), {4: "stable"}),
    ],
)
def test_every_release_state_sums_to_100_with_a_tag_per_version(entries, tags):
    versions = [make_version(number) for number, _ in entries]
    manifest = render_service(
        versions=versions, traffic=KnativeTraffic(entries=entries, tags=tags), image=IMAGE, namespace=NAMESPACE
    )

    assert schema_errors(manifest) == []
    targets = manifest["spec"]["traffic"]
    assert sum(t["percent"] for t in targets) == 100
    assert all(t["latestRevision"] is False for t in targets)
    by_tag = {t["tag"]: (t["revisionName"].rsplit("-", 1)[-1], t["percent"]) for t in targets}
    assert len(by_tag) == len(targets)  # every target tagged, no tag twice
    for number, percent in entries:
        if number in tags:
            assert by_tag[tags[number]] == (f"v{number}", percent)
            assert by_tag[f"v{number}"] == (f"v{number}", 0)
        else:
            assert by_tag[f"v{number}"] == (f"v{number}", percent)


def test_version_order_does_not_matter_and_the_template_is_the_highest_number():
    v3, v4 = make_version(3), make_version(4)
    traffic = KnativeTraffic(entries=((3, 90), (4, 10)))

    a = render_service(versions=[v3, v4], traffic=traffic, image=IMAGE, namespace=NAMESPACE)
    b = render_service(versions=[v4, v3], traffic=traffic, image=IMAGE, namespace=NAMESPACE)

    assert a == b
    assert a["spec"]["template"]["metadata"]["name"].endswith("-v4")
    assert [t.get("tag") for t in a["spec"]["traffic"]] == ["v3", "v4"]


def test_single_version_at_100_percent():
    v1 = make_version(1)

    manifest = render_service(
        versions=[v1], traffic=KnativeTraffic(entries=((1, 100),)), image=IMAGE, namespace=NAMESPACE
    )

    assert schema_errors(manifest) == []
    assert manifest["spec"]["traffic"] == [
        {"revisionName": revision_name(v1.spec, 1), "percent": 100, "latestRevision": False, "tag": "v1"}
    ]
    assert manifest["spec"]["template"]["metadata"]["name"] == revision_name(v1.spec, 1)


def test_preparing_a_new_version_at_zero_traffic_keeps_the_weights_on_the_old_one():
    # Given version 5 prepared while 4 serves everything
    manifest = render_service(
        versions=[make_version(4), make_version(5)],
        traffic=KnativeTraffic(entries=((4, 100),)),
        image=IMAGE,
        namespace=NAMESPACE,
    )

    # Then 5 is stamped out as a Revision but gets no traffic
    assert schema_errors(manifest) == []
    assert manifest["spec"]["template"]["metadata"]["name"].endswith("-v5")
    assert [(t["revisionName"][-3:], t["percent"]) for t in manifest["spec"]["traffic"]] == [("-v4", 100)]


def test_knobs_map_exactly():
    spec = make_spec(memory_mb=512, timeout_s=45, min_instances=2, max_instances=7, instance_concurrency=3)
    version = make_version(1, spec)

    manifest = render_service(
        versions=[version], traffic=KnativeTraffic(entries=((1, 100),)), image=IMAGE, namespace=NAMESPACE
    )

    assert schema_errors(manifest) == []
    template = manifest["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "2",
        "autoscaling.knative.dev/max-scale": "7",
        "autoscaling.knative.dev/target": "3",
        "stratus.dev/artifact-sha256": version.artifact_sha256,
    }
    assert template["spec"]["containerConcurrency"] == 3
    assert type(template["spec"]["containerConcurrency"]) is int
    assert template["spec"]["timeoutSeconds"] == 45
    assert type(template["spec"]["timeoutSeconds"]) is int
    (container,) = template["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["name"] == "function"
    assert container["resources"] == {"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}}
    assert container["env"] == [
        {"name": "API_BASE", "value": "https://api.example.com"},
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "STRATUS_ARTIFACT_URL", "value": version.artifact_url},
        {"name": "STRATUS_ARTIFACT_SHA256", "value": version.artifact_sha256},
        {"name": "STRATUS_HANDLER", "value": "main.handler"},
        {"name": "STRATUS_RUNTIME", "value": "python3.11"},
        {"name": "STRATUS_KIND", "value": "event"},
        {"name": "STRATUS_FUNCTION_NAME", "value": "resize"},
        {"name": "STRATUS_FUNCTION_VERSION", "value": "1"},
        {"name": "STRATUS_MEMORY_MB", "value": "512"},
        {"name": "STRATUS_TIMEOUT_S", "value": "45"},
        {"name": "STRATUS_MAX_BODY_BYTES", "value": str(6 * 1024 * 1024)},
        {"name": "STRATUS_ORG", "value": "acme"},
        {"name": "STRATUS_PROJECT", "value": "shop"},
        {"name": "STRATUS_ENVIRONMENT", "value": "prod"},
    ]


def test_labels_name_the_binding_on_service_and_revision():
    manifest = render_service(
        versions=[make_version(2)], traffic=KnativeTraffic(entries=((2, 100),)), image=IMAGE, namespace=NAMESPACE
    )

    expected = {
        "app.kubernetes.io/managed-by": "stratus",
        "stratus.dev/org": "acme",
        "stratus.dev/project": "shop",
        "stratus.dev/environment": "prod",
        "stratus.dev/function": "resize",
    }
    assert manifest["metadata"]["labels"] == expected
    assert manifest["spec"]["template"]["metadata"]["labels"] == {**expected, "stratus.dev/version": "2"}


def test_names_are_deterministic_dns_labels_even_for_50_char_slugs():
    long = make_spec(org="o" * 50, project="p" * 50, environment="e" * 50, function="f" * 50)

    name = service_name(long)

    assert name == service_name(replace(long, env={"OTHER": "x"}))  # config does not change the name
    assert len(name) <= 63
    assert name[0].isalpha() and name == name.lower()
    assert all(c.isalnum() or c == "-" for c in name)
    rev = revision_name(long, 123456)
    assert rev == f"{name}-v123456"
    assert len(rev) <= 63


def test_a_short_name_is_readable():
    assert service_name(make_spec()).startswith("acme-shop-prod-resize-")


def test_different_long_inputs_do_not_collide():
    # Given two bindings that differ only after the readable part is cut off
    a = make_spec(org="o" * 50, project="p" * 50, environment="e" * 50, function="f" * 49 + "a")
    b = make_spec(org="o" * 50, project="p" * 50, environment="e" * 50, function="f" * 49 + "b")
    # and two that read the same once joined by hyphens
    c = make_spec(environment="dev", function="a-b")
    d = make_spec(environment="dev-a", function="b")

    assert service_name(a) != service_name(b)
    assert service_name(c) != service_name(d)
    assert revision_name(a, 1) != revision_name(b, 1)


def test_slug_starting_with_a_digit_still_gives_a_dns_1035_name():
    name = service_name(make_spec(org="42things"))
    assert name.startswith("fn-42things-")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (((3, 90), (4, 20)), "traffic percents must sum to 100, got 110"),
        (((3, 50), (4, 40)), "traffic percents must sum to 100, got 90"),
        (((3, 110), (4, -10)), "traffic percent for version 3 must be an integer from 0 to 100, got 110"),
        (((3, 100), (4, -0.5)), "traffic percent for version 4 must be an integer from 0 to 100, got -0.5"),
        (((3, 50), (3, 50)), "traffic lists version 3 more than once"),
        ((), "traffic must have at least one (version, percent) entry"),
    ],
)
def test_bad_percents_raise(entries, message):
    with pytest.raises(ValueError) as excinfo:
        render_service(
            versions=[make_version(3), make_version(4)],
            traffic=KnativeTraffic(entries=entries),
            image=IMAGE,
            namespace=NAMESPACE,
        )
    assert str(excinfo.value) == message


def test_traffic_on_a_version_not_given_raises():
    with pytest.raises(ValueError, match=r"traffic names versions that were not given: \[2\]"):
        render_service(
            versions=[make_version(3)],
            traffic=KnativeTraffic(entries=((2, 50), (3, 50))),
            image=IMAGE,
            namespace=NAMESPACE,
        )


def test_versions_of_another_binding_raise():
    other = make_version(3, make_spec(environment="dev"))
    with pytest.raises(ValueError, match="version 3 belongs to another binding"):
        render_service(
            versions=[other, make_version(4)],
            traffic=KnativeTraffic(entries=((4, 100),)),
            image=IMAGE,
            namespace=NAMESPACE,
        )


@pytest.mark.parametrize("key", ["PORT", "K_REVISION", "STRATUS_HANDLER"])
def test_reserved_env_names_raise(key):
    version = make_version(1, make_spec(env={key: "x"}))
    with pytest.raises(ValueError, match=f"environment variable {key} is reserved"):
        render_service(
            versions=[version], traffic=KnativeTraffic(entries=((1, 100),)), image=IMAGE, namespace=NAMESPACE
        )


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({1: "Canary!"}, "tag 'Canary!' must be a lowercase DNS label"),
        ({1: "v2"}, "tag 'v2' is reserved: every version has its own v<number> tag"),
        ({2: "canary"}, "tag 'canary' is on version 2, which has no traffic entry"),
    ],
)
def test_bad_tag_raises(tags, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_service(
            versions=[make_version(1)],
            traffic=KnativeTraffic(entries=((1, 100),), tags=tags),
            image=IMAGE,
            namespace=NAMESPACE,
        )


def test_max_below_min_raises():
    version = make_version(1, make_spec(min_instances=5, max_instances=2))
    with pytest.raises(ValueError, match=r"max_instances \(2\) must be >= min_instances \(5\)"):
        render_service(
            versions=[version], traffic=KnativeTraffic(entries=((1, 100),)), image=IMAGE, namespace=NAMESPACE
        )


def test_unsupported_header_and_sticky_rules_are_reported_by_name():
    traffic = KnativeTraffic(
        entries=((3, 90), (4, 10)),
        tags={3: "stable", 4: "canary"},
        header_rules=(
            HeaderRule(header="X-Beta", value="1", version=4),
            HeaderRule(header="beta", value="^u-[0-9]+$", version=4, match="regex", source="cookie"),
            HeaderRule(header="X-Old", value="yes", version=2),
        ),
        sticky_key="header:X-User-Id",
    )

    assert unsupported_rules(traffic) == [
        "header rule 1 (header X-Beta equals 1 -> v4): Knative routes by weight only; "
        "use the tag URL or the Knative-Serving-Tag header (tag v4)",
        "header rule 2 (cookie beta matches ^u-[0-9]+$ -> v4): Knative routes by weight only; "
        "use the tag URL or the Knative-Serving-Tag header (tag v4)",
        "header rule 3 (header X-Old equals yes -> v2): Knative routes by weight only; "
        "version 2 has no traffic target on this binding",
        "sticky key header:X-User-Id: Knative has no sticky routing; each request is split by weight",
    ]
    # The weights still render; the rules are reported, not dropped silently.
    manifest = render_service(
        versions=[make_version(3), make_version(4)], traffic=traffic, image=IMAGE, namespace=NAMESPACE
    )
    assert schema_errors(manifest) == []
    assert [(t["tag"], t["percent"]) for t in manifest["spec"]["traffic"]] == [
        ("stable", 90),
        ("v3", 0),
        ("canary", 10),
        ("v4", 0),
    ]


def test_plain_weights_have_no_unsupported_rules():
    assert unsupported_rules(KnativeTraffic(entries=((1, 100),))) == []


def rendered() -> dict[str, Any]:
    return render_service(
        versions=[make_version(3), make_version(4)],
        traffic=KnativeTraffic(entries=((3, 90), (4, 10))),
        image=IMAGE,
        namespace=NAMESPACE,
    )


def test_negative_control_wrong_type_fails_the_schema():
    # Given a rendered manifest with containerConcurrency as a string, then the validator refuses it
    manifest = copy.deepcopy(rendered())
    manifest["spec"]["template"]["spec"]["containerConcurrency"] = "x"

    assert schema_errors(manifest) == ["spec/template/spec/containerConcurrency: 'x' is not of type 'integer'"]


def test_negative_control_percent_as_string_and_bad_memory_fail_the_schema():
    manifest = copy.deepcopy(rendered())
    manifest["spec"]["traffic"][0]["percent"] = "90"
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "512 megs"

    errors = schema_errors(manifest)

    assert len(errors) == 2
    assert errors[1] == "spec/traffic/0/percent: '90' is not of type 'integer'"
    assert errors[0].startswith("spec/template/spec/containers/0/resources/limits/memory: '512 megs' does not match")


def test_negative_control_misspelled_field_fails_the_strict_schema():
    # Kubernetes would prune this silently; the strict schema makes it an error.
    manifest = copy.deepcopy(rendered())
    manifest["spec"]["template"]["spec"]["containerconcurrency"] = 1

    assert schema_errors(manifest) == [
        "spec/template/spec: Additional properties are not allowed ('containerconcurrency' was unexpected)"
    ]
    # The unmodified CRD schema accepts it, which is why the strict one is used.
    assert list(jsonschema.Draft7Validator(SERVICE_SCHEMA).iter_errors(manifest)) == []
