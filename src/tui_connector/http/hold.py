"""The source-wide `Retry-After` hold (`retry.retry_after: source`).

A `Retry-After` on a 429 or 503 then holds the whole source: no attempt of it (other
streams, partitions and parallel pages, retries) is sent before that time. Attempts wait out
the hold in line before they take their concurrency slots (the wait holds no slot, and a stop
cuts it short), then go in the order they were held.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tui_connector.config import RetryPolicy
from tui_connector.http.report import HttpReport
from tui_connector.http.retry import parse_retry_after, sleep


class SourceHold:
    """When the source may send again, and the line of attempts waiting for it."""

    def __init__(self, policy: RetryPolicy, report: HttpReport) -> None:
        self._policy = policy
        self._report = report
        # Monotonic time before which no attempt of this source is sent: the latest
        # Retry-After of a 429 or 503. It outlives a run of the source, so a quick retry of a
        # failed source still waits.
        self.not_before = 0.0
        # Attempts wait out the hold in line (asyncio.Lock is first come, first served): when
        # it ends they go in the order they were held, and a retry, in line from its 429 on,
        # goes first instead of losing the race to the server's free capacity again and again.
        self._line = asyncio.Lock()

    @property
    def until(self) -> float | None:
        """The monotonic time the hold ends, or None if the source is not held."""
        return self.not_before if self.not_before > time.monotonic() else None

    def extend_for(self, response: httpx.Response) -> None:
        """Hold the source for a 429's or 503's `Retry-After` (one longer than
        `retry.max_wait` fails its request instead: see `retry.status_error`)."""
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait and wait <= self._policy.max_wait:
            self.not_before = max(self.not_before, time.monotonic() + wait)
            self._report.source_held(self.not_before)

    def must_wait(self) -> bool:
        """Whether an attempt waits in line: the source is held, or others wait already."""
        return self.not_before > time.monotonic() or self._line.locked()

    def holds(self, interrupt: asyncio.Event | None) -> bool:
        """Whether the source is held now; never once `interrupt` is set."""
        if interrupt is not None and interrupt.is_set():
            return False
        return self.not_before > time.monotonic()

    async def wait_out(self, interrupt: asyncio.Event | None) -> None:
        """Wait in line until the hold is over (or `interrupt` is set)."""
        async with self._line:
            # Again until it is over: another 429 may extend the hold during the wait.
            while self.holds(interrupt):
                self._report.source_held(self.not_before)
                await sleep(self.not_before - time.monotonic(), interrupt)
