"""The lake's workloads: workload 2 (CPU-bound) and workload 4 (1,000,000 records) writing each
format — JSON Lines, Parquet, Delta — on local disk (9, 10) and into a local S3 endpoint (11).
Every ratio is against JSON Lines, measured in the same run, interleaved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import workloads as wl
from runs import best, interleaved, log, paired_median
from s3_endpoint import S3Endpoint, moto_missing

if TYPE_CHECKING:
    from run import Bench

LAKE_FORMATS = ("jsonl", "parquet", "delta")
TABLE_FORMATS = LAKE_FORMATS[1:]  # the formats measured against JSON Lines


def _into(bench: Bench, streams: wl.StreamSet, format: str) -> wl.StreamSet:
    """`streams` writing `format` to the bench's object store (an emptied one for every run),
    or beside the config when there is none."""
    out = bench.store.fresh_lake() if bench.store is not None else streams.out
    return streams.with_(format=format, out=out)


def _cpu_bound(
    bench: Bench, repeats: int, where: str = "", with_bare: bool = False
) -> dict[str, Any]:
    streams = wl.cpu_bound(bench.sizes)
    bench.api.configure(latency_ms=0)
    sides = {}
    if with_bare:  # the machine's speed: a ratio that holds only on a fast CPU does not hold
        sides["bare"] = lambda i: bench.tui(f"bare loop #{i + 1}", streams, "bare")
    for format in LAKE_FORMATS:
        sides[format] = lambda i, format=format: bench.tui(
            f"{where}{format} #{i + 1}", _into(bench, streams, format)
        )
    runs = interleaved(repeats, **sides)
    jsonl = best(runs["jsonl"])["records_per_s"]
    return {
        "streams": streams.streams,
        "records_per_run": streams.records,
        "runs": runs,
        "over_jsonl": {
            format: best(runs[format])["records_per_s"] / jsonl for format in TABLE_FORMATS
        },
        # A cross-check of the best-of ratios: the median of each repeat's own ratio.
        "paired_median_over_jsonl": {
            format: paired_median(runs[format], runs["jsonl"]) for format in TABLE_FORMATS
        },
    }


def _memory(bench: Bench, where: str = "") -> dict[str, dict[str, Any]]:
    streams = wl.memory(bench.sizes)
    bench.api.configure(latency_ms=0)
    return {
        format: bench.tui(
            f"{where}{format}, {streams.records:,} records",
            _into(bench, streams, format),
            track_rss=True,
        )
        for format in LAKE_FORMATS
    }


def formats_cpu_bound(bench: Bench, figures: dict[str, Any]) -> None:
    log(
        f"9. lake formats, CPU-bound: workload 2 writing {' / '.join(LAKE_FORMATS)}, and the "
        "bare loop (the machine's speed), interleaved"
    )
    section = _cpu_bound(bench, bench.sizes.cpu_repeats, with_bare=True)
    figures["formats_cpu_bound"] = section
    for format in TABLE_FORMATS:
        figures[f"{format}_over_jsonl"] = section["over_jsonl"][format]


def formats_memory(bench: Bench, figures: dict[str, Any]) -> None:
    log(f"10. lake formats, memory: workload 4 ({bench.sizes.memory_records:,} records) each")
    runs = _memory(bench)
    figures["formats_memory"] = runs
    for format in TABLE_FORMATS:
        figures[f"rss_peak_mb_{format}"] = runs[format]["rss"]["peak_mb"]


def formats_on_s3(bench: Bench, figures: dict[str, Any], cpus: set[int] | None) -> None:
    """Workloads 9 and 10 (without the bare loop) into moto's S3 server on 127.0.0.1: reported,
    with no target (the endpoint is a Python server on the demo API's core)."""
    why = moto_missing()
    if why is not None:
        log(f"11. lake formats on S3: skipped, {why}")
        figures["s3"] = {"unavailable": why}
        return
    log("11. lake formats on a local S3 endpoint (moto): workloads 9 and 10, reported")
    with S3Endpoint(cpus) as store:
        bench.store = store
        try:
            figures["s3"] = {
                "cpu_bound": _cpu_bound(bench, bench.sizes.repeats, "S3 "),
                "memory": _memory(bench, "S3 "),
            }
        finally:
            bench.store = None
