"""`Exchange`: one attempt's request sent and its body read within the request's total
timeout, told to the source's `HttpReport` as it starts and ends, any failure a `FetchError`
that says what happened. A page's attempts and an OAuth2 token request's go through one each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from tui_connector.http.body import ResponseTooLarge, read_body
from tui_connector.http.errors import fetch_error
from tui_connector.http.retry import HOLDING_STATUSES
from tui_connector.http.transport import EXCHANGE_FAILURES, exchange_failure
from tui_connector.redact import Redactor

# How an attempt's end is told: `HttpReport.request_finished` or `token_request_finished`.
Finished = Callable[[int, int, "int | None", bool], None]


class Exchange:
    """Sends requests of one kind (a source's pages, or its token requests) with `send`,
    reading each body up to `body_limit` bytes. Built once per source, not per request: every
    request goes through here."""

    __slots__ = ("_body_limit", "_finished", "_hold", "_redact", "_send", "_started", "_timeout")

    def __init__(
        self,
        send: Callable[[httpx.Request, int], Awaitable[httpx.Response]],
        started: Callable[[str, str, int], int],
        finished: Finished,
        redact: Redactor,
        total_timeout: float,
        body_limit: int,
        hold: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        """`started` and `finished`: the report's; `hold` is told of a response whose status
        may hold the whole source (429, 503), before its body is read."""
        self._send = send
        self._started = started
        self._finished = finished
        self._redact = redact
        self._timeout = total_timeout
        self._body_limit = body_limit
        self._hold = hold

    async def __call__(
        self, request: httpx.Request, shown_url: str, attempt: int
    ) -> tuple[httpx.Response, bytes]:
        """The response to `request` (attempt `attempt`, at the redacted `shown_url`) and its
        body. Raises FetchError."""
        request_id = self._started(request.method, shown_url, attempt)
        size = 0
        status: int | None = None
        timed_out = False
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._send(request, attempt)
                status = response.status_code
                if status in HOLDING_STATUSES and self._hold is not None:
                    self._hold(response)  # before the caller's slot is given back
                content = await read_body(response, self._body_limit)
            size = len(content)
        except EXCHANGE_FAILURES as exc:
            failure = exchange_failure(exc, self._timeout)
            timed_out = failure.timed_out
            raise fetch_error(
                self._redact,
                failure.message,
                shown_url,
                attempt,
                # A body that does not decode came with its status; the others with none.
                status=status if isinstance(exc, httpx.DecodingError) else None,
                retryable=failure.retryable,
            ) from None
        except ResponseTooLarge as exc:
            raise fetch_error(
                self._redact, str(exc), shown_url, attempt, status=status, retryable=False
            ) from None
        finally:
            self._finished(request_id, size, status, timed_out)
        return response, content
