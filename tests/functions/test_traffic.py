"""apps/functions/traffic.py: the one reading of Binding.traffic, and the places that read it
through it (rollback, the release builder, the console's traffic bar) agreeing."""

from __future__ import annotations

import pytest

from apps.functions.models import Binding
from apps.functions.pages.common import traffic_segments
from apps.functions.rollback_services import describe_traffic, sole_version
from apps.functions.traffic import Traffic, TrafficEntry

RELEASE_STEP = [
    {"version": 3, "weight": 90, "tag": "stable"},
    {"version": 4, "weight": 10, "tag": "canary", "warm": 0},
]


def test_parse_and_write_back_keep_the_stored_json():
    for raw in (
        [],
        [{"version": 3, "weight": 100}],
        RELEASE_STEP,
        [{"version": 3, "weight": 50}, {"version": 4, "weight": 50, "warm": 2}],
    ):
        assert Traffic.parse(raw).to_json() == raw


def test_a_release_step_reads_as_its_sides():
    traffic = Traffic.parse(RELEASE_STEP)

    assert traffic.versions() == [3, 4]
    assert traffic.weights() == ((3, 90), (4, 10))
    assert traffic.tags() == {3: "stable", 4: "canary"}
    assert (traffic.stable(), traffic.canary(), traffic.sole()) == (3, 4, None)
    assert (traffic.weight_of(3), traffic.weight_of(4), traffic.weight_of(5)) == (90, 10, 0)
    assert traffic.describe() == "v3 90%, v4 10%"
    assert traffic.warm() == {3: 0, 4: 0}


@pytest.mark.parametrize(
    ("raw", "sole"),
    [
        ([], None),
        ([{"version": 3, "weight": 100}], 3),
        ([{"version": 3, "weight": 100}, {"version": 4, "weight": 0}], 3),  # weight 0 does not count
        ([{"version": 3, "weight": 60}, {"version": 4, "weight": 40}], None),
    ],
)
def test_the_version_serving_alone(raw, sole):
    assert Traffic.parse(raw).sole() == sole
    assert sole_version(raw) == sole  # rollback's rule is this one
    assert Traffic.parse(raw).stable() == sole  # untagged: the stable side is the one serving alone


def test_a_release_builds_its_steps_as_stored():
    assert Traffic.split(stable=3, canary=4, percent=10, warm=0).to_json() == RELEASE_STEP
    assert Traffic.only(4).to_json() == [{"version": 4, "weight": 100}]
    assert Traffic.split(stable=3, canary=4, percent=10, warm=0).entries[1] == TrafficEntry(4, 10, "canary", 0)


def test_the_binding_and_the_console_read_it_the_same_way():
    binding = Binding(traffic=RELEASE_STEP)

    assert binding.split() == Traffic.parse(RELEASE_STEP)
    assert binding.version_numbers() == [3, 4]
    assert describe_traffic(binding.traffic) == "v3 90%, v4 10%"
    assert traffic_segments(binding.traffic) == [
        {"version": 3, "weight": 90, "role": "stable"},
        {"version": 4, "weight": 10, "role": "canary"},
    ]
    assert traffic_segments(binding.split()) == traffic_segments(binding.traffic)
    # Untagged: the active release's version is the canary; alone, a version is the stable one.
    assert traffic_segments([{"version": 3, "weight": 50}, {"version": 4, "weight": 50}], canary=4) == [
        {"version": 3, "weight": 50, "role": "stable"},
        {"version": 4, "weight": 50, "role": "canary"},
    ]
    assert traffic_segments([{"version": 3, "weight": 100}]) == [{"version": 3, "weight": 100, "role": "stable"}]


def test_nothing_serving_is_said_as_such():
    assert describe_traffic([]) == "nothing"
    assert not Traffic.parse(None)
    assert Binding(traffic=[]).split().versions() == []
