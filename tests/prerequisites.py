"""Prerequisites of a test (root, cgroups, node, nft, sshd, a Redis server): missing here, the
test is skipped with the reason; missing under CI (``CI`` set, as .ci/run and every CI service
set it), it FAILS with the reason, since CI is where these tests must run, and a skip there
would pass silently over the code they pin.

``missing(reason)`` inside a test or fixture; ``needs(available, reason)`` as a decorator or
``pytestmark`` in place of ``pytest.mark.skipif(not available, reason=...)``.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it under CI."""
    if IN_CI:
        pytest.fail(
            f"{reason} (CI is set: a missing prerequisite fails the test instead of skipping it)", pytrace=False
        )
    pytest.skip(reason)


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """A mark: nothing when ``available``; else a skip with ``reason``, or under CI a failure
    at setup (``prerequisite_missing``, failed by tests/conftest.py)."""
    if available:
        return pytest.mark.prerequisite_missing(None)
    return pytest.mark.prerequisite_missing(reason) if IN_CI else pytest.mark.skipif(True, reason=reason)


def fail_if_prerequisite_missing(item: pytest.Item) -> None:
    for mark in item.iter_markers("prerequisite_missing"):
        if mark.args and mark.args[0]:
            missing(str(mark.args[0]))


ROOT = os.geteuid() == 0
needs_root = needs(ROOT, "needs root (CI runs as root)")
needs_node = needs(shutil.which("node") is not None, "node is not installed (Node.js 20; CI has it)")
needs_sshd = needs(os.path.exists("/usr/sbin/sshd"), "OpenSSH server not installed (.ci/run installs it)")
