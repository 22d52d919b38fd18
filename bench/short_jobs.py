"""Workload 12: a short job at the I/O bound (issue 17, item 4). One stream of 100 pages behind
50 ms, the total known after the first page: `concurrency: auto` against a sweep of fixed
limits, the default limit and the sequential walk, all interleaved in the same run.

A run lasts a few round trips, so one slow spell of the shared machine is a large part of it:
every side runs `short_repeats` times, and the figure compares medians (the best runs are
shown beside them)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import workloads as wl
from runs import interleaved, log

if TYPE_CHECKING:
    from run import Bench

#: auto's median time within this factor of the best fixed limit's median.
TARGET = 1.3


def median_wall(runs: list[dict[str, Any]]) -> float:
    return statistics.median(run["wall_s"] for run in runs)


def short_job(bench: Bench, figures: dict[str, Any]) -> None:
    pages = wl.SHORT_JOB_PAGES
    log(
        f"12. short job: one stream of {pages} pages x {wl.LATENCY_MS:g} ms, total from "
        f"X-Total-Count; auto vs fixed {list(wl.SHORT_JOB_SWEEP)}, default, sequential, "
        "interleaved"
    )
    bench.api.configure(latency_ms=wl.LATENCY_MS)

    def side(label: str, streams: wl.StreamSet, trace: bool = False) -> Any:
        return lambda i: bench.tui(f"{label} #{i + 1}", streams, trace_concurrency=trace)

    sides = {
        "auto": side("auto", wl.short_job("auto"), trace=True),
        **{
            f"fixed {limit}": side(f"fixed {limit}", wl.short_job(limit))
            for limit in wl.SHORT_JOB_SWEEP
        },
        "default": side("default concurrency", wl.short_job(None)),
        "sequential": side("sequential", wl.short_job(None, parallel=False)),
    }
    runs = interleaved(bench.sizes.short_repeats, **sides)
    medians = {name: median_wall(side_runs) for name, side_runs in runs.items()}
    fastest = {name: min(run["wall_s"] for run in side_runs) for name, side_runs in runs.items()}
    fixed = [f"fixed {limit}" for limit in wl.SHORT_JOB_SWEEP]
    best_fixed = min(fixed, key=lambda name: medians[name])
    figures["short_job"] = {
        "pages": pages,
        "latency_ms": wl.LATENCY_MS,
        "runs": runs,
        "median_wall_s": medians,
        "fastest_wall_s": fastest,
        "best_fixed": best_fixed,
        "best_fixed_by_fastest": min(fixed, key=lambda name: fastest[name]),
    }
    figures["short_job_auto_over_best_fixed"] = medians["auto"] / medians[best_fixed]
