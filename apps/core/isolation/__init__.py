"""What confines tenant code (function instances and pipeline steps) on this host.

- ``runtime/stratus_bootstrap/confine.py`` (``CONFINE_SCRIPT``): done in the process itself,
  before tenant code runs: cgroups, a private mount namespace, the uid, no new privileges,
  not dumpable.
- ``cgroups.py``: per-instance / per-step memory and pids limits, and killing a whole tree.
- ``egress.py`` and ``firewall.py``: which addresses tenant code may reach (nftables by uid).
"""

from __future__ import annotations

import stat
from pathlib import Path

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
