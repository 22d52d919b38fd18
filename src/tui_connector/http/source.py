"""`SourceHttp`: fetches the pages of one source, composing its client, rate limit, hold,
redirects, body reading and retries. What happened is told to its `HttpReport`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

from tui_connector.config import NextUrlPagination, OAuth2Auth, RetryPolicy, SourceSpec
from tui_connector.exchange import PageRequest
from tui_connector.http.attempt import Exchange
from tui_connector.http.body import Response, decode_response
from tui_connector.http.client import build_client, request_url
from tui_connector.http.hold import SourceHold
from tui_connector.http.oauth2 import OAuth2Tokens
from tui_connector.http.redirects import RedirectFollower
from tui_connector.http.report import HttpReport
from tui_connector.http.retry import Retries, status_error
from tui_connector.redact import Redactor


class Slot(Protocol):
    """What one attempt holds while its request is out (the engine's concurrency slots)."""

    @property
    def held_back(self) -> bool:
        """Entering it now waits until the source is resumed."""
        ...

    async def __aenter__(self) -> None: ...

    async def __aexit__(self, exc_type: Any, *exc_info: Any) -> None: ...


AttemptSlot = Callable[[], Slot]


class SourceHttp:
    """Fetches pages for one source with its client, limiter and retry policy."""

    def __init__(
        self,
        spec: SourceSpec,
        report: HttpReport,
        redactor: Redactor,
        pool_size: int,
        tokens: OAuth2Tokens | None = None,
    ) -> None:
        """`tokens`: the OAuth2 token the source shares with others (`oauth2.SharedTokens`);
        by default a source with `auth: {type: oauth2}` has one of its own."""
        self.spec = spec
        self.redact = redactor
        self._report = report
        self.client, self._auth_params = build_client(spec, pool_size)
        self.policy: RetryPolicy = spec.retry
        pagination = spec.pagination
        self._redirects = RedirectFollower(
            self.client,
            redactor,
            allow_other_hosts=(
                isinstance(pagination, NextUrlPagination) and pagination.allow_other_hosts
            ),
        )
        self._holds_source = self.policy.retry_after == "source"
        self._hold = SourceHold(self.policy, report)
        self._retries = Retries(self.policy, self._hold, report)
        self._exchange = Exchange(
            self._redirects.send,
            report.request_started,
            report.request_finished,
            redactor,
            spec.timeout.total,
            spec.max_response_size,
            hold=self._hold.extend_for if self._holds_source else None,
        )
        if tokens is None and isinstance(spec.auth, OAuth2Auth):
            tokens = OAuth2Tokens(spec.auth, redactor)
        self._tokens = (
            None
            if tokens is None
            else tokens.for_source(self.client, self.policy, spec.timeout.total, report)
        )
        self._limiter: AsyncLimiter | None = None
        self.set_rate_limit(spec.rate_limit)

    @property
    def held_until(self) -> float | None:
        """The monotonic time the source's Retry-After hold ends, or None if it is not held."""
        return self._hold.until

    def set_rate_limit(self, per_second: float | None) -> None:
        # A bucket of one second's worth of requests; below 1/s, one request per period.
        if not per_second:
            self._limiter = None
        elif per_second >= 1:
            self._limiter = AsyncLimiter(per_second, 1.0)
        else:
            self._limiter = AsyncLimiter(1, 1.0 / per_second)
        self._report.rate_limit_changed(per_second)

    async def aclose(self) -> None:
        if self._tokens is not None:
            await self._tokens.settle()  # a refresh this client may still be sending
        await self.client.aclose()

    def fetch(
        self,
        request: PageRequest,
        attempt_slot: AttemptSlot | None = None,
        interrupt: asyncio.Event | None = None,
    ) -> Coroutine[Any, Any, Response]:
        """Fetch and decode one page, retrying as the policy says. Raises FetchError.

        `attempt_slot` is entered around each attempt's request only (the engine's pause gate
        and concurrency slots), so a backoff sleep or the source's Retry-After hold holds no
        slot; setting `interrupt` cuts a backoff sleep and the hold short, so a stop never
        waits out a Retry-After (the attempt goes on to `attempt_slot`, which refuses it).
        """
        # Not a coroutine of its own: the retries' is the request's, one frame less a page.
        return self._retries.run(interrupt, self._attempt, request, attempt_slot, interrupt)

    async def _attempt(
        self,
        attempt: int,
        request: PageRequest,
        attempt_slot: AttemptSlot | None,
        interrupt: asyncio.Event | None,
        *,
        renewed_token: bool = False,
    ) -> Response:
        """One attempt; with OAuth2, a 401 renews the token and sends the request once more
        (`renewed_token`), which another 401 fails."""
        http_request = self.client.build_request(
            request.method, request_url(request, self._auth_params), json=request.json
        )
        shown_url = self.redact(str(http_request.url))
        if self._tokens is not None:  # before the turn: a token request takes a slot of its own
            await self._tokens.authorize(http_request, attempt_slot, interrupt)
        async with await self._turn(attempt_slot, interrupt):
            response, content = await self._exchange(http_request, shown_url, attempt)
        if response.status_code == 401 and self._tokens is not None:
            if renewed_token:
                raise self._tokens.still_rejected(response, content, shown_url, attempt)
            await self._tokens.rejected(http_request, attempt_slot, interrupt)
            return await self._attempt(
                attempt, request, attempt_slot, interrupt, renewed_token=True
            )
        if response.status_code >= 400:
            raise status_error(
                response,
                content,
                shown_url,
                attempt,
                self.policy,
                self.redact,
                has_auth=self.spec.auth is not None,
            )
        return decode_response(
            response, content, shown_url, attempt, self.redact, self.spec.response_format
        )

    # -- when an attempt may go ---------------------------------------------------------------

    async def _turn(
        self, attempt_slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> AbstractAsyncContextManager[None]:
        """What one attempt's request is sent within: a token of the rate limiter taken, then
        `attempt_slot`; with `retry_after: source`, only once the source's hold is over."""
        if self._holds_source:
            return self._held_turn(attempt_slot, interrupt)
        # No hold can begin: every request goes this way, so it takes no extra layer.
        if self._limiter is not None:
            await self._limiter.acquire()
        return attempt_slot() if attempt_slot else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def _held_turn(
        self, attempt_slot: AttemptSlot | None, interrupt: asyncio.Event | None
    ) -> AsyncIterator[None]:
        """`_turn` for `retry_after: source`: entered once the source's hold is over.

        A hold may begin while the attempt waits for its slot (a request in flight got a 429
        and gave its slot to this one): the attempt gives the slot back and waits again, so
        nothing reaches a server that said wait. Only `interrupt` lets it through a hold, on to
        `attempt_slot`, whose owner refuses it."""
        hold = self._hold
        while True:
            if hold.must_wait():
                await hold.wait_out(interrupt)
            if self._limiter is not None:
                await self._limiter.acquire()
            async with attempt_slot() if attempt_slot else contextlib.nullcontext():
                if not hold.holds(interrupt):
                    yield
                    return
