"""What a run serves to other processes while it lasts (the control endpoint, `/metrics`),
started once its state is open and stopped before it closes, whichever front end runs it.

`ServedRun` is a `facade.RunFacade` that wraps another: the front ends drive it as they drive
any run and never learn what it serves. A service sees the run through the facade only, so it
serves an in-process run and knows nothing of the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

from tui_connector.facade import RunError, RunFacade, RunFacts, RunResult, SourceDescription
from tui_connector.telemetry import LakeInfo, RunTelemetry


class RunService(Protocol):
    """Something served beside a run, on the run's event loop."""

    async def start(self, run: RunFacade) -> None:
        """Begin serving; raise `RunError` (phrased for the operator) when it cannot."""
        ...

    async def stop(self, result: RunResult | None) -> None:
        """Stop serving; never raises. The run is about to close: `result` is how it ended,
        None when it did not end by itself (it failed, or was cancelled)."""
        ...


class ServedRun:
    """A run with its services: they start when it opens and stop when it has ended (or
    before it closes, if it never ends by itself)."""

    def __init__(self, run: RunFacade, services: Sequence[RunService]) -> None:
        self.inner = run
        self.services = tuple(services)
        self._started: list[RunService] = []
        self._result: RunResult | None = None

    # -- the view: the inner run's -------------------------------------------------------------

    @property
    def facts(self) -> RunFacts:
        return self.inner.facts

    @property
    def stop_requested_at(self) -> float | None:
        return self.inner.stop_requested_at

    def snapshot(self) -> RunTelemetry:
        return self.inner.snapshot()

    def describe(self, source: str) -> SourceDescription:
        return self.inner.describe(source)

    def lake(self, source: str) -> LakeInfo:
        return self.inner.lake(source)

    def is_paused(self, source: str) -> bool:
        return self.inner.is_paused(source)

    def redact(self, text: str) -> str:
        return self.inner.redact(text)

    @property
    def ended(self) -> str | None:
        return self.inner.ended

    # -- the lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self.inner.open()
        try:
            for service in self.services:
                await service.start(self)
                self._started.append(service)
        except BaseException:
            await self._stop_services()
            with contextlib.suppress(RunError):
                await self.inner.close()
            raise

    async def run(self, *, until_done: bool = True) -> RunResult:
        self._result = await self.inner.run(until_done=until_done)
        # The run is over (a front end's run returns only once it stops): say so at once.
        await self._stop_services()
        return self._result

    async def close(self) -> None:
        try:
            await self._stop_services()
        finally:
            await self.inner.close()

    async def _stop_services(self) -> None:
        while self._started:
            await self._started.pop().stop(self._result)

    # -- the controls: the inner run's ---------------------------------------------------------

    def make_interactive(self) -> None:
        self.inner.make_interactive()

    def pause(self, source: str) -> None:
        self.inner.pause(source)

    def resume(self, source: str) -> None:
        self.inner.resume(source)

    def pause_all(self) -> None:
        self.inner.pause_all()

    def resume_all(self) -> None:
        self.inner.resume_all()

    def stop(self, source: str) -> None:
        self.inner.stop(source)

    def retry(self, source: str) -> bool:
        return self.inner.retry(source)

    def set_concurrency(self, source: str, limit: int) -> None:
        self.inner.set_concurrency(source, limit)

    def set_auto(self, source: str) -> bool:
        return self.inner.set_auto(source)

    def set_rate_limit(self, source: str, per_second: float | None) -> None:
        self.inner.set_rate_limit(source, per_second)

    def request_stop(self) -> None:
        self.inner.request_stop()

    def quit_now(self) -> None:
        self.inner.quit_now()
