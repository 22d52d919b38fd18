"""The front-end facade over an `Engine` in this process: the one place that reads the
engine's insides, so the front ends depend on `facade` only."""

from __future__ import annotations

import asyncio
import dataclasses

from tui_connector.describe import describe_source
from tui_connector.engine import Engine
from tui_connector.facade import (
    RunError,
    RunFacts,
    RunResult,
    SourceDescription,
)
from tui_connector.state import StateError
from tui_connector.telemetry import LakeInfo, RunTelemetry


class InProcessRun:
    """A `facade.RunFacade` over an Engine that runs on the caller's event loop. Give it an
    Engine that has not been entered: `open()` enters it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.facts = RunFacts(
            selected=tuple(engine.selected),
            state_path=engine.state_path,
            lake=engine.out,
            max_concurrency=engine.max_concurrency,
            stop_grace=engine.stop_grace,
        )
        self._descriptions: dict[str, SourceDescription] = {}
        self._task: asyncio.Task[object] | None = None  # the one in open() or run()

    # -- the view -------------------------------------------------------------------------------

    @property
    def stop_requested_at(self) -> float | None:
        return self.engine.stop_requested_at

    def snapshot(self) -> RunTelemetry:
        return self.engine.telemetry

    def describe(self, source: str) -> SourceDescription:
        description = self._descriptions.get(source)
        if description is None:
            spec = self.engine.config.sources[source]
            description = describe_source(spec, self.engine.redactor)
            self._descriptions[source] = description
        return description

    def lake(self, source: str) -> LakeInfo:
        info = self.engine.sink.info(source)
        redact = self.engine.redactor
        if not redact:
            return info
        return dataclasses.replace(
            info,
            destination=redact(info.destination),
            schema=redact(info.schema) if info.schema else info.schema,
            json_columns=tuple(map(redact, info.json_columns)),
            notes=tuple(map(redact, info.notes)),
        )

    def is_paused(self, source: str) -> bool:
        try:
            return self.engine.is_paused(source)
        except ValueError:  # not set up yet
            return False

    def redact(self, text: str) -> str:
        return self.engine.redactor(text)

    @property
    def ended(self) -> str | None:
        return None

    # -- the lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._task = asyncio.current_task()
        try:
            await self.engine.__aenter__()
        except StateError as exc:
            raise RunError(str(exc)) from None

    async def run(self, *, until_done: bool = True) -> RunResult:
        self._task = asyncio.current_task()
        try:
            return await self.engine.run(until_done=until_done)
        except StateError as exc:
            raise RunError(str(exc)) from None

    async def close(self) -> None:
        try:
            await self.engine.close()
        except StateError as exc:
            raise RunError(str(exc)) from None
        finally:
            self._task = None

    # -- the controls ----------------------------------------------------------------------------

    def make_interactive(self) -> None:
        self.engine.pacer.interactive = True

    def pause(self, source: str) -> None:
        self.engine.pause(source)

    def resume(self, source: str) -> None:
        self.engine.resume(source)

    def pause_all(self) -> None:
        self.engine.pause_all()

    def resume_all(self) -> None:
        self.engine.resume_all()

    def stop(self, source: str) -> None:
        self.engine.stop(source)

    def retry(self, source: str) -> bool:
        return self.engine.retry(source)

    def set_concurrency(self, source: str, limit: int) -> None:
        self.engine.set_concurrency(source, limit)

    def set_auto(self, source: str) -> bool:
        return self.engine.set_auto(source)

    def set_rate_limit(self, source: str, per_second: float | None) -> None:
        self.engine.set_rate_limit(source, per_second)

    def request_stop(self) -> None:
        self.engine.request_stop()

    def quit_now(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
