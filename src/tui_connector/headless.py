"""Progress for non-interactive runs, read from the same telemetry the dashboard reads:
one human line per source every few seconds, or JSON lines for machines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, TextIO

import humanize

from tui_connector.engine import RunResult
from tui_connector.telemetry import RunTelemetry, SourceStats


def source_snapshot(stats: SourceStats, now: float) -> dict[str, Any]:
    """The figures of one source as plain data (what JSON progress prints)."""
    backoff = max(0.0, stats.backoff_until - now) if stats.backoff_until else None
    if stats.status.finished and stats.started_at and stats.finished_at:
        # A finished source's sliding window only decays: show its average instead.
        elapsed = max(stats.finished_at - stats.started_at, 1e-3)
        records_per_s = stats.records_this_run / elapsed
    else:
        records_per_s = stats.records_rate.rate(now)
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
        "records_per_s": round(records_per_s, 1),
        "requests_per_s": round(stats.requests_rate.rate(now), 1),
        "total_records": stats.total_records,
        "position": stats.position,
        "backoff_s": round(backoff, 1) if backoff is not None else None,
        "last_error": stats.last_error,
        "warnings": list(stats.warnings),
    }


def format_line(snapshot: dict[str, Any], name_width: int) -> str:
    records = f"{humanize.intcomma(snapshot['records'])} records"
    if snapshot["total_records"]:
        percent = 100 * snapshot["records"] / max(snapshot["total_records"], 1)
        records = (
            f"{humanize.intcomma(snapshot['records'])}/"
            f"{humanize.intcomma(snapshot['total_records'])} records ({percent:.0f}%)"
        )
    parts = [
        f"{snapshot['source']:<{name_width}}",
        f"{snapshot['status']:<11}",
        f"{humanize.intcomma(snapshot['pages'])} pages",
        records,
        f"{humanize.intcomma(round(snapshot['records_per_s']))} rec/s",
        f"{humanize.naturalsize(snapshot['bytes'])}",
    ]
    if snapshot["retries"]:
        parts.append(f"{snapshot['retries']} retries")
    if snapshot["errors"]:
        parts.append(f"{snapshot['errors']} errors")
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
        telemetry: RunTelemetry,
        *,
        mode: str = "text",
        interval: float = 5.0,
        out: TextIO | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.mode = mode
        self.interval = interval
        self.out = out or sys.stdout

    def _emit(self, line: str) -> None:
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`); the run goes on without progress lines.
            self.out = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the reporter

    def report(self, event: str = "progress") -> None:
        now = time.monotonic()
        snapshots = [source_snapshot(s, now) for s in self.telemetry.sources.values()]
        elapsed = round(now - self.telemetry.started_at, 1)
        if self.mode == "json":
            for snapshot in snapshots:
                self._emit(json.dumps({"event": event, "elapsed_s": elapsed, **snapshot}))
            return
        width = max((len(s["source"]) for s in snapshots), default=6)
        for snapshot in snapshots:
            self._emit(format_line(snapshot, width))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.report()
            if self.mode == "text" and len(self.telemetry.sources) > 1:
                self._emit("")

    def summary(self, result: RunResult) -> None:
        now = time.monotonic()
        elapsed = now - self.telemetry.started_at
        totals = self.telemetry.totals()
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
        for name in result.failed:
            error = self.telemetry.sources[name].last_error
            self._emit(f"  {name}: {error}")
        for name, stats in self.telemetry.sources.items():
            for warning in stats.warnings:
                self._emit(f"  {name}: warning: {warning}")
        if result.interrupted or result.stopped:
            self._emit("run the same command again to resume from the last checkpoint")
