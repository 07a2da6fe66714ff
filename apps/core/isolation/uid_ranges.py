"""Per-installation uid ranges on a host, claimed so that no two installations share one.

Running as root, an installation runs tenant code under uids of three ranges of its own:
function identities (``STRATUS_SANDBOX_UID_BASE`` + identity), pipeline runs
(``STRATUS_PIPELINE_UID_BASE`` + run id) and language servers (``STRATUS_LSP_UID_BASE`` + a
random number), each ``STRATUS_UID_RANGE_SIZE`` uids long. Two installations with one range
would run each other's tenants as the same user: one could signal, trace or read the other's
processes, and their process counts (RLIMIT_NPROC, the engine's per-uid kills) would mix.

So every process that drops to those uids first claims them (``claim_installation_uids``): a
file per installation (keyed by its data directory) in ``STRATUS_UID_REGISTRY``
(``/run/stratus/uid-ranges``) naming its ranges, held with a shared ``flock`` for the life of the
process. A claim that overlaps the ranges of another installation whose file some live process
still holds is refused with ``UidRangeConflict``, naming both; a file nobody holds is stale (its
processes are gone) and removed. Stdlib only: console/test_settings.py claims a range for each
test run before Django's settings exist.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

DEFAULT_REGISTRY = Path("/run/stratus/uid-ranges")
_held: dict[tuple[str, str], IO[str]] = {}  # (registry, owner) -> the claim file, locked shared


class UidRangeConflict(RuntimeError):
    """This installation's uids overlap another live installation's on this host."""


@dataclass(frozen=True)
class UidRange:
    name: str
    start: int
    end: int  # exclusive

    def overlaps(self, other: UidRange) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end - 1} ({self.name})"


def ranges_of(sandbox_base: int, pipeline_base: int, lsp_base: int, size: int) -> list[UidRange]:
    ranges = [
        UidRange("functions", sandbox_base, sandbox_base + size),
        UidRange("pipeline steps", pipeline_base, pipeline_base + size),
        UidRange("language servers", lsp_base, lsp_base + size),
    ]
    for n, one in enumerate(ranges):
        if one.start < 1000 or one.end - 1 > 4294967294:
            raise ValueError(f"uids {one} must lie within 1000-4294967294")
        for other in ranges[n + 1 :]:
            if one.overlaps(other):
                raise ValueError(f"this installation's uid ranges overlap each other: {one} and {other}")
    return ranges


@contextlib.contextmanager
def _registry_lock(registry: Path) -> Iterator[None]:
    registry.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(registry / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _live_claims(registry: Path, mine: Path) -> list[dict[str, Any]]:
    """The claims of other installations some process still holds; stale ones removed."""
    live = []
    for path in sorted(registry.glob("*.json")):
        if path == mine:
            continue
        try:
            fh = open(path)  # noqa: SIM115 - closed by the with below, after the try
        except FileNotFoundError:
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its installation runs
                try:
                    claim = json.loads(fh.read() or "{}")
                except ValueError:
                    continue
                live.append(claim | {"file": str(path)})
                continue
            path.unlink(missing_ok=True)  # nobody holds it: its processes are gone
    return live


def lowest_claimed_uid(registry: Path) -> int | None:
    """The lowest uid any running installation on this host claimed (None: no claim). The egress
    firewall's table is one per host, shared by installations: it must treat every tenant uid of
    every running installation as a tenant's, not only the uids from its own process's base."""
    starts: list[int] = []
    if not registry.is_dir():
        return None
    with _registry_lock(registry):
        for path in registry.glob("*.json"):
            try:
                body = json.loads(path.read_text() or "{}")
                with open(path) as fh:
                    # Held (shared) by a running process, this one's included: live. Else stale.
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                continue
            except BlockingIOError:
                starts += [int(r[1]) for r in body.get("ranges", [])]
            except (OSError, ValueError):
                continue
    return min(starts, default=None)


def claim(ranges: Sequence[UidRange], *, owner: str, registry: Path = DEFAULT_REGISTRY) -> None:
    """Claim ``ranges`` for the installation ``owner`` (its data directory) for the life of this
    process; UidRangeConflict when another running installation holds an overlapping range."""
    key = (str(registry), owner)
    if key in _held:
        return
    mine = registry / (hashlib.sha256(owner.encode()).hexdigest()[:24] + ".json")
    with _registry_lock(registry):
        for other in _live_claims(registry, mine):
            theirs = [UidRange(str(r[0]), int(r[1]), int(r[2])) for r in other.get("ranges", [])]
            for one in ranges:
                for their in theirs:
                    if one.overlaps(their):
                        raise UidRangeConflict(
                            f"uids {one} of this installation ({owner}) overlap uids {their} of another "
                            f"installation running on this host ({other.get('owner')}, claimed in "
                            f"{other['file']}): give each installation ranges of its own with "
                            "STRATUS_SANDBOX_UID_BASE, STRATUS_PIPELINE_UID_BASE and STRATUS_LSP_UID_BASE "
                            "(README: Several installations on one Redis or one host)"
                        )
        body = json.dumps({"owner": owner, "pid": os.getpid(), "ranges": [[r.name, r.start, r.end] for r in ranges]})
        fh = open(mine, "a+")  # noqa: SIM115 - held open (and locked) for the process's life
        fcntl.flock(fh, fcntl.LOCK_SH)
        fh.seek(0)
        fh.truncate()
        fh.write(body)
        fh.flush()
        _held[key] = fh


def claimable(ranges: Sequence[UidRange], *, owner: str, registry: Path = DEFAULT_REGISTRY) -> bool:
    """Claim ``ranges`` if no other live installation holds one of them; False instead of raising."""
    try:
        claim(ranges, owner=owner, registry=registry)
    except UidRangeConflict:
        return False
    return True


def claim_installation_uids() -> None:
    """Claim this installation's ranges (from the settings) once per process; a no-op unless
    root, since only root drops to them."""
    if os.geteuid() != 0:
        return
    from django.conf import settings

    ranges = ranges_of(
        int(settings.STRATUS_SANDBOX_UID_BASE),
        int(settings.STRATUS_PIPELINE_UID_BASE),
        int(settings.STRATUS_LSP_UID_BASE),
        int(settings.STRATUS_UID_RANGE_SIZE),
    )
    claim(ranges, owner=str(settings.DATA_DIR), registry=Path(settings.STRATUS_UID_REGISTRY))
