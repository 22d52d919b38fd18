"""A run without a dashboard: progress read from the same facade the dashboard reads, one
human line per source every few seconds or JSON lines for machines, and the signal policy of a
process that is the run (`run_headless`, the counterpart of `tui.app.run_dashboard`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any, TextIO

import humanize

from tui_connector.facade import (
    ExitCode,
    LakeWatch,
    RunError,
    RunFacade,
    RunResult,
    RunView,
    TwoStageStop,
    all_finished,
)
from tui_connector.figures import (
    backoff_seconds,
    counted,
    lake_kind,
    records_per_second,
    requests_per_second,
    run_seconds,
    shown_location,
)
from tui_connector.telemetry import LakeInfo, SourceStats


def source_snapshot(stats: SourceStats, now: float, lake: LakeInfo) -> dict[str, Any]:
    """The figures of one source as plain data (what JSON progress prints)."""
    backoff = backoff_seconds(stats, now)
    return {
        "source": stats.name,
        "status": stats.status.value,
        "pages": stats.pages,
        "records": stats.records,
        "bytes": stats.bytes,
        "requests": stats.requests,
        "retries": stats.retries,
        "errors": stats.errors,
        "in_flight": stats.in_flight,
        "concurrency": stats.concurrency,
        "records_per_s": round(records_per_second(stats, now), 1),
        "requests_per_s": round(requests_per_second(stats, now), 1),
        "total_records": stats.total_records,
        "position": stats.position,
        "backoff_s": round(backoff, 1) if backoff is not None else None,
        "last_error": stats.last_error,
        "warnings": list(stats.warnings),
        "format": lake.format,
        "destination": lake.destination,
        "bytes_written": lake.bytes_written,
        "table_version": lake.version,
        "json_columns": list(lake.json_columns),
    }


def lake_line(lake: LakeInfo) -> str:
    """Where a source's records went: "delta v3 at lake/orders, 1.2 MB written"."""
    line = (
        f"{lake_kind(lake.format, lake.version)} at {shown_location(lake.destination)}, "
        f"{humanize.naturalsize(lake.bytes_written)} written"
    )
    if lake.json_columns:
        line += f"; stored as JSON text: {', '.join(lake.json_columns)}"
    return line


def format_line(snapshot: dict[str, Any], name_width: int) -> str:
    records = counted(snapshot["records"], "record")
    if snapshot["total_records"]:
        percent = 100 * snapshot["records"] / max(snapshot["total_records"], 1)
        records = (
            f"{humanize.intcomma(snapshot['records'])}/"
            f"{humanize.intcomma(snapshot['total_records'])} records ({percent:.0f}%)"
        )
    parts = [
        f"{snapshot['source']:<{name_width}}",
        f"{snapshot['status']:<11}",
        counted(snapshot["pages"], "page"),
        records,
        f"{humanize.intcomma(round(snapshot['records_per_s']))} rec/s",
        f"{humanize.naturalsize(snapshot['bytes'])} fetched",
        f"{humanize.naturalsize(snapshot['bytes_written'])} written to "
        f"{lake_kind(snapshot['format'], snapshot['table_version'])}",
    ]
    if snapshot["retries"]:
        parts.append(counted(snapshot["retries"], "retry", "retries"))
    if snapshot["errors"]:
        parts.append(counted(snapshot["errors"], "error"))
    if snapshot["backoff_s"]:
        parts.append(f"backing off {snapshot['backoff_s']:.0f} s")
    if snapshot["position"] and snapshot["status"] not in ("done", "failed", "stopped"):
        parts.append(f"at {snapshot['position']}")
    if snapshot["status"] == "failed" and snapshot["last_error"]:
        parts.append(f"error: {snapshot['last_error']}")
    return "  ".join(parts)


class HeadlessReporter:
    def __init__(
        self,
        view: RunView,
        *,
        mode: str = "text",
        interval: float = 5.0,
        out: TextIO | None = None,
    ) -> None:
        self.view = view
        self.mode = mode
        self.interval = interval
        self.out = out or sys.stdout
        self.lakes = LakeWatch(view)

    def _emit(self, line: str) -> None:
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`); the run goes on without progress lines.
            self.out = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the reporter

    def report(self, event: str = "progress") -> None:
        now = time.monotonic()
        telemetry = self.view.snapshot()
        lakes = {name: self.lakes.of(name, stats) for name, stats in telemetry.sources.items()}
        snapshots = [source_snapshot(s, now, lakes[s.name]) for s in telemetry.sources.values()]
        elapsed = round(now - telemetry.started_at, 1)
        # Each fallback to JSON text is told once, after the progress that first shows it.
        notes = [
            (name, note) for name, lake in lakes.items() for note in self.lakes.untold(name, lake)
        ]
        if self.mode == "json":
            for snapshot in snapshots:
                self._emit(json.dumps({"event": event, "elapsed_s": elapsed, **snapshot}))
            for name, note in notes:
                self._emit(
                    json.dumps(
                        {"event": "lake_note", "elapsed_s": elapsed, "source": name, "note": note}
                    )
                )
            return
        width = max((len(s["source"]) for s in snapshots), default=6)
        for snapshot in snapshots:
            self._emit(format_line(snapshot, width))
        for name, note in notes:
            self._emit(f"{name}: {note}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.report()
            if self.mode == "text" and len(self.view.snapshot().sources) > 1:
                self._emit("")

    def summary(self, result: RunResult) -> None:
        now = time.monotonic()
        telemetry = self.view.snapshot()
        # The run's own time: until its last source finished, or it stopped.
        elapsed = run_seconds(telemetry, all_finished(telemetry, self.view.facts.selected), now)
        totals = telemetry.totals()
        if self.mode == "json":
            self.report(event="final")
            self._emit(
                json.dumps(
                    {
                        "event": "summary",
                        "elapsed_s": round(elapsed, 1),
                        "records": totals["records"],
                        "done": result.done,
                        "failed": result.failed,
                        "stopped": result.stopped,
                        "interrupted": result.interrupted,
                        "exit_code": result.exit_code,
                    }
                )
            )
            return
        self._emit("")
        self.report(event="final")
        verdict = "interrupted" if result.interrupted else ("failed" if result.failed else "done")
        self._emit(
            f"{verdict}: {len(result.done)} done, {len(result.failed)} failed, "
            f"{len(result.stopped)} stopped; {humanize.intcomma(totals['records'])} records "
            f"in {humanize.precisedelta(elapsed, minimum_unit='seconds', format='%0.1f')}"
        )
        for name, stats in telemetry.sources.items():
            self._emit(f"  {name}: {lake_line(self.lakes.of(name, stats))}")
        for name in result.failed:
            error = telemetry.sources[name].last_error
            self._emit(f"  {name}: {error}")
        for name, stats in telemetry.sources.items():
            for warning in stats.warnings:
                self._emit(f"  {name}: warning: {warning}")
        if result.interrupted or result.stopped:
            self._emit("run the same command again to resume from the last checkpoint")


# SIGHUP: the terminal a run was started in went away; stop as gracefully as on Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_headless(run: RunFacade, *, progress: str = "text", interval: float = 5.0) -> int:
    """Run to the end on a new event loop, printing progress to stdout (`progress` "text" or
    "json", every `interval` seconds) and a summary. SIGINT, SIGTERM and SIGHUP stop the run:
    the first gracefully, the second at once. Returns the exit code (`facade.ExitCode`); a run
    that could not start or go on prints why to stderr and returns 2."""
    return asyncio.run(_run_headless(run, HeadlessReporter(run, mode=progress, interval=interval)))


async def _run_headless(run: RunFacade, reporter: HeadlessReporter) -> int:
    try:
        await run.open()
        try:
            _stop_on_signals(run)
            ticker = asyncio.create_task(reporter.run())
            try:
                result = await run.run()
            except asyncio.CancelledError:
                # Only a stop "at once" from another process (`tui-connector stop` twice)
                # cancels the run here: what is committed stays exact.
                print("tui-connector: stopped at once", file=sys.stderr, flush=True)
                return int(ExitCode.INTERRUPTED)
            finally:
                ticker.cancel()
        finally:
            await run.close()
    except RunError as exc:
        print(f"tui-connector: {exc}", file=sys.stderr, flush=True)
        return int(ExitCode.USAGE)
    reporter.summary(result)
    return result.exit_code


def _stop_on_signals(run: RunFacade) -> None:
    """The two-stage stop on SIGINT/SIGTERM; the second exits the process there and then."""
    received = ""

    def announce_and_stop() -> None:
        in_flight = len(run.snapshot().in_flight)
        run.request_stop()
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(
                f"\n{received}: stopping; letting {in_flight} request(s) in flight finish "
                f"(at most {run.facts.stop_grace:g} s). Press Ctrl-C again to exit at once.",
                file=sys.stderr,
                flush=True,
            )

    stop = TwoStageStop(
        graceful=announce_and_stop, immediate=lambda: os._exit(ExitCode.INTERRUPTED)
    )

    def on_signal(signum: int) -> None:
        nonlocal received
        received = signal.Signals(signum).name
        stop.request()

    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
