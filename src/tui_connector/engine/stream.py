"""One stream's run: fetch a page, stage its records in the stream's open batch, and once the
sink has made the batch durable, queue the checkpoint that points past it. Sequentially, or,
once the first page told the total, many pages at once.

The commit order is the whole safety argument (see docs/architecture.md): a checkpoint that
moves a stream forward is queued only from a batch's commit callback, which runs after the
sink returned from making that batch durable, and a stream's batches commit one at a time in
the order they closed. A stop or a failure checkpoints where the last durable batch left the
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from tui_connector.config import SourceSpec
from tui_connector.engine.failures import (
    STREAM_ERRORS,
    FailureReporter,
    StreamFailed,
    stops_the_source,
)
from tui_connector.engine.gate import SourceGate, StopRequested, cancel_all
from tui_connector.exchange import Page, PageRequest
from tui_connector.extract import check_errors, extract_records, read_value
from tui_connector.http.source import SourceHttp
from tui_connector.incremental import HighWater, merged
from tui_connector.paginate import BasePaginator, ParallelPages, Step
from tui_connector.partitions import Partition
from tui_connector.redact import Redactor
from tui_connector.sinks import LakeError, Sink, StreamKey
from tui_connector.sinks.batching import Batch, BatchWriter
from tui_connector.state import Checkpoint, CheckpointStore
from tui_connector.telemetry import RunTelemetry, SourceStats, StreamStats

Cursor = dict[str, Any]


@dataclass(frozen=True)
class StreamServices:
    """What every stream of a source works with, handed over by its source runner."""

    spec: SourceSpec
    stats: SourceStats
    telemetry: RunTelemetry
    http: SourceHttp
    sink: Sink
    store: CheckpointStore
    gate: SourceGate
    failures: FailureReporter
    redact: Redactor
    offer_to_children: Callable[[list[Any]], None]
    batchers: set[BatchWriter[Any]]  # of the source's running streams: a pause drains them
    commit_interval: float
    checkpoints: bool  # False only for the benchmark: commit a stream's state when it ends


@dataclass(frozen=True)
class Committed:
    """Where a stream's last durable batch left it: what a stop or failure checkpoints."""

    cursor: Cursor
    position: int


# Made for every page: plain (not frozen) dataclasses, which are made in a third of the time.


@dataclass(slots=True)
class SequentialPage:
    """A page fetched in order, and the checkpoint committing it makes."""

    records: int
    pending: Any  # the incremental mark once it was fetched
    cursor_after: Cursor
    position_after: int
    finished: bool


@dataclass(slots=True)
class ParallelPage:
    """Page `index` of a stream whose pages are fetched many at once."""

    records: int
    pending: Any
    index: int


@dataclass(frozen=True)
class Start:
    """Where a stream's run begins, read from its checkpoint or fresh."""

    cursor: Cursor
    position: int  # the lake position of the next page
    base: int  # the lake position of this run's first page
    mark: Any  # the committed high-water mark (incremental)
    high_water: HighWater | None
    pages: int  # committed pages in the lake, earlier incremental runs included
    records: int
    files: int  # the batches those pages wrote (a page without records writes none)


class StreamRun:
    """Runs one stream (a source's partition) from `start` to its end, a stop, or a failure."""

    def __init__(
        self,
        services: StreamServices,
        partition: Partition,
        stats: StreamStats,
        paginator: BasePaginator[Any],
        start: Start,
        *,
        fresh: bool,
    ) -> None:
        self.services = services
        self.fresh = fresh  # starts over (its reset checkpoint is committed)
        self.partition = partition
        self.key = StreamKey(services.spec.name, partition.key)
        self.stats = stats
        self.paginator = paginator
        self.base = start.base
        self.mark = start.mark
        self.high_water = start.high_water
        self.pages = start.pages
        self.records = start.records
        self.files = start.files
        self._start = start

    async def run(self) -> bool:
        """True when the stream finished, False when it was stopped. Raises StreamFailed."""
        cursor, position = self._start.cursor, self._start.position
        pages = ParallelPages.resume(self.paginator, cursor)
        if pages is not None:
            self._set_position(pages.describe())
            return await self._parallel(pages)
        self._set_position(self.services.redact(self.paginator.describe(cursor)))
        return await self._sequential(cursor, position)

    # -- pages in order -----------------------------------------------------------------------

    async def _sequential(self, cursor: Cursor, position: int) -> bool:
        gate = self.services.gate
        committed = Committed(cursor, position)

        def commit(batch: Batch[SequentialPage], wrote: bool) -> None:
            nonlocal committed
            last = batch.notes[-1]
            self._landed(batch, wrote)
            status = "done" if last.finished else "running"
            self._checkpoint(last.cursor_after, last.position_after, status, last.pending)
            committed = Committed(last.cursor_after, last.position_after)

        def last_committed() -> Committed:
            return committed

        batcher = self._batcher(commit)
        try:
            while True:
                if not await gate.passed():
                    await self._drain(batcher, last_committed)
                    self._checkpoint(
                        committed.cursor, committed.position, "stopped", self._pending()
                    )
                    return False
                with gate.fetching():
                    try:
                        page, records = await self._fetch(self.paginator.request(cursor))
                        step = self.paginator.step(cursor, page)
                        self._show(step)
                        note = SequentialPage(
                            len(records),
                            self._pending(),
                            step.checkpoint,
                            position + 1,
                            step.finished,
                        )
                        self._stage(batcher, position, records, note)
                        # A lake falling behind holds the stream here: not with this page's
                        # decoded body, which its batch no longer needs.
                        del page, records
                        await batcher.room()
                    except StopRequested:
                        continue  # the gate tells the stop at the next pass
                    except STREAM_ERRORS as exc:  # a page that cannot be fetched or staged
                        await self._drain(batcher, last_committed)
                        await self._fail(exc, committed)
                    position += 1
                    if step.next is None:  # finished, or the rest goes concurrently
                        await self._drain(batcher, last_committed)
                        break
                cursor = step.next
        finally:
            self._forget(batcher)
        if step.parallel is None:
            await self.services.store.flush()
            return True
        return await self._parallel(step.parallel)

    # -- pages at once ------------------------------------------------------------------------

    async def _parallel(self, pages: ParallelPages) -> bool:
        """Fetch the pages of a stream whose page count is known, up to the source's limit at
        once. The checkpoint holds a low-water mark and the pages done above it, so a resume
        fetches exactly the pages missing."""
        gate = self.services.gate
        todo = deque(pages.todo())
        self.stats.pages_total = pages.count
        gate.work_ready(len(todo))
        active: set[asyncio.Task[None]] = set()
        failure: Exception | None = None

        def committed() -> Committed:
            return Committed(pages.checkpoint(), self.base + pages.low)

        def commit(batch: Batch[ParallelPage], wrote: bool) -> None:
            pages.commit(note.index for note in batch.notes)
            self._landed(batch, wrote)
            status = "done" if pages.finished else "running"
            at = committed()
            self._checkpoint(at.cursor, at.position, status, batch.notes[-1].pending)
            self._set_position(pages.describe())

        batcher = self._batcher(commit)

        async def fetch_page(index: int) -> None:
            nonlocal failure
            with gate.fetching():
                try:
                    page, records = await self._fetch(pages.request(index))
                    pages.check(index, page.records)
                    note = ParallelPage(len(records), self._pending(), index)
                    self._stage(batcher, self.base + index, records, note)
                    del page, records  # not held while the lake falls behind
                    await batcher.room()
                except StopRequested:
                    pass  # not done: the checkpoint leaves it for the resume
                except Exception as exc:  # a bug too: the scheduler raises it below
                    failure = failure or exc
            gate.wake()

        try:
            while True:
                stopping = failure is not None or gate.stop_requested
                limit = gate.limit.limit
                # A lake falling behind: fetch no more pages until a batch is written (each
                # fetched page would wait in memory, decoded, for room in its batch).
                while (
                    todo
                    and not stopping
                    and not gate.paused
                    and len(active) < limit
                    and not batcher.backlogged
                ):
                    task = asyncio.create_task(fetch_page(todo.popleft()))
                    active.add(task)
                    task.add_done_callback(gate.forget_when_done(active))
                if not active and (stopping or not todo):
                    break
                await gate.wait_for_wake()
            try:
                await batcher.drain()
            except LakeError as exc:
                failure = failure or exc
        finally:
            await cancel_all(active)
            self._forget(batcher)
        if failure is not None and not isinstance(failure, STREAM_ERRORS):
            raise failure
        if failure is not None:
            await self._fail(failure, committed())
        if not pages.finished:
            at = committed()
            self._checkpoint(at.cursor, at.position, "stopped", self._pending())
            return False
        await self.services.store.flush()
        return True

    # -- the steps ----------------------------------------------------------------------------

    async def _fetch(self, request: PageRequest) -> tuple[Page, list[Any]]:
        """One page: fetched, checked, its records extracted (and only the new ones kept, for
        an incremental stream)."""
        services = self.services
        spec = services.spec
        gate = services.gate
        response = await services.http.fetch(request, gate.attempt_slot, interrupt=gate.stopping)
        check_errors(response.body, spec.errors)
        records = extract_records(response.body, spec.records)
        stop = getattr(spec.pagination, "stop", None)
        if stop is not None and stop.total_records is not None:
            with contextlib.suppress(TypeError, ValueError):
                total = read_value(stop.total_records, response.body, response.headers)
                if total is not None and not services.stats.partitioned:
                    services.stats.total_records = int(total)
        page = Page(url=response.url, headers=response.headers, body=response.body, records=records)
        if self.high_water is not None:
            records = self.high_water.new_records(records)
        return page, records

    def _stage(
        self,
        batcher: BatchWriter[Any],
        at: int,
        records: list[Any],
        note: SequentialPage | ParallelPage,
    ) -> None:
        """A fetched page, at lake position `at`, into its stream's batch. Progress counts it
        now, and child sources take their partitions from it now: its batch becomes durable
        within the commit interval (or is fetched again after a crash)."""
        services = self.services
        stream = self.stats
        # One of many partitions may well be empty (a date window with no activity).
        if (
            stream.pages == 0
            and not records
            and self.high_water is None
            and not services.stats.partitioned
        ):
            services.stats.warnings.append(
                "the first page had no records: check 'records' and the request params"
            )
        copied = self.partition.copy
        if copied:
            records = [
                {**record, **copied} if isinstance(record, dict) else record for record in records
            ]
        batcher.put(at, records, note)
        services.offer_to_children(records)
        stream.pages += 1
        stream.records += len(records)
        services.telemetry.page_retrieved(services.spec.name, len(records), stream.position)

    def _show(self, step: Step) -> None:
        """Where a stream fetching in order stands (a parallel stream's position moves as its
        pages commit). A server may echo a key into its next links: shown only redacted."""
        shown = step.describe()
        self._set_position(shown if step.next is None else self.services.redact(shown))

    def _set_position(self, position: str) -> None:
        """Where the stream stands now (`position` redacted), and so its source, which shows
        where its stream that moved last stands: a parallel stream moves as its pages commit,
        after the last page was fetched too."""
        self.stats.position = self.services.stats.position = position

    def _checkpoint(
        self,
        cursor: Cursor,
        position: int,
        status: str,
        pending: Any,
        last_error: str | None = None,
    ) -> None:
        """Queue the stream's checkpoint. `pending`: the incremental mark as it was when the
        last page it covers was fetched; a stop or a failure passes the mark as it is now,
        as the release before did."""
        services = self.services
        if status == "running" and not services.checkpoints:
            return
        mark = self.mark
        if status == "done" and self.high_water is not None:
            # The mark advances only now: every page of this run is in the lake.
            mark, pending = merged(mark, pending), None
        services.store.checkpoint(
            Checkpoint(
                self.key.source,
                self.key.partition,
                cursor,
                position,
                status,
                self.pages,
                self.records,
                last_error=last_error,
                mark=mark,
                pending_mark=pending,
                files=self.files,
            )
        )

    def _pending(self) -> Any:
        return self.high_water.pending if self.high_water is not None else None

    def _landed(self, batch: Batch[Any], wrote: bool) -> None:
        """A batch is durable: count it, before the checkpoint that stores the counts."""
        self.files += wrote
        self.pages += len(batch.notes)
        self.records += batch.records

    async def _drain(self, batcher: BatchWriter[Any], committed: Callable[[], Committed]) -> None:
        """Wait until the stream's fetched pages are committed; a lake that cannot take them
        fails the stream at its last committed checkpoint."""
        try:
            await batcher.drain()
        except LakeError as exc:
            await self._fail(exc, committed())

    async def _fail(self, exc: Exception, committed: Committed) -> NoReturn:
        services = self.services
        event = services.failures.exception(exc)
        self._checkpoint(
            committed.cursor, committed.position, "failed", self._pending(), event.text
        )
        await services.store.flush()
        raise StreamFailed(event.text, event, fatal=stops_the_source(exc)) from None

    def _batcher(self, commit: Callable[[Batch[Any], bool], None]) -> BatchWriter[Any]:
        services = self.services
        batcher: BatchWriter[Any] = BatchWriter(
            services.sink,
            self.key,
            commit,
            max_seconds=services.commit_interval,
            on_written=services.gate.wake,
        )
        services.batchers.add(batcher)
        return batcher

    def _forget(self, batcher: BatchWriter[Any]) -> None:
        """The stream ended: what is still unwritten is given up (a resume fetches it)."""
        batcher.cancel()
        self.services.batchers.discard(batcher)
