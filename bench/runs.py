"""How the benchmark combines repeated runs into one figure, and tells what it is doing."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def best(runs: list[dict[str, Any]], key: str = "records_per_s") -> dict[str, Any]:
    """The fastest of repeated runs: on a shared machine noise only ever slows a run down."""
    return max(runs, key=lambda run: run[key])


def interleaved(repeats: int, **measurements: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """Run each measurement `repeats` times, alternating (A B C A B C ...), so that a noisy
    spell on the machine hits every side of a ratio alike. Returns the runs by name."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in measurements}
    for repeat in range(repeats):
        for name, measure in measurements.items():
            runs[name].append(measure(repeat))
    return runs


def paired_median(measured: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> float:
    """The median over repeats of measured ÷ baseline records/s, each pair run back to back."""
    return statistics.median(
        run["records_per_s"] / base["records_per_s"]
        for run, base in zip(measured, baseline, strict=True)
    )
