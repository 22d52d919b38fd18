"""The live picture of a run: plain objects the engine updates in O(1) per event, and the
dashboard and the headless reporter read on a timer. No Textual here, no I/O."""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class SourceStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    BACKING_OFF = "backing off"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in (SourceStatus.DONE, SourceStatus.FAILED, SourceStatus.STOPPED)


class RateWindow:
    """Events per second over a sliding window, kept in one-second buckets (O(1) per add)."""

    def __init__(self, seconds: int = 10) -> None:
        self._seconds = seconds
        self._buckets = [0.0] * seconds
        self._stamps = [-1] * seconds
        self._started = time.monotonic()

    def add(self, amount: float = 1.0, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        slot = second % self._seconds
        if self._stamps[slot] != second:
            self._stamps[slot] = second
            self._buckets[slot] = 0.0
        self._buckets[slot] += amount

    def rate(self, now: float | None = None) -> float:
        current = time.monotonic() if now is None else now
        second = int(current)
        # The current second is partial; count it, and divide by the time really covered.
        total = sum(
            amount
            for amount, stamp in zip(self._buckets, self._stamps, strict=True)
            if second - self._seconds < stamp <= second
        )
        covered = min(float(self._seconds - 1) + (current - second), current - self._started)
        return total / covered if covered > 0.05 else 0.0

    def state(self) -> tuple[list[float], list[int], float]:
        """The window as plain data (another process rebuilds it with `restored`)."""
        return list(self._buckets), list(self._stamps), self._started

    @classmethod
    def restored(cls, buckets: list[float], stamps: list[int], started: float) -> RateWindow:
        """A window from `state()`; its clock readings must be this process's."""
        if len(buckets) != len(stamps) or not buckets:
            raise ValueError("a rate window needs as many stamps as buckets")
        window = cls(len(buckets))
        window._buckets = [float(amount) for amount in buckets]
        window._stamps = [int(stamp) for stamp in stamps]
        window._started = float(started)
        return window


class StreamStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class StreamStats:
    """One stream (partition) of a source."""

    key: str
    status: StreamStatus = StreamStatus.PENDING
    pages: int = 0
    records: int = 0
    position: str = ""
    pages_total: int | None = None  # known once parallel pages are planned
    error: str | None = None


class ConcurrencyMode(StrEnum):
    FIXED = "fixed"  # as configured
    AUTO = "auto"  # adaptive
    MANUAL = "manual"  # adaptive, overridden by the operator


@dataclass
class SourceStats:
    name: str
    status: SourceStatus = SourceStatus.PENDING
    concurrency: int = 1
    concurrency_mode: ConcurrencyMode = ConcurrencyMode.FIXED
    concurrency_reason: str = ""  # why the limit last changed
    concurrency_changed_at: float | None = None
    rate_limit: float | None = None
    partitioned: bool = False
    streams_total: int = 0
    streams_done: int = 0
    streams_failed: int = 0
    streams_running: int = 0
    streams: dict[str, StreamStats] = field(default_factory=dict, repr=False)
    high_water: str | None = None  # the incremental mark the run started from, for display
    pages: int = 0
    records: int = 0
    bytes: int = 0
    requests: int = 0  # attempts sent, OAuth2 token requests included
    retries: int = 0
    # Of the attempts that ended: those answered, by status class (index 1 for 1xx ... 5 for
    # 5xx; 0 unused), and those whose failure was retried. Counters that only grow, for
    # metrics: unlike `pages` and `records`, a retried source does not start them over.
    answers_by_class: list[int] = field(default_factory=lambda: [0] * 6, repr=False)
    retried_attempts: int = 0
    pages_this_run: int = 0
    errors: int = 0
    in_flight: int = 0
    total_records: int | None = None
    position: str = ""
    last_checkpoint_at: float | None = None
    backoff_until: float | None = None
    last_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    tokens_obtained: int = 0  # OAuth2 access tokens
    token_expires_at: float | None = None  # monotonic: when the current one expires
    started_at: float | None = None
    finished_at: float | None = None
    records_this_run: int = 0  # fetched by this run; `records` includes resumed counts
    records_rate: RateWindow = field(default_factory=RateWindow, repr=False)
    requests_rate: RateWindow = field(default_factory=RateWindow, repr=False)


@dataclass(frozen=True)
class LakeInfo:
    """What a source's lake shows an operator: its sink's own account (`Sink.info`), read on
    demand rather than kept up to date here, since it moves only as batches commit."""

    format: str  # as `format:` names it
    destination: str  # a directory or an object store's URL
    bytes_written: int = 0  # by this run
    version: int | None = None  # a table's version, for formats that keep one
    schema: str | None = None  # the inferred columns, one "name: type" a line
    json_columns: tuple[str, ...] = ()  # fields stored as JSON text after changing type
    # Every fallback to JSON text so far, oldest first, one sentence each: a front end tells
    # each one once.
    notes: tuple[str, ...] = ()


@dataclass
class InFlightRequest:
    id: int
    source: str
    method: str
    url: str  # already redacted
    started_at: float
    attempt: int
    source_in_flight: int  # the source's requests in flight when it started, itself included


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt went, for an adaptive concurrency limit."""

    started: float  # monotonic
    ended: float
    in_flight: int  # the source's requests in flight when it started, itself included
    status: int | None  # None when no response came
    timed_out: bool


class Failure(Protocol):
    """What an error event tells of a failed request (`http.errors.FetchError` is one)."""

    message: str  # redacted, as every text here
    url: str
    status: int | None
    body_excerpt: str
    attempts: int


# Of a server's reason, the most an error's text shows.
_REASON_CHARS = 200
# What must not reach a screen or a terminal as it is: C0 and C1 controls and DEL (a body may
# hold terminal escapes), and the format characters that reorder or hide text.
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def server_reason(body_excerpt: str) -> str:
    """What a server said of an error as every front end shows it: the excerpt of its response
    body on one line, each control character as its escape, at most 200 characters."""
    text = _UNSHOWABLE.sub(lambda match: ascii(match[0])[1:-1], " ".join(body_excerpt.split()))
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def error_text(error: str, body_excerpt: str = "", hint: str = "") -> str:
    """An error as it reads on its own (a source's last error, a stream's error in the state
    database, a headless line): what happened, what the server said, then what to do."""
    reason = server_reason(body_excerpt)
    text = f"{error}: {reason}" if reason else error
    return f"{text}; {hint}" if hint else text


@dataclass(frozen=True)
class ErrorEvent:
    at: float  # wall clock, for display
    source: str
    status: int | None
    error: str  # exception type or HTTP status text, redacted
    url: str  # redacted
    body_excerpt: str  # redacted
    attempt: int
    next_step: str  # "retrying in 2.0 s", "source failed", ...
    # The error as it reads on its own (`error_text`); by default `error` and what the server
    # said. The error pane shows `error` instead, the excerpt in a column of its own.
    text: str = ""

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", error_text(self.error, self.body_excerpt))


class RunTelemetry:
    """Counters, the in-flight map and a bounded ring of errors for one run."""

    def __init__(self, max_errors: int = 500) -> None:
        self.sources: dict[str, SourceStats] = {}
        self.in_flight: dict[int, InFlightRequest] = {}
        self.errors: deque[ErrorEvent] = deque(maxlen=max_errors)
        self.errors_seen = 0  # every error so far, the ones the ring has dropped too
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self._ids: Iterator[int] = itertools.count(1)
        self._reporters: dict[str, SourceReporter] = {}

    def source(self, name: str) -> SourceStats:
        stats = self.sources.get(name)
        if stats is None:
            stats = self.sources[name] = SourceStats(name)
        return stats

    def reporter(self, source: str) -> SourceReporter:
        """The one reporter of `source`: its HTTP layer and its runner tell it what happens."""
        reporter = self._reporters.get(source)
        if reporter is None:
            reporter = self._reporters[source] = SourceReporter(self, self.source(source))
        return reporter

    def request_started(self, source: str, method: str, url: str, attempt: int) -> int:
        request_id = next(self._ids)
        stats = self.sources[source]
        stats.in_flight += 1
        self.in_flight[request_id] = InFlightRequest(
            request_id, source, method, url, time.monotonic(), attempt, stats.in_flight
        )
        stats.requests += 1
        stats.requests_rate.add()
        if attempt > 1:
            stats.retries += 1
        return request_id

    def request_finished(self, request_id: int, received_bytes: int = 0) -> InFlightRequest | None:
        """The request is no longer in flight; returns what it was (None if unknown)."""
        request = self.in_flight.pop(request_id, None)
        if request is not None:
            stats = self.sources[request.source]
            stats.in_flight -= 1
            stats.bytes += received_bytes
        return request

    def page_retrieved(self, source: str, records: int, position: str) -> None:
        stats = self.sources[source]
        stats.pages += 1
        stats.pages_this_run += 1
        stats.records += records
        stats.records_this_run += records
        stats.records_rate.add(records)
        stats.position = position

    def error(self, event: ErrorEvent) -> None:
        self.errors.append(event)
        self.errors_seen += 1
        stats = self.sources.get(event.source)
        if stats is not None:
            stats.errors += 1
            stats.last_error = event.text

    def totals(self) -> dict[str, int]:
        records = sum(s.records for s in self.sources.values())
        return {
            "sources": len(self.sources),
            "done": sum(1 for s in self.sources.values() if s.status is SourceStatus.DONE),
            "failed": sum(1 for s in self.sources.values() if s.status is SourceStatus.FAILED),
            "running": sum(1 for s in self.sources.values() if not s.status.finished),
            "records": records,
        }


class SourceReporter:
    """What happens to one source, turned into its `SourceStats`: the one place its status
    changes. Its HTTP layer reports here (this is `tui_connector.http.report.HttpReport`), and
    so may its runner, through the transitions below.

    - `start`: a run begins: running, or paused if a pause came first.
    - `backing_off` (a retry's wait, the source's hold): running becomes backing off; any
      other status stays, and `backoff_until` shows the wait all the same.
    - an attempt sent (`request_started`): backing off becomes running; `backoff_until` is
      cleared.
    - `pausing`, then `paused` once settled (only a pausing source becomes paused).
    - `resumed`: pending if it never started, backing off if still held, else running.
    - `finish`: done, failed or stopped; nothing waits any more. A finished source stays
      finished until its next `start`.
    """

    def __init__(self, telemetry: RunTelemetry, stats: SourceStats) -> None:
        self._telemetry = telemetry
        self.stats = stats
        # Told how every attempt went (an adaptive concurrency limit listens here).
        self.attempt_listener: Callable[[AttemptOutcome], None] | None = None

    # -- what the HTTP layer reports ------------------------------------------------------------

    def request_started(self, method: str, url: str, attempt: int) -> int:
        stats = self.stats
        # An attempt is sent: whatever the source was waiting for is over.
        if stats.status is SourceStatus.BACKING_OFF:
            stats.status = SourceStatus.RUNNING
        stats.backoff_until = None
        return self._telemetry.request_started(stats.name, method, url, attempt)

    def request_finished(
        self, request_id: int, size: int, status: int | None, timed_out: bool
    ) -> None:
        request = self._telemetry.request_finished(request_id, size)
        self._answered(status)
        listener = self.attempt_listener
        if listener is not None and request is not None:
            ended = time.monotonic()
            listener(
                AttemptOutcome(
                    request.started_at, ended, request.source_in_flight, status, timed_out
                )
            )

    def token_request_finished(
        self, request_id: int, size: int, status: int | None, timed_out: bool
    ) -> None:
        self._telemetry.request_finished(request_id, size)
        self._answered(status)

    def _answered(self, status: int | None) -> None:
        if status is not None and 100 <= status < 600:
            self.stats.answers_by_class[status // 100] += 1

    def retry_scheduled(self, error: Failure, wait: float) -> None:
        self.stats.retried_attempts += 1
        self._telemetry.error(
            ErrorEvent(
                at=time.time(),
                source=self.stats.name,
                status=error.status,
                error=error.message,
                url=error.url,
                body_excerpt=error.body_excerpt,
                attempt=error.attempts,
                next_step=f"retrying in {wait:.1f} s",
            )
        )
        self.backing_off(time.monotonic() + wait)

    def source_held(self, until: float) -> None:
        self.backing_off(until)

    def rate_limit_changed(self, per_second: float | None) -> None:
        self.stats.rate_limit = per_second

    def token_obtained(self, lifetime: float | None) -> None:
        stats = self.stats
        stats.tokens_obtained += 1
        stats.token_expires_at = None if lifetime is None else time.monotonic() + lifetime

    def warned(self, message: str) -> None:
        if message not in self.stats.warnings:
            self.stats.warnings.append(message)

    # -- the status ---------------------------------------------------------------------------

    def backing_off(self, until: float) -> None:
        """Nothing of the source is sent before `until` (monotonic). Only a running source
        shows it as its status."""
        stats = self.stats
        stats.backoff_until = until
        if stats.status is SourceStatus.RUNNING:
            stats.status = SourceStatus.BACKING_OFF

    def start(self, *, paused: bool) -> None:
        """A run of the source begins (paused before it began: it waits at once)."""
        self.stats.status = SourceStatus.PAUSED if paused else SourceStatus.RUNNING

    def pausing(self) -> None:
        """A pause was asked for: requests in flight finish, their pages are written."""
        if not self.stats.status.finished:
            self.stats.status = SourceStatus.PAUSING

    def paused(self) -> None:
        """A pausing source has settled: nothing in flight, everything committed."""
        if self.stats.status is SourceStatus.PAUSING:
            self.stats.status = SourceStatus.PAUSED

    def resumed(self, *, started: bool, held: bool) -> None:
        """The pause is over: pending if the source never started, backing off if its hold
        still runs (`backoff_until` is its end), else running. A finished source stays so."""
        stats = self.stats
        if stats.status.finished:
            return
        if not started:
            stats.status = SourceStatus.PENDING
        elif held:
            stats.status = SourceStatus.BACKING_OFF
        else:
            stats.status = SourceStatus.RUNNING

    def finish(self, status: SourceStatus) -> None:
        """The run of the source ended: done, failed or stopped. Nothing waits any more."""
        if not status.finished:
            raise ValueError(f"{status} is not how a run of a source ends")
        self.stats.status = status
        self.stats.backoff_until = None
