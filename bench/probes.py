"""What the benchmark measures inside a run, beside throughput: event-loop lag, memory, and
when a change reaches the (rendered) screen. Imported by the worker processes only."""

from __future__ import annotations

import asyncio
import re
import resource
import time
from collections.abc import Callable
from pathlib import Path

from stats import summary_ms
from textual.drivers.headless_driver import HeadlessDriver

_PAGE_SIZE = 4096


class LoopLagProbe:
    """Sleeps `interval` seconds over and over and records how late each wake-up is: the time
    any other callback held the event loop (what the dashboard's keys and frames wait for)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.overshoots_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-probe")

    async def _run(self) -> None:
        clock = time.perf_counter
        while True:
            before = clock()
            await asyncio.sleep(self.interval)
            late = clock() - before - self.interval
            self.overshoots_ms.append(round(max(0.0, late) * 1000, 3))

    async def stop(self) -> dict[str, float | int | None]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return summary_ms(self.overshoots_ms)


class ProgressTrace:
    """Records retrieved so far, sampled every `interval` seconds from `start`: throughput over
    time, and the steady rate apart from a run's start-up and its tail."""

    def __init__(self, records_done: Callable[[], int], interval: float = 0.05) -> None:
        self.records_done = records_done
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, records)
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="progress-trace")

    def _sample(self) -> None:
        self.samples.append((round(time.monotonic() - self._started, 3), self.records_done()))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    async def stop(self) -> list[tuple[float, int]]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample()
        return self.samples


def process_cpu_seconds() -> float:
    """This process's CPU time so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWhen:
    """The process's CPU time at the first moment `done()` holds (polled every 10 ms): with the
    reading at the engine's entry, the CPU of the timed span alone, without the start-up and
    the shutdown around it (a dashboard's are tens of milliseconds: composing, the first
    layouts)."""

    def __init__(self, done: Callable[[], bool]) -> None:
        self.done = done
        self.cpu_s: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cpu-when")

    async def _run(self) -> None:
        while not self.done():  # noqa: ASYNC110 - telemetry has no events to wait on
            await asyncio.sleep(0.01)
        self.cpu_s = process_cpu_seconds()

    async def stop(self) -> float | None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.cpu_s


def rss_mb() -> float:
    """This process's resident set size now, in MB (from /proc: no psutil needed)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * _PAGE_SIZE / 1e6


def private_mb() -> float:
    """The resident set less its pages of mapped files, in MB: what the run's data and the
    allocators hold, without the libraries' code."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages, shared_pages = map(int, statm.read().split()[1:3])
    return (resident_pages - shared_pages) * _PAGE_SIZE / 1e6


def file_backed_mb() -> float:
    """How much of the resident set is pages of mapped files, in MB: mostly the code of the
    libraries loaded (pyarrow's and deltalake's are tens of MB), which no data makes grow."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        shared_pages = int(statm.read().split()[2])
    return shared_pages * _PAGE_SIZE / 1e6


def peak_rss_mb() -> float:
    """The most this process has been resident (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM in /proc/self/status")


class RssMilestones:
    """RSS when a run has committed 10 %, 50 % and 100 % of the records it will commit, plus a
    coarse time series (for a plot or a diagnosis)."""

    MILESTONES = (0.10, 0.50)

    def __init__(self, records_done: Callable[[], int], expected: int) -> None:
        self.records_done = records_done
        self.expected = expected
        self.at: dict[str, float] = {}
        self.series: list[tuple[float, int, float]] = []  # (seconds, records, MB)
        self.baseline_mb = rss_mb()
        self.peak_private_mb = private_mb()
        self._task: asyncio.Task[None] | None = None
        self._started = time.perf_counter()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rss-probe")

    async def _run(self) -> None:
        pending = list(self.MILESTONES)
        last_series = -1.0
        while True:
            done = self.records_done()
            now = time.perf_counter() - self._started
            self.peak_private_mb = max(self.peak_private_mb, private_mb())
            while pending and done >= pending[0] * self.expected:
                self.at[f"{round(pending.pop(0) * 100)}%"] = round(rss_mb(), 1)
            if now - last_series >= 0.5:
                self.series.append((round(now, 2), done, round(rss_mb(), 1)))
                last_series = now
            await asyncio.sleep(0.02)

    async def finish(self) -> dict[str, object]:
        """Call when the run has committed everything: takes the 100 % reading."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.at["100%"] = round(rss_mb(), 1)
        return {
            "before_run_mb": round(self.baseline_mb, 1),
            "at": self.at,
            "peak_mb": round(peak_rss_mb(), 1),
            "file_backed_mb": round(file_backed_mb(), 1),
            "peak_private_mb": round(max(self.peak_private_mb, private_mb()), 1),
            "series": self.series,
        }


# -- the screen ------------------------------------------------------------------------------

_ESCAPES = re.compile(r"\x1b(?:\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class ScreenWatcher:
    """Receives every frame the app writes to its terminal and tells when a text first shows.

    A change counts as visible when a frame written after the keypress contains the text that
    only the new state shows (escape sequences removed): the instant a real terminal would
    have received it.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self._wanted: str | None = None
        self._seen: asyncio.Future[float] | None = None

    def expect(self, text: str) -> asyncio.Future[float]:
        """A future set to the perf_counter time of the first frame showing `text`."""
        self._wanted = text
        self._seen = asyncio.get_running_loop().create_future()
        return self._seen

    def cancel(self) -> None:
        self._wanted = None
        if self._seen is not None and not self._seen.done():
            self._seen.cancel()

    def frame(self, data: str) -> None:
        self.frames += 1
        self.bytes += len(data)
        wanted = self._wanted
        if wanted is None or self._seen is None or self._seen.done():
            return
        if wanted in data or wanted in _ESCAPES.sub("", data):
            self._seen.set_result(time.perf_counter())
            self._wanted = None


class RenderingDriver(HeadlessDriver):
    """Textual's headless driver renders nothing: `App._display` skips building the terminal
    output when the driver says it is headless. This one says it is not, so every frame is
    fully rendered to escape sequences, as for a real terminal, and handed to a watcher
    instead of a tty. Input comes from Pilot, as with `run_test`."""

    watcher = ScreenWatcher()  # the app constructs the driver itself: one per process

    @property
    def is_headless(self) -> bool:
        return False

    def write(self, data: str) -> None:
        self.watcher.frame(data)
