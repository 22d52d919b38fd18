"""A source's pause and stop state, shared by its streams: the gate every fetch passes, the
slot every attempt holds, the count of fetches under way that a pause waits for, and the word
that more requests are ready to go (an adaptive limit may open up to them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tui_connector.engine.limits import LoopPacer, ResizableLimit


class StopRequested(Exception):
    """Raised inside a retry loop when the source was stopped while it waited."""


class SourceGate:
    """Pause is cooperative: a paused source starts no request, and a fetch already past the
    gate finishes and stages its page. Once no fetch is under way (`busy` back to 0), the
    source's `on_quiet` runs: it writes what was staged and commits, and the source is really
    paused. Stop is the same gate closed for good: waits end at once."""

    def __init__(
        self,
        limit: ResizableLimit,
        global_limit: ResizableLimit,
        pacer: LoopPacer,
        on_quiet: Callable[[], None],
        on_work_ready: Callable[[int], None] | None = None,
    ) -> None:
        self.limit = limit
        self.global_limit = global_limit
        self.pacer = pacer
        self.on_quiet = on_quiet
        self._on_work_ready = on_work_ready
        self.paused = False
        self.stop_requested = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self.stopping = asyncio.Event()  # cuts backoff sleeps and Retry-After holds short
        self._wake = asyncio.Event()  # a scheduler may start something: look again
        self.busy = 0  # fetches between the gate and their page staged
        # Entered for every page and every attempt: one reusable object each, not a
        # generator-based context manager made per call.
        self._fetching = _Fetching(self)
        self._attempt_slot = _AttemptSlot(self)

    # -- controls ---------------------------------------------------------------------------

    def open(self) -> None:
        """A (re)started source: neither paused nor stopping."""
        self.stop_requested = False
        self.stopping.clear()
        self.paused = False
        self._unpaused.set()

    def pause(self) -> None:
        self.paused = True
        self._unpaused.clear()

    def resume(self) -> None:
        self.paused = False
        self._unpaused.set()
        self.wake()

    def stop(self) -> None:
        self.stop_requested = True
        self.stopping.set()
        self._unpaused.set()
        self.wake()

    # -- what streams wait on ---------------------------------------------------------------

    async def wait_unpaused(self) -> None:
        await self._unpaused.wait()

    async def passed(self) -> bool:
        """Wait while paused. False when the source (or the run) is stopping."""
        if self.paused and not self.stop_requested:
            await self._unpaused.wait()
        return not self.stop_requested

    def fetching(self) -> _Fetching:
        """Around one page's fetch and staging: what a pause waits for."""
        return self._fetching

    def attempt_slot(self) -> _AttemptSlot:
        """Held for one attempt only: a backoff sleep or a paused retry holds no slot."""
        return self._attempt_slot

    # -- schedulers -------------------------------------------------------------------------

    def work_ready(self, requests: int) -> None:
        """A scheduler has `requests` more ready to send as the limit allows (the pages of a
        stream whose page count it learnt, partitions queued)."""
        if self._on_work_ready is not None and requests > 0:
            self._on_work_ready(requests)

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_wake(self) -> None:
        # Nothing awaits between a caller's last look and this clear: no wake-up is lost.
        self._wake.clear()
        await self._wake.wait()

    def forget_when_done(
        self, active: set[asyncio.Task[None]]
    ) -> Callable[[asyncio.Task[None]], None]:
        """A done-callback: the task leaves `active`, and its scheduler looks again (a task's
        own last wake-up comes before it is done, too early to count)."""

        def forget(task: asyncio.Task[None]) -> None:
            active.discard(task)
            self._wake.set()

        return forget


async def cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel a scheduler's tasks (it is being cancelled itself) and wait until they end."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


class _Fetching:
    __slots__ = ("_gate",)

    def __init__(self, gate: SourceGate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._gate.busy += 1

    def __exit__(self, *exc_info: object) -> None:
        gate = self._gate
        gate.busy -= 1
        if gate.paused:
            gate.on_quiet()


class _AttemptSlot:
    """The source's and the run's concurrency slots, taken after the pacer's turn; a retry
    of a paused source waits for the resume first, and a stopped one is refused."""

    __slots__ = ("_gate",)

    def __init__(self, gate: SourceGate) -> None:
        self._gate = gate

    @property
    def held_back(self) -> bool:
        """Entering now waits for the resume."""
        return self._gate.paused and not self._gate.stop_requested

    async def __aenter__(self) -> None:
        gate = self._gate
        if self.held_back:
            # A retry is a new request: a paused source does not send it until resumed.
            gate.busy -= 1
            gate.on_quiet()
            try:
                await gate.wait_unpaused()
            finally:
                gate.busy += 1
        if gate.stop_requested:
            raise StopRequested
        await gate.pacer.pace()
        await gate.limit.acquire()
        try:
            await gate.global_limit.acquire()
        except BaseException:
            gate.limit.release()
            raise

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        gate = self._gate
        try:
            if exc_type is None:  # the response's work is paced with its slots still held
                await gate.pacer.pace_response()
        finally:
            gate.global_limit.release()
            gate.limit.release()
