"""The fixed duration histogram of the metric rollups, and percentiles read from it.

Edges are log-spaced: ``EDGES[k] = 2 ** (k / 16)`` ms for k = 0..320, i.e. 1 ms to 2**20 ms
(17.5 min, past the 900 s timeout ceiling), 16 buckets per doubling. A rollup row stores the
histogram *cumulatively*: column ``c{k}`` counts the requests that ran less than EDGES[k]
(so ``c000`` is the [0, 1 ms) bucket and the requests at or past 2**20 ms are
``duration_count - c320``). Cumulative counts add like plain ones (an upsert adds a batch's,
a query sums rows), and a percentile is a binary search over one row's columns: the database
does it (``percentile_sql``), so a 1,440-point series returns three numbers per point, not
321.

Error bound: the percentile at rank r = ceil(p * n) (nearest rank, as
selectors.invocation_summary computes it exactly) lies in the bucket [EDGES[k-1], EDGES[k])
whose cumulative count first reaches r; the estimate interpolates linearly inside that same
bucket, so it is off by less than the bucket's width: under 2**(1/16) - 1 = 4.4 % of the true
value (worst case, every request of the bucket at one end); under 1 ms for requests below
1 ms. The estimate is clamped to the row's ``duration_max`` (exact), which also answers the
overflow bucket. Prometheus gets every 16th edge (1, 2, 4 … 1,048,576 ms) as ``le`` buckets.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

PER_DOUBLING = 16
DOUBLINGS = 20
EDGES: tuple[float, ...] = tuple(2 ** (k / PER_DOUBLING) for k in range(PER_DOUBLING * DOUBLINGS + 1))
BUCKET_COLUMNS: tuple[str, ...] = tuple(f"c{k:03d}" for k in range(len(EDGES)))
# Worst-case relative error of an interpolated percentile (see above).
MAX_RELATIVE_ERROR = EDGES[1] - 1.0
# The edges Prometheus sees (every doubling): (index into EDGES, seconds).
PROMETHEUS_EDGES: tuple[tuple[int, float], ...] = tuple(
    (k, EDGES[k] / 1000.0) for k in range(0, len(EDGES), PER_DOUBLING)
)


def cumulative_add(counts: list[int], duration_ms: float) -> None:
    """Count one duration into a cumulative histogram (len(EDGES) counters, c_k = #(d < EDGES[k]))."""
    first = bisect.bisect_right(EDGES, duration_ms)  # the first edge above the duration
    for k in range(first, len(counts)):
        counts[k] += 1


def bucket_index(duration_ms: float) -> int:
    """The first k with duration < EDGES[k] (len(EDGES) for the overflow)."""
    return bisect.bisect_right(EDGES, duration_ms)


def cumulate(plain: Sequence[int]) -> list[int]:
    """Plain per-bucket counts (len(EDGES) + 1 with the overflow last) to cumulative columns."""
    out: list[int] = []
    total = 0
    for value in plain[: len(EDGES)]:
        total += value
        out.append(total)
    return out


def rank(p: float, n: int) -> int:
    """Nearest rank of percentile ``p`` (0..1) among ``n`` values (1-based)."""
    return max(1, math.ceil(p * n - 1e-9))


def percentile(cumulative: Sequence[int], n: int, p: float, duration_max: float | None) -> float | None:
    """The interpolated percentile (ms) of ``n`` durations whose cumulative counts are given;
    the Python twin of ``percentile_sql`` (tests and Prometheus use it)."""
    if n <= 0:
        return None
    r = rank(p, n)
    k = bisect.bisect_left(cumulative, r)
    if k >= len(EDGES):
        return duration_max
    below = cumulative[k - 1] if k else 0
    lo = EDGES[k - 1] if k else 0.0
    value = lo + (EDGES[k] - lo) * (r - below) / (cumulative[k] - below)
    return min(value, duration_max) if duration_max is not None else value


def _rank_sql(p: float, n: str) -> str:
    # ceil(p * n) in integer arithmetic (SQLite has no ceil() everywhere): p in hundredths.
    hundredths = round(p * 100)
    return f"((({n}) * {hundredths} + 99) / 100)"


def percentile_sql(p: float, *, n: str, maximum: str, column: str = "{}") -> str:
    """A SQL expression (SQLite and PostgreSQL alike) for the interpolated percentile ``p`` of
    a row with cumulative columns ``column.format(c000)`` …, ``n`` durations and ``maximum``
    the largest: a CASE tree that binary-searches the first column reaching the rank (nine
    comparisons a row) and interpolates inside that bucket. NULL when n is 0."""
    r = _rank_sql(p, n)

    def col(k: int) -> str:
        return column.format(BUCKET_COLUMNS[k])

    def leaf(k: int) -> str:
        lo = EDGES[k - 1] if k else 0.0
        below = col(k - 1) if k else "0"
        return f"({lo!r} + {EDGES[k] - lo!r} * ({r} - {below}) / ({col(k)} - {below}))"

    def search(lo: int, hi: int) -> str:
        if lo == hi:
            return leaf(lo)
        mid = (lo + hi) // 2
        return f"CASE WHEN {col(mid)} >= {r} THEN {search(lo, mid)} ELSE {search(mid + 1, hi)} END"

    last = len(EDGES) - 1
    return f"CASE WHEN ({n}) = 0 THEN NULL WHEN {col(last)} < {r} THEN {maximum} ELSE {search(0, last)} END"
