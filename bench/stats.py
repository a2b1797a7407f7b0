"""Small, dependency-free summary statistics for benchmark reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int]:
    """``{"p50", "p95", "n"}`` of latencies in milliseconds, rounded to 0.01 ms."""
    return {"p50": round(median(values_ms), 2), "p95": round(percentile(values_ms, 95), 2), "n": len(values_ms)}
