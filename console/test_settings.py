"""Settings for the test suite: the real settings, read with a test environment.

Each run gets its own data directory (generated keys, the SQLite test database, mail,
sandboxes), so tests stay out of ./var and concurrent runs on one machine out of each
other's way. Invocation records and logs are flushed by the tests themselves
(get_sink().flush()), in the test's own thread and transaction, not by a background thread.
"""

import os
import tempfile

os.environ.setdefault("STRATUS_DATA_DIR", tempfile.mkdtemp(prefix="stratus-test-"))
os.environ.setdefault("STRATUS_RECORDS_FLUSH_INTERVAL_S", "0")


_blocks: dict[str, dict[str, str]] = {}


def uid_block_for(owner: str) -> dict[str, str]:
    """The uid-range settings of a block no running installation claims, for ``owner`` (a data
    directory): this test run's own, or those of a process a test starts as an installation of
    its own (a supervisor or a worker with another data directory). Empty without root.

    Concurrent runs on one host (CI and a developer, several worktrees) would otherwise run their
    functions, steps and language servers under the same uids and kill or count each other's
    processes (the fork-bomb test counts the tasks of a uid). Blocks of three 5M-uid ranges from
    1.61e9 up to 2^31, above the defaults of a real installation, claimed like an installation's
    (apps/core/isolation/uid_ranges.py)."""
    import random
    from pathlib import Path

    from apps.core.isolation.uid_ranges import claimable, ranges_of

    if os.geteuid() != 0:
        return {}
    if owner in _blocks:  # one installation, one block: every process started for it agrees
        return dict(_blocks[owner])
    size = 5_000_000
    registry = Path(os.environ.get("STRATUS_UID_REGISTRY") or "/run/stratus/uid-ranges")
    for block in random.sample(range(35), 35):
        base = 1_610_000_000 + block * 3 * size
        if any(b["STRATUS_SANDBOX_UID_BASE"] == str(base) for b in _blocks.values()):
            continue  # handed to another installation of this run, which may not have claimed it yet
        ranges = ranges_of(base, base + size, base + 2 * size, size)
        if claimable(ranges, owner=owner, registry=registry):
            _blocks[owner] = {
                "STRATUS_SANDBOX_UID_BASE": str(base),
                "STRATUS_PIPELINE_UID_BASE": str(base + size),
                "STRATUS_LSP_UID_BASE": str(base + 2 * size),
                "STRATUS_UID_RANGE_SIZE": str(size),
            }
            return dict(_blocks[owner])
    raise RuntimeError(f"no free uid range for {owner} in {registry}")


def _claim_test_uid_ranges() -> None:
    """This run's block (``uid_block_for``), unless set by hand."""
    if "STRATUS_SANDBOX_UID_BASE" not in os.environ:
        os.environ.update(uid_block_for(os.environ["STRATUS_DATA_DIR"]))


_claim_test_uid_ranges()

from console.settings import *  # noqa: E402, F403

# The suite's own process runs no pool: it is one long-lived process in which hundreds of tests
# start threads (served consoles, engines, sinks, workers) that use the ORM and end without
# handing their connection back, and ten pooled connections run out after a hundred or so
# tests ("couldn't get a connection after 30 s"). A connection per use, as before the pool.
# The pool itself is what the processes a test starts run (console.settings, the environment):
# tests/core/test_db_connections.py and tests/production/ measure it under load.
if "pool" in DATABASES["default"].get("OPTIONS", {}):  # noqa: F405
    DATABASES["default"]["OPTIONS"].pop("pool")  # noqa: F405
