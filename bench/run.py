"""tui-connector's benchmark: the real engine against the demo API, every figure a ratio
against a baseline measured in the same run (these machines are shared and noisy).

    .venv/bin/python bench/run.py            # the full run (under 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # every workload, small: a smoke check

The full run prints a table and writes bench/RESULTS.md and bench/results.json; `--quick`
and `--only` runs print only (or write JSON where `--json` says). The demo API runs in its
own process pinned to one core, every measurement in a fresh process pinned to the others.
dlt, the peer, is installed into bench/.venv on first use (`--no-dlt` skips it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import lake_workloads
import short_jobs
import workloads as wl
from demo_api import DemoApi, cpu_plan
from report import Report
from runs import best, interleaved, log, paired_median
from s3_endpoint import S3Endpoint
from stats import summary_ms

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKER = BENCH / "worker.py"
PEER = BENCH / "dlt_peer.py"
# The peer's and the profiler's virtualenv: never the project's (dlt is no dependency of ours).
BENCH_VENV = BENCH / ".venv"
DLT_REQUIREMENT = "dlt>=1.0,<2"
PY_SPY_REQUIREMENT = "py-spy>=0.3"
WORKER_TIMEOUT = 300.0

WORKLOADS = {
    "1": "latency-bound",
    "2": "CPU-bound (also 3 dashboard cost, 5 checkpoint overhead)",
    "3": "dashboard cost alone: workload 2 headless and with the dashboard (part of 2)",
    "4": "memory",
    "6": "adaptive concurrency",
    "7": "transport",
    "8": "against dlt",
    "9": "lake formats, CPU-bound",
    "10": "lake formats, memory",
    "11": "lake formats on a local S3 endpoint",
    "12": "a short job at the I/O bound (auto vs a fixed sweep)",
}


class RunFailed(Exception):
    """A measurement did not complete as it must (a worker failed, records went missing)."""


# -- running one measurement ------------------------------------------------------------------


@dataclass
class Bench:
    api: DemoApi
    client_cpus: set[int] | None
    sizes: wl.Sizes
    profile_dir: Path | None = None  # py-spy profiles of tui-connector runs go here
    runs: list[dict[str, Any]] = field(default_factory=list)
    store: S3Endpoint | None = None  # the lake's object store, while a workload writes there

    def _worker(
        self, label: str, command: list[str], job: dict[str, Any], scratch: Path
    ) -> dict[str, Any]:
        job_path, result_path = scratch / "job.json", scratch / "result.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        stderr_path = scratch / "stderr.txt"
        command = [*command, str(job_path), str(result_path)]
        pin_process = self.client_cpus is not None
        if self.profile_dir is not None and command[1] == str(WORKER):
            # py-spy samples from whichever CPU is free; only the measured process is pinned.
            output = self.profile_dir / f"{re.sub(r'[^a-z0-9]+', '-', label.lower())}.txt"
            pin = ["taskset", "-c", ",".join(map(str, self.client_cpus))] if pin_process else []
            command = [*py_spy_record(output), *pin, *command]
            pin_process = False
        with open(stderr_path, "w", encoding="utf-8") as stderr:
            env = os.environ | (self.store.worker_env() if self.store is not None else {})
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=scratch,
                env=env,
            )
            if pin_process and self.client_cpus is not None:
                os.sched_setaffinity(process.pid, self.client_cpus)
            try:
                code = process.wait(timeout=WORKER_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
        if code != 0 or not result_path.exists():
            tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RunFailed(f"{shlex.join(command)} exited {code}:\n{tail}")
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        return result

    def measure(
        self,
        label: str,
        command: list[str],
        job: dict[str, Any],
        *,
        expected_records: int,
        prepare: Callable[[Path], None] | None = None,
    ) -> dict[str, Any]:
        """Run one worker in a scratch directory (deleted after) and add the server's share."""
        with tempfile.TemporaryDirectory(prefix="tui-bench-") as scratch:
            if prepare is not None:
                prepare(Path(scratch))
            server_cpu, store_cpu = self.api.cpu_seconds(), S3Endpoint.cpu_seconds()
            result = self._worker(label, command, job | {"work_dir": scratch}, Path(scratch))
            server_cpu = self.api.cpu_seconds() - server_cpu
            store_cpu = S3Endpoint.cpu_seconds() - store_cpu
        wall = result["wall_s"]
        result["label"] = label
        result["records_per_s"] = result["records"] / wall
        if "requests" in result:
            result["requests_per_s"] = result["requests"] / wall
            result["cpu_ms_per_request"] = 1000 * result["cpu_s"] / max(1, result["requests"])
        # The server's CPU over the run, in cores: near 1.0 means the server, not the client,
        # was the bottleneck (it has one core).
        result["server_cores"] = server_cpu / wall
        if self.store is not None:  # the same for the S3 endpoint (on the server's core)
            result["store_cores"] = store_cpu / wall
        problems = []
        if result["records"] != expected_records:
            problems.append(f"{result['records']} records of {expected_records}")
        if result.get("exit_code", 0) != 0 or result.get("failed"):
            problems.append(f"exit {result.get('exit_code')}, failed {result.get('failed')}")
        if problems:
            samples = result.get("error_samples")
            raise RunFailed(f"{label}: {'; '.join(problems)}; errors: {samples}")
        self.runs.append(result)
        rate = (
            f"{result['requests_per_s']:.0f} req/s, " if "requests_per_s" in result else ""
        ) + f"{result['records_per_s']:.0f} records/s"
        log(f"  {label}: {rate} in {wall:.2f} s (server {result['server_cores']:.2f} cores)")
        return result

    def tui(
        self,
        label: str,
        streams: wl.StreamSet,
        mode: str = "engine",
        **options: Any,
    ) -> dict[str, Any]:
        """tui-connector (or the bare loop, mode "bare") on `streams`, from a fresh config."""
        job: dict[str, Any] = {"mode": mode, "expected_records": streams.records, **options}

        def write_config(scratch: Path) -> None:
            job["config"] = str(streams.write_config(scratch, self.api.url))

        if mode == "bare":
            job["streams"] = streams.bare_streams(self.api.url)
        return self.measure(
            label,
            [sys.executable, str(WORKER)],
            job,
            expected_records=streams.records,
            prepare=write_config,
        )


def pooled_latencies(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Loop lag and keypress latencies of repeated dashboard runs, pooled: percentiles over
    every sample of every run (the raw loop-lag samples are dropped from the runs after)."""
    lag = [sample for run in runs for sample in run.pop("loop_lag_samples_ms", [])]
    keys = [sample for run in runs for sample in run["keypress"]["samples_ms"]]
    misses = sum(sum(run["keypress"]["misses"].values()) for run in runs)
    return {
        "runs": len(runs),
        "loop_lag": summary_ms(lag),
        "keypress": summary_ms(keys) | {"never_shown": misses},
    }


# -- the workloads ------------------------------------------------------------------------------


def latency_bound(bench: Bench, figures: dict[str, Any]) -> None:
    streams = wl.latency_bound(bench.sizes)
    limit = streams.streams / (wl.LATENCY_MS / 1000)
    log(
        f"1. latency-bound: {streams.streams} streams x {wl.LATENCY_MS:g} ms, limit {limit:g} req/s"
    )
    bench.api.configure(latency_ms=wl.LATENCY_MS)
    runs = interleaved(
        bench.sizes.repeats,
        headless=lambda i: bench.tui(f"headless #{i + 1}", streams),
        dashboard=lambda i: bench.tui(f"dashboard #{i + 1}", streams, "dashboard"),
    )
    headless, dashboard = best(runs["headless"]), best(runs["dashboard"])
    figures["latency_bound"] = {
        "streams": streams.streams,
        "latency_ms": wl.LATENCY_MS,
        "limit_requests_per_s": limit,
        "page_size": streams.page_size,
        "requests_per_run": streams.requests,
        "runs": runs,
    }
    figures["latency_bound_ratio_headless"] = headless["requests_per_s"] / limit
    figures["latency_bound_ratio_dashboard"] = dashboard["requests_per_s"] / limit
    figures["latency_bound"]["dashboard_over_headless"] = (
        dashboard["requests_per_s"] / headless["requests_per_s"]
    )
    figures["latency_bound"]["dashboard_latencies"] = pooled_latencies(runs["dashboard"])


def transport(bench: Bench, figures: dict[str, Any]) -> None:
    aiohttp_streams = wl.latency_bound(bench.sizes)
    streams = aiohttp_streams.with_(pages_per_stream=bench.sizes.httpx_pages, transport="httpx")
    limit = streams.streams / (wl.LATENCY_MS / 1000)
    log(f"7. transport: workload 1 with `transport: httpx` ({streams.requests} requests)")
    bench.api.configure(latency_ms=wl.LATENCY_MS)
    httpx_run = bench.tui("httpx pool", streams)
    aiohttp_runs = (figures.get("latency_bound") or {}).get("runs", {}).get("headless")
    if not aiohttp_runs:  # run alone (--only 7): measure the aiohttp side here
        aiohttp_runs = [bench.tui("aiohttp transport", aiohttp_streams)]
    aiohttp_run = best(aiohttp_runs)
    figures["transport"] = {
        "httpx": httpx_run,
        "httpx_ratio_to_limit": httpx_run["requests_per_s"] / limit,
        "aiohttp_ratio_to_limit": aiohttp_run["requests_per_s"] / limit,
    }
    figures["transport_httpx_over_aiohttp"] = (
        httpx_run["requests_per_s"] / aiohttp_run["requests_per_s"]
    )


def cpu_bound(bench: Bench, figures: dict[str, Any], *, dashboard_only: bool = False) -> None:
    """Workloads 2, 3 and 5 interleaved; with `dashboard_only`, workload 3's two sides alone
    (headless and dashboard): half the runs, for work on the dashboard's cost."""
    streams = wl.cpu_bound(bench.sizes)
    sides = (
        "tui-connector / dashboard"
        if dashboard_only
        else ("bare loop / tui-connector / no checkpoints / dashboard")
    )
    log(
        f"{'3' if dashboard_only else '2/3/5'}. CPU-bound: {streams.streams} streams, no latency, "
        f"{streams.page_size} records a page, {streams.records} records; {sides}, interleaved"
    )
    bench.api.configure(latency_ms=0)
    measurements: dict[str, Callable[[int], dict[str, Any]]] = {
        "bare": lambda i: bench.tui(f"bare loop #{i + 1}", streams, "bare"),
        "headless": lambda i: bench.tui(f"tui-connector #{i + 1}", streams),
        "no_checkpoints": lambda i: bench.tui(
            f"no checkpoints #{i + 1}", streams, checkpoints=False
        ),
        "dashboard": lambda i: bench.tui(f"dashboard #{i + 1}", streams, "dashboard"),
    }
    if dashboard_only:
        measurements = {side: measurements[side] for side in ("headless", "dashboard")}
    runs = interleaved(bench.sizes.cpu_repeats, **measurements)
    headless, dashboard = best(runs["headless"]), best(runs["dashboard"])
    # A cross-check of the best-of ratios: the median of each repeat's own ratio.
    paired = {"dashboard_over_headless": paired_median(runs["dashboard"], runs["headless"])}
    figures["dashboard_over_headless"] = dashboard["records_per_s"] / headless["records_per_s"]
    if not dashboard_only:
        bare, no_checkpoints = best(runs["bare"]), best(runs["no_checkpoints"])
        paired["cpu_bound"] = paired_median(runs["headless"], runs["bare"])
        paired["checkpoint"] = paired_median(runs["headless"], runs["no_checkpoints"])
        figures["cpu_bound_ratio"] = headless["records_per_s"] / bare["records_per_s"]
        figures["checkpoint_ratio"] = headless["records_per_s"] / no_checkpoints["records_per_s"]
    figures["cpu_bound"] = {
        "streams": streams.streams,
        "page_size": streams.page_size,
        "records_per_run": streams.records,
        "runs": runs,
        "paired_median_ratios": paired,
    }
    latencies = pooled_latencies(runs["dashboard"])
    figures["cpu_bound"]["dashboard_latencies"] = latencies
    figures["loop_lag_p99_ms"] = latencies["loop_lag"]["p99_ms"]
    figures["keypress_p95_ms"] = latencies["keypress"]["p95_ms"]


def memory(bench: Bench, figures: dict[str, Any]) -> None:
    streams = wl.memory(bench.sizes)
    log(f"4. memory: {streams.records:,} records in one run ({streams.page_size} a page)")
    bench.api.configure(latency_ms=0)
    run = bench.tui(
        "1M records" if streams.records >= 1_000_000 else "records", streams, track_rss=True
    )
    figures["memory"] = run
    figures["rss_peak_mb_1m"] = run["rss"]["peak_mb"]


def adaptive(bench: Bench, figures: dict[str, Any]) -> None:
    capacity = wl.ADAPTIVE_CAPACITY
    log(
        f"6. adaptive: capacity {capacity} (+{capacity // 2} queued, then 429), "
        f"{wl.LATENCY_MS:g} ms; fixed sweep {list(wl.ADAPTIVE_SWEEP)} vs auto"
    )
    bench.api.configure(latency_ms=wl.LATENCY_MS, capacity=capacity)

    def run(concurrency: int | str, label: str) -> dict[str, Any]:
        streams = wl.adaptive(bench.sizes, concurrency)
        bench.api.configure(latency_ms=wl.LATENCY_MS, capacity=capacity)  # clears the log
        # The limit's changes and reasons, and 20 Hz samples of limit and requests in flight.
        result = bench.tui(label, streams, trace_concurrency=True)
        statuses = bench.api.statuses()
        result["server_statuses"] = {str(code): count for code, count in statuses.items()}
        result["pct_429"] = 100 * statuses.get(429, 0) / max(1, sum(statuses.values()))
        return result

    sweep = [run(concurrency, f"fixed {concurrency}") for concurrency in wl.ADAPTIVE_SWEEP]
    autos = [run("auto", f"auto #{i + 1}") for i in range(bench.sizes.repeats)]
    best_fixed, best_auto = best(sweep), best(autos)
    figures["adaptive"] = {
        "capacity": capacity,
        "queue": capacity // 2,
        "sweep": sweep,
        "auto_runs": autos,
        "best_fixed_concurrency": best_fixed["label"],
    }
    figures["adaptive_ratio"] = best_auto["records_per_s"] / best_fixed["records_per_s"]
    figures["adaptive_429_pct"] = best_auto["pct_429"]


def against_dlt(bench: Bench, figures: dict[str, Any], dlt_python: Path | None, why: str) -> None:
    sizes = bench.sizes
    default_streams = wl.peer(sizes, None)
    log(
        f"8. against dlt: {wl.PEER_DATASETS} endpoints x {sizes.peer_records} records, "
        f"{wl.PEER_PAGE_SIZE} a page, {wl.LATENCY_MS:g} ms"
    )
    bench.api.configure(latency_ms=wl.LATENCY_MS)
    tui_sweep = {
        "default": lambda i: bench.tui(
            f"tui-connector, default concurrency #{i + 1}", default_streams
        ),
        "10": lambda i: bench.tui(f"tui-connector, concurrency 10 #{i + 1}", wl.peer(sizes, 10)),
        "25": lambda i: bench.tui(f"tui-connector, concurrency 25 #{i + 1}", wl.peer(sizes, 25)),
    }
    tui_runs = interleaved(sizes.repeats, **tui_sweep)
    tui_default = best(tui_runs["default"])
    tui_best = best([run for runs in tui_runs.values() for run in runs])
    section: dict[str, Any] = {"tui_runs": tui_runs, "tui_best": tui_best["label"]}
    figures["vs_dlt"] = section
    if dlt_python is None:
        section["dlt_unavailable"] = why
        figures["vs_dlt_ratio"] = None
        return

    def dlt(settings: str, label: str) -> dict[str, Any]:
        job = {
            "settings": settings,
            "base_url": bench.api.url,
            "datasets": default_streams.source_names(),
            "page_size": wl.PEER_PAGE_SIZE,
            "records": default_streams.records_per_stream,
        }
        return bench.measure(
            label, [str(dlt_python), str(PEER)], job, expected_records=default_streams.records
        )

    dlt_default = dlt("default", "dlt, default settings")
    dlt_parallel = best(
        [dlt("parallel", f"dlt, parallelized #{i + 1}") for i in range(sizes.repeats)]
    )
    section |= {
        "dlt_default": dlt_default,
        "dlt_parallel": dlt_parallel,
        "dlt_version": dlt_default.get("dlt_version"),
    }
    section["default_over_default"] = tui_default["records_per_s"] / dlt_default["records_per_s"]
    section["default_over_dlt_parallel"] = (
        tui_default["records_per_s"] / dlt_parallel["records_per_s"]
    )
    figures["vs_dlt_ratio"] = tui_best["records_per_s"] / dlt_parallel["records_per_s"]


# -- setting up ---------------------------------------------------------------------------------


def dlt_installed(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import dlt"], capture_output=True).returncode == 0


def py_spy_installed(python: Path) -> bool:
    return (python.parent / "py-spy").exists()


def ensure_bench_venv(
    requirement: str, installed: Callable[[Path], bool]
) -> tuple[Path | None, str]:
    """bench/.venv's python with `requirement` installed (created on first use), or None and
    why not."""
    python = BENCH_VENV / "bin" / "python"
    try:
        if not python.exists():
            log(f"creating {BENCH_VENV} (for dlt and py-spy; never tui-connector's dependencies)")
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        if not installed(python):
            log(f"installing {requirement} into {BENCH_VENV} ...")
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    requirement,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()[-1:] or [str(exc)]
        return None, f"could not install {requirement}: {reason[0]}"
    except OSError as exc:
        return None, f"could not set up {BENCH_VENV}: {exc}"
    return python, ""


def py_spy_record(output: Path) -> list[str]:
    """py-spy sampling the GIL holder (so idle threads do not count), 250 times a second,
    as collapsed stacks: `bench/profile_tree.py` summarises them."""
    py_spy = BENCH_VENV / "bin" / "py-spy"
    return [str(py_spy), "record", "--gil", "-r", "250", "-f", "raw", "-o", str(output), "--"]


def machine(
    client_cpus: set[int] | None,
    server_cpus: set[int] | None,
    load_at_start: tuple[float, float, float],
) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    versions = {}
    for package in ("tui-connector", "httpx", "httpx-aiohttp", "aiohttp", "textual"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "client_cpus": sorted(client_cpus) if client_cpus else None,
    }


@contextlib.contextmanager
def timed(figures: dict[str, Any], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        figures.setdefault("seconds_per_workload", {})[name] = round(time.monotonic() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every workload, small (seconds)")
    parser.add_argument(
        "--only",
        help="comma-separated workloads to run: "
        + ", ".join(f"{k} {v}" for k, v in WORKLOADS.items()),
    )
    parser.add_argument("--no-dlt", action="store_true", help="skip dlt (vs_dlt_ratio = null)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="RESULTS_JSON",
        help="run nothing: print the table (and RESULTS.md to stdout) from saved figures",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record a py-spy profile of every tui-connector run into DIR (slows the runs: "
        "figures are then for diagnosis only, and RESULTS.md is not written)",
    )
    args = parser.parse_args()
    if args.report:
        saved = Report(json.loads(args.report.read_text(encoding="utf-8")))
        print(saved.markdown())
        return 0
    selected = set(args.only.split(",")) if args.only else set(WORKLOADS)
    unknown = selected - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}")
    full = not args.quick and not args.profile and selected == set(WORKLOADS)
    if "2" in selected:
        selected.discard("3")  # workload 2 runs workload 3's sides too
    command = "bench/run.py" + "".join(f" {arg}" for arg in sys.argv[1:])

    dlt_python, why = (None, "skipped (--no-dlt)") if args.no_dlt else (None, "")
    if "8" in selected and not args.no_dlt:
        dlt_python, why = ensure_bench_venv(DLT_REQUIREMENT, dlt_installed)
    if args.profile:
        profiler, problem = ensure_bench_venv(PY_SPY_REQUIREMENT, py_spy_installed)
        if profiler is None:
            parser.error(f"--profile needs py-spy: {problem}")
        args.profile.mkdir(parents=True, exist_ok=True)
    server_cpus, client_cpus = cpu_plan()
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    load_at_start = os.getloadavg()
    figures: dict[str, Any] = dict.fromkeys(Report.HEADLINE)
    with DemoApi(server_cpus) as api:
        bench = Bench(api, client_cpus, wl.QUICK if args.quick else wl.FULL, args.profile)
        steps: dict[str, Callable[[], None]] = {
            "1": lambda: latency_bound(bench, figures),
            "7": lambda: transport(bench, figures),
            "2": lambda: cpu_bound(bench, figures),
            "3": lambda: cpu_bound(bench, figures, dashboard_only=True),
            "4": lambda: memory(bench, figures),
            "6": lambda: adaptive(bench, figures),
            "8": lambda: against_dlt(bench, figures, dlt_python, why),
            "9": lambda: lake_workloads.formats_cpu_bound(bench, figures),
            "10": lambda: lake_workloads.formats_memory(bench, figures),
            "11": lambda: lake_workloads.formats_on_s3(bench, figures, server_cpus),
            "12": lambda: short_jobs.short_job(bench, figures),
        }
        for key, step in steps.items():
            if key in selected:
                with timed(figures, WORKLOADS[key]):
                    step()
    figures["seconds_total"] = round(time.monotonic() - started, 1)
    figures["machine"] = machine(client_cpus, server_cpus, load_at_start)
    figures["date"] = started_at.isoformat(timespec="seconds")
    figures["command"] = f".venv/bin/python {command}"
    figures["quick"] = args.quick
    report = Report(figures)
    print(report.table())
    if full:
        (BENCH / "results.json").write_text(report.json(), encoding="utf-8")
        results = BENCH / "RESULTS.md"
        kept = fix_log(results)
        results.write_text(report.markdown() + kept, encoding="utf-8")
        log("wrote bench/RESULTS.md and bench/results.json")
    if args.json:
        args.json.write_text(report.json(), encoding="utf-8")
    return 0


FIX_LOG = "## What each fix moved"


def fix_log(results: Path) -> str:
    """The hand-kept section of RESULTS.md that logs the performance fixes, carried over
    when the figures above it are written anew."""
    if not results.exists():
        return ""
    text = results.read_text(encoding="utf-8")
    start = text.find(FIX_LOG)
    return "" if start < 0 else "\n" + text[start:]


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
