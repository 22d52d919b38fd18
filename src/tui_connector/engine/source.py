"""One source of a run: its controls (pause, resume, stop, concurrency), the streams it starts
as its limit allows (a partition each), and the parent -> child wiring by which a child
source takes its partitions from its parent's records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_connector.adaptive import AdaptiveLimit, LimitChange
from tui_connector.config import ParentPartitions, SourceSpec
from tui_connector.engine.failures import FailureReporter, StreamFailed
from tui_connector.engine.gate import SourceGate, cancel_all
from tui_connector.engine.limits import LimitRamp, LoopPacer, ResizableLimit
from tui_connector.engine.resume import Resumption, open_stream, source_fingerprint
from tui_connector.engine.stream import StreamServices
from tui_connector.http.oauth2 import SharedTokens
from tui_connector.http.source import SourceHttp
from tui_connector.partitions import ParentValues, Partition, plan
from tui_connector.redact import Redactor
from tui_connector.sinks import LakeError, Sink
from tui_connector.sinks.batching import BatchWriter
from tui_connector.state import CheckpointStore, StateError, StreamRow
from tui_connector.telemetry import (
    AttemptOutcome,
    ConcurrencyMode,
    RunTelemetry,
    SourceStatus,
    StreamStats,
    StreamStatus,
)


@dataclass(frozen=True)
class RunServices:
    """What a run shares among its sources."""

    telemetry: RunTelemetry
    sink: Sink
    store: CheckpointStore
    redact: Redactor
    pacer: LoopPacer
    global_limit: ResizableLimit
    max_concurrency: int
    commit_interval: float
    full_refresh: bool
    checkpoints: bool
    on_finished: Callable[[], None]  # a source finished: the run looks whether it is over
    tokens: SharedTokens  # the OAuth2 tokens, one per auth block however many sources give it


class SourceRunner:
    """Runs the streams of one source and holds its controls."""

    def __init__(self, services: RunServices, spec: SourceSpec) -> None:
        self.run_services = services
        self.spec = spec
        self.name = spec.name
        self.stats = services.telemetry.source(spec.name)
        self.stats.concurrency = spec.concurrency
        self.stats.partitioned = spec.partitions is not None
        self.limit = ResizableLimit(spec.concurrency)
        self._ramp = LimitRamp(self._apply_limit)  # an adaptive limit's paced opening
        # The one owner of the source's status: its HTTP layer reports there, and so does this.
        self.reporter = reporter = services.telemetry.reporter(spec.name)
        self.http = SourceHttp(
            spec,
            reporter,
            services.redact,
            services.max_concurrency,
            services.tokens.tokens_for(spec.auth),
        )
        self.adaptive: AdaptiveLimit | None = None
        auto = spec.auto_concurrency
        if auto is not None:
            maximum = min(auto.max, services.max_concurrency)
            self.adaptive = AdaptiveLimit(
                minimum=min(auto.min, maximum), maximum=maximum, initial=spec.concurrency
            )
            self.stats.concurrency_mode = ConcurrencyMode.AUTO
            self.stats.concurrency_reason = "adaptive: starting"
            reporter.attempt_listener = self._observe
        self.gate = SourceGate(
            self.limit, services.global_limit, services.pacer, self._settle_soon, self._work_ready
        )
        self.failures = FailureReporter(services.telemetry, spec.name, services.redact)
        self._batchers: set[BatchWriter[Any]] = set()  # of the streams running
        self.stream_services = StreamServices(
            spec=spec,
            stats=self.stats,
            telemetry=services.telemetry,
            http=self.http,
            sink=services.sink,
            store=services.store,
            gate=self.gate,
            failures=self.failures,
            redact=services.redact,
            offer_to_children=self._offer_to_children,
            batchers=self._batchers,
            commit_interval=services.commit_interval,
            checkpoints=services.checkpoints,
        )
        self.task: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None
        self._restarted: set[str] = set()  # streams a --full-refresh already started over
        self._fingerprint = source_fingerprint(spec, services.sink)
        # Parent -> child: the engine links the runners of one services.
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

    @property
    def paused(self) -> bool:
        return self.gate.paused

    # -- controls ---------------------------------------------------------------------------

    def start(self, group: asyncio.TaskGroup) -> None:
        self.gate.open()
        self.finished.clear()
        self.task = group.create_task(self.run(), name=f"source:{self.name}")

    def pause(self) -> None:
        if self.stats.status.finished or self.gate.paused:
            return
        self.gate.pause()
        self.reporter.pausing()
        self._settle_soon()

    def resume(self) -> None:
        if not self.gate.paused:
            return
        self.gate.resume()
        # Resumed within a Retry-After hold, it is still backing off.
        held = self.http.held_until is not None
        self.reporter.resumed(started=self.task is not None, held=held)

    def stop(self) -> None:
        self.gate.stop()

    def set_concurrency(self, limit: int) -> None:
        """The operator's limit; an adaptive source follows it until set back to auto."""
        self._ramp.cancel()
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
        limit = max(1, min(limit, self.run_services.max_concurrency))
        self.limit.set_limit(limit)
        self.stats.concurrency = limit
        self.gate.wake()

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
        elif outcome.status is None:
            # No response and no timeout: a connection refused, reset or closed, an invalid
            # reply. It took no queueing time to measure and says nothing of the load.
            return
        elif outcome.status in (429, 503):
            overload = f"HTTP {outcome.status}"
        change = adaptive.on_sample(
            started=outcome.started,
            ended=outcome.ended,
            in_flight=outcome.in_flight,
            overload=overload,
        )
        self._follow(change)

    def _work_ready(self, requests: int) -> None:
        """`requests` more are ready to send: an adaptive limit still in slow start opens up
        to them and the requests in flight at once (`AdaptiveLimit.expect`)."""
        adaptive = self.adaptive
        if adaptive is None or self.stats.concurrency_mode is not ConcurrencyMode.AUTO:
            return
        self._follow(adaptive.expect(self.stats.in_flight + requests, time.monotonic()))

    def _follow(self, change: LimitChange | None) -> None:
        if change is not None:
            self._ramp.start(self.limit.limit, change.limit, change.spread)
            self._limit_changed(change.reason)

    # -- pausing ----------------------------------------------------------------------------

    def _settle_soon(self) -> None:
        if self.gate.busy == 0 and (self._settling is None or self._settling.done()):
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        """Once a pausing source has nothing in flight, write its fetched pages and commit
        its checkpoints: then it is really paused (a kill now loses nothing and re-fetches
        nothing)."""
        # Again until nothing is left: a resume and a new pause while a write was slow may
        # have staged pages after the first drain began.
        while self.gate.paused and (unwritten := [b for b in self._batchers if not b.idle]):
            for batcher in unwritten:
                try:
                    await batcher.drain()
                except Exception:  # raised again to its stream when it next commits
                    return  # not really paused: the stream reports the failure on resume
        with contextlib.suppress(StateError):
            await self.run_services.store.flush()
        if self.gate.paused and self.gate.busy == 0:
            self.reporter.paused()

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every stream of the source to the end. Never raises (but for cancellation)."""
        stats = self.stats
        self.reporter.start(paused=self.gate.paused)
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
            try:
                status = self._verdict(await self._run_partitions())
                if status is SourceStatus.DONE:
                    await self.run_services.sink.finish_source(self.name)
                    self._warn_if_all_empty()
            except LakeError as exc:  # publishing what a `replace` staged
                self.failures.exception(exc)
                status = SourceStatus.FAILED
            except StateError as exc:
                self.failures.report(f"state database: {exc}")
                status = SourceStatus.FAILED
            except Exception as exc:  # a bug must fail one source, not the run
                self.failures.internal_error(exc)
                status = SourceStatus.FAILED
            self.reporter.finish(status)
        finally:  # cancelled too (the operator quit at once): it waits for nothing any more
            self._accepting = False
            self._ramp.cancel()
            stats.finished_at = time.monotonic()
            stats.backoff_until = None
            self.finished.set()
            for child in self.children:
                child.gate.wake()
            self.run_services.on_finished()

    def _warn_if_all_empty(self) -> None:
        """Warn when no request of a partitioned source brought records this run: one empty
        partition is normal (a quiet day), all of them likely a wrong `records` path or
        param. (An unpartitioned stream says so at its empty first page.)"""
        stats = self.stats
        if stats.partitioned and stats.requests and not stats.records and not self.spec.incremental:
            stats.warnings.append(
                f"none of the {stats.streams_total} partitions' pages had records: check "
                "'records' and the request params"
            )

    def _verdict(self, parent_status: SourceStatus | None) -> SourceStatus:
        stats = self.stats
        if self._failures:
            if len(self._failures) > 1:
                stats.last_error = (
                    f"{len(self._failures)} of {stats.streams_total} partitions failed; "
                    f"the first: {self._failures[0]}"
                )
            return SourceStatus.FAILED
        if parent_status is SourceStatus.FAILED:
            self.failures.report(
                f"parent source {self._parent_name()} failed: partitions were fetched only "
                "for the parent records it retrieved; retry the parent, then this source"
            )
            return SourceStatus.FAILED
        if self.gate.stop_requested or parent_status is SourceStatus.STOPPED:
            return SourceStatus.STOPPED
        return SourceStatus.DONE

    def _parent_name(self) -> str:
        partitions = self.spec.partitions
        return partitions.source if isinstance(partitions, ParentPartitions) else ""

    async def _run_partitions(self) -> SourceStatus | None:
        """Start streams as the limit allows until every partition ran (or the source stops).
        Returns the parent's final status for a child source, else None."""
        gate = self.gate
        rows = {row.partition: row for row in await self.run_services.store.streams(self.name)}
        planned = plan(self.spec)
        if planned is not None:
            self._queue.extend(planned)
            self.stats.streams_total = len(planned)
            gate.work_ready(len(planned))
        else:
            self._accepting = True  # before the scan: a page landing meanwhile is not missed
            await self._scan_parent()
        active: set[asyncio.Task[None]] = set()
        try:
            while True:
                halted = self._halted or gate.stop_requested
                while self._queue and not halted and not gate.paused:
                    if len(active) >= self.limit.limit:
                        break
                    partition = self._queue.popleft()
                    task = asyncio.create_task(
                        self._stream_task(partition, rows.get(partition.key)),
                        name=f"stream:{self.name}/{partition.key}",
                    )
                    active.add(task)
                    task.add_done_callback(gate.forget_when_done(active))
                parent_done = self.parent is None or self.parent.finished.is_set()
                if not active and (halted or (not self._queue and parent_done)):
                    break
                await gate.wait_for_wake()
        finally:
            await cancel_all(active)
        if self.parent is not None and self.parent.stats.status is not SourceStatus.DONE:
            return self.parent.stats.status
        return None

    def _offer_to_children(self, records: list[Any]) -> None:
        for child in self.children:
            child.offer(records)

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
            self.gate.work_ready(added)
            self.gate.wake()

    async def _scan_parent(self) -> None:
        """The parent's records already in the lake (from this run or earlier ones)."""
        parent = self._parent_name()
        async for records in self.run_services.sink.committed_records(parent):
            self.offer(records)
        if self.parent is None:  # the parent is not part of this run: its lake is all there is
            rows = await self.run_services.store.streams(parent)
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
            self.failures.report(message)
            self._stream_failed(stream, message, fatal=True)
        except LakeError as exc:  # the lake refused before a page was fetched (a resume's clean-up)
            event = self.failures.exception(exc)
            self._stream_failed(stream, event.text, fatal=True)
        except Exception as exc:  # a bug must fail one source, not the run
            self.failures.internal_error(exc)
            self._stream_failed(stream, str(exc), fatal=True)
        finally:
            stats.streams_running -= 1
            self.gate.wake()

    async def _run_stream(
        self, partition: Partition, row: StreamRow | None, stream: StreamStats
    ) -> bool:
        """Run one stream from its checkpoint. True when finished, False when stopped."""
        full_refresh = self.run_services.full_refresh and partition.key not in self._restarted
        how = Resumption(partition, row, self._fingerprint, full_refresh)
        run = await open_stream(self.stream_services, how, stream)
        if run is None:
            return True
        if run.fresh:
            self._restarted.add(partition.key)
        return await run.run()

    def _stream_failed(self, stream: StreamStats, message: str, *, fatal: bool) -> None:
        # Redacted here, once: the telemetry is what front ends show (a bug's message may
        # quote a request).
        message = self.run_services.redact(message)
        stream.status = StreamStatus.FAILED
        stream.error = message
        self.stats.streams_failed += 1
        self._failures.append(message)
        if fatal:
            self._halted = True
