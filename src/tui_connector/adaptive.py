"""Adaptive concurrency: find by itself how many requests in flight a server can take.

Pure logic, no asyncio and no I/O. The engine reports every finished request attempt with its
monotonic timestamps, and how many requests are ready to go when it learns of them, and reads
`AdaptiveLimit.limit` back; time is only what the caller passes in, so the tests drive it with
a simulated clock.

Why AIMD with a latency guard
-----------------------------
The limit follows AIMD (additive increase, multiplicative decrease, as in TCP congestion
control), preceded by a slow start (double per window until the first sign of trouble: an
overload, or a window whose 90th-percentile latency rises past the guard, since the first
requests to queue show in the tail long before the median; a fast start when the work is
known, below), and guarded by latency in the style of TCP Vegas / Netflix's concurrency-limits:

* Explicit overload (HTTP 429/503, a timeout) is the one unambiguous signal, so it cuts the limit
  at once, multiplicatively, without waiting for a statistic to move.
* The latency guard finds the knee before the server starts rejecting: past its capacity a
  server queues, so latency rises while throughput stays flat. When a window's median latency
  exceeds the baseline by `tolerance` (and by `min_latency_gap`, so tiny latencies jitter
  harmlessly) the limit steps down.
* A pure gradient limiter (limit scaled by baseline / latency every window) reacts to every
  wobble of latency, and on a shared, noisy machine it drifts and oscillates. Here latency
  only acts as a threshold on a window *median* against the best median seen, and the limit
  otherwise moves by one per window: noise rarely crosses the threshold, and one outlier
  request cannot move a median.
* The limit is only raised when the window was *saturated* (some request saw the limit's worth
  in flight): a source that does not use its limit learns nothing by having a bigger one.

Windows and baseline
--------------------
Samples are grouped in windows of `max(limit, 4)` samples, about one round trip at full use. A
window only holds requests started after the last change of the limit (older ones measure the
old limit), and overload samples are signals, not latencies, so they never enter a window.

The baseline is the lowest window median among the last 30 windows, so a permanently slower
server is re-learned. Taken literally that rule is unsafe, so two refinements, both resting on
one fact (queueing delay grows with load, in proportion: Little's law):

* No creep under sustained load. A limiter that stays past the knee sees only queue-inflated
  medians; if the baseline forgot the unloaded ones after 30 windows it would creep up with
  them and the limit would climb to `maximum` (on the simulated slowing server in the tests:
  64 instead of about 30). So an old window only goes stale once the server has been measured
  again at the same or a lower load: a window older than 30 windows is kept while every newer
  one ran at a higher load (a window's load is the most requests in flight that any of its
  requests saw), unless the limit sits at `minimum`, where no lower load can come.
* Fast re-learning of a slower server. Within one run of latency cuts, if the load has fallen
  by a fifth and the median has not fallen with it (queueing delay would have), the latency
  is the server's own: the history restarts from that window. Otherwise the limit would sink
  to the old baseline's load before the server's new latency could count.

Requests sent before a decrease are not allowed to cause another: they were sent under the old
limit, so their 429s say nothing about the new one (`started` is compared with the time of the
decrease, strictly, so a coarse clock that stamps a burst of responses with one value cannot
turn one overload into several decreases).

Known limit: a server that gets *faster* while the limit runs past its knee is only measured at
the loads the limit visits, so the baseline stays a little high and the limit settles higher
than it would from a cold start (simulated, latency halved: 36-50 instead of about 30; bounded,
not creeping). Only a probe at low load (as BBR's ProbeRTT does) would see the new floor.

Fast start when the work is known
---------------------------------
Doubling per window costs a window (a round trip, often two: a window only counts requests
sent after the last change) per doubling. From 4 to 64 that is most of a short job: 100 pages
behind 50 ms took 0.49 s where a fixed 64 took 0.25 s (medians). When the engine knows how
many requests are ready to go (the pages of a stream whose page count is known, partitions
waiting) it says so (`expect`), and during slow start the limit opens to that many, up to
`maximum`, within one round trip: a window sized to the known work. Nothing more is known of
the server than before, so the jump is a probe, paced and read for what it says about it:

* The opening is spread evenly over one baseline latency (`LimitChange.spread`; the engine
  adds the slots one at a time). Refusals usually come back at once: sent in one burst, the
  whole probe was on the wire before the first 429 came back (against the benchmark's server
  that takes 36, 28 of 64 were refused); paced, the first refusal comes back at 37-42 in
  flight and stops it (2-7 429s in a whole run of 2,000 requests).
* An overload from a request sent during the probe cuts to `backoff` times the load that
  request was sent at (its `in_flight`, which the server refused), not times the limit: after
  a jump to 64 a server that takes 36 gets 27, not 48 (still too many, and more 429s).
* The probe's first window is judged against the latency of the requests before it, at their
  lower load (a partial window is kept as the baseline for that): its own median may already
  be a queue's. A jump before any response waits for the first one, to have that yardstick.
  A median past the guard steps down by a tenth, as any window's: a cut in proportion to the
  latency (Little's law) was tried, but on a loaded client the probe's own burst of responses
  queues in the client's loop, and the cut took a 64 that the server served well down to 18.

An overload ends slow start as always; a first window without one confirms the jump, and slow
start goes on. Pacing costs the short job about half a round trip against a fixed limit of the
same size (the last of the probe's requests leave a round trip after the first).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["AdaptiveLimit", "LimitChange"]

#: Fewest samples in a window: a median of fewer says little.
MIN_WINDOW = 4
#: How many windows back the baseline looks (see the module docstring for the refinement).
BASELINE_WINDOWS = 30
#: The latency guard's step down: gentler than an overload's `backoff`, since latency is an
#: earlier, softer signal.
LATENCY_DECREASE = 0.9
#: A fast start's probe opens the limit evenly over this many baseline latencies (one round
#: trip), so that a refusal, which usually comes back at once, stops it part way.
PROBE_SPREAD = 1.0
#: Re-learn the baseline at once when, within a run of latency cuts, the load fell by a fifth
#: (an earlier window ran at >= 1.25 x the load) while the median held within 5 % (queueing
#: would have taken a fifth off it; 5 % is well above the noise of a window median).
RELEARN_LOAD_DROP = 1.25
RELEARN_LATENCY_HOLD = 0.95


@dataclass(frozen=True)
class LimitChange:
    """One change of the limit, for the engine to apply and the dashboard to explain.
    `spread` (seconds) > 0: reach `limit` evenly over that time, one slot at a time, rather
    than at once (a fast start's probe is paced)."""

    limit: int
    previous: int
    reason: str
    at: float
    spread: float = 0.0


@dataclass(frozen=True)
class _Window:
    index: int
    median: float
    load: int


def _ms(seconds: float) -> str:
    millis = seconds * 1000.0
    return f"{millis:.1f} ms" if millis < 10 else f"{millis:.0f} ms"


def _overload_reason(overload: str) -> str:
    text = overload.strip()
    if text.lower() in ("timeout", "timed out", "read timeout", "connect timeout"):
        return "lowered: request timed out"
    if text.upper().startswith("HTTP"):
        return f"lowered: {text} from the server"
    return f"lowered: {text}"


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return value


class AdaptiveLimit:
    """A concurrency limit that finds the server's capacity: AIMD with a latency guard.

    `limit` is the current limit, between `minimum` and `maximum`; `last_change` the latest
    change the limiter made by itself (None before the first one and after `reset`).
    `tolerance` is how many times the baseline latency a window median may reach before the
    limit steps down, `backoff` the factor applied on an overload signal, `min_latency_gap`
    (seconds) the least rise above the baseline that counts as rising latency.
    """

    def __init__(
        self,
        *,
        minimum: int = 1,
        maximum: int = 64,
        initial: int | None = None,
        tolerance: float = 1.5,
        backoff: float = 0.75,
        min_latency_gap: float = 0.005,
    ) -> None:
        minimum = _whole("minimum", minimum)
        maximum = _whole("maximum", maximum)
        if minimum < 1:
            raise ValueError(f"minimum must be at least 1, not {minimum}")
        if maximum < minimum:
            raise ValueError(f"maximum ({maximum}) is below minimum ({minimum})")
        if initial is None:
            initial = min(maximum, max(minimum, 4))
        initial = _whole("initial", initial)
        if not (math.isfinite(tolerance) and tolerance >= 1.0):
            raise ValueError(f"tolerance must be a finite number of at least 1, not {tolerance}")
        if not 0.0 < backoff < 1.0:
            raise ValueError(f"backoff must be between 0 and 1 (exclusive), not {backoff}")
        if not (math.isfinite(min_latency_gap) and min_latency_gap >= 0.0):
            raise ValueError(f"min_latency_gap must be a finite number >= 0, not {min_latency_gap}")
        self.minimum = minimum
        self.maximum = maximum
        self.tolerance = float(tolerance)
        self.backoff = float(backoff)
        self.min_latency_gap = float(min_latency_gap)
        self.limit: int = self._clamp(initial)
        self.last_change: LimitChange | None = None
        self._slow_start = True
        # Requests started at or before these times are ignored as overload signals / as
        # window samples (the latest decrease / the latest change of the limit).
        self._last_decrease = -math.inf
        self._window_since = -math.inf
        self._clock = -math.inf  # the latest time seen, for `reset`, which is given none
        self._latencies: list[float] = []
        self._load = 0
        self._history: list[_Window] = []
        self._windows = 0
        self._lowered: list[_Window] = []  # windows of the current run of latency cuts
        # When the limit last opened to the known work (`expect`), until its first window or
        # signal tells whether the server takes that many; None otherwise.
        self._probe_since: float | None = None
        self._expected = 0  # requests ready before any response: a fast start waits for one

    # -- read-only views for the dashboard ------------------------------------------------

    @property
    def slow_start(self) -> bool:
        """Whether the limit still doubles per window (until the first sign of trouble)."""
        return self._slow_start

    @property
    def baseline(self) -> float | None:
        """The baseline latency in seconds, or None before the first window closed."""
        return min((w.median for w in self._history), default=None)

    # -- input ---------------------------------------------------------------------------

    def on_sample(
        self, *, started: float, ended: float, in_flight: int, overload: str | None = None
    ) -> LimitChange | None:
        """One finished request attempt. `started`/`ended` are monotonic seconds; `in_flight` is
        how many requests of this source were in flight when it started (itself included);
        `overload` is None for a normal response, or a short description of an overload
        signal: "HTTP 429", "HTTP 503", "timeout". Returns the change if the limit changed."""
        if not ended >= started:  # also rejects NaN
            raise ValueError(f"ended ({ended}) is before started ({started})")
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
            raise ValueError(f"in_flight counts the request itself, so it is >= 1: {in_flight!r}")
        self._clock = max(self._clock, ended)

        if overload is not None:
            if started <= self._last_decrease:
                return None  # sent under the old, higher limit: already acted upon
            reason = _overload_reason(overload)
            load = self.limit
            if self._probe_since is not None and in_flight < load:
                # The server refused this load: the rest of the jumped limit is untested.
                load = in_flight
                reason += f" ({in_flight} in flight)"
            new = max(self.minimum, math.floor(load * self.backoff + 1e-9))
            return self._decrease(new, reason, ended)

        if started <= self._window_since:
            return None  # measures the previous limit
        self._latencies.append(ended - started)
        self._load = max(self._load, in_flight)
        if self._expected:  # the first response: the yardstick a fast start waited for
            expected, self._expected = self._expected, 0
            return self._open_to(expected, ended)
        if len(self._latencies) < max(self.limit, MIN_WINDOW):
            return None
        return self._close_window(ended)

    def reset(self, limit: int) -> None:
        """Restart from `limit` (clamped to [minimum, maximum]): an operator override or a
        re-enable. Ends slow start, clears the current window, forgets `last_change`, and
        ignores overloads from requests started before the reset (as far as the latest time
        seen tells). The baseline latency is kept: it describes the server, not the limit."""
        self.limit = self._clamp(_whole("limit", limit))
        self.last_change = None
        self._slow_start = False
        self._last_decrease = self._clock
        self._window_since = self._clock
        self._latencies.clear()
        self._load = 0
        self._lowered = []
        self._probe_since = None
        self._expected = 0

    def expect(self, requests: int, now: float) -> LimitChange | None:
        """`requests` could be in flight at once now: those in flight and those ready to go
        (the pages of a stream whose page count is known, partitions waiting). During slow
        start the limit opens to them at once, up to `maximum`, as a probe (see the module
        docstring); before any response it waits for the first one, the probe's yardstick.
        Otherwise, or if the limit is already that high, nothing changes. `now` is monotonic
        seconds, as the samples' times."""
        requests = _whole("requests", requests)
        self._clock = max(self._clock, now)
        if not self._slow_start:
            return None
        if self.baseline is None and not self._latencies:
            self._expected = max(self._expected, requests)
            return None
        return self._open_to(requests, now)

    # -- internals -----------------------------------------------------------------------

    def _open_to(self, requests: int, now: float) -> LimitChange | None:
        new = min(self.maximum, requests)
        if new <= self.limit:
            return None
        if self._latencies:
            # What the requests so far took, at their lower load: the probe's first window
            # is judged against it (its own median, at the jumped load, may be a queue's).
            self._remember(statistics.median(self._latencies), self._load)
        reason = f"raised: {requests} requests ready; fast start"
        change = self._change(new, reason, now, spread=PROBE_SPREAD * (self.baseline or 0.0))
        self._probe_since = now
        return change

    def _clamp(self, value: int) -> int:
        return max(self.minimum, min(self.maximum, value))

    def _close_window(self, now: float) -> LimitChange | None:
        median = statistics.median(self._latencies)
        tail = statistics.quantiles(self._latencies, n=10)[-1]  # the 90th percentile
        load = self._load
        self._latencies.clear()
        self._load = 0
        window = self._remember(median, load)
        baseline = min(w.median for w in self._history)

        probed, self._probe_since = self._probe_since is not None, None
        if median > baseline * self.tolerance and median - baseline > self.min_latency_gap:
            reason = f"lowered: latency rising ({_ms(median)}, baseline {_ms(baseline)})"
            if self._not_queueing(window):
                # Latency that does not fall when the load falls is not queueing: the server
                # got slower. Re-learn the baseline from here; still step down, since this
                # window may hold some queueing too (the next, lower medians take it out).
                self._history = [window]
                self._lowered = []
                reason += ", not from load: re-learning the baseline"
            elif not probed:
                # (A probe's window ran while the limit was opening: its requests saw loads
                # from the old limit up, so its median is not its load's, and its lower
                # median would make the next windows' queue look like the server's own.)
                self._lowered.append(window)
            new = max(
                self.minimum,
                min(self.limit - 1, math.floor(self.limit * LATENCY_DECREASE + 1e-9)),
            )
            return self._decrease(new, reason, now)

        self._lowered = []  # latency is back under the guard: the run of cuts is over
        if (
            self._slow_start
            and tail > baseline * self.tolerance
            and tail - baseline > (self.min_latency_gap)
        ):
            # The first requests to queue show in a window's tail long before its median: a
            # doubling from here would overshoot the knee by up to the limit, and the queue
            # overflows into 429s. From here on, grow by one.
            self._slow_start = False
        if load >= self.limit:
            new = min(self.maximum, self.limit * 2 if self._slow_start else self.limit + 1)
            reason = (
                "raised: throughput rising, latency steady "
                f"({_ms(median)}, baseline {_ms(baseline)})"
            )
            if self._slow_start:
                reason += "; slow start"
            return self._change(new, reason, now)
        return None

    def _not_queueing(self, window: _Window) -> bool:
        # Queueing delay falls in proportion to the load (Little's law): 20 % less load, 20 %
        # less latency. Within one run of latency cuts, a window at a clearly lower load whose
        # median has not fallen says the latency is the server's own.
        return any(
            earlier.load >= window.load * RELEARN_LOAD_DROP
            and window.median >= earlier.median * RELEARN_LATENCY_HOLD
            for earlier in self._lowered
        )

    def _remember(self, median: float, load: int) -> _Window:
        self._windows += 1
        window = _Window(self._windows, median, load)
        self._history.append(window)
        cutoff = self._windows - BASELINE_WINDOWS
        at_floor = self.limit <= self.minimum
        kept: list[_Window] = []
        lowest_newer_load = math.inf
        for older in reversed(self._history):
            stale = older.index <= cutoff and (at_floor or lowest_newer_load <= older.load)
            if not stale:
                kept.append(older)
            lowest_newer_load = min(lowest_newer_load, older.load)
        kept.reverse()
        self._history = kept
        return window

    def _decrease(self, new: int, reason: str, now: float) -> LimitChange | None:
        self._slow_start = False
        self._probe_since = None
        self._expected = 0
        self._last_decrease = now
        # A fresh window either way: what was in the current one ran into the overload.
        self._window_since = now
        self._latencies.clear()
        self._load = 0
        return self._change(new, reason, now)

    def _change(self, new: int, reason: str, now: float, spread: float = 0.0) -> LimitChange | None:
        if new == self.limit:
            return None
        change = LimitChange(limit=new, previous=self.limit, reason=reason, at=now, spread=spread)
        self.limit = new
        self.last_change = change
        self._window_since = now
        self._latencies.clear()
        self._load = 0
        return change
