"""What a front end may see of a run and do to it: the only way the dashboard and the headless
reporter reach a run.

`RunView` and `RunControl` are Protocols so that a run can be served by more than one
implementation: `in_process.InProcessRun` drives an `Engine` on this process's event loop; a
later one can serve a run living in another process. Everything that crosses the boundary is
plain data (numbers, strings, frozen dataclasses, the telemetry's plain objects), so a remote
implementation can send it as JSON.

The rules every front end shares live here once: the exit codes, when a stopped run counts as
interrupted, and the two-stage stop (the first request stops gracefully, the second at once).
No Textual here, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from tui_connector.telemetry import LakeInfo, RunTelemetry, SourceStats, SourceStatus


class ExitCode(IntEnum):
    """The process's exit code, whichever front end ran it."""

    OK = 0  # every source done
    FAILED = 1  # some source failed (the others still finished)
    USAGE = 2  # bad config or usage, or the run could not start (its state is in use...)
    INTERRUPTED = 130  # stopped before every source had finished


@dataclass
class RunResult:
    """How a run ended: each selected source by outcome. `stopped` holds every source that
    neither finished nor failed (stopped by the operator, or never started)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    interrupted: bool = False

    @classmethod
    def of(
        cls, statuses: Iterable[tuple[str, SourceStatus]], *, interrupted: bool = False
    ) -> RunResult:
        """The result of sources that ended with these statuses (any but done or failed
        counts as stopped)."""
        result = cls(interrupted=interrupted)
        for name, status in statuses:
            if status is SourceStatus.DONE:
                result.done.append(name)
            elif status is SourceStatus.FAILED:
                result.failed.append(name)
            else:
                result.stopped.append(name)
        return result

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return int(ExitCode.INTERRUPTED)
        return int(ExitCode.FAILED if self.failed else ExitCode.OK)


def interrupted(*, stop_requested: bool, finished_before_stop: bool, unfinished: bool) -> bool:
    """Whether a run was interrupted: a stop was requested while some source had not finished,
    and it left a source neither done nor failed. A stop requested once every source had
    finished interrupts nothing (the dashboard's run always ends with one), even when the
    operator had stopped a source by hand before."""
    return stop_requested and not finished_before_stop and unfinished


class RunError(Exception):
    """The run cannot go on: its state database is in use, unreadable, or failed. The message
    is phrased for the operator."""


@dataclass(frozen=True)
class RunFacts:
    """What does not change while a run lasts."""

    selected: tuple[str, ...]  # the sources of this run, in the config's order
    state_path: Path
    lake: str  # a directory, or an object store's URL
    max_concurrency: int  # the most requests in flight a source may be given
    stop_grace: float  # seconds a graceful stop lets the requests in flight finish
    # The run lives in another process and this front end is attached to it: leaving the
    # front end detaches and the run goes on; stopping the run is a separate action.
    attached: bool = False
    read_only: bool = False  # attached to watch only: no control reaches the run


Setting = tuple[str, str]  # a label and its text, e.g. ("rate limit", "5 req/s")


@dataclass(frozen=True)
class SourceDescription:
    """A source's config as people read it, every secret already redacted.

    `headline` is the one line `validate` prints; `settings` are the rows of the detail
    screen. Both are written by `describe.describe_source`."""

    name: str
    headline: str
    settings: tuple[Setting, ...]
    concurrency: int  # as configured (an adaptive source's starting limit)
    partitioned: bool
    adaptive: bool

    CONCURRENCY_LABEL = "concurrency"

    def settings_at(self, live_concurrency: int) -> tuple[Setting, ...]:
        """The settings, the concurrency row saying where the limit stands now if it moved."""
        if live_concurrency == self.concurrency:
            return self.settings
        return tuple(
            (label, f"{text} (now {live_concurrency})")
            if label == self.CONCURRENCY_LABEL
            else (label, text)
            for label, text in self.settings
        )


class RunView(Protocol):
    """What a front end sees of a run. Read it on a timer (the dashboard reads 10 times a
    second); nothing here is pushed."""

    @property
    def facts(self) -> RunFacts: ...

    @property
    def stop_requested_at(self) -> float | None:
        """When a graceful stop was requested (`time.monotonic()`), or None."""
        ...

    def snapshot(self) -> RunTelemetry:
        """The run's picture now: counters, requests in flight, recent errors; every text in
        it redacted. In-process this is the live object the engine updates (cheap to ask for
        each tick); a remote implementation returns a fresh copy each call."""
        ...

    def describe(self, source: str) -> SourceDescription:
        """One selected source's config, secrets redacted. It does not change during a run."""
        ...

    def lake(self, source: str) -> LakeInfo:
        """Where one selected source's records go and what this run wrote there, every text
        redacted. It moves only as batches commit: read it through a `LakeWatch`, not at every
        tick."""
        ...

    def is_paused(self, source: str) -> bool:
        """Whether the operator paused the source; False for one that has not started yet."""
        ...

    def redact(self, text: str) -> str:
        """`text` with the run's secrets replaced. A remote implementation redacts before the
        data leaves its process, and returns `text` as it is."""
        ...

    @property
    def ended(self) -> str | None:
        """Why the run can no longer be watched or steered, phrased for the operator ("the run
        finished", "the connection to the run was lost"), once that is so for a front end
        attached to a run in another process; None otherwise (in-process: always None)."""
        ...


class LakeWatch:
    """Each source's lake as a front end shows it, read from the view again only when the
    source's telemetry says it may have moved (a checkpoint committed, the status changed: a
    sink's figures move as batches commit, and a `replace` is published as the source ends);
    and the notes not told yet, so that each fallback to JSON text is said once."""

    def __init__(self, view: RunView) -> None:
        self._view = view
        self._read: dict[str, tuple[object, LakeInfo]] = {}
        self._told: dict[str, int] = {}

    def of(self, source: str, stats: SourceStats | None) -> LakeInfo:
        """The source's lake; the same object as before while nothing moved."""
        moment = None if stats is None else (stats.status, stats.last_checkpoint_at)
        read = self._read.get(source)
        if read is None or read[0] != moment:
            read = self._read[source] = (moment, self._view.lake(source))
        return read[1]

    def untold(self, source: str, lake: LakeInfo) -> tuple[str, ...]:
        """The source's notes not told yet; from now on they count as told."""
        told = self._told.get(source, 0)
        if len(lake.notes) <= told:
            return ()
        self._told[source] = len(lake.notes)
        return lake.notes[told:]


class RunControl(Protocol):
    """What a front end may do to a run. Controls take effect at once and never block: a
    pause is "pausing" until the requests in flight have committed, a stop lets them finish.

    The lifecycle: `open()` (raises RunError when the run cannot start), `run()`, then always
    `close()`."""

    async def open(self) -> None: ...

    async def run(self, *, until_done: bool = True) -> RunResult:
        """Run every selected source. Returns when all have finished, or, with
        `until_done=False`, only once a stop was requested (finished sources stay retryable)."""
        ...

    async def close(self) -> None:
        """Release the run's state (its lock too); whatever is committed stays."""
        ...

    def make_interactive(self) -> None:
        """An operator is watching and typing: favour a responsive event loop over the last
        bit of throughput (in-process, keys and frames share the loop with the retrieval)."""
        ...

    def pause(self, source: str) -> None: ...

    def resume(self, source: str) -> None: ...

    def pause_all(self) -> None: ...

    def resume_all(self) -> None: ...

    def stop(self, source: str) -> None:
        """No new requests for the source; it can be retried."""
        ...

    def retry(self, source: str) -> bool:
        """Start a failed or stopped source again from its checkpoint; False if it can't be."""
        ...

    def set_concurrency(self, source: str, limit: int) -> None:
        """The operator's limit, clamped to 1..max_concurrency (an adaptive source turns
        manual)."""
        ...

    def set_auto(self, source: str) -> bool:
        """Hand a source's limit back to its adaptive controller; False if it has none."""
        ...

    def set_rate_limit(self, source: str, per_second: float | None) -> None: ...

    def request_stop(self) -> None:
        """Graceful stop: no new requests; those in flight finish and commit within
        `facts.stop_grace` seconds. `run()` then returns."""
        ...

    def quit_now(self) -> None:
        """End the run at once, without waiting for the requests in flight (a page's data is
        durable before its checkpoint, so what is committed is exact). `run()` (or `open()`)
        raises `asyncio.CancelledError`; `close()` still follows."""
        ...


class RunFacade(RunView, RunControl, Protocol):
    """A run a front end can both see and steer."""


class TwoStageStop:
    """How every front end stops a run: the first request stops it gracefully (no new
    requests; those in flight finish and commit within the grace), the second quits at once.
    Quitting at once is safe: a page's data is durable before its checkpoint."""

    def __init__(self, *, graceful: Callable[[], object], immediate: Callable[[], object]) -> None:
        self._graceful = graceful
        self._immediate = immediate
        self.requested = False

    def request(self) -> None:
        if self.requested:
            self._immediate()
            return
        self.requested = True
        self._graceful()


def grace_left(view: RunView, now: float) -> float | None:
    """Seconds until a graceful stop gives up on the requests in flight; None before a stop."""
    requested_at = view.stop_requested_at
    if requested_at is None:
        return None
    return view.facts.stop_grace - (now - requested_at)


def all_finished(telemetry: RunTelemetry, selected: Sequence[str]) -> bool:
    """Whether every selected source has finished (done, failed or stopped)."""
    sources = telemetry.sources
    return len(sources) >= len(selected) and all(
        stats.status.finished for stats in sources.values()
    )
