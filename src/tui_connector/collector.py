"""Python's cyclic garbage collector, tuned for a process that runs for long: the engine's run,
and a dashboard attached to a run in another process (`control.RemoteRun`).

What is alive once either has started (modules, the config, the dashboard's widgets) lives as
long as it does. Frozen, the collector's full passes stop scanning it again and again:
decoding pages allocates fast enough that those passes cost about 7 % of a fast run's CPU,
and in an attached dashboard a full pass took 66-86 ms of its loop once a run (a keypress then
reached the screen 120-180 ms late). The young generations' garbage (loading the config) is
collected first, so it is not kept; a full collection would cost 16-40 ms of every start, for
the little garbage imports leave.

A run makes next to no cyclic garbage (see `http.body.release`), yet a young collection traces
every object of the requests in flight (thousands with 100 streams), alive again each time.
Python starts one whenever 700 more containers were allocated than freed: in the bench's
workload 1 (8 s), 126-278 ms of collecting headless and 309-506 ms with the dashboard; at
10,000, 2-3 ms and 58-97 ms.
"""

from __future__ import annotations

import gc

# The young generation's collection threshold while tuned (Python's default: 700).
YOUNG_GENERATION_THRESHOLD = 10_000


class CollectorTuning:
    """`settle` once the process is up, `restore` when it is done (safe if never settled)."""

    def __init__(self) -> None:
        self._thresholds: tuple[int, int, int] | None = None  # to restore; None: not settled

    def settle(self) -> None:
        if self._thresholds is not None:
            return
        gc.collect(1)
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *self._thresholds[1:])

    def restore(self) -> None:
        if self._thresholds is None:
            return
        gc.unfreeze()
        gc.set_threshold(*self._thresholds)
        self._thresholds = None
