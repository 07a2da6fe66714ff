"""Prometheus exposition of the metric rollups (``GET /metrics``).

A custom collector over the rollups' running totals (MetricTotal), built per scrape for the
caller's functions. Not prometheus-client's in-process counters nor its multiprocess mode:
invocations are served by engine processes on several hosts and counted by whichever process
flushes their records, so per-process counters (or a multiprocess directory on one host)
would each hold a part. The totals table is already the one consistent count: every web
process answers the same figures, a restart loses nothing, and a scrape sees only what
its token's user may see. The totals are monotonic (only ever added to); a series whose
version saw no invocation for 24 h is left out (it goes stale in Prometheus, as a
stopped process's would).

Exposed per (org, project, function, environment, version):
  stratus_function_invocations_total{status}   counter (ok, error, timeout, throttled, crashed)
  stratus_function_cold_starts_total           counter
  stratus_function_throttles_total             counter
  stratus_function_duration_seconds            histogram (requests that ran), le = 1 ms · 2^k
  stratus_function_concurrency_peak            gauge: peak requests in flight, last 5 minutes

A histogram bucket ``le`` counts durations below its edge (the rollups' buckets are
half-open [lo, hi)); a duration exactly on an edge is one bucket up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from apps.monitoring import metric_selectors
from apps.monitoring.histogram import BUCKET_COLUMNS, PROMETHEUS_EDGES

LABELS = ["org", "project", "function", "environment", "version"]


def _labels(row: dict[str, Any]) -> list[str]:
    return [
        row["function__project__org__slug"],
        row["function__project__name"],
        row["function__name"],
        row["environment__name"],
        str(row["version"]),
    ]


class RollupCollector(Collector):
    def __init__(self, function_ids: Iterable[int]) -> None:
        self.function_ids = list(function_ids)

    def collect(self) -> Iterator[Metric]:
        totals = metric_selectors.metric_totals(functions=self.function_ids)
        calls = CounterMetricFamily(
            "stratus_function_invocations", "Invocations by status (draft runs excluded)", labels=[*LABELS, "status"]
        )
        cold = CounterMetricFamily(
            "stratus_function_cold_starts", "Invocations that started an instance", labels=LABELS
        )
        throttles = CounterMetricFamily("stratus_function_throttles", "Invocations refused: no capacity", labels=LABELS)
        durations = HistogramMetricFamily(
            "stratus_function_duration_seconds", "Duration of the invocations that ran", labels=LABELS
        )
        names: dict[tuple[int, str, int], list[str]] = {}
        for row in totals:
            labels = _labels(row)
            names[(row["function_id"], row["environment__name"], row["version"])] = labels
            errors_only = row["errors"] - row["timeouts"] - row["crashes"]
            ok = row["invocations"] - row["errors"] - row["throttles"]
            for status, value in (
                ("ok", ok),
                ("error", errors_only),
                ("timeout", row["timeouts"]),
                ("throttled", row["throttles"]),
                ("crashed", row["crashes"]),
            ):
                calls.add_metric([*labels, status], value)
            cold.add_metric(labels, row["cold_starts"])
            throttles.add_metric(labels, row["throttles"])
            buckets = [(repr(le), row[BUCKET_COLUMNS[k]]) for k, le in PROMETHEUS_EDGES]
            buckets.append(("+Inf", row["duration_count"]))
            durations.add_metric(labels, buckets, sum_value=row["duration_sum"] / 1000.0)
        yield calls
        yield cold
        yield throttles
        yield durations
        peak = GaugeMetricFamily(
            "stratus_function_concurrency_peak", "Peak requests in flight over the last 5 minutes", labels=LABELS
        )
        for key, value in metric_selectors.recent_peak_concurrency(functions=self.function_ids).items():
            if key in names:
                peak.add_metric(names[key], value)
        yield peak


def registry_for(function_ids: Iterable[int]) -> CollectorRegistry:
    """A registry holding only the rollups of ``function_ids`` (the caller's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RollupCollector(function_ids))
    return registry
