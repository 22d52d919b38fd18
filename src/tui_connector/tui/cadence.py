"""How often the dashboard refreshes: ten times a second while the event loop has time to
spare, less often while the run keeps it busy.

In-process, the dashboard shares one core with the run. Its cost is per frame (reading
telemetry, then Textual painting what changed: 3-4 ms on a 2-core CI machine), so at a fixed
10 Hz it took a tenth of the run's core at full load, more on a slower CPU. While the loop's
thread is busy, every millisecond of a frame is a millisecond less of retrieval; while it
idles, frames are free. So the interval follows the loop thread's busy share since the last
tick, from `FASTEST_SECONDS` (idle) to `BUSY_SECONDS` (saturated), and never lets the ticks
alone take more than `TICK_BUDGET` of the core.

Busy means having work: on a CPU or waiting for one. On a shared machine the loop's thread may
run only a fraction of the time it wants to; its CPU time alone then looked idle, and the
dashboard refreshed at full rate exactly when it hurt most. Linux tells both times
(`/proc/thread-self/schedstat`); elsewhere the thread's CPU time stands in.

What the operator does is not slowed: the keys repaint what they change themselves (the
cursor, the panes that follow the selection, the help), and a control (pause, retry, ...)
wakes the next heartbeat, which ticks whatever the cadence says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

FASTEST_SECONDS = 0.1  # the heartbeat: an idle loop refreshes at every beat
BUSY_SECONDS = 0.5  # a saturated loop refreshes twice a second
SLOWEST_SECONDS = 1.0  # however dear a tick is, the counts move at least once a second
TICK_BUDGET = 0.02  # the ticks' own share of the loop's core, at most, while it is busy
_SMOOTHING = 0.3  # weight of the newest tick in the averaged tick cost
_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _running_and_waiting() -> float:
    """Seconds the calling thread has spent on a CPU or runnable and waiting for one."""
    running, waiting, _slices = _SCHEDSTAT.read_bytes().split()
    return (int(running) + int(waiting)) / 1e9


def busy_clock() -> Callable[[], float]:
    """A clock of the calling thread's busy seconds: running or waiting to run where the
    system tells (Linux), else its CPU time."""
    try:
        _running_and_waiting()
    except (OSError, ValueError):
        return time.thread_time
    return _running_and_waiting


class RefreshCadence:
    """Says at each heartbeat whether the dashboard should refresh, from how busy the event
    loop's thread was (its busy time over wall time) since the last refresh and what a refresh
    costs. Call `due` from the heartbeat and `ticked` after each refresh, on the loop's
    thread."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        busy_seconds: Callable[[], float] | None = None,
    ) -> None:
        """`busy_seconds`: the loop thread's busy seconds so far (`busy_clock()` by default)."""
        self._busy_seconds = busy_seconds or busy_clock()
        self._clock = clock
        self._last_tick = clock()
        self._last_busy = self._busy_seconds()
        self._tick_cost = 0.0
        self.interval = FASTEST_SECONDS
        self._woken = False

    def due(self) -> bool:
        """Whether a refresh is due at this heartbeat (a small tolerance: beats drift)."""
        if self._woken:
            return True
        return self._clock() - self._last_tick >= self.interval - FASTEST_SECONDS / 2

    def wake(self) -> None:
        """Refresh at the next heartbeat: the operator changed something."""
        self._woken = True

    def ticked(self, cost: float) -> None:
        """A refresh ended, having taken `cost` seconds: choose the next interval."""
        now, busy_so_far = self._clock(), self._busy_seconds()
        elapsed = now - self._last_tick
        busy = min(1.0, (busy_so_far - self._last_busy) / elapsed) if elapsed > 0 else 0.0
        self._last_tick, self._last_busy = now, busy_so_far
        self._woken = False
        self._tick_cost += _SMOOTHING * (cost - self._tick_cost)
        self.interval = self.next_interval(busy, self._tick_cost)

    @staticmethod
    def next_interval(busy: float, tick_cost: float) -> float:
        """`busy`: the loop thread's busy share since the last tick (0 to 1); `tick_cost`: a
        tick's usual seconds. Idle: the fastest; the busier, the longer, up to `BUSY_SECONDS`;
        and long enough for the ticks to stay within their budget of a busy core."""
        by_load = FASTEST_SECONDS / max(1.0 - busy, FASTEST_SECONDS / BUSY_SECONDS)
        by_cost = busy * tick_cost / TICK_BUDGET
        return min(SLOWEST_SECONDS, max(FASTEST_SECONDS, by_load, by_cost))
