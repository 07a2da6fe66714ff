"""A binding's traffic: the one reading of ``Binding.traffic`` (and of a timeline entry's
``from_traffic`` / ``to_traffic``), stored as JSON::

    [{"version": 3, "weight": 90, "tag": "stable"},
     {"version": 4, "weight": 10, "tag": "canary", "warm": 2}]

``weight``: percent of requests, the entries sum to 100 (``traffic_apply`` checks it);
``tag``: "stable" / "canary" while a release splits traffic, else absent; ``warm``: instances
a release pre-starts for that version. ``Traffic.parse`` reads it, ``to_json`` writes it back
(the same keys; a tag or warm that was absent stays absent), and the helpers answer what callers ask:
which versions serve, which one serves alone, the stable and canary sides, a version's
weight. The execution backends get it as ``backends.base.TrafficRules``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

STABLE, CANARY = "stable", "canary"


@dataclass(frozen=True)
class TrafficEntry:
    version: int
    weight: int
    tag: str = ""  # STABLE | CANARY | ""
    warm: int | None = None  # None: not said (written back as absent)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TrafficEntry:
        return cls(
            version=int(raw["version"]),
            weight=int(raw.get("weight") or 0),
            tag=str(raw.get("tag") or ""),
            warm=int(raw["warm"]) if raw.get("warm") is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "weight": self.weight}
        if self.tag:
            out["tag"] = self.tag
        if self.warm is not None:
            out["warm"] = self.warm
        return out


@dataclass(frozen=True)
class Traffic:
    entries: tuple[TrafficEntry, ...] = ()

    @classmethod
    def parse(cls, raw: Iterable[Mapping[str, Any]] | None) -> Traffic:
        """``Binding.traffic`` (or a timeline's from/to traffic) as a Traffic; None is none."""
        return cls(tuple(TrafficEntry.parse(entry) for entry in raw or ()))

    @classmethod
    def only(cls, version: int) -> Traffic:
        """One version serving 100%."""
        return cls((TrafficEntry(version, 100),))

    @classmethod
    def split(cls, *, stable: int, canary: int, percent: int, warm: int) -> Traffic:
        """A release's step: ``percent`` to the canary, the rest to the stable version."""
        return cls(
            (
                TrafficEntry(stable, 100 - percent, STABLE),
                TrafficEntry(canary, percent, CANARY, warm),
            )
        )

    def to_json(self) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in self.entries]

    def __iter__(self) -> Iterator[TrafficEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def versions(self) -> list[int]:
        """The versions in the traffic, in its order (weight 0 included: they keep instances)."""
        return [entry.version for entry in self.entries]

    def weights(self) -> tuple[tuple[int, int], ...]:
        """(version, weight) pairs, in order."""
        return tuple((entry.version, entry.weight) for entry in self.entries)

    def tags(self) -> dict[int, str]:
        """{version: tag} of the tagged entries."""
        return {entry.version: entry.tag for entry in self.entries if entry.tag}

    def warm(self) -> dict[int, int]:
        """{version: instances to pre-start} (0 where not said)."""
        return {entry.version: entry.warm or 0 for entry in self.entries}

    def weight_of(self, version: int) -> int:
        """The share of ``version`` (0 when it is not in the traffic)."""
        return next((entry.weight for entry in self.entries if entry.version == version), 0)

    def sole(self) -> int | None:
        """The version serving 100% alone (entries at weight 0 do not count), else None."""
        serving = [entry for entry in self.entries if entry.weight > 0]
        if len(serving) == 1 and serving[0].weight == 100:
            return serving[0].version
        return None

    def stable(self) -> int | None:
        """The stable side: the version tagged stable during a release, else the one serving alone."""
        tagged = next((entry.version for entry in self.entries if entry.tag == STABLE), None)
        return tagged if tagged is not None else self.sole()

    def canary(self) -> int | None:
        """The version tagged canary (a release in progress), else None."""
        return next((entry.version for entry in self.entries if entry.tag == CANARY), None)

    def describe(self) -> str:
        """``v3 90%, v4 10%`` (``nothing`` when empty): how messages and the timeline say it."""
        return ", ".join(f"v{entry.version} {entry.weight}%" for entry in self.entries) or "nothing"
