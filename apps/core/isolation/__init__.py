"""What confines tenant code (function instances and pipeline steps) on this host.

- ``runtime/stratus_bootstrap/confine.py`` (``CONFINE_SCRIPT``): done in the process itself,
  before tenant code runs: cgroups, a private mount namespace, the uid, no new privileges,
  not dumpable.
- ``cgroups.py``: per-instance / per-step memory and pids limits, and killing a whole tree.
- ``egress.py`` and ``firewall.py``: which addresses tenant code may reach (nftables by uid).
- ``hardening.py``: the data directory closed around what tenant uids reach, the files handed
  to them, a step's rlimits, the process-group kill.
"""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUNTIME_DIR = Path(__file__).resolve().parents[3] / "runtime"
CONFINE_SCRIPT = RUNTIME_DIR / "stratus_bootstrap" / "confine.py"


def path_problem(path: Path, *, readable: bool) -> Path | None:
    """The first of ``path`` and its ancestors that other users cannot traverse (or, with
    ``readable``, ``path`` itself if they cannot list it); None when all is well."""
    path = path.resolve()
    for ancestor in [*reversed(path.parents), path]:
        try:
            mode = ancestor.stat().st_mode
        except OSError:
            return ancestor
        if not mode & stat.S_IXOTH:
            return ancestor
    if readable and not path.stat().st_mode & stat.S_IROTH:
        return path
    return None


def probe_host() -> dict[str, Any]:
    """What ``confine.py`` can do on this host, tried in a throwaway process (as root): each
    of namespace, private, tmpfs, hidepid, readonly_root is True or the reason it failed; {}
    when the probe itself failed (the reason is logged)."""
    result = subprocess.run(  # noqa: S603 - our own probe, fixed argv
        [sys.executable, "-I", "-S", str(CONFINE_SCRIPT), "--probe"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        return dict(json.loads(result.stdout or "{}"))
    except ValueError:
        logger.warning("the confinement probe failed: %s", result.stderr.strip()[-300:])
        return {}
