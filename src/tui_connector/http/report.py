"""What the HTTP layer tells about one source's attempts: the `HttpReport` protocol.

`SourceHttp` reports what happened and owns no status: the source's "running" and "backing
off" are decided by whoever implements this protocol (the run's telemetry,
`tui_connector.telemetry.SourceReporter`). Every call is synchronous and O(1); the first two
are on every request's path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tui_connector.http.errors import FetchError


class HttpReport(Protocol):
    """The events of one source's HTTP traffic, as they happen.

    For each attempt: `request_started` once it holds its concurrency slot (so a retry or
    another stream of the source is under way again), then `request_finished` whatever came
    of it. Between attempts of one request: `retry_scheduled`. Whenever a `Retry-After` holds
    the whole source: `source_held`. URLs and error texts arrive redacted.
    """

    def request_started(self, method: str, url: str, attempt: int) -> int:
        """An attempt is sent now (`attempt` counts from 1). Returns the id that its
        `request_finished` gives back."""
        ...

    def request_finished(
        self, request_id: int, size: int, status: int | None, timed_out: bool
    ) -> None:
        """The attempt `request_id` ended: `size` bytes of body read (0 when it failed),
        its HTTP status (None when no response came), whether it ran out of time. An
        adaptive concurrency limit learns from these."""
        ...

    def token_request_finished(
        self, request_id: int, size: int, status: int | None, timed_out: bool
    ) -> None:
        """`request_finished` for an OAuth2 token request: a request of the source like any
        other, but no sample of the API's load (an adaptive limit does not learn from it)."""
        ...

    def retry_scheduled(self, error: FetchError, wait: float) -> None:
        """An attempt failed with a retryable `error` (its `attempts` the attempts made so
        far); the next one is sent in `wait` seconds at the earliest (its backoff, or the
        source's hold if that ends later)."""
        ...

    def source_held(self, until: float) -> None:
        """No attempt of the source is sent before `until` (monotonic), as a `Retry-After`
        asked: told when the hold begins, when a later one extends it, and while attempts
        wait it out."""
        ...

    def rate_limit_changed(self, per_second: float | None) -> None:
        """The source now sends at most `per_second` requests a second (None: no limit)."""
        ...

    def token_obtained(self, lifetime: float | None) -> None:
        """An OAuth2 access token arrived, good for `lifetime` seconds (None: not said)."""
        ...

    def warned(self, message: str) -> None:
        """What the operator should know, though nothing failed (said once; redacted)."""
        ...
