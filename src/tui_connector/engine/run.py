"""A run: plans the selected sources, runs each as an asyncio task, and offers the controls
the front ends use. The run's collaborators (the sink, the checkpoint store, the pacer and
limits, the telemetry) are made here and handed to each source explicitly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

from tui_connector.collector import CollectorTuning
from tui_connector.config import LoadedConfig, ParentPartitions
from tui_connector.config.lake import is_object_store
from tui_connector.engine.limits import LoopPacer, ResizableLimit
from tui_connector.engine.source import RunServices, SourceRunner
from tui_connector.engine.steering import Steering
from tui_connector.facade import RunResult, interrupted
from tui_connector.http.oauth2 import SharedTokens
from tui_connector.sinks import Sink
from tui_connector.sinks.lake import open_lake
from tui_connector.sinks.locks import run_owner
from tui_connector.state import CheckpointStore, StateError
from tui_connector.state.sqlite import StateStore
from tui_connector.telemetry import RunTelemetry, SourceStatus

# How long a graceful stop lets the requests in flight finish and commit.
STOP_GRACE_S = 10.0


def _lake_location(out: Path | str) -> str:
    """An `--out` given on the command line: a URL as it is, a directory made absolute."""
    text = str(out)
    return text if is_object_store(text) else str(Path(text).resolve())


class Engine:
    """Runs a config. Use as `async with Engine(config) as engine: result = await engine.run()`."""

    def __init__(
        self,
        config: LoadedConfig,
        *,
        state_path: Path | None = None,
        out: Path | str | None = None,
        only: Iterable[str] | None = None,
        full_refresh: bool = False,
        telemetry: RunTelemetry | None = None,
        stop_grace: float = STOP_GRACE_S,
        checkpoints: bool = True,
        sink: Sink | None = None,
        store: CheckpointStore | None = None,
    ) -> None:
        """`sink` and `store` default to the config's JSON Lines lake and SQLite state.
        `checkpoints=False` is for the benchmark only: it measures what checkpointing costs
        by committing a stream's state only when it ends (a crash would refetch it all)."""
        self.config = config
        self.checkpoints = checkpoints
        self.state_path = state_path or config.state
        self.out = _lake_location(out) if out is not None else config.lake or str(config.out)
        self.full_refresh = full_refresh
        self.telemetry = telemetry or RunTelemetry()
        self.redactor = config.redactor
        self._changed = asyncio.Event()
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
        if sink is None:
            owner = run_owner(self.state_path)
            sink = open_lake(config, out=self.out, full_refresh=full_refresh, owner=owner)
        self.sink: Sink = sink
        self.state: CheckpointStore = (
            StateStore(self.state_path, durable=model.fsync) if store is None else store
        )
        self.state.on_commit = self._checkpoints_committed
        self._services = RunServices(
            telemetry=self.telemetry,
            sink=self.sink,
            store=self.state,
            redact=self.redactor,
            pacer=self.pacer,
            global_limit=self.global_limit,
            max_concurrency=self.max_concurrency,
            commit_interval=model.commit_interval,
            full_refresh=full_refresh,
            checkpoints=checkpoints,
            on_finished=self._changed.set,
            tokens=SharedTokens(self.redactor),
        )
        self.runners: dict[str, SourceRunner] = {}
        self.steering = Steering()  # what the operator set by hand (the controls below)
        self._carried = Steering()  # taken over from the run before (`carry_over`)
        self._group: asyncio.TaskGroup | None = None
        self._stopping = False
        self._finished_before_stop = False
        self.stop_requested_at: float | None = None
        self._collector = CollectorTuning()

    async def __aenter__(self) -> Engine:
        self.state.lock()
        try:
            await self.state.open()
            await self.state.begin_run(str(self.config.path))
        except BaseException:
            await self.state.close()
            self.state.unlock()
            raise
        try:
            self._make_runners()
        except BaseException:  # e.g. a CA bundle that cannot be read: release the state
            await self.close(status="failed to start")
            raise
        self._collector.settle()  # what is alive now lives as long as the run
        return self

    def _checkpoints_committed(self, source: str, at: float) -> None:
        self.telemetry.source(source).last_checkpoint_at = at

    def _make_runners(self) -> None:
        for name in self.selected:
            self.runners[name] = SourceRunner(self._services, self.config.sources[name])
        for runner in self.runners.values():
            partitions = runner.spec.partitions
            if isinstance(partitions, ParentPartitions):
                parent = self.runners.get(partitions.source)
                if parent is not None:
                    runner.parent = parent
                    parent.children.append(runner)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, status: str | None = None) -> None:
        """End the run (`status`: as the runs table records it; by default finished or
        interrupted) and release everything it holds."""
        # The state closes whatever else fails: an open aiosqlite connection's thread would
        # keep the process alive after the run.
        try:
            if status is None:
                status = "interrupted" if self._interrupted() else "finished"
            with contextlib.suppress(StateError):
                await self.state.end_run(status)
            await self.state.close()
        finally:
            try:
                for runner in self.runners.values():
                    with contextlib.suppress(Exception):  # a dead connection is already closed
                        await runner.http.aclose()
                await self.sink.aclose()
            finally:
                self._collector.restore()  # first: nothing that could fail keeps it tuned
                self.state.unlock()

    # -- running ----------------------------------------------------------------------------

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
            self._apply(self._carried)
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
        return interrupted(
            stop_requested=self._stopping,
            finished_before_stop=self._finished_before_stop,
            unfinished=any(
                runner.stats.status not in (SourceStatus.DONE, SourceStatus.FAILED)
                for runner in self.runners.values()
            )
            or len(self.runners) < len(self.selected),
        )

    def result(self) -> RunResult:
        return RunResult.of(
            ((name, runner.stats.status) for name, runner in self.runners.items()),
            interrupted=self._interrupted(),
        )

    # -- controls (for the dashboard and signal handlers) -----------------------------------

    def _runner(self, source: str) -> SourceRunner:
        try:
            return self.runners[source]
        except KeyError:
            raise ValueError(f"no source named {source!r} in this run") from None

    def handover(self) -> Steering:
        """The operator's settings for the run that takes this one over (`d`), once it has
        stopped: what was set by hand, the sources done, and as stopped by hand also the
        children of a source stopped by hand (they stopped with it)."""
        stopped = set(self.steering.stopped)
        unvisited = [self.runners[name] for name in stopped if name in self.runners]
        while unvisited:
            for child in unvisited.pop().children:
                if child.name not in stopped:
                    stopped.add(child.name)
                    unvisited.append(child)
        return self.steering.model_copy(
            update={"stopped": stopped, "done": set(self.result().done)}
        )

    def carry_over(self, steering: Steering) -> None:
        """Apply the operator's pauses and limits of the run this one takes over (`d`) once
        it starts; those of sources it does not run are ignored."""
        self._carried = steering

    def _apply(self, steering: Steering) -> None:
        for name in self.runners.keys() & steering.paused:
            self.pause(name)
        for name, limit in steering.concurrency.items():
            if name in self.runners:
                self.set_concurrency(name, limit)
        for name, per_second in steering.rate_limits.items():
            if name in self.runners:
                self.set_rate_limit(name, per_second)

    def pause(self, source: str) -> None:
        runner = self._runner(source)
        runner.pause()
        if runner.paused:  # not a finished source
            self.steering.paused.add(source)

    def resume(self, source: str) -> None:
        self._runner(source).resume()
        self.steering.paused.discard(source)

    def pause_all(self) -> None:
        for name in self.runners:
            self.pause(name)

    def resume_all(self) -> None:
        for name in self.runners:
            self.resume(name)

    def stop(self, source: str) -> None:
        runner = self._runner(source)
        if not runner.stats.status.finished:
            self.steering.stopped.add(source)
        runner.stop()

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
        self.steering.stopped.discard(runner.name)
        self.steering.paused.discard(runner.name)  # a restarted source starts unpaused
        for child in runner.children:
            if child.stats.status.finished:
                self._restart(child, group)

    def set_concurrency(self, source: str, limit: int) -> None:
        """The operator's limit (an adaptive source switches to manual)."""
        runner = self._runner(source)
        runner.set_concurrency(limit)
        self.steering.concurrency[source] = runner.limit.limit  # as clamped

    def set_auto(self, source: str) -> bool:
        """Hand a source's limit back to its adaptive controller; False if it has none."""
        if not self._runner(source).set_auto():
            return False
        self.steering.concurrency.pop(source, None)
        return True

    def is_paused(self, source: str) -> bool:
        return self._runner(source).paused

    def set_rate_limit(self, source: str, per_second: float | None) -> None:
        self._runner(source).http.set_rate_limit(per_second)
        self.steering.rate_limits[source] = per_second or None  # 0: no limit

    def request_stop(self) -> None:
        """Graceful stop: no new requests; in-flight pages finish and commit."""
        if self._stopping:
            return
        # The dashboard's run always ends with a stop: one after every source finished (or was
        # stopped by hand) interrupts nothing.
        self._finished_before_stop = len(self.runners) == len(self.selected) and (
            self._all_finished()
        )
        self._stopping = True
        self.stop_requested_at = time.monotonic()
        for runner in self.runners.values():
            runner.stop()
        self._changed.set()

    @property
    def stopping(self) -> bool:
        return self._stopping
