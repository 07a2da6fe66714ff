"""Health gates: compare the canary with the stable version over the current step's window.

Figures come from the Invocation rows the engine records per request (apps.monitoring):
errors are ``error``, ``timeout`` and ``crashed``; ``throttled`` requests never reached the
function and count neither as requests nor as errors.

Rule (each part applies when the gate sets it):
- canary error rate ≤ max(max_error_rate, stable error rate + max_error_rate_delta);
- canary p95 ≤ stable p95 × max_p95_factor, when both sides have requests.
With fewer than ``min_requests`` canary requests in the window there is no verdict yet
(``passed`` is None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apps.monitoring.models import Invocation
from apps.releases.models import Release

ERROR_STATUSES = (Invocation.Status.ERROR, Invocation.Status.TIMEOUT, Invocation.Status.CRASHED)


@dataclass
class GateResult:
    passed: bool | None
    figures: dict[str, dict[str, Any]]
    window: tuple[datetime, datetime]
    failed: dict[str, Any] | None = None
    reason: str = ""
    limits: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "window": {"from": self.window[0].isoformat(), "to": self.window[1].isoformat()},
            "figures": self.figures,
            "limits": self.limits,
            "failed": self.failed,
        }


def p95(durations: list[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not durations:
        return None
    ordered = sorted(durations)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3)


def _figures(rows: list[tuple[str, float]]) -> dict[str, Any]:
    served = [(status, duration) for status, duration in rows if status != Invocation.Status.THROTTLED]
    errors = sum(1 for status, _ in served if status in ERROR_STATUSES)
    requests = len(served)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else None,
        "p95_ms": p95([duration for _, duration in served]),
    }


def gate_window(release: Release, now: datetime) -> tuple[datetime, datetime]:
    gate = release.plan.get("gate") or {}
    start = release.step_started_at or release.created_at
    if gate.get("window_s"):
        start = max(start, now - timedelta(seconds=int(gate["window_s"])))
    return start, now


def gate_evaluate(release: Release, now: datetime) -> GateResult:
    """Evaluate the release's gate over the current step's window (see the module doc)."""
    gate = release.plan.get("gate") or {}
    start, end = gate_window(release, now)
    canary_number = release.version.number
    stable_number = release.stable_version.number if release.stable_version is not None else None
    numbers = [canary_number] + ([stable_number] if stable_number is not None else [])
    rows: dict[int, list[tuple[str, float]]] = {n: [] for n in numbers}
    for number, status, duration in Invocation.objects.filter(
        function_id=release.binding.function_id,
        binding_id=release.binding_id,
        version__in=numbers,
        started_at__gte=start,
        started_at__lte=end,
    ).values_list("version", "status", "duration_ms"):
        rows[number].append((status, duration))
    canary = _figures(rows[canary_number])
    stable = _figures(rows[stable_number]) if stable_number is not None else _figures([])
    figures = {"canary": canary, "stable": stable}
    limits: dict[str, Any] = {"min_requests": int(gate.get("min_requests") or 1)}
    result = GateResult(passed=None, figures=figures, window=(start, end), limits=limits)

    if canary["requests"] < limits["min_requests"]:
        result.reason = f"waiting: {canary['requests']} of {limits['min_requests']} canary requests"
        return result

    if "max_error_rate" in gate or "max_error_rate_delta" in gate:
        candidates = []
        if "max_error_rate" in gate:
            candidates.append(float(gate["max_error_rate"]))
        if "max_error_rate_delta" in gate:
            candidates.append((stable["error_rate"] or 0.0) + float(gate["max_error_rate_delta"]))
        limit = round(max(candidates), 6)
        limits["error_rate"] = limit
        if canary["error_rate"] > limit:
            result.passed = False
            result.failed = {
                "figure": "error_rate",
                "canary": canary["error_rate"],
                "limit": limit,
                "stable": stable["error_rate"],
            }
            result.reason = f"canary error rate {canary['error_rate']} > limit {limit}"
            return result

    if "max_p95_factor" in gate and stable["requests"] >= 1 and canary["p95_ms"] is not None:
        limit = round(stable["p95_ms"] * float(gate["max_p95_factor"]), 3)
        limits["p95_ms"] = limit
        if canary["p95_ms"] > limit:
            result.passed = False
            result.failed = {"figure": "p95_ms", "canary": canary["p95_ms"], "limit": limit, "stable": stable["p95_ms"]}
            result.reason = f"canary p95 {canary['p95_ms']} ms > limit {limit} ms"
            return result

    result.passed = True
    result.reason = "passed"
    return result
