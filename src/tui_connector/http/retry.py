"""The retry policy: what an error status means, how long to wait before the next attempt
(backoff with jitter, or the server's `Retry-After`), and the attempts of one request: the
first, then the loop of those after it when it failed (tenacity)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar, TypeVarTuple

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from tui_connector.config import RetryPolicy
from tui_connector.http.errors import FetchError, fetch_error
from tui_connector.http.report import HttpReport
from tui_connector.redact import Redactor

if TYPE_CHECKING:
    from tui_connector.http.hold import SourceHold

# The statuses whose Retry-After holds the whole source (with `retry_after: source`): the
# server is overloaded or limiting the client, so any request of the source would get the
# same answer.
HOLDING_STATUSES = frozenset({429, 503})

_Result = TypeVar("_Result")  # of an attempt: a page's `Response`, an OAuth2 token's answer
_Args = TypeVarTuple("_Args")  # what an attempt is given besides its number


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def sleep(seconds: float, interrupt: asyncio.Event | None) -> None:
    """Sleep, cut short when `interrupt` is set."""
    if interrupt is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupt.wait(), seconds)


def status_error(
    response: httpx.Response,
    content: bytes,
    shown_url: str,
    attempt: int,
    policy: RetryPolicy,
    redact: Redactor,
    *,
    has_auth: bool,
) -> FetchError:
    """The error an HTTP status of 400 or more means: retryable if the retry `policy` says
    so, with the server's `Retry-After`; one longer than `retry.max_wait` fails the request at
    once. A refusal's hint says to check the credentials, or (`has_auth` false: the request
    carried none) to add an `auth:`."""
    status = response.status_code
    retryable = status in policy.statuses
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is not None and retry_after > policy.max_wait:
        return fetch_error(
            redact,
            f"HTTP {status}: the server asks to wait {retry_after:.0f} s (Retry-After), "
            f"more than retry.max_wait ({policy.max_wait:g} s); "
            "raise retry.max_wait or run again later",
            shown_url,
            attempt,
            status=status,
            content=content,
            retryable=False,
        )
    hint = "" if retryable else _status_hint(status, response.headers, has_auth=has_auth)
    return fetch_error(
        redact,
        f"HTTP {status} {response.reason_phrase}",
        shown_url,
        attempt,
        status=status,
        content=content,
        retryable=retryable,
        retry_after=retry_after,
        hint=hint,
    )


def _status_hint(status: int, headers: httpx.Headers, *, has_auth: bool) -> str:
    if status in (401, 403):
        if has_auth:
            return "check the source's auth credentials (and the environment variable behind them)"
        return _add_auth_hint(status, _challenged_scheme(headers))
    if status == 404:
        return "check the source's url"
    return ""


def _add_auth_hint(status: int, scheme: str) -> str:
    """What a server that refused a source without `auth:` wants, and how to give it."""
    example = (
        'auth: {type: basic, username: NAME, password: "${API_PASSWORD}"}'
        if scheme.lower() == "basic"
        else 'auth: {type: bearer, token: "${API_TOKEN}"}'
    )
    add = f"add auth: to the source in sources.yaml, e.g. {example}"
    if status == 401:
        asked = f" ({scheme})" if scheme else ""
        return f"the server wants authentication{asked} and the source sends none: {add}"
    return f"the server refuses access and the source sends no credentials; if it needs them, {add}"


def _challenged_scheme(headers: httpx.Headers) -> str:
    """The scheme a `WWW-Authenticate` challenge asks for ("Bearer"), or ""."""
    scheme = headers.get("WWW-Authenticate", "").strip().partition(" ")[0]
    return scheme if scheme.replace("-", "").isalnum() and len(scheme) <= 30 else ""


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, FetchError) and exc.retryable


class Retries:
    """The attempts after a first one failed, as the source's policy says: each waits its
    backoff (or the server's `Retry-After`), and the source's hold if that ends later."""

    def __init__(self, policy: RetryPolicy, hold: SourceHold, report: HttpReport) -> None:
        self.policy = policy
        self._hold = hold
        self._report = report
        self._backoff_jitter = wait_random_exponential(
            multiplier=max(policy.backoff_base, 0.001), max=policy.backoff_max
        )

    def tries_again(self, failure: FetchError, attempt: int) -> bool:
        """Whether attempt number `attempt`, failed with `failure`, is followed by another."""
        return failure.retryable and attempt < self.policy.max_attempts

    async def run(
        self,
        interrupt: asyncio.Event | None,
        attempt: Callable[[int, *_Args], Awaitable[_Result]],
        *args: *_Args,
    ) -> _Result:
        """The attempts of one request, `attempt(number, *args)`: the first, then (if it
        failed and may be retried) those of `after`. Raises the last FetchError.

        The attempt and its arguments are passed apart, not as a closure: most requests
        succeed at once, and this is on every request's path."""
        try:
            return await attempt(1, *args)
        except FetchError as exc:
            if not self.tries_again(exc, 1):
                raise
            first_failure = exc
        return await self.after(first_failure, interrupt, attempt, *args)

    async def after(
        self,
        first_failure: FetchError,
        interrupt: asyncio.Event | None,
        attempt: Callable[[int, *_Args], Awaitable[_Result]],
        *args: *_Args,
    ) -> _Result:
        """Attempt 2, 3, ... (`attempt(number, *args)`) until one succeeds, fails for good or
        the policy's attempts are spent; raises the last FetchError, its `attempts` set.

        Setting `interrupt` cuts a backoff sleep short."""
        # Set up only now: most requests succeed at once, and tenacity's per-request setup
        # and bookkeeping cost a measurable share of a request's CPU.
        retrying = AsyncRetrying(
            sleep=functools.partial(sleep, interrupt=interrupt),
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempt_number = 0
        try:
            async for try_ in retrying:
                with try_:
                    attempt_number = try_.retry_state.attempt_number
                    if attempt_number == 1:
                        raise first_failure  # replayed: tenacity waits and retries as usual
                    return await attempt(attempt_number, *args)
        except FetchError as exc:
            exc.attempts = attempt_number
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, FetchError) and exc.retry_after is not None:
            if exc.status in HOLDING_STATUSES and self.policy.retry_after == "source":
                return 0.0  # the source's hold waits it out, the retry first in its line
            return exc.retry_after
        return float(self._backoff_jitter(state))

    async def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, FetchError):  # only FetchErrors are retried: `_is_retryable`
            return
        # The retry goes once both its backoff and the source's hold are over.
        wait = max(state.upcoming_sleep, self._hold.not_before - time.monotonic())
        self._report.retry_scheduled(exc, wait)
