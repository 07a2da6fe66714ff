"""Each installation on a host runs tenant code under uid ranges of its own, claimed before use
(apps/core/isolation/uid_ranges.py); the test suite claims one per run (console/test_settings.py)
so that two runs on one host (CI and a developer) never share uids (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.core.isolation import uid_ranges
from apps.core.isolation.uid_ranges import UidRangeConflict, claim, claimable, ranges_of
from tests.prerequisites import needs

ROOT_DIR = Path(__file__).resolve().parents[2]


def test_an_overlapping_range_of_a_running_installation_is_refused_naming_both(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    claim(ranges_of(300_000, 1_100_000_000, 1_600_000_000, 1_000_000), owner="/srv/a", registry=registry)

    with pytest.raises(UidRangeConflict) as refused:
        claim(ranges_of(900_000, 1_200_000_000, 1_700_000_000, 1_000_000), owner="/srv/b", registry=registry)
    message = str(refused.value)
    assert "900000-1899999 (functions)" in message and "300000-1299999 (functions)" in message
    assert "/srv/a" in message and "/srv/b" in message and "STRATUS_SANDBOX_UID_BASE" in message

    # Ranges apart: both run.
    claim(ranges_of(5_000_000, 1_300_000_000, 1_800_000_000, 1_000_000), owner="/srv/c", registry=registry)
    # The same installation again (another of its processes): no conflict with itself.
    claim(ranges_of(300_000, 1_100_000_000, 1_600_000_000, 1_000_000), owner="/srv/a", registry=registry)


def test_the_claim_of_an_installation_whose_processes_are_gone_does_not_count(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    gone = textwrap.dedent(
        f"""
        from pathlib import Path
        from apps.core.isolation.uid_ranges import claim, ranges_of
        claim(ranges_of(400_000, 1_100_000_000, 1_600_000_000, 1_000_000), owner="/srv/old",
              registry=Path({str(registry)!r}))
        """
    )
    subprocess.run([sys.executable, "-c", gone], cwd=ROOT_DIR, check=True, timeout=60)  # noqa: S603
    assert len(list(registry.glob("*.json"))) == 1  # left behind, held by nobody

    assert claimable(ranges_of(400_000, 1_100_000_000, 1_600_000_000, 1_000_000), owner="/srv/new", registry=registry)
    assert [p.read_text().count("/srv/new") for p in registry.glob("*.json")] == [1]


def test_ranges_of_one_installation_may_not_overlap_each_other() -> None:
    with pytest.raises(ValueError, match="overlap each other"):
        ranges_of(1_000_000, 1_500_000, 9_000_000, 1_000_000)
    with pytest.raises(ValueError, match="within 1000-4294967294"):
        ranges_of(4_294_000_000, 1_000_000, 9_000_000, 1_000_000)


@needs(os.geteuid() == 0, "uids are claimed (and used) only as root")
def test_this_test_run_holds_a_range_of_its_own() -> None:
    assert int(settings.STRATUS_SANDBOX_UID_BASE) >= 1_610_000_000  # above a real installation's ranges
    others = ranges_of(
        int(settings.STRATUS_SANDBOX_UID_BASE),
        int(settings.STRATUS_PIPELINE_UID_BASE),
        int(settings.STRATUS_LSP_UID_BASE),
        int(settings.STRATUS_UID_RANGE_SIZE),
    )
    # Another run (another data directory) cannot take this run's uids while it runs.
    assert not claimable(others, owner="/another/test/run", registry=Path(settings.STRATUS_UID_REGISTRY))


@needs(os.geteuid() == 0, "uids are claimed (and used) only as root")
def test_an_installation_starting_on_anothers_uids_stops_with_a_clear_error(tmp_path: Path, settings: Any) -> None:
    registry = tmp_path / "registry"
    claim(ranges_of(200_000, 1_000_000_000, 1_500_000_000, 100_000_000), owner="/var/lib/first", registry=registry)
    settings.STRATUS_UID_REGISTRY = registry
    settings.DATA_DIR = tmp_path / "second"
    settings.STRATUS_SANDBOX_UID_BASE = 200_000  # the default, as the first one
    settings.STRATUS_PIPELINE_UID_BASE = 1_000_000_000
    settings.STRATUS_LSP_UID_BASE = 1_500_000_000
    settings.STRATUS_UID_RANGE_SIZE = 100_000_000

    with pytest.raises(UidRangeConflict, match="/var/lib/first"):
        uid_ranges.claim_installation_uids()


def test_the_shared_firewall_treats_every_running_installations_uids_as_tenants(tmp_path: Path, settings: Any) -> None:
    """One nftables table per host: its "not a tenant" rule starts at the lowest uid any running
    installation claimed, not at the base of whichever process wrote it last."""
    from apps.core.isolation.firewall import Firewall

    registry = tmp_path / "registry"
    settings.STRATUS_UID_REGISTRY = registry
    claim(ranges_of(200_000, 1_000_000_000, 1_500_000_000, 100_000_000), owner="/var/lib/first", registry=registry)
    second = Firewall(100_200_000)
    assert second._lowest_tenant_uid() == 200_000
    assert Firewall(150_000)._lowest_tenant_uid() == 150_000
    assert uid_ranges.lowest_claimed_uid(tmp_path / "none") is None
