"""What a run's control endpoint costs and sends, one client attached at the default 10 Hz
(issue 18).

    .venv/bin/python bench/control.py            # 3-6 minutes on 2 cores
    .venv/bin/python bench/control.py --quick    # a smoke check (seconds)

- attach ÷ headless: records/s with one client attached ÷ without (the endpoint open, nobody on
  it), the median of interleaved pairs, on run.py's workload 2 (where the issue sets its
  target) and on 100 sources, CPU-bound (also against a run with no endpoint, as
  `--no-control`) and latency-bound;
- bytes per second and per update that the attached client receives in each;
- on workload 2 again, `attach`'s own dashboard in the client process: attach ÷ headless for a
  dashboard, and its keypress latencies (run.py's workload 3 keys: local to the dashboard,
  each shown on its next refresh of figures that crossed the socket).

Every ratio is given in records/s and in CPU: the run's CPU seconds headless ÷ attached, pair by
pair (the same records each time), which a loaded machine disturbs less than wall time.

Every run is a fresh worker process (`control.py worker JOB RESULT`, run by `run.Bench`) pinned
as in `run.py`; the attached client is another process (`control.py client SOCKET RESULT`)
pinned to the demo API's core, as the S3 endpoint of workload 11 is, so that what it costs the
run is what crosses the socket, not the client's own CPU. The client reads raw lines and
applies each update to a telemetry mirror, as `attach`'s facade does. It prints a table; the
figures go by hand into RESULTS.md's control endpoint section (`--json PATH` writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workloads as wl
from demo_api import DemoApi, cpu_plan
from runs import best, interleaved, log, paired_median
from stats import summary_ms

BENCH = Path(__file__).resolve().parent
CLIENT_TIMEOUT = 60.0  # seconds for a socket to appear, a client to attach, a client to end


# -- the runs -----------------------------------------------------------------------------------


def hundred_sources(prefix: str, pages: int, page_size: int) -> wl.StreamSet:
    """100 sources of one stream each, at their default concurrency."""
    return wl.StreamSet(
        prefix=prefix,
        sources=100,
        partitions=1,
        pages_per_stream=pages,
        page_size=page_size,
        concurrency=None,
    )


def cpu_bound(quick: bool) -> wl.StreamSet:
    """No latency: 500,000 records (as workload 2)."""
    return hundred_sources("ctl", 5 if quick else 50, 100)


def latency_bound(quick: bool) -> wl.StreamSet:
    """Behind 50 ms: at most 2000 requests/s (as workload 1)."""
    return hundred_sources("ctllat", 5 if quick else 60, 20)


class ControlBench:
    """Runs a workload headless — with the control endpoint and a client attached, with the
    endpoint alone, or with none — through `run.Bench` (pinning, records checked)."""

    def __init__(self, bench: Any, client_cpus: set[int] | None) -> None:
        self.bench = bench
        self.client_cpus = client_cpus  # the attached client's: the demo API's core

    def run(
        self,
        label: str,
        streams: wl.StreamSet,
        *,
        control: bool,
        attach: bool,
        client_kind: str = "client",
    ) -> Any:
        """`client_kind`: "client" counts what crosses the socket; "dashboard" is `attach`'s
        dashboard, its keys timed."""
        job: dict[str, Any] = {"control": control, "clients": int(attach)}
        client: subprocess.Popen[bytes] | None = None
        with tempfile.TemporaryDirectory(prefix="tui-bench-client-") as client_dir:
            received = Path(client_dir) / "client.json"
            if attach and client_kind == "dashboard":
                # Its probe for the run's facts comes and goes first: the run waits for this.
                job["ready_file"] = str(Path(client_dir) / "attached")

            def prepare(scratch: Path) -> None:
                nonlocal client
                job["config"] = str(streams.write_config(scratch, self.bench.api.url))
                if attach:
                    client = subprocess.Popen(
                        [
                            sys.executable,
                            str(Path(__file__)),
                            client_kind,
                            str(scratch / "state.db.sock"),
                            str(received),
                            *([job["ready_file"]] if "ready_file" in job else []),
                        ],
                        stdin=subprocess.DEVNULL,
                    )
                    if self.client_cpus is not None:
                        os.sched_setaffinity(client.pid, self.client_cpus)

            try:
                result = self.bench.measure(
                    label,
                    [sys.executable, str(Path(__file__)), "worker"],
                    job,
                    expected_records=streams.records,
                    prepare=prepare,
                )
            finally:
                ended = client is None or ended_in_time(client)
            if not ended or (client is not None and client.returncode != 0):
                raise RuntimeError(f"{label}: the attached client failed")
            if attach and client_kind == "dashboard":
                result["dashboard"] = json.loads(received.read_text(encoding="utf-8"))
                keys = result["dashboard"]["keypress"]["all"]
                log(f"    attached dashboard: keypress p95 {keys.get('p95_ms')} ms")
            elif attach:
                result["client"] = json.loads(received.read_text(encoding="utf-8"))
                traffic = result["client"]
                log(
                    f"    attached: {traffic['bytes_per_s'] / 1000:.1f} kB/s, "
                    f"{traffic['updates']} updates of {traffic['bytes_per_update']:.0f} B"
                )
        return result


def ended_in_time(process: subprocess.Popen[bytes]) -> bool:
    """Whether `process` ended by itself (it is killed otherwise)."""
    try:
        process.wait(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


def measure(bench: Any, client_cpus: set[int] | None, quick: bool) -> dict[str, Any]:
    runs = ControlBench(bench, client_cpus)
    repeats = 1 if quick else 5
    bench.api.configure(latency_ms=0)
    # The target is on the benchmark's CPU-bound workload (run.py's 2): 50 streams.
    streams = wl.cpu_bound(bench.sizes)
    log(f"workload 2: {streams.streams} streams, {streams.records:,} records, no latency")
    workload_2 = compared(runs, streams, bench.sizes.cpu_repeats, with_no_endpoint=False)
    log("workload 2 with attach's dashboard on the run, its keys pressed")
    dashboard = with_dashboard(runs, streams, bench.sizes.cpu_repeats)
    streams = cpu_bound(quick)
    log(f"CPU-bound: {streams.sources} sources, {streams.records:,} records, no latency")
    cpu = compared(runs, streams, repeats, with_no_endpoint=True)
    streams = latency_bound(quick)
    log(
        f"latency-bound: {streams.sources} sources x {wl.LATENCY_MS:g} ms, "
        f"{streams.requests:,} requests"
    )
    bench.api.configure(latency_ms=wl.LATENCY_MS)
    latency = compared(runs, streams, max(1, repeats - 2), with_no_endpoint=False)
    return {
        "workload_2": workload_2,
        "workload_2_dashboard": dashboard,
        "cpu_bound": cpu,
        "latency_bound": latency,
    }


def with_dashboard(runs: ControlBench, streams: wl.StreamSet, repeats: int) -> dict[str, Any]:
    """`streams` headless with `attach`'s dashboard on it and without, interleaved: what the
    run pays for a dashboard in another process, and its keypress latencies there."""
    done = interleaved(
        repeats,
        headless=lambda i: runs.run(f"headless #{i + 1}", streams, control=True, attach=False),
        attached=lambda i: runs.run(
            f"dashboard #{i + 1}", streams, control=True, attach=True, client_kind="dashboard"
        ),
    )
    keys = [
        sample for run in done["attached"] for sample in run["dashboard"]["keypress"]["samples_ms"]
    ]
    return {
        "runs": done,
        "attach_over_headless": ratios(done["attached"], done["headless"]),
        "keypress": summary_ms(keys)
        | {
            "never_shown": sum(
                sum(run["dashboard"]["keypress"]["misses"].values()) for run in done["attached"]
            )
        },
    }


def ratios(attached: list[dict[str, Any]], headless: list[dict[str, Any]]) -> dict[str, float]:
    """Attached ÷ headless in records/s, and in CPU: the run's CPU seconds headless ÷ attached
    for the same records, pair by pair (steadier on a loaded machine than wall time)."""
    return {
        "median_of_pairs": paired_median(attached, headless),
        "best_over_best": best(attached)["records_per_s"] / best(headless)["records_per_s"],
        "cpu_median_of_pairs": statistics.median(
            h["cpu_s"] / a["cpu_s"] for a, h in zip(attached, headless, strict=True)
        ),
        # The run's CPU serving the client, of all its CPU: attach ÷ headless is 1 - this on a
        # run its core limits.
        "endpoint_share": statistics.median(a["endpoint_cpu_s"] / a["cpu_s"] for a in attached),
    }


def compared(
    runs: ControlBench, streams: wl.StreamSet, repeats: int, *, with_no_endpoint: bool
) -> dict[str, Any]:
    """`streams` headless with one client attached and without (and with no endpoint),
    interleaved `repeats` times."""
    sides = {
        "headless": lambda i: runs.run(f"headless #{i + 1}", streams, control=True, attach=False),
        "attached": lambda i: runs.run(f"attached #{i + 1}", streams, control=True, attach=True),
    }
    if with_no_endpoint:
        sides["no_control"] = lambda i: runs.run(
            f"no endpoint #{i + 1}", streams, control=False, attach=False
        )
    done = interleaved(repeats, **sides)
    section = {
        "sources": streams.sources,
        "records_per_run": streams.records,
        "requests_per_run": streams.requests,
        "runs": done,
        "attach_over_headless": ratios(done["attached"], done["headless"]),
        "traffic": traffic([run["client"] for run in done["attached"]]),
    }
    if with_no_endpoint:
        section["endpoint_over_none"] = {
            "median_of_pairs": paired_median(done["headless"], done["no_control"]),
        }
    return section


def traffic(clients: list[dict[str, Any]]) -> dict[str, Any]:
    """The attached clients' traffic, as medians over the runs."""

    def median(key: str) -> float:
        return statistics.median(client[key] for client in clients)

    return {
        "bytes_per_s": median("bytes_per_s"),
        "bytes_per_update": median("bytes_per_update"),
        "updates_per_s": median("updates_per_s"),
        "welcome_bytes": median("welcome_bytes"),
        "update_bytes": summary_bytes([size for c in clients for size in c["update_sizes"]]),
    }


def summary_bytes(sizes: list[int]) -> dict[str, Any]:
    # stats.summary_ms reports any quantity; its keys say milliseconds.
    return {key.removesuffix("_ms"): value for key, value in summary_ms(sizes).items()}


def table(figures: dict[str, Any]) -> str:
    sections = {
        "workload 2 (50 streams)": figures["workload_2"],
        "CPU-bound, 100 sources": figures["cpu_bound"],
        "latency-bound, 100 sources": figures["latency_bound"],
    }
    rows = [("measure", "result", "target")]
    for name, section in sections.items():
        sent = section["traffic"]
        rows.append(
            (
                f"{name}: bytes to one client",
                f"{sent['bytes_per_s'] / 1000:.1f} kB/s; {sent['bytes_per_update']:,.0f} B an "
                f"update (p95 {sent['update_bytes']['p95']:,}, max "
                f"{sent['update_bytes']['max']:,}); {sent['updates_per_s']:.1f} updates/s; "
                f"welcome {sent['welcome_bytes']:,.0f} B",
                "report",
            )
        )
    for name, section in sections.items():
        ratio = section["attach_over_headless"]
        headless = best(section["runs"]["headless"])["records_per_s"]
        rows.append(
            (
                f"{name}: attach / headless, records/s",
                f"{ratio['median_of_pairs']:.3f} (median of pairs; best / best "
                f"{ratio['best_over_best']:.3f}; by CPU {ratio['cpu_median_of_pairs']:.3f}; "
                f"headless best {headless / 1000:.1f}k records/s); serving the client took "
                f"{ratio['endpoint_share']:.2%} of the run's CPU",
                ">= 0.98" if name.startswith("workload 2") else "report",
            )
        )
    dashboard = figures["workload_2_dashboard"]
    ratio = dashboard["attach_over_headless"]
    rows.append(
        (
            "workload 2: attach's dashboard / headless",
            f"{ratio['median_of_pairs']:.3f} records/s (median of pairs; best / best "
            f"{ratio['best_over_best']:.3f}); by CPU {ratio['cpu_median_of_pairs']:.3f}; "
            f"serving it took {ratio['endpoint_share']:.2%} of the run's CPU",
            ">= 0.98",
        )
    )
    keys = dashboard["keypress"]
    rows.append(
        (
            "workload 2: keypress to screen, attached",
            f"p50 {keys.get('p50_ms')} ms, p95 {keys.get('p95_ms')} ms, max "
            f"{keys.get('max_ms')} ms ({keys.get('count')} keys; never shown "
            f"{keys['never_shown']})",
            "p95 < 100 ms",
        )
    )
    endpoint = figures["cpu_bound"]["endpoint_over_none"]["median_of_pairs"]
    rows.append(("CPU-bound, 100 sources: endpoint open / none", f"{endpoint:.3f}", "report"))
    width = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        " | ".join(cell.ljust(width[column]) for column, cell in enumerate(row)) for row in rows
    )


# -- in the worker process: the run, serving its endpoint ---------------------------------------


async def serve_run(job: dict[str, Any]) -> dict[str, Any]:
    from worker import CpuMeter, TimedEngine, _engine_figures

    from tui_connector.config import load_config
    from tui_connector.control import ControlServer
    from tui_connector.in_process import InProcessRun
    from tui_connector.services import ServedRun

    engine = TimedEngine(load_config(job["config"]))
    server = ControlServer()
    endpoint_cpu = time_the_endpoint()
    run = ServedRun(InProcessRun(engine), [server] if job["control"] else [])
    await run.open()
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT
        ready = Path(job["ready_file"]) if "ready_file" in job else None
        while server.clients < job["clients"] or (ready is not None and not ready.exists()):
            if time.monotonic() > deadline:
                raise TimeoutError("no client attached")
            await asyncio.sleep(0.005)
        # The run begins once its client is there: every run measured from the same instant.
        engine.entered_at = time.monotonic()
        cpu = CpuMeter()
        result = await run.run()
    finally:
        await run.close()
    figures = _engine_figures(engine, cpu)
    return figures | {"exit_code": result.exit_code, "endpoint_cpu_s": endpoint_cpu()}


def time_the_endpoint() -> Callable[[], float]:
    """Count the loop thread's CPU seconds spent serving clients their updates (diffing the
    telemetry, encoding, writing to the socket): what attaching costs the run, measured where
    it is spent rather than read off records/s, which this machine's load swings by more.
    Returns the clock of that count. (A send's `drain` returns at once below the transport's
    high-water mark, which a client reading along keeps it under, so no other task's CPU is
    counted in it.)"""
    from tui_connector.control import server

    spent = [0.0]
    update, send = server._Client._update, server._Client._send

    def timed_update(client: Any) -> Any:
        started = time.thread_time()
        try:
            return update(client)
        finally:
            spent[0] += time.thread_time() - started

    async def timed_send(client: Any, message: dict[str, Any]) -> None:
        started = time.thread_time()
        try:
            await send(client, message)
        finally:
            spent[0] += time.thread_time() - started

    server._Client._update = timed_update  # type: ignore[method-assign]
    server._Client._send = timed_send  # type: ignore[method-assign]
    return lambda: spent[0]


# -- in the client process: attached to the run, counting what arrives --------------------------


async def follow(path: Path) -> dict[str, Any]:
    from tui_connector.control.wire import MAX_MESSAGE_BYTES, TelemetryMirror, decode, encode

    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_MESSAGE_BYTES)
    writer.write(encode({"type": "hello", "protocol": 1}))  # the default interval: 10 Hz
    await writer.drain()
    welcome = await reader.readline()
    welcomed_at = time.monotonic()
    mirror = TelemetryMirror(welcomed_at - decode(welcome)["now"])
    sizes: list[int] = []
    other = 0
    while line := await reader.readline():
        message = decode(line)
        if message["type"] == "update":
            mirror.apply(message)  # the client's own work, as attach's facade does it
            sizes.append(len(line))
        else:
            other += len(line)
        if message["type"] == "finished":
            break
    seconds = time.monotonic() - welcomed_at
    writer.close()
    return {
        "welcome_bytes": len(welcome),
        "updates": len(sizes),
        "update_sizes": sizes,
        "other_bytes": other,
        "seconds": seconds,
        "bytes_per_s": (sum(sizes) + other) / seconds,
        "bytes_per_update": sum(sizes) / max(1, len(sizes)),
        "updates_per_s": len(sizes) / seconds,
        "sources_seen": len(mirror.telemetry.sources),
    }


async def watch(path: Path, ready: Path) -> dict[str, Any]:
    """`attach`'s dashboard on the run, its keys pressed and timed as run.py's workload 3
    times them, until the run has ended. `ready` is made once the dashboard is attached."""
    from worker import DASHBOARD_SIZE, KeyPresser, RenderingDriver

    from tui_connector.control import ControlAddress, RemoteRun
    from tui_connector.tui.app import Dashboard

    run = RemoteRun(ControlAddress(unix=path), read_only=False)
    await run.open()  # the run's facts, for the dashboard to lay out (as `attach` probes it)
    await run.close()
    app = Dashboard(run)
    app.driver_class = RenderingDriver
    keys = KeyPresser(app)

    def records() -> int:
        return sum(stats.records for stats in run.snapshot().sources.values())

    async with app.run_test(headless=False, size=DASHBOARD_SIZE, notifications=True):
        # Welcomed on the dashboard's own connection (the probe's reader ended with it).
        while run._reader_task is None or run._reader_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await asyncio.to_thread(ready.touch)
        while not records():  # noqa: ASYNC110 - keys once the run is under way
            await asyncio.sleep(0.01)
        pressing = asyncio.create_task(keys.run(list(run.facts.selected)))
        while run.ended is None:  # noqa: ASYNC110 - the run tells its end
            await asyncio.sleep(0.02)
        pressing.cancel()
        await asyncio.gather(pressing, return_exceptions=True)
        RenderingDriver.watcher.cancel()
    return {"keypress": keys.summary(), "frames": RenderingDriver.watcher.frames}


def main() -> int:
    if sys.argv[1:2] == ["worker"]:
        job = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        figures = asyncio.run(serve_run(job))
        Path(sys.argv[3]).write_text(json.dumps(figures), encoding="utf-8")
        return 0
    if sys.argv[1:2] in (["client"], ["dashboard"]):
        socket = Path(sys.argv[2])
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while not socket.exists():  # the run makes it once its state is open
            if time.monotonic() > deadline:
                raise TimeoutError(f"no control socket at {socket}")
            time.sleep(0.005)
        attached = watch(socket, Path(sys.argv[4])) if sys.argv[1] == "dashboard" else None
        figures = asyncio.run(attached or follow(socket))
        Path(sys.argv[3]).write_text(json.dumps(figures), encoding="utf-8")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, once (seconds)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from run import Bench  # the worker and client processes need none of run.py

    server_cpus, client_cpus = cpu_plan()
    load_at_start = os.getloadavg()
    started = time.monotonic()
    with DemoApi(server_cpus) as api:
        bench = Bench(api, client_cpus, wl.QUICK if args.quick else wl.FULL)
        figures = measure(bench, server_cpus, args.quick)
    figures["seconds_total"] = round(time.monotonic() - started, 1)
    figures["load_average"] = {"at_start": load_at_start, "at_end": os.getloadavg()}
    print(table(figures))
    print(f"load average {load_at_start} at the start, {os.getloadavg()} at the end")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
