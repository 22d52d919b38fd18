"""The limits a run's requests share: per-source and overall concurrency that can change while
tasks hold and wait for it, and the pacer that keeps the event loop's iterations short."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable


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


class LimitRamp:
    """Raises a limit one step at a time, evenly over a span of time, through `apply` (which
    sets the limit and wakes the schedulers). A burst sent at once is on the wire before the
    first refusal can come back; paced over a round trip, a refusal stops it part way."""

    def __init__(self, apply: Callable[[int], None]) -> None:
        self._apply = apply
        self._timer: asyncio.TimerHandle | None = None

    def start(self, current: int, target: int, seconds: float) -> None:
        """From `current` up to `target` over `seconds` (at once when there is no time)."""
        self.cancel()
        steps = target - current
        if steps <= 1 or seconds <= 0:
            self._apply(target)
            return
        interval = seconds / steps
        loop = asyncio.get_running_loop()

        def step(limit: int) -> None:
            self._timer = loop.call_later(interval, step, limit + 1) if limit < target else None
            self._apply(limit)

        step(current + 1)

    def cancel(self) -> None:
        """The limit is set otherwise (a signal, the operator): stop raising it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
