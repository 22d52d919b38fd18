"""The retrieval engine: plans streams from the config, runs each source as an asyncio task,
and offers the controls the dashboard and the signal handlers use.

A page is committed in one order only: its records reach their lake file (atomically), then
the checkpoint that points past it is queued. A crash between the two fetches that page again
and rewrites the same file, so nothing is lost and nothing is written twice.

This module never imports Textual: the dashboard drives it through the public controls and
reads `telemetry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_connector.config import LoadedConfig, SourceSpec
from tui_connector.extract import ExtractError, check_errors, extract_records, read_value
from tui_connector.httpclient import FetchError, SourceHttp
from tui_connector.lake import LakeError, LakeWriter
from tui_connector.paginate import Page, PaginationError, Paginator
from tui_connector.state import Checkpoint, RunLock, StateError, StateStore, StreamRow
from tui_connector.telemetry import ErrorEvent, RunTelemetry, SourceStatus

log = logging.getLogger(__name__)

# The partition of a source that has no partitions.
WHOLE_SOURCE = "all"


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


class _StopRequested(Exception):
    """Raised inside a retry loop when the source was stopped while it waited."""


class StreamFailed(Exception):
    def __init__(self, message: str, event: ErrorEvent) -> None:
        super().__init__(message)
        self.event = event


@dataclass
class RunResult:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


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
        self.paginator = Paginator(spec)
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.stop_requested = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._stopping = asyncio.Event()
        self._busy = 0  # streams between the pause gate and their page's checkpoint
        self._settling: asyncio.Task[None] | None = None
        self._restarted: set[str] = set()  # streams a --full-refresh already started over

    # -- controls ---------------------------------------------------------------------------

    def start(self, group: asyncio.TaskGroup) -> None:
        self.stop_requested = False
        self._stopping.clear()
        self.paused = False
        self._unpaused.set()
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
        if not self.stats.status.finished:
            self.stats.status = SourceStatus.RUNNING if self.task else SourceStatus.PENDING

    def stop(self) -> None:
        self.stop_requested = True
        self._stopping.set()
        self._unpaused.set()

    def set_concurrency(self, limit: int) -> None:
        limit = max(1, min(limit, self.engine.max_concurrency))
        self.limit.set_limit(limit)
        self.stats.concurrency = limit

    # -- pausing ----------------------------------------------------------------------------

    def _settle_soon(self) -> None:
        if self._busy == 0 and (self._settling is None or self._settling.done()):
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        """Once a pausing source has nothing in flight, commit its checkpoints: then it is
        really paused (a kill now loses nothing and re-fetches nothing)."""
        with contextlib.suppress(StateError):  # the streams report it when they next commit
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
        async with self.limit.slot(), self.engine.global_limit.slot():
            yield

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every stream of the source to the end. Never raises (but for cancellation)."""
        stats = self.stats
        stats.status = SourceStatus.PAUSED if self.paused else SourceStatus.RUNNING
        stats.started_at = stats.started_at or time.monotonic()
        stats.finished_at = None
        stats.last_error = None
        try:
            rows = {row.partition: row for row in await self.engine.state.streams(self.name)}
            partitions = [WHOLE_SOURCE]
            stats.streams_total = len(partitions)
            stats.streams_done = 0
            for partition in partitions:
                finished = await self._run_stream(partition, rows.get(partition))
                if not finished:
                    break
                stats.streams_done += 1
            stats.status = SourceStatus.STOPPED if self.stop_requested else SourceStatus.DONE
        except StreamFailed as failure:  # its event is already in the error ring
            stats.status = SourceStatus.FAILED
            stats.last_error = str(failure)
        except StateError as exc:
            self._record_failure(
                f"state database: {exc}", url="", status=None, excerpt="", attempts=0
            )
            stats.status = SourceStatus.FAILED
        except Exception as exc:  # a bug must fail one source, not the run
            log.exception("source %s: unexpected error", self.name)
            message = self.engine.redactor(
                f"internal error: {type(exc).__name__}: {exc} (traceback in tui-connector.log)"
            )
            self._record_failure(message, url="", status=None, excerpt="", attempts=0)
            stats.status = SourceStatus.FAILED
        finally:
            stats.finished_at = time.monotonic()
            stats.backoff_until = None
            self.engine.source_changed()

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

    async def _run_stream(self, partition: str, row: StreamRow | None) -> bool:
        """Run one stream from its checkpoint. True when finished, False when stopped."""
        engine = self.engine
        stats = self.stats
        directory = engine.lake.directory(self.name, partition)
        fingerprint = self._fingerprint(directory)
        start_over = row is None or (engine.full_refresh and partition not in self._restarted)
        if row is not None and not start_over and row.fingerprint not in ("", fingerprint):
            event = self._record_failure(
                f"sources.{self.name} changed since its checkpoint (url, params, body, records, "
                "pagination or the lake directory): resuming would mix two page layouts. "
                f"Run with --full-refresh, or `tui-connector reset {self.name}`, to start over",
                url="",
                status=None,
                excerpt="",
                attempts=0,
            )
            raise StreamFailed(event.error, event)
        if row is not None and not start_over and row.status == "done":
            stats.pages += row.pages
            stats.records += row.records
            stats.position = "already complete"
            return True
        if row is not None and not start_over:
            cursor: dict[str, Any] = row.cursor
            position, pages, records = row.position, row.pages, row.records
            stats.pages += pages
            stats.records += records
            await engine.lake.clear_stream(self.name, partition, keep_below=position)
        else:
            cursor = self.paginator.start()
            position = pages = records = 0
            # The reset checkpoint is committed before any file goes: a crash in between
            # leaves a stream that starts over, never a "done" stream with an emptied lake.
            await engine.state.start_stream(
                self.name, partition, cursor, str(directory), fingerprint
            )
            self._restarted.add(partition)
            await engine.lake.clear_stream(self.name, partition)
        stats.position = self._describe(cursor)

        while True:
            if not await self._gate():
                engine.state.checkpoint(
                    Checkpoint(self.name, partition, cursor, position, "stopped", pages, records)
                )
                return False
            self._busy += 1
            try:
                try:
                    next_cursor, page_records = await self._fetch_page(cursor, position)
                except _StopRequested:
                    continue
                except (FetchError, ExtractError, PaginationError, LakeError) as exc:
                    event = self._failure_event(exc)
                    engine.state.checkpoint(
                        Checkpoint(
                            self.name,
                            partition,
                            cursor,
                            position,
                            "failed",
                            pages,
                            records,
                            last_error=event.error,
                        )
                    )
                    await engine.state.flush()
                    raise StreamFailed(event.error, event) from None
                if page_records:
                    await engine.lake.write_page(self.name, partition, position, page_records)
                position += 1
                pages += 1
                records += len(page_records)
                finished = next_cursor is None
                engine.state.checkpoint(
                    Checkpoint(
                        self.name,
                        partition,
                        cursor if finished else next_cursor,  # type: ignore[arg-type]
                        position,
                        "done" if finished else "running",
                        pages,
                        records,
                    )
                )
                engine.telemetry.page_committed(
                    self.name,
                    len(page_records),
                    "finished" if finished else self._describe(next_cursor),  # type: ignore[arg-type]
                )
                if pages == 1 and not page_records:
                    stats.warnings.append(
                        "the first page had no records: check 'records' and the request params"
                    )
                if finished:
                    await engine.state.flush()
                    return True
                cursor = next_cursor  # type: ignore[assignment]
            finally:
                self._busy -= 1
                if self.paused:
                    self._settle_soon()

    def _fingerprint(self, directory: Path) -> str:
        """What a checkpoint is valid for: the request, its pagination, and where pages go."""
        spec = self.spec
        identity = {
            "url": spec.url,
            "method": spec.method,
            "params": dict(spec.params),
            "body": spec.body,
            "records": spec.records,
            "pagination": spec.pagination.model_dump(mode="json"),
            "lake": str(directory.resolve()),
        }
        encoded = json.dumps(identity, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def _describe(self, cursor: dict[str, Any]) -> str:
        # A server may echo a key into its next links: positions are shown only redacted.
        return self.engine.redactor(self.paginator.describe(cursor))

    async def _fetch_page(
        self, cursor: dict[str, Any], position: int
    ) -> tuple[dict[str, Any] | None, list[Any]]:
        request = self.paginator.request(cursor)
        response = await self.http.fetch(request, self._attempt_slot, interrupt=self._stopping)
        spec = self.spec
        check_errors(response.body, spec.errors)
        records = extract_records(response.body, spec.records)
        total_ref = getattr(spec.pagination, "stop", None)
        if total_ref is not None and total_ref.total_records is not None:
            with contextlib.suppress(TypeError, ValueError):
                total = read_value(total_ref.total_records, response.body, response.headers)
                if total is not None:
                    self.stats.total_records = int(total)
        page = Page(url=response.url, headers=response.headers, body=response.body, records=records)
        return self.paginator.advance(cursor, page), records

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
        stop_grace: float = 10.0,
    ) -> None:
        self.config = config
        self.state_path = state_path or config.state
        self.out = out or config.out
        self.full_refresh = full_refresh
        self.telemetry = telemetry or RunTelemetry()
        self.redactor = config.redactor
        self.max_concurrency = config.model.max_concurrency
        self.global_limit = ResizableLimit(self.max_concurrency)
        self.stop_grace = stop_grace
        selected = list(only) if only else list(config.sources)
        unknown = [name for name in selected if name not in config.sources]
        if unknown:
            known = ", ".join(config.sources)
            raise ValueError(f"unknown source {', '.join(unknown)}; the config defines: {known}")
        self.selected = selected
        self.lake = LakeWriter(self.out, fsync=config.model.fsync)
        self.state = StateStore(self.state_path, durable=config.model.fsync)
        self._lock = RunLock(self.state_path)
        self.runners: dict[str, SourceRunner] = {}
        self._group: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self.stop_requested_at: float | None = None

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
            finally:
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
        """Start a failed or stopped source again from its checkpoint. False if it can't be."""
        runner = self._runner(source)
        if self._group is None or runner.stats.status not in (
            SourceStatus.FAILED,
            SourceStatus.STOPPED,
        ):
            return False
        runner.stats.pages = runner.stats.records = 0
        runner.start(self._group)
        return True

    def set_concurrency(self, source: str, limit: int) -> None:
        self._runner(source).set_concurrency(limit)

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
