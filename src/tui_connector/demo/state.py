"""What the demo server remembers while it runs: the knobs in force, the request log, how often
each request was seen (for the fault draw), and the line of requests waiting for a turn.

Capacity (``DemoKnobs.capacity`` = N, live-changeable): at most N dataset requests are served at
once (latency, auth, faults and building the reply); a request arriving while N are served waits
for a turn (first come, first served) if fewer than ``capacity_queue`` (default ``max(1, N // 2)``)
already wait, else it is answered at once: 429 ``{"error": "over capacity"}`` with ``Retry-After``,
logged with fault ``"capacity"``. Past N concurrent requests latency rises, then 429s come.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.oauth import IssuedTokens

#: The most requests the log keeps; older ones are forgotten first.
LOG_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """One dataset request as the server saw it. ``status`` is 0 for a dropped connection."""

    started: float  # time.monotonic()
    ended: float
    method: str
    path: str
    query: str
    status: int
    fault: str | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class DemoState:
    """Knobs, the request log, the per-request occurrence counters and the line for a turn to be
    served (``capacity``); safe across threads, except :meth:`admit` and :meth:`release`, which
    only the server's loop calls."""

    def __init__(self, knobs: DemoKnobs | None = None, log_limit: int = LOG_LIMIT) -> None:
        self.knobs = knobs or DemoKnobs()
        self._lock = threading.Lock()
        self._log: deque[RequestLogEntry] = deque(maxlen=log_limit)
        self._seen: dict[bytes, int] = {}
        # The counters below are read from any thread and written by the loop only.
        #: Dataset requests being handled right now (waiting for a turn or served).
        self.in_flight = 0
        #: Dataset requests being served right now (past admission: latency, auth, reply).
        self.serving = 0
        #: Dataset requests waiting in line for a turn to be served.
        self.waiting = 0
        #: The most served at once since the start or the last :meth:`reset`.
        self.max_serving = 0
        self._line: deque[asyncio.Future[None]] = deque()
        #: What the OAuth2 token endpoint issued (kept across `reset`: tokens stay valid).
        self.oauth_tokens = IssuedTokens()

    def update_knobs(self, **fields: Any) -> DemoKnobs:
        """Change some knobs (validated: TypeError / ValueError on bad names or values)."""
        with self._lock:
            self.knobs = dataclasses.replace(self.knobs, **fields)
            return self.knobs

    def log(self) -> list[RequestLogEntry]:
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Forget the log, how often each request was seen and the ``max_serving`` mark."""
        with self._lock:
            self._log.clear()
            self._seen.clear()
            self.max_serving = self.serving

    def occurrence(self, key: bytes) -> int:
        """How many times the request ``key`` was seen before this one."""
        with self._lock:
            seen = self._seen.get(key, 0)
            self._seen[key] = seen + 1
        return seen

    def record(self, entry: RequestLogEntry) -> None:
        with self._lock:
            self._log.append(entry)

    # Admission: counters and a line of futures rather than an asyncio.Semaphore, so that
    # ``capacity`` is read at each admission and can change live. Only the loop runs these, with
    # no await between a check and its update: no lock needed.

    async def admit(self) -> bool:
        """Take a turn to be served, waiting in line (first come, first served) while
        ``capacity`` are served; False at once when the line is full too (answer 429)."""
        self._hand_over()  # the capacity may have been raised since the last release
        knobs = self.knobs
        if knobs.capacity is None or self.serving < knobs.capacity:
            self._serve()
            return True
        if len(self._line) >= knobs.queue_limit:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        self.waiting += 1
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():  # still in line
                self._line.remove(turn)
                self.waiting -= 1
            else:  # handed a turn it will not use: pass it on
                self.release()
            raise
        return True

    def release(self) -> None:
        """End a turn taken by :meth:`admit`; whoever waited longest is served next."""
        self.serving -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        capacity = self.knobs.capacity
        while self._line and (capacity is None or self.serving < capacity):
            turn = self._line.popleft()
            self.waiting -= 1
            self._serve()  # counted now, so no newcomer takes the turn before the waiter wakes
            turn.set_result(None)

    def _serve(self) -> None:
        self.serving += 1
        self.max_serving = max(self.max_serving, self.serving)
