"""Percentiles as the benchmark reports them."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (no interpolation: every figure reported was observed)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(milliseconds: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50 / p95 / p99 and max of durations in milliseconds."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "count": len(milliseconds),
        "p50_ms": rounded(percentile(milliseconds, 0.50)),
        "p95_ms": rounded(percentile(milliseconds, 0.95)),
        "p99_ms": rounded(percentile(milliseconds, 0.99)),
        "max_ms": rounded(max(milliseconds, default=None)),
    }
