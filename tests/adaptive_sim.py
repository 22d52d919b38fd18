"""Simulated servers on a simulated clock, and clients that drive an `AdaptiveLimit` against
them: `simulate` keeps the limit's worth of requests in flight for ever; `run_job` fetches a
stream of pages as the engine does (the first alone, then the rest as the limit allows, with
the limiter told of them and a fast start's opening paced slot by slot)."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tui_connector.adaptive import AdaptiveLimit, LimitChange

BASE = 0.040  # seconds a request takes on an idle server
CAPACITY = 20  # requests the server works on at once
REJECT_LATENCY = 0.001  # a 429 comes back almost at once


# ---------------------------------------------------------------------------------------------
# A discrete-event simulation: one client keeping `limiter.limit` requests in flight


@dataclass
class _Request:
    started: float
    in_flight: int  # the client's requests in flight when it started, itself included
    rejected: bool = False
    in_service: bool = False


class QueueServer:
    """`capacity` requests served at once, `queue` more wait (FIFO), beyond that instant 429."""

    def __init__(
        self,
        rng: random.Random,
        *,
        capacity: int = CAPACITY,
        queue: int = 10,
        hiccups: float = 0.02,
    ) -> None:
        self.rng = rng
        self.capacity = capacity
        self.queue_size = queue
        self.hiccups = hiccups
        self.busy = 0
        self.waiting: deque[_Request] = deque()
        self.base = BASE

    def service_time(self) -> float:
        # +-15 % jitter, and `hiccups` of the requests (2 %) take three times as long (the
        # noise of a shared machine).
        spike = 3.0 if self.rng.random() < self.hiccups else 1.0
        return self.base * self.rng.uniform(0.85, 1.15) * spike

    @property
    def max_throughput(self) -> float:
        return self.capacity / self.base

    def arrive(self, req: _Request, now: float) -> float | None:
        """The time the response will arrive, or None while the request waits in the queue."""
        if self.busy < self.capacity:
            self.busy += 1
            req.in_service = True
            return now + self.service_time()
        if len(self.waiting) < self.queue_size:
            self.waiting.append(req)
            return None
        req.rejected = True
        return now + REJECT_LATENCY

    def leave(self, req: _Request, now: float) -> list[tuple[float, _Request]]:
        """`req` finished: free its slot; queued requests starting service now."""
        if not req.in_service:
            return []
        self.busy -= 1
        if not self.waiting:
            return []
        nxt = self.waiting.popleft()
        self.busy += 1
        nxt.in_service = True
        return [(now + self.service_time(), nxt)]


class SlowingServer:
    """Never rejects; latency = base * max(1, in_flight / capacity) for the load at arrival."""

    def __init__(self, rng: random.Random, *, capacity: int = CAPACITY) -> None:
        self.rng = rng
        self.capacity = capacity
        self.in_flight = 0
        self.base = BASE

    @property
    def max_throughput(self) -> float:
        return self.capacity / self.base

    def arrive(self, req: _Request, now: float) -> float | None:
        self.in_flight += 1
        req.in_service = True
        jitter = self.rng.uniform(0.85, 1.15) * (3.0 if self.rng.random() < 0.02 else 1.0)
        return now + self.base * jitter * max(1.0, self.in_flight / self.capacity)

    def leave(self, req: _Request, now: float) -> list[tuple[float, _Request]]:
        self.in_flight -= 1
        return []


@dataclass
class Run:
    limits: list[tuple[float, int]] = field(default_factory=list)  # (time, limit from then on)
    responses: list[tuple[float, bool]] = field(default_factory=list)  # (time, rejected)
    changes: list[LimitChange] = field(default_factory=list)

    def limit_band(self, after: float) -> tuple[int, int]:
        current = [limit for t, limit in self.limits if t <= after][-1:]
        later = [limit for t, limit in self.limits if t > after]
        values = current + later
        return min(values), max(values)

    def rejected_share(self) -> float:
        return sum(rejected for _, rejected in self.responses) / len(self.responses)

    def throughput(self, start: float, end: float) -> float:
        done = sum(1 for t, rejected in self.responses if start <= t < end and not rejected)
        return done / (end - start)


def simulate(
    limiter: AdaptiveLimit,
    server: QueueServer | SlowingServer,
    *,
    seconds: float = 30.0,
    at: float | None = None,
    then: Callable[[float], None] | None = None,
) -> Run:
    """Run the client for `seconds` of simulated time; `then(now)` is called once at `at`."""
    run = Run(limits=[(0.0, limiter.limit)])
    events: list[tuple[float, int, _Request]] = []
    seq = 0
    in_flight = 0
    now = 0.0
    hook = then

    def send(now: float) -> None:
        nonlocal seq, in_flight
        while in_flight < limiter.limit:
            in_flight += 1
            req = _Request(started=now, in_flight=in_flight)
            done = server.arrive(req, now)
            if done is not None:
                heapq.heappush(events, (done, seq := seq + 1, req))

    send(now)
    while events:
        now, _, req = heapq.heappop(events)
        if now > seconds:
            break
        if hook is not None and at is not None and now >= at:
            hook(now)
            hook = None
        for done, nxt in server.leave(req, now):
            heapq.heappush(events, (done, seq := seq + 1, nxt))
        in_flight -= 1
        run.responses.append((now, req.rejected))
        change = limiter.on_sample(
            started=req.started,
            ended=now,
            in_flight=req.in_flight,
            overload="HTTP 429" if req.rejected else None,
        )
        if change is not None:
            assert change.limit == limiter.limit
            assert change.at == now
            run.changes.append(change)
            run.limits.append((now, change.limit))
        send(now)
    return run


@dataclass(frozen=True)
class _Step:
    """One slot more of a paced opening: `limit` now, then one more every `interval`."""

    ramp: int  # the ramp's generation: a step of an older ramp is stale
    limit: int
    target: int
    interval: float


@dataclass
class Job:
    """How a job went: when it finished, every response, and the client's limit over time."""

    finished: float = 0.0
    responses: list[tuple[float, bool]] = field(default_factory=list)  # (time, rejected)
    limits: list[tuple[float, int]] = field(default_factory=list)  # the client's, as applied
    changes: list[LimitChange] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(rejected for _, rejected in self.responses)

    def limit_at(self, when: float) -> int:
        return [limit for t, limit in self.limits if t <= when][-1]

    def limit_band(self, after: float) -> tuple[int, int]:
        values = [self.limit_at(after)] + [limit for t, limit in self.limits if t > after]
        return min(values), max(values)


def run_job(
    limiter: AdaptiveLimit,
    server: QueueServer | SlowingServer,
    pages: int,
    *,
    tell: bool = True,
    paced: bool = True,
    retry_after: float = 1.0,
) -> Job:
    """Fetch `pages` pages as the engine does: the first alone; once it is back the rest are
    known (`tell`: the limiter is told, `AdaptiveLimit.expect`) and go as the limit allows. A
    change with a `spread` opens the client's limit one slot at a time over it, as
    `engine.limits.LimitRamp` does (`paced=False`: at once). A refused page is sent again
    `retry_after` later, holding no slot meanwhile."""
    job = Job(limits=[(0.0, limiter.limit)])
    # (time, seq, event): a response, a pacing step, or a refused page due again (None)
    events: list[tuple[float, int, _Request | _Step | None]] = []
    seq = 0
    allowed = limiter.limit  # the client's limit: the limiter's, or a paced step towards it
    ramp = 0  # the current ramp's generation
    todo = 1
    in_flight = 0

    def push(when: float, event: _Request | _Step | None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, seq, event))

    def apply(change: LimitChange | None, now: float) -> None:
        nonlocal allowed, ramp
        if change is None:
            return
        job.changes.append(change)
        ramp += 1
        steps = change.limit - allowed
        if paced and change.spread > 0 and steps > 1:
            push(now, _Step(ramp, allowed + 1, change.limit, change.spread / steps))
        else:
            allowed = change.limit
            job.limits.append((now, allowed))

    def send(now: float) -> None:
        nonlocal todo, in_flight
        while todo and in_flight < allowed:
            todo -= 1
            in_flight += 1
            req = _Request(started=now, in_flight=in_flight)
            done = server.arrive(req, now)
            if done is not None:
                push(done, req)

    send(0.0)
    done_pages = 0
    while events:
        now, _, event = heapq.heappop(events)
        if isinstance(event, _Step):
            if event.ramp == ramp:
                allowed = event.limit
                job.limits.append((now, allowed))
                if allowed < event.target:
                    push(now + event.interval, replace(event, limit=allowed + 1))
        elif event is None:
            todo += 1
        else:
            req = event
            for when, nxt in server.leave(req, now):
                push(when, nxt)
            in_flight -= 1
            job.responses.append((now, req.rejected))
            overload = "HTTP 429" if req.rejected else None
            change = limiter.on_sample(
                started=req.started, ended=now, in_flight=req.in_flight, overload=overload
            )
            apply(change, now)
            if req.rejected:
                push(now + retry_after, None)
            else:
                done_pages += 1
                if done_pages == 1:  # the first page told the count: the rest are ready
                    todo += pages - 1
                    if tell:
                        apply(limiter.expect(in_flight + todo, now), now)
                if done_pages == pages:
                    job.finished = now
                    break
        send(now)
    return job
