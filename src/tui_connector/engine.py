"""The retrieval engine: plans streams from the config, runs each source as an asyncio task,
and offers the controls the dashboard and the signal handlers use.

A page is committed in one order only: its records reach their lake file (atomically, in a
batch of the stream's pages), then the checkpoint that points past it is queued. After a
crash between the two, the stream removes the files its checkpoint does not cover and
fetches those pages again, so nothing is lost and nothing is written twice.

This module never imports Textual: the dashboard drives it through the public controls and
reads `telemetry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from tui_connector.adaptive import AdaptiveLimit
from tui_connector.config import LoadedConfig, ParentPartitions, SourceSpec
from tui_connector.extract import ExtractError, check_errors, extract_records, read_value
from tui_connector.facade import RunResult
from tui_connector.httpclient import AttemptOutcome, FetchError, SourceHttp
from tui_connector.incremental import HighWater, IncrementalError, merged
from tui_connector.lake import (
    Batch,
    LakeError,
    LakeWriter,
    PageBatcher,
    read_page_sync,
    source_pages_sync,
)
from tui_connector.paginate import Page, PaginationError, Paginator
from tui_connector.partitions import WHOLE_SOURCE, ParentValues, Partition, plan, stream_spec
from tui_connector.state import Checkpoint, RunLock, StateError, StateStore, StreamRow
from tui_connector.telemetry import (
    ConcurrencyMode,
    ErrorEvent,
    RunTelemetry,
    SourceStatus,
    StreamStats,
    StreamStatus,
)

__all__ = ["WHOLE_SOURCE", "Engine", "RunResult", "SourceRunner", "StreamFailed"]

log = logging.getLogger(__name__)


# How long a graceful stop lets the requests in flight finish and commit.
STOP_GRACE_S = 10.0


class ResizableLimit:
    """A semaphore whose limit can change while tasks hold and wait for it (`+`/`-` live)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._wake()

    async def acquire(self) -> None:
        if self.in_use < self._limit and not self._waiters:
            self.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class LoopPacer:
    """Keeps the event loop's iterations short while retrieval saturates the CPU, so that
    what shares the loop (the dashboard's keys and frames, signal handlers) waits a few
    milliseconds, not a hundred.

    Asyncio runs every callback that is ready before it looks at timers and input again; with
    dozens of pages arriving at once, one iteration ran 20-130 ms of page work. A stream
    paces before each request it sends: while the running slice has lasted less than `budget`
    it goes on; after that it waits for a turn. Each loop iteration gives as many turns as
    fit in a slice, first come first served (same work, other order).

    Turns are futures in a queue. (The first version had every waiting stream yield and look
    again at each iteration: with 50 streams most of them found the slice spent again, and
    those wake-ups cost a quarter of the CPU.)

    With `interactive` (an operator is watching) each response's work is paced too, with its
    request slot still held so that a busy CPU slows the fetching rather than piling up
    fetched pages in memory. A headless run does not pay for it.
    """

    def __init__(
        self, budget: float = 0.002, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget = budget
        self._clock = clock
        self._slice_started = clock()
        self._turns: deque[asyncio.Future[None]] = deque()
        self._release_queued = False
        self._given = 0  # turns given at the last release
        self._backlogged = False  # streams were still waiting after the last release
        self._turn_cost = budget / 4  # seconds of loop time a turn takes, last measured
        self.interactive = False

    async def pace(self) -> None:
        if not self._turns and self._clock() - self._slice_started < self.budget:
            return
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self._turns.append(turn)
        self._release_soon(loop)
        await turn  # a turn given to a stream cancelled meanwhile is not waited for: the
        # next one comes at the next iteration all the same

    async def pace_response(self) -> None:
        if self.interactive:
            await self.pace()

    def _release_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._release_queued:
            self._release_queued = True
            loop.call_soon(self._release)

    def _release(self) -> None:
        """At the next iteration: a new slice, and as many turns as fit in one.

        While streams wait, the loop does not sleep between iterations, so the time since the
        last release is what the turns given then cost (with whatever else shared the
        iteration): the estimate of a turn's cost is updated only then, never across a wait
        for the network. (Counting that wait made every burst of pages start again at one
        turn an iteration and cost the latency-bound workload a tenth of its requests; one
        turn each iteration throughout cost a headless run a fifth of its throughput.)"""
        self._release_queued = False
        now = self._clock()
        if self._backlogged and self._given:
            self._turn_cost = (now - self._slice_started) / self._given
        self._slice_started = now
        # Cheap turns (sending a request) and dear ones (a response's page work) share the
        # estimate, so dear ones after a run of cheap ones can overrun one iteration's budget.
        # Capping the growth at twice the last release's cost headless runs a fifth of their
        # throughput and did not lower the loop lag (2 interleaved pairs, --only 1,2).
        turns = max(1, int(self.budget / self._turn_cost)) if self._turn_cost > 0 else 1
        self._given = 0
        queue = self._turns
        while queue and self._given < turns:
            turn = queue.popleft()
            if not turn.done():  # a cancelled stream's turn goes to the next one
                turn.set_result(None)
                self._given += 1
        self._backlogged = bool(queue)
        if queue:
            self._release_soon(asyncio.get_running_loop())


class _StopRequested(Exception):
    """Raised inside a retry loop when the source was stopped while it waited."""


class StreamFailed(Exception):
    def __init__(self, message: str, event: ErrorEvent, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.event = event
        self.fatal = fatal  # the whole source stops: no other partition would do better


# Failures no other partition of the source would escape: credentials refused.
_FATAL_STATUSES = frozenset({401, 403, 407})
_STREAM_ERRORS = (FetchError, ExtractError, PaginationError, LakeError, IncrementalError)
# Parent page files read per trip to a worker thread when a child scans its parent's lake.
_SCAN_BATCH = 50
# The young generation's collection threshold during a run (Python's default: 700).
YOUNG_GENERATION_THRESHOLD = 10_000


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel a scheduler's tasks (it is being cancelled itself) and wait until they end."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _read_pages(paths: list[Path]) -> list[list[Any]]:
    return [read_page_sync(path) for path in paths]


@dataclass
class _Stream:
    """One stream while it runs: where its pages go and what it has committed."""

    partition: Partition
    stats: StreamStats
    paginator: Paginator
    base: int  # the lake position of this run's first page
    mark: Any  # the committed high-water mark (incremental)
    high_water: HighWater | None
    pages: int  # committed pages in the lake, earlier incremental runs included
    records: int
    files: int  # the page files those pages wrote (a page without records writes none)


@dataclass(slots=True)
class _Staged:
    """A fetched page waiting in its batch, and what committing it means."""

    index: int | None = None  # parallel: its page index (None: a sequential page)
    checkpoint: dict[str, Any] = field(default_factory=dict)  # sequential: the cursor after it
    position: int = 0  # sequential: the lake position after it
    status: str = "running"  # sequential: the stream's status once it is committed
    next: dict[str, Any] | None = None  # sequential: the cursor to show (None: finished)
    records: int = 0  # set when staged
    pending: Any = None  # set when staged: an incremental stream's pending mark then


_LIVE: Any = object()  # `_checkpoint`'s default: the pending mark as it is now


def _done_above(row: StreamRow) -> frozenset[int]:
    """The lake positions of a parallel stream's pages committed above its checkpoint's
    position (the low-water mark)."""
    parallel = row.cursor.get("parallel") or {}
    return frozenset(row.base + index for index in parallel.get("done", ()))


class SourceRunner:
    """Runs the streams of one source and holds its controls."""

    def __init__(self, engine: Engine, spec: SourceSpec) -> None:
        self.engine = engine
        self.spec = spec
        self.name = spec.name
        self.stats = engine.telemetry.source(spec.name)
        self.stats.concurrency = spec.concurrency
        self.limit = ResizableLimit(spec.concurrency)
        self.http = SourceHttp(spec, engine.telemetry, engine.redactor, engine.max_concurrency)
        self.adaptive: AdaptiveLimit | None = None
        auto = spec.auto_concurrency
        if auto is not None:
            maximum = min(auto.max, engine.max_concurrency)
            self.adaptive = AdaptiveLimit(
                minimum=min(auto.min, maximum), maximum=maximum, initial=spec.concurrency
            )
            self.stats.concurrency_mode = ConcurrencyMode.AUTO
            self.stats.concurrency_reason = "adaptive: starting"
            self.http.observer = self._observe
        self.stats.partitioned = spec.partitions is not None
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.stop_requested = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a scheduler may start something: look again
        self._busy = 0  # fetches between the pause gate and their page staged for the lake
        self._settling: asyncio.Task[None] | None = None
        self._restarted: set[str] = set()  # streams a --full-refresh already started over
        self._batchers: set[PageBatcher[_Staged]] = set()  # of the streams running
        self._source_fingerprint = self._fingerprint()
        # Parent -> child: the engine links the runners of one run.
        self.parent: SourceRunner | None = None
        self.children: list[SourceRunner] = []
        self.finished = asyncio.Event()
        partitions = spec.partitions
        self._parent_values = (
            ParentValues(partitions) if isinstance(partitions, ParentPartitions) else None
        )
        self._accepting = False  # a running child takes partitions from its parent's pages
        self._queue: deque[Partition] = deque()
        self._known: set[str] = set()
        self._failures: list[str] = []
        self._halted = False  # a fatal failure: start nothing more

    # -- controls ---------------------------------------------------------------------------

    def start(self, group: asyncio.TaskGroup) -> None:
        self.stop_requested = False
        self._stopping.clear()
        self.paused = False
        self._unpaused.set()
        self.finished.clear()
        self.task = group.create_task(self.run(), name=f"source:{self.name}")

    def pause(self) -> None:
        if self.stats.status.finished or self.paused:
            return
        self.paused = True
        self._unpaused.clear()
        self.stats.status = SourceStatus.PAUSING
        self._settle_soon()

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self._unpaused.set()
        self._wake.set()
        if self.stats.status.finished:
            return
        if self.task is None:
            self.stats.status = SourceStatus.PENDING
        elif self.http.held_until is not None:  # resumed within a Retry-After: still waiting
            self.stats.status = SourceStatus.BACKING_OFF  # its backoff_until is the hold's end
        else:
            self.stats.status = SourceStatus.RUNNING

    def stop(self) -> None:
        self.stop_requested = True
        self._stopping.set()
        self._unpaused.set()
        self._wake.set()

    def set_concurrency(self, limit: int) -> None:
        """The operator's limit; an adaptive source follows it until set back to auto."""
        self._apply_limit(limit)
        if self.adaptive is not None:
            self.stats.concurrency_mode = ConcurrencyMode.MANUAL
            self._limit_changed(f"set to {self.limit.limit} by the operator")

    def set_auto(self) -> bool:
        """Hand the limit back to the adaptive controller. False if the source has none."""
        if self.adaptive is None:
            return False
        self.adaptive.reset(self.limit.limit)
        self.stats.concurrency_mode = ConcurrencyMode.AUTO
        self._limit_changed(f"adaptive again from {self.limit.limit}")
        return True

    def _apply_limit(self, limit: int) -> None:
        limit = max(1, min(limit, self.engine.max_concurrency))
        self.limit.set_limit(limit)
        self.stats.concurrency = limit
        self._wake.set()

    def _limit_changed(self, reason: str) -> None:
        self.stats.concurrency_reason = reason
        self.stats.concurrency_changed_at = time.monotonic()

    def _observe(self, outcome: AttemptOutcome) -> None:
        adaptive = self.adaptive
        if adaptive is None or self.stats.concurrency_mode is not ConcurrencyMode.AUTO:
            return
        overload = None
        if outcome.timed_out:
            overload = "timeout"
        elif outcome.status in (429, 503):
            overload = f"HTTP {outcome.status}"
        change = adaptive.on_sample(
            started=outcome.started,
            ended=outcome.ended,
            in_flight=outcome.in_flight,
            overload=overload,
        )
        if change is not None:
            self._apply_limit(change.limit)
            self._limit_changed(change.reason)

    # -- pausing ----------------------------------------------------------------------------

    def _settle_soon(self) -> None:
        if self._busy == 0 and (self._settling is None or self._settling.done()):
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        """Once a pausing source has nothing in flight, write its fetched pages and commit
        its checkpoints: then it is really paused (a kill now loses nothing and re-fetches
        nothing)."""
        # Again until nothing is left: a resume and a new pause while a write was slow may
        # have staged pages after the first drain began.
        while self.paused and (unwritten := [b for b in self._batchers if not b.idle]):
            for batcher in unwritten:
                try:
                    await batcher.drain()
                except Exception:  # raised again to its stream when it next commits
                    return  # not really paused: the stream reports the failure on resume
        with contextlib.suppress(StateError):
            await self.engine.state.flush()
        if self.paused and self._busy == 0 and self.stats.status is SourceStatus.PAUSING:
            self.stats.status = SourceStatus.PAUSED

    async def _gate(self) -> bool:
        """Wait while paused. False when the source (or the run) is stopping."""
        if self.paused and not self.stop_requested:
            await self._unpaused.wait()
        return not self.stop_requested

    @contextlib.asynccontextmanager
    async def _attempt_slot(self) -> AsyncIterator[None]:
        """Held for one attempt only: a backoff sleep or a paused retry holds no slot."""
        # A retry is a new request: a paused source does not send it until resumed.
        if self.paused and not self.stop_requested:
            self._busy -= 1
            self._settle_soon()
            try:
                await self._unpaused.wait()
            finally:
                self._busy += 1
        if self.stop_requested:
            raise _StopRequested
        pacer = self.engine.pacer
        await pacer.pace()
        async with self.limit.slot(), self.engine.global_limit.slot():
            yield
            await pacer.pace_response()

    def _forget_task(self, active: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        """A done-callback: the task leaves `active`, and its scheduler looks again (a task's
        own last wake-up comes before it is done, too early to count)."""

        def forget(task: asyncio.Task[None]) -> None:
            active.discard(task)
            self._wake.set()

        return forget

    async def _wait_for_wake(self) -> None:
        # Nothing awaits between a caller's last look and this clear: no wake-up is lost.
        self._wake.clear()
        await self._wake.wait()

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every stream of the source to the end. Never raises (but for cancellation)."""
        stats = self.stats
        stats.status = SourceStatus.PAUSED if self.paused else SourceStatus.RUNNING
        stats.started_at = stats.started_at or time.monotonic()
        stats.finished_at = None
        stats.last_error = None
        stats.streams.clear()
        stats.streams_total = stats.streams_done = stats.streams_failed = 0
        stats.streams_running = 0
        self._queue.clear()
        self._known.clear()
        self._failures = []
        self._halted = False
        try:
            parent_status = await self._run_partitions()
            if self._failures:
                stats.status = SourceStatus.FAILED
                if len(self._failures) > 1:
                    stats.last_error = (
                        f"{len(self._failures)} of {stats.streams_total} partitions failed; "
                        f"the first: {self._failures[0]}"
                    )
            elif parent_status is SourceStatus.FAILED:
                self._record_failure(
                    f"parent source {self._parent_name()} failed: partitions were fetched only "
                    "for the parent records it retrieved; retry the parent, then this source",
                    url="",
                    status=None,
                    excerpt="",
                    attempts=0,
                )
                stats.status = SourceStatus.FAILED
            elif self.stop_requested or parent_status is SourceStatus.STOPPED:
                stats.status = SourceStatus.STOPPED
            else:
                stats.status = SourceStatus.DONE
        except StateError as exc:
            self._record_failure(
                f"state database: {exc}", url="", status=None, excerpt="", attempts=0
            )
            stats.status = SourceStatus.FAILED
        except Exception as exc:  # a bug must fail one source, not the run
            self._internal_error(exc)
            stats.status = SourceStatus.FAILED
        finally:
            self._accepting = False
            stats.finished_at = time.monotonic()
            stats.backoff_until = None
            self.finished.set()
            for child in self.children:
                child._wake.set()
            self.engine.source_changed()

    def _internal_error(self, exc: Exception) -> None:
        log.error("source %s: unexpected error", self.name, exc_info=exc)
        message = self.engine.redactor(
            f"internal error: {type(exc).__name__}: {exc} (traceback in tui-connector.log)"
        )
        self._record_failure(message, url="", status=None, excerpt="", attempts=0)

    def _parent_name(self) -> str:
        partitions = self.spec.partitions
        return partitions.source if isinstance(partitions, ParentPartitions) else ""

    async def _run_partitions(self) -> SourceStatus | None:
        """Start streams as the limit allows until every partition ran (or the source stops).
        Returns the parent's final status for a child source, else None."""
        stats = self.stats
        rows = {row.partition: row for row in await self.engine.state.streams(self.name)}
        planned = plan(self.spec)
        if planned is not None:
            self._queue.extend(planned)
            stats.streams_total = len(planned)
        else:
            self._accepting = True  # before the scan: a page landing meanwhile is not missed
            await self._scan_parent()
        active: set[asyncio.Task[None]] = set()
        try:
            while True:
                halted = self._halted or self.stop_requested
                while self._queue and not halted and not self.paused:
                    if len(active) >= self.limit.limit:
                        break
                    partition = self._queue.popleft()
                    task = asyncio.create_task(
                        self._stream_task(partition, rows.get(partition.key)),
                        name=f"stream:{self.name}/{partition.key}",
                    )
                    active.add(task)
                    task.add_done_callback(self._forget_task(active))
                parent_done = self.parent is None or self.parent.finished.is_set()
                if not active and (halted or (not self._queue and parent_done)):
                    break
                await self._wait_for_wake()
        finally:
            await _cancel_all(active)
        if self.parent is not None and self.parent.stats.status is not SourceStatus.DONE:
            return self.parent.stats.status
        return None

    def offer(self, parent_records: list[Any]) -> None:
        """A parent's fetched records: each one a partition of this (child) source."""
        values = self._parent_values
        if values is None or not self._accepting:
            return
        added = 0
        for record in parent_records:
            partition = values.partition(record)
            if partition is not None and partition.key not in self._known:
                self._known.add(partition.key)
                self._queue.append(partition)
                added += 1
        if added:
            self.stats.streams_total += added
            self._wake.set()

    async def _scan_parent(self) -> None:
        """The parent's records already in the lake (from this run or earlier ones)."""
        engine = self.engine
        parent = self._parent_name()
        paths = await asyncio.to_thread(source_pages_sync, engine.out, parent)
        for start in range(0, len(paths), _SCAN_BATCH):
            batch = paths[start : start + _SCAN_BATCH]
            for records in await asyncio.to_thread(_read_pages, batch):
                self.offer(records)
        if self.parent is None:  # the parent is not part of this run: its lake is all there is
            rows = await engine.state.streams(parent)
            if not rows or any(row.status != "done" for row in rows):
                self.stats.warnings.append(
                    f"parent source {parent} has not completed: partitions come only from the "
                    "parent records retrieved so far; run it too"
                )

    async def _stream_task(self, partition: Partition, row: StreamRow | None) -> None:
        stats = self.stats
        stream = stats.streams.setdefault(partition.key, StreamStats(partition.key))
        stream.status = StreamStatus.RUNNING
        stats.streams_running += 1
        try:
            finished = await self._run_stream(partition, row, stream)
            stream.status = StreamStatus.DONE if finished else StreamStatus.STOPPED
            if finished:
                stats.streams_done += 1
        except StreamFailed as failure:  # its event is already in the error ring
            self._stream_failed(stream, str(failure), fatal=failure.fatal)
        except StateError as exc:
            message = f"state database: {exc}"
            self._record_failure(message, url="", status=None, excerpt="", attempts=0)
            self._stream_failed(stream, message, fatal=True)
        except Exception as exc:  # a bug must fail one source, not the run
            self._internal_error(exc)
            self._stream_failed(stream, str(exc), fatal=True)
        finally:
            stats.streams_running -= 1
            self._wake.set()

    def _stream_failed(self, stream: StreamStats, message: str, *, fatal: bool) -> None:
        stream.status = StreamStatus.FAILED
        stream.error = message
        self.stats.streams_failed += 1
        self._failures.append(message)
        if fatal:
            self._halted = True

    def _record_failure(
        self, message: str, *, url: str, status: int | None, excerpt: str, attempts: int
    ) -> ErrorEvent:
        event = ErrorEvent(
            at=time.time(),
            source=self.name,
            status=status,
            error=message,
            url=url,
            body_excerpt=excerpt,
            attempt=attempts,
            next_step="source failed",
        )
        self.engine.telemetry.error(event)
        self.stats.last_error = message
        return event

    # -- one stream ---------------------------------------------------------------------------

    async def _run_stream(
        self, partition: Partition, row: StreamRow | None, stream: StreamStats
    ) -> bool:
        """Run one stream from its checkpoint. True when finished, False when stopped."""
        engine = self.engine
        key = partition.key
        directory = engine.lake.directory(self.name, key)
        fingerprint = f"{self._source_fingerprint}:{partition.identity()}"
        saved_source, _, saved_partition = row.fingerprint.partition(":") if row else ("", "", "")
        start_over = row is None or (engine.full_refresh and key not in self._restarted)
        if row is not None and not start_over:
            if saved_source not in ("", self._source_fingerprint):
                event = self._record_failure(
                    f"sources.{self.name} changed since its checkpoint (url, params, body, "
                    "records, pagination, incremental or the lake directory): resuming would "
                    f"mix two page layouts. Run with --full-refresh, or `tui-connector reset "
                    f"{self.name}`, to start over",
                    url="",
                    status=None,
                    excerpt="",
                    attempts=0,
                )
                raise StreamFailed(event.error, event, fatal=True)
            # A date window whose end moved with the present asks for more: fetch it again.
            start_over = saved_partition not in ("", partition.identity())
        incremental = self.spec.incremental

        if row is not None and not start_over:
            await self._check_lake(row)
        if row is not None and not start_over and row.status == "done" and incremental is None:
            self.stats.pages += row.pages
            self.stats.records += row.records
            stream.pages, stream.records = row.pages, row.records
            stream.position = "already complete"
            return True

        mark: Any = None
        pending: Any = None
        base = pages = records = files = 0
        resume = row is not None and not start_over and row.status != "done"
        if row is not None and not start_over:
            mark, base, pages, records = row.mark, row.base, row.pages, row.records
            files = row.files or 0
            if resume:
                pending = row.pending_mark
            else:  # a new incremental run: its pages go after the earlier runs' pages
                base = row.position
        high_water = HighWater(incremental, mark, pending) if incremental is not None else None
        since = high_water.since if high_water is not None else None
        if since is not None:
            self.stats.high_water = self.engine.redactor(str(since))
        try:
            paginator = Paginator(stream_spec(self.spec, partition, since))
        except PaginationError as exc:  # the body template has no room for the value
            event = self._failure_event(exc)
            raise StreamFailed(event.error, event, fatal=True) from None
        run = _Stream(partition, stream, paginator, base, mark, high_water, pages, records, files)
        self.stats.pages += pages
        self.stats.records += records
        stream.pages, stream.records = pages, records

        if resume:
            assert row is not None
            cursor: dict[str, Any] = row.cursor
            position = row.position
            await engine.lake.clear_stream(
                self.name, key, keep_below=position, also_keep=_done_above(row)
            )
        else:
            cursor = paginator.start()
            position = base
            # The reset checkpoint is committed before any file goes: a crash in between
            # leaves a stream that starts over, never a "done" stream with an emptied lake.
            await engine.state.start_stream(
                self.name,
                key,
                cursor,
                str(directory),
                fingerprint,
                base=base,
                mark=mark,
                pages=pages,
                records=records,
                files=files,
            )
            self._restarted.add(key)
            await engine.lake.clear_stream(self.name, key, keep_below=base)
        stream.position = self._describe(paginator, cursor)
        if "parallel" in cursor:
            return await self._run_parallel(run, cursor)
        return await self._run_sequential(run, cursor, position)

    async def _check_lake(self, row: StreamRow) -> None:
        """Refuse to resume, or to call done, a stream whose committed page files are gone:
        files deleted or moved behind the state's back would otherwise be lost silently."""
        if not row.files:
            return
        found = await self.engine.lake.count_pages(
            self.name, row.partition, row.position, _done_above(row)
        )
        if found >= row.files:
            return
        directory = self.engine.lake.directory(self.name, row.partition)
        event = self._record_failure(
            f"{directory} holds {found} of the {row.files} page files its checkpoint "
            "committed: lake files were deleted or moved behind the state's back. Put them "
            f"back, or fetch the stream again with `tui-connector reset {self.name}` (or "
            "--full-refresh) and a new run",
            url="",
            status=None,
            excerpt="",
            attempts=0,
        )
        raise StreamFailed(event.error, event, fatal=False)

    async def _run_sequential(self, run: _Stream, cursor: dict[str, Any], position: int) -> bool:
        committed: list[Any] = [cursor, position]  # the checkpoint of the last batch landed

        def commit(batch: Batch[_Staged], wrote: bool) -> None:
            last = batch.notes[-1]
            self._batch_landed(run, batch, wrote)
            self._checkpoint(run, last.checkpoint, last.position, last.status, last.pending)
            committed[:] = last.checkpoint, last.position

        batcher = self._batcher(run, commit)
        try:
            while True:
                if not await self._gate():
                    await self._drain_or_fail(run, batcher, committed)
                    self._checkpoint(run, committed[0], committed[1], "stopped")
                    return False
                self._busy += 1
                try:
                    try:
                        page, records = await self._fetch(run, cursor)
                        next_cursor = run.paginator.advance(cursor, page)
                        count = (
                            None if next_cursor is None else run.paginator.page_count(next_cursor)
                        )
                        after: dict[str, Any] = cursor
                        shown: dict[str, Any] | None = None  # None: finished
                        status = "done"
                        if next_cursor is not None and count != 1:
                            status = "running"
                            after = shown = next_cursor
                            if count is not None:
                                # The first page told the total: fetch the rest concurrently.
                                parallel = {"count": count, "low": 1, "done": []}
                                after = shown = {**next_cursor, "parallel": parallel}
                        note = _Staged(
                            checkpoint=after, position=position + 1, status=status, next=shown
                        )
                        await self._stage(batcher, run, position, records, note)
                        position += 1
                    except _StopRequested:
                        continue
                    except _STREAM_ERRORS as exc:
                        await self._drain_or_fail(run, batcher, committed)
                        await self._fail_stream(run, exc, committed[0], committed[1])
                    if status == "done" or count is not None:
                        await self._drain_or_fail(run, batcher, committed)
                        break
                    cursor = after
                finally:
                    self._busy -= 1
                    if self.paused:
                        self._settle_soon()
        finally:
            self._forget_batcher(batcher)
        if status == "done":
            await self.engine.state.flush()
            return True
        return await self._run_parallel(run, after)

    async def _run_parallel(self, run: _Stream, cursor: dict[str, Any]) -> bool:
        """Fetch the pages of a stream whose page count is known, up to the source's limit at
        once. The checkpoint holds a low-water mark and the pages done above it, so a resume
        fetches exactly the pages missing."""
        progress = cursor["parallel"]
        count: int = progress["count"]
        low: int = progress["low"]
        done: set[int] = set(progress["done"])
        first_page = {name: value for name, value in cursor.items() if name != "parallel"}
        todo = deque(index for index in range(low, count) if index not in done)
        run.stats.pages_total = count
        active: set[asyncio.Task[None]] = set()
        failure: Exception | None = None

        def state() -> dict[str, Any]:
            return {**first_page, "parallel": {"count": count, "low": low, "done": sorted(done)}}

        def commit(batch: Batch[_Staged], wrote: bool) -> None:
            nonlocal low
            for note in batch.notes:
                assert note.index is not None
                done.add(note.index)
            while low in done:
                done.discard(low)
                low += 1
            finished = low == count
            snapshot = state()
            self._batch_landed(run, batch, wrote)
            status = "done" if finished else "running"
            self._checkpoint(run, snapshot, run.base + low, status, batch.notes[-1].pending)
            run.stats.position = "finished" if finished else self._describe(run.paginator, snapshot)

        batcher = self._batcher(run, commit)

        async def fetch_page(index: int) -> None:
            nonlocal failure
            self._busy += 1
            try:
                try:
                    _, records = await self._fetch(run, run.paginator.seek(first_page, index))
                    note = _Staged(index=index)
                    await self._stage(batcher, run, run.base + index, records, note)
                except _StopRequested:
                    return  # not done: the checkpoint leaves it for the resume
                except Exception as exc:  # a bug too: the scheduler raises it below
                    failure = failure or exc
                    return
            finally:
                self._busy -= 1
                if self.paused:
                    self._settle_soon()
                self._wake.set()

        try:
            while True:
                stopping = failure is not None or self.stop_requested
                while todo and not stopping and not self.paused and len(active) < self.limit.limit:
                    task = asyncio.create_task(fetch_page(todo.popleft()))
                    active.add(task)
                    task.add_done_callback(self._forget_task(active))
                if not active and (stopping or not todo):
                    break
                await self._wait_for_wake()
            try:
                await batcher.drain()
            except LakeError as exc:
                failure = failure or exc
        finally:
            await _cancel_all(active)
            self._forget_batcher(batcher)
        if failure is not None and not isinstance(failure, _STREAM_ERRORS):
            raise failure
        if failure is not None:
            await self._fail_stream(run, failure, state(), run.base + low)
        if low < count:
            self._checkpoint(run, state(), run.base + low, "stopped")
            return False
        await self.engine.state.flush()
        return True

    def _batcher(
        self, run: _Stream, commit: Callable[[Batch[_Staged], bool], None]
    ) -> PageBatcher[_Staged]:
        batcher = PageBatcher(self.engine.lake, self.name, run.partition.key, commit)
        self._batchers.add(batcher)
        return batcher

    def _forget_batcher(self, batcher: PageBatcher[_Staged]) -> None:
        """The stream ended: what is still unwritten is given up (a resume fetches it)."""
        batcher.cancel()
        self._batchers.discard(batcher)

    async def _drain_or_fail(
        self, run: _Stream, batcher: PageBatcher[_Staged], committed: list[Any]
    ) -> None:
        """Wait until the stream's fetched pages are committed; a lake that cannot take them
        fails the stream at its last committed checkpoint."""
        try:
            await batcher.drain()
        except LakeError as exc:
            await self._fail_stream(run, exc, committed[0], committed[1])

    async def _stage(
        self,
        batcher: PageBatcher[_Staged],
        run: _Stream,
        at: int,
        records: list[Any],
        note: _Staged,
    ) -> None:
        """A fetched page, at lake position `at`, into its stream's batch (`note`: what
        committing it means). Progress counts it now, and child sources take their partitions
        from it now: its file follows within a second (or is fetched again after a crash)."""
        stream = run.stats
        if stream.pages == 0 and not records and run.high_water is None:
            self.stats.warnings.append(
                "the first page had no records: check 'records' and the request params"
            )
        copied = run.partition.copy
        if copied:
            records = [
                {**record, **copied} if isinstance(record, dict) else record for record in records
            ]
        note.records = len(records)
        note.pending = run.high_water.pending if run.high_water is not None else None
        await batcher.add(at, records, note)
        for child in self.children:
            child.offer(records)
        stream.pages += 1
        stream.records += len(records)
        if note.index is None:  # a parallel stream's position moves as its pages commit
            shown = note.next
            stream.position = "finished" if shown is None else self._describe(run.paginator, shown)
        self.engine.telemetry.page_retrieved(self.name, len(records), stream.position)

    async def _fail_stream(
        self, run: _Stream, exc: Exception, cursor: dict[str, Any], position: int
    ) -> NoReturn:
        event = self._failure_event(exc)
        self._checkpoint(run, cursor, position, "failed", last_error=event.error)
        await self.engine.state.flush()
        fatal = isinstance(exc, LakeError) or (
            isinstance(exc, FetchError) and exc.status in _FATAL_STATUSES
        )
        raise StreamFailed(event.error, event, fatal=fatal) from None

    async def _fetch(self, run: _Stream, cursor: dict[str, Any]) -> tuple[Page, list[Any]]:
        """One page: fetched, checked, its records extracted (and only the new ones kept, for
        an incremental stream)."""
        request = run.paginator.request(cursor)
        response = await self.http.fetch(request, self._attempt_slot, interrupt=self._stopping)
        spec = self.spec
        check_errors(response.body, spec.errors)
        records = extract_records(response.body, spec.records)
        total_ref = getattr(spec.pagination, "stop", None)
        if total_ref is not None and total_ref.total_records is not None:
            with contextlib.suppress(TypeError, ValueError):
                total = read_value(total_ref.total_records, response.body, response.headers)
                if total is not None and not self.stats.partitioned:
                    self.stats.total_records = int(total)
        page = Page(url=response.url, headers=response.headers, body=response.body, records=records)
        if run.high_water is not None:
            records = run.high_water.new_records(records)
        return page, records

    def _checkpoint(
        self,
        run: _Stream,
        cursor: dict[str, Any],
        position: int,
        status: str,
        pending: Any = _LIVE,
        last_error: str | None = None,
    ) -> None:
        """Queue the stream's checkpoint. `pending`: the incremental mark as it was when the
        last page it covers was fetched (by default, as it is now)."""
        if status == "running" and not self.engine.checkpoints:
            return
        if pending is _LIVE:
            pending = run.high_water.pending if run.high_water is not None else None
        mark = run.mark
        if status == "done" and run.high_water is not None:
            # The mark advances only now: every page of this run is in the lake.
            mark, pending = merged(mark, pending), None
        self.engine.state.checkpoint(
            Checkpoint(
                self.name,
                run.partition.key,
                cursor,
                position,
                status,
                run.pages,
                run.records,
                last_error=last_error,
                mark=mark,
                pending_mark=pending,
                files=run.files,
            )
        )

    def _batch_landed(self, run: _Stream, batch: Batch[_Staged], wrote: bool) -> None:
        """A batch's file is in place: count it, before the checkpoint that stores the counts."""
        run.files += wrote
        run.pages += len(batch.notes)
        run.records += batch.records

    def _fingerprint(self) -> str:
        """What a checkpoint is valid for: the request, its pagination, and where pages go."""
        spec = self.spec
        identity: dict[str, Any] = {
            "url": spec.url,
            "method": spec.method,
            "params": dict(spec.params),
            "body": spec.body,
            "records": spec.records,
            "pagination": spec.pagination.model_dump(mode="json"),
            "lake": str(self.engine.lake.out.resolve() / spec.name),
        }
        if spec.incremental is not None:
            identity["incremental"] = spec.incremental.model_dump(mode="json", exclude={"initial"})
        encoded = json.dumps(identity, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def _describe(self, paginator: Paginator, cursor: dict[str, Any]) -> str:
        # A server may echo a key into its next links: positions are shown only redacted.
        parallel = cursor.get("parallel")
        if parallel:
            return f"{parallel['low']}/{parallel['count']} pages (parallel)"
        return self.engine.redactor(paginator.describe(cursor))

    def _failure_event(self, exc: Exception) -> ErrorEvent:
        redact = self.engine.redactor
        if isinstance(exc, FetchError):
            tries = f" after {exc.attempts} attempt{'s' if exc.attempts != 1 else ''}"
            return self._record_failure(
                f"{exc.message}{tries}",
                url=exc.url,
                status=exc.status,
                excerpt=exc.body_excerpt,
                attempts=exc.attempts,
            )
        return self._record_failure(redact(str(exc)), url="", status=None, excerpt="", attempts=1)


class Engine:
    """Runs a config. Use as `async with Engine(config) as engine: result = await engine.run()`."""

    def __init__(
        self,
        config: LoadedConfig,
        *,
        state_path: Path | None = None,
        out: Path | None = None,
        only: Iterable[str] | None = None,
        full_refresh: bool = False,
        telemetry: RunTelemetry | None = None,
        stop_grace: float = STOP_GRACE_S,
        checkpoints: bool = True,
    ) -> None:
        """`checkpoints=False` is for the benchmark only: it measures what checkpointing costs
        by committing a stream's state only when it ends (a crash would refetch it all)."""
        self.config = config
        self.checkpoints = checkpoints
        self.state_path = state_path or config.state
        self.out = out or config.out
        self.full_refresh = full_refresh
        self.telemetry = telemetry or RunTelemetry()
        self.redactor = config.redactor
        self.max_concurrency = config.model.max_concurrency
        self.global_limit = ResizableLimit(self.max_concurrency)
        self.pacer = LoopPacer()
        self.stop_grace = stop_grace
        selected = list(only) if only else list(config.sources)
        unknown = [name for name in selected if name not in config.sources]
        if unknown:
            known = ", ".join(config.sources)
            raise ValueError(f"unknown source {', '.join(unknown)}; the config defines: {known}")
        self.selected = selected
        model = config.model
        self.lake = LakeWriter(self.out, fsync=model.fsync, commit_interval=model.commit_interval)
        self.state = StateStore(self.state_path, durable=model.fsync)
        self._lock = RunLock(self.state_path)
        self.runners: dict[str, SourceRunner] = {}
        self._group: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self.stop_requested_at: float | None = None
        self._thresholds = gc.get_threshold()  # so that `close` works on an engine never entered

    async def __aenter__(self) -> Engine:
        self._lock.acquire()
        try:
            await self.state.open()
            await self.state.begin_run(str(self.config.path))
        except BaseException:
            await self.state.close()
            self._lock.release()
            raise
        for name in self.selected:
            self.runners[name] = SourceRunner(self, self.config.sources[name])
        for runner in self.runners.values():
            partitions = runner.spec.partitions
            if isinstance(partitions, ParentPartitions):
                parent = self.runners.get(partitions.source)
                if parent is not None:
                    runner.parent = parent
                    parent.children.append(runner)
        # What is alive now (modules, the config, the dashboard) lives as long as the run.
        # Frozen, the collector's full passes stop scanning it again and again: decoding pages
        # allocates fast enough that those passes cost about 7 % of a fast run's CPU. The young
        # generations' garbage (loading the config) is collected first, so it is not kept; a
        # full collection would cost 16-40 ms of every start, for the little garbage imports
        # leave. `close` thaws it all again.
        gc.collect(1)
        gc.freeze()
        # A run makes next to no cyclic garbage (see `httpclient._release`), yet a young
        # collection traces every object of the requests in flight (thousands with 100
        # streams), alive again each time. Python starts one whenever 700 more containers
        # were allocated than freed: in the bench's workload 1 (8 s), 126-278 ms of collecting
        # headless and 309-506 ms with the dashboard; at 10,000, 2-3 ms and 58-97 ms.
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *self._thresholds[1:])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        # The state closes whatever else fails: an open aiosqlite connection's thread would
        # keep the process alive after the run.
        try:
            status = "interrupted" if self._interrupted() else "finished"
            with contextlib.suppress(StateError):
                await self.state.end_run(status)
            await self.state.close()
        finally:
            try:
                for runner in self.runners.values():
                    with contextlib.suppress(Exception):  # a dead connection is already closed
                        await runner.http.aclose()
                await self.lake.aclose()
            finally:
                gc.unfreeze()  # first: nothing that could fail keeps the process tuned
                gc.set_threshold(*self._thresholds)
                self._lock.release()

    # -- running ----------------------------------------------------------------------------

    def source_changed(self) -> None:
        self._changed.set()

    def _all_finished(self) -> bool:
        return all(runner.stats.status.finished for runner in self.runners.values())

    async def run(self, *, until_done: bool = True) -> RunResult:
        """Run every selected source. Returns when all have finished (or, with
        `until_done=False`, when a stop is requested: the dashboard keeps the run open)."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for runner in self.runners.values():
                if not self._stopping:  # a stop requested before the run starts nothing
                    runner.start(group)
            while True:
                await self._changed.wait()
                self._changed.clear()
                if self._stopping or (until_done and self._all_finished()):
                    break
            if self._stopping:
                await self._drain()
        self._group = None
        self.telemetry.finished_at = time.monotonic()
        with contextlib.suppress(StateError):
            await self.state.flush()
        return self.result()

    async def _drain(self) -> None:
        """Let in-flight pages finish and commit, for at most `stop_grace` seconds."""
        tasks = [r.task for r in self.runners.values() if r.task and not r.task.done()]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.stop_grace)
        for task in late:
            task.cancel()

    def _interrupted(self) -> bool:
        """A stop counts as an interruption only if it left work undone (the dashboard's
        run always ends with a stop, usually after everything finished)."""
        return self._stopping and any(
            runner.stats.status not in (SourceStatus.DONE, SourceStatus.FAILED)
            for runner in self.runners.values()
        )

    def result(self) -> RunResult:
        result = RunResult(interrupted=self._interrupted())
        for name, runner in self.runners.items():
            status = runner.stats.status
            if status is SourceStatus.DONE:
                result.done.append(name)
            elif status is SourceStatus.FAILED:
                result.failed.append(name)
            else:
                result.stopped.append(name)
        return result

    # -- controls (for the dashboard and signal handlers) -----------------------------------

    def _runner(self, source: str) -> SourceRunner:
        try:
            return self.runners[source]
        except KeyError:
            raise ValueError(f"no source named {source!r} in this run") from None

    def pause(self, source: str) -> None:
        self._runner(source).pause()

    def resume(self, source: str) -> None:
        self._runner(source).resume()

    def pause_all(self) -> None:
        for runner in self.runners.values():
            runner.pause()

    def resume_all(self) -> None:
        for runner in self.runners.values():
            runner.resume()

    def stop(self, source: str) -> None:
        self._runner(source).stop()

    def retry(self, source: str) -> bool:
        """Start a failed or stopped source again from its checkpoint. False if it can't be.

        Its finished child sources start again too: the parent's new records are their new
        partitions (their finished partitions are skipped, so this costs no request)."""
        runner = self._runner(source)
        if self._group is None or runner.stats.status not in (
            SourceStatus.FAILED,
            SourceStatus.STOPPED,
        ):
            return False
        self._restart(runner, self._group)
        return True

    def _restart(self, runner: SourceRunner, group: asyncio.TaskGroup) -> None:
        runner.stats.pages = runner.stats.records = 0
        runner.start(group)
        for child in runner.children:
            if child.stats.status.finished:
                self._restart(child, group)

    def set_concurrency(self, source: str, limit: int) -> None:
        """The operator's limit (an adaptive source switches to manual)."""
        self._runner(source).set_concurrency(limit)

    def set_auto(self, source: str) -> bool:
        """Hand a source's limit back to its adaptive controller; False if it has none."""
        return self._runner(source).set_auto()

    def is_paused(self, source: str) -> bool:
        return self._runner(source).paused

    def set_rate_limit(self, source: str, per_second: float | None) -> None:
        self._runner(source).http.set_rate_limit(per_second)

    def request_stop(self) -> None:
        """Graceful stop: no new requests; in-flight pages finish and commit."""
        if self._stopping:
            return
        self._stopping = True
        self.stop_requested_at = time.monotonic()
        for runner in self.runners.values():
            runner.stop()
        self._changed.set()

    @property
    def stopping(self) -> bool:
        return self._stopping
