"""One measurement in a fresh process: `python bench/worker.py JOB.json RESULT.json`.

Modes:
- `engine`: tui-connector headless, the real Engine on a generated sources.yaml.
- `dashboard`: the same Engine driven by the real Dashboard under `App.run_test`, with a
  driver that renders every frame to escape sequences (see `probes.RenderingDriver`), while
  keys are pressed and the time until their effect is on screen is measured.
- `bare`: the baseline: a loop doing only `client.get` + JSON decode per page, over the same
  client tui-connector builds (httpx with the aiohttp transport), with the same decoder and
  the same concurrency.

A fresh process per measurement keeps RSS, the loop-lag probe and caches clean. Every mode
reports wall time, records, requests and CPU time; each also runs the loop-lag probe.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from probes import (
    CpuWhen,
    LoopLagProbe,
    ProgressTrace,
    RenderingDriver,
    RssMilestones,
    process_cpu_seconds,
)
from stats import summary_ms
from textual import events

from tui_connector.config import load_config
from tui_connector.engine import Engine
from tui_connector.http.body import decode_json
from tui_connector.http.client import build_client
from tui_connector.in_process import InProcessRun
from tui_connector.telemetry import RunTelemetry
from tui_connector.tui.app import Dashboard

DASHBOARD_SIZE = (160, 48)
# Between one key's effect reaching the screen and the next key: an operator's pace.
KEY_INTERVAL = 0.2
# A key whose effect has not shown by then counts as a miss (reported, never dropped).
KEY_TIMEOUT = 5.0


class TimedEngine(Engine):
    """The Engine, noting when it was entered (state opened: the run begins)."""

    entered_at: float | None = None
    entered_cpu: float | None = None

    async def __aenter__(self) -> TimedEngine:
        self.entered_at = time.monotonic()
        self.entered_cpu = process_cpu_seconds()
        await super().__aenter__()
        return self


class CpuMeter:
    """This process's CPU use (all threads) between start and stop: user and system time, and
    context switches (a thread hand-off on a loaded core shows up as a switch)."""

    def __init__(self) -> None:
        self._start = resource.getrusage(resource.RUSAGE_SELF)

    def figures(self) -> dict[str, float]:
        now, start = resource.getrusage(resource.RUSAGE_SELF), self._start
        return {
            "cpu_s": (now.ru_utime - start.ru_utime) + (now.ru_stime - start.ru_stime),
            "user_s": now.ru_utime - start.ru_utime,
            "system_s": now.ru_stime - start.ru_stime,
            "context_switches": (now.ru_nvcsw - start.ru_nvcsw) + (now.ru_nivcsw - start.ru_nivcsw),
        }


def _records(telemetry: RunTelemetry) -> int:
    return sum(stats.records_this_run for stats in telemetry.sources.values())


def _engine_figures(
    engine: TimedEngine, cpu: CpuMeter, run_cpu: float | None = None
) -> dict[str, Any]:
    """Wall time from entering the engine to the last source finished (its last page
    committed): the same span in headless and dashboard runs, whatever the app does after.
    `run_cpu`: the process's CPU time when every record had come (`CpuWhen`)."""
    telemetry = engine.telemetry
    sources = telemetry.sources.values()
    finished = [stats.finished_at for stats in sources if stats.finished_at is not None]
    assert engine.entered_at is not None and engine.entered_cpu is not None
    wall = max(finished) - engine.entered_at if finished else float("nan")
    return {
        "wall_s": wall,
        # CPU seconds from entering the engine to the last record: the timed span's CPU.
        "run_cpu_s": None if run_cpu is None else run_cpu - engine.entered_cpu,
        "records": _records(telemetry),
        "requests": sum(stats.requests for stats in sources),
        "retries": sum(stats.retries for stats in sources),
        "errors": sum(stats.errors for stats in sources),
        "failed": [stats.name for stats in sources if stats.status == "failed"],
        "not_done": [stats.name for stats in sources if stats.status != "done"],
        "error_samples": [event.error for event in list(telemetry.errors)[:3]],
    } | cpu.figures()


class ConcurrencyTrace:
    """Every change of each source's concurrency limit, with its reason and the requests in
    flight then (adaptive runs: how the limit moved, for the diagnosis of a miss)."""

    def __init__(self, telemetry: RunTelemetry) -> None:
        self.telemetry = telemetry
        self.changes: list[tuple[float, str, int, int, str]] = []
        self.samples: list[tuple[float, int, int]] = []  # (seconds, limit, in flight), 20 Hz
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="limit-trace")

    async def _run(self) -> None:
        shown: dict[str, tuple[int, str]] = {}
        ticks = 0
        while True:
            ticks += 1
            if ticks % 10 == 0:
                sources = self.telemetry.sources.values()
                self.samples.append(
                    (
                        round(time.monotonic() - self._started, 2),
                        sum(stats.concurrency for stats in sources),
                        sum(stats.in_flight for stats in sources),
                    )
                )
            for name, stats in self.telemetry.sources.items():
                state = (stats.concurrency, stats.concurrency_reason)
                if shown.get(name) != state:
                    shown[name] = state
                    at = round(time.monotonic() - self._started, 3)
                    self.changes.append((at, name, stats.concurrency, stats.in_flight, state[1]))
            await asyncio.sleep(0.005)

    async def stop(self) -> dict[str, list[Any]]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return {"changes": self.changes, "samples": self.samples}


# -- headless ------------------------------------------------------------------------------


async def run_engine(job: dict[str, Any]) -> dict[str, Any]:
    config = load_config(job["config"])
    engine = TimedEngine(config, checkpoints=job.get("checkpoints", True))
    lag = LoopLagProbe()
    lag.start()
    progress = ProgressTrace(lambda: _records(engine.telemetry))
    progress.start()
    rss = RssMilestones(lambda: _records(engine.telemetry), job["expected_records"])
    if job.get("track_rss"):
        rss.start()
    trace = ConcurrencyTrace(engine.telemetry)
    if job.get("trace_concurrency"):
        trace.start()
    cpu = CpuMeter()
    run_cpu = CpuWhen(lambda: _records(engine.telemetry) >= job["expected_records"])
    run_cpu.start()
    async with engine:
        result = await engine.run()
        memory = await rss.finish() if job.get("track_rss") else None
    figures = _engine_figures(engine, cpu, await run_cpu.stop())
    if job.get("trace_concurrency"):
        figures["concurrency_trace"] = await trace.stop()
    figures["exit_code"] = result.exit_code
    figures["loop_lag"] = await lag.stop()
    figures["progress"] = await progress.stop()
    if memory is not None:
        figures["rss"] = memory
    return figures


# -- with the dashboard ------------------------------------------------------------------------


def send_key(app: Dashboard, key: str) -> None:
    """A keypress as Pilot.press delivers it (a Key event through the driver), without the
    waits for an idle process that Pilot adds after each key (up to 2 s in a busy run)."""
    character = {"question_mark": "?", "escape": "\x1b"}.get(key, key if len(key) == 1 else None)
    event = events.Key(key, character)
    event.set_sender(app)
    driver = app._driver
    assert driver is not None
    driver.send_message(event)


class KeyPresser:
    """Presses keys whose effect is a text only the new state shows, and times each one from
    the keypress to the first frame that shows it.

    - `down` / `up` move the selection in the sources table; with the errors pane filtered to
      the selected source (`f`), its title names the new source. The title follows the
      selection on the next refresh tick: this is the path of every live figure.
    - `f` toggles that filter: the action retitles the pane at once.
    - `?` opens the help screen (a screen pushed and painted); `escape` closes it (not timed:
      what disappears is not a text that appears).
    """

    def __init__(self, app: Dashboard) -> None:
        self.app = app
        self.watcher = RenderingDriver.watcher
        self.latencies: dict[str, list[float]] = {}
        self.misses: dict[str, int] = {}
        # (key, ms since the first press, ms to the screen): shows when the slow ones came.
        self.timeline: list[tuple[str, float, float]] = []
        self._first_press: float | None = None

    async def press(self, key: str, shows: str | None) -> None:
        seen = self.watcher.expect(shows) if shows is not None else None
        pressed = time.perf_counter()
        if self._first_press is None:
            self._first_press = pressed
        send_key(self.app, key)
        if seen is None:
            await asyncio.sleep(KEY_INTERVAL)
            return
        try:
            shown = await asyncio.wait_for(seen, KEY_TIMEOUT)
        except TimeoutError:
            self.watcher.cancel()
            self.misses[key] = self.misses.get(key, 0) + 1
            return
        latency = round((shown - pressed) * 1000, 3)
        self.latencies.setdefault(key, []).append(latency)
        self.timeline.append((key, round((pressed - self._first_press) * 1000, 1), latency))
        await asyncio.sleep(KEY_INTERVAL)

    async def run(self, names: list[str]) -> None:
        table = self.app.sources_table

        def filtered(name: str | None) -> str:
            return f"Errors of {name} (f: all sources)"

        unfiltered = "Errors of all sources (f: selected source only)"
        await self.press("f", filtered(table.selected_source))
        # Down to the last source and back up to the first, then the other keys; again.
        rows = [*range(1, len(names)), *range(len(names) - 2, -1, -1)]
        while True:
            for row in rows:
                await self.press("down" if row > table.cursor_row else "up", filtered(names[row]))
            await self.press("question_mark", "closes this help")
            await self.press("escape", None)
            await self.press("f", unfiltered)
            await self.press("f", filtered(table.selected_source))

    def summary(self) -> dict[str, Any]:
        every = [value for values in self.latencies.values() for value in values]
        return {
            "all": summary_ms(every),
            "by_key": {key: summary_ms(values) for key, values in self.latencies.items()},
            "misses": self.misses,
            "samples_ms": every,
            "timeline": self.timeline,
        }


async def run_dashboard(job: dict[str, Any]) -> dict[str, Any]:
    config = load_config(job["config"])
    engine = TimedEngine(config, checkpoints=job.get("checkpoints", True))
    app = Dashboard(InProcessRun(engine), exit_when_done=True)
    app.driver_class = RenderingDriver
    lag = LoopLagProbe()
    keys = KeyPresser(app)
    cpu = CpuMeter()
    run_cpu = CpuWhen(lambda: _records(engine.telemetry) >= job["expected_records"])
    run_cpu.start()
    progress = ProgressTrace(lambda: _records(engine.telemetry))
    progress.start()
    async with app.run_test(headless=False, size=DASHBOARD_SIZE, notifications=True):
        lag.start()
        # Polled, as the dashboard itself does: telemetry is plain counters, with no events.
        while not _records(engine.telemetry):  # noqa: ASYNC110 - keys once the run is under way
            await asyncio.sleep(0.01)
        pressing = asyncio.create_task(keys.run(list(engine.selected)))
        while app.result is None:  # noqa: ASYNC110 - set when the run has ended
            await asyncio.sleep(0.02)
        pressing.cancel()
        await asyncio.gather(pressing, return_exceptions=True)
        RenderingDriver.watcher.cancel()
        loop_lag = await lag.stop()
        samples = await progress.stop()
    figures = _engine_figures(engine, cpu, await run_cpu.stop())
    figures["progress"] = samples
    figures["exit_code"] = app.result.exit_code
    figures["loop_lag"] = loop_lag
    figures["loop_lag_samples_ms"] = lag.overshoots_ms  # pooled across repeats by run.py
    figures["keypress"] = keys.summary()
    figures["frames"] = RenderingDriver.watcher.frames
    figures["rendered_bytes"] = RenderingDriver.watcher.bytes
    figures["refresh_tick_ms"] = summary_ms([seconds * 1000 for seconds in app.tick_seconds])
    return figures


# -- the baseline ------------------------------------------------------------------------------


async def run_bare(job: dict[str, Any]) -> dict[str, Any]:
    config = load_config(job["config"])
    pool = config.model.max_concurrency  # as the engine sizes each source's pool
    clients = {name: build_client(spec, pool)[0] for name, spec in config.sources.items()}
    requests = 0

    async def pull(stream: dict[str, Any]) -> int:
        nonlocal requests
        client = clients[stream["source"]]
        params = dict(stream["params"])
        records = 0
        while True:
            response = await client.get(stream["url"], params=params)
            response.raise_for_status()
            body = decode_json(response.content)
            requests += 1
            records += len(body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                return records
            params["cursor"] = cursor

    lag = LoopLagProbe()
    lag.start()
    cpu = CpuMeter()
    started = time.monotonic()
    counts = await asyncio.gather(*(pull(stream) for stream in job["streams"]))
    wall = time.monotonic() - started
    cpu_figures = cpu.figures()
    for client in clients.values():
        await client.aclose()
    return {
        "wall_s": wall,
        "records": sum(counts),
        "requests": requests,
        "loop_lag": await lag.stop(),
        "exit_code": 0,
    } | cpu_figures


MODES = {"engine": run_engine, "dashboard": run_dashboard, "bare": run_bare}


def main() -> None:
    job_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    figures = asyncio.run(MODES[job["mode"]](job))
    result_path.write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
