"""HTTP for one source: a pooled `httpx.AsyncClient` (aiohttp transport by default), auth,
rate limiting, retries with backoff and `Retry-After`, and the in-flight registry.

A `Retry-After` on a 429 or 503 delays the retry of the request that got it; with
`retry.retry_after: source` it holds the whole source: no attempt of the source (other
streams, partitions and parallel pages, retries) is sent before that time. Attempts wait out
the hold in line before they take their concurrency slots (the wait holds no slot, and a stop
cuts it short), then go in the order they were held.

It knows nothing of pagination, storage or the UI: it turns a `PageRequest` into decoded JSON
or raises a `FetchError` that says what happened, with every secret redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import humanize
import orjson
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from tui_connector.config import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    NextUrlPagination,
    RetryPolicy,
    SourceSpec,
)
from tui_connector.exchange import PageRequest, same_origin
from tui_connector.redact import Redactor
from tui_connector.telemetry import ErrorEvent, RunTelemetry, SourceStatus

USER_AGENT = "tui-connector"
MAX_REDIRECTS = 10
_EXCERPT = 300
_REDACTED_WINDOW = 64 * 1024  # of an error body, searched for secrets before the excerpt is cut
# The statuses whose Retry-After holds the whole source: the server is overloaded or limiting
# the client, so any request of the source would get the same answer.
_HOLDING_STATUSES = frozenset({429, 503})
# What a response's stream is once its body has been read (see `_read_body`).
_READ_STREAM = httpx.ByteStream(b"")

# Digits as "1", every other byte as "0": 19 ones in a row are a number orjson may not hold
# exactly (it turns integers past 64 bits into floats, without a word).
_DIGIT_MAP = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_LONG_NUMBER = b"1" * 19


class FetchError(Exception):
    """A request that failed; `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        body_excerpt: str = "",
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.body_excerpt = body_excerpt
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Response:
    url: str  # the URL requested, with its query (not redacted: pagination resolves links on it)
    headers: httpx.Headers
    body: Any
    size: int


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt went, for an adaptive concurrency limit."""

    started: float  # monotonic
    ended: float
    in_flight: int  # the source's requests in flight when it started, itself included
    status: int | None  # None when no response came
    timed_out: bool


def decode_json(content: bytes) -> Any:
    """A response body as Python values, exactly as `json.loads` gives them. orjson decodes a
    page in less than half the stdlib's time, and decoding is the client's largest cost of a
    page. The stdlib decodes what orjson refuses (NaN, a byte-order mark, UTF-16, invalid
    JSON, for its error message) and any body with 19 digits in a row, whose integers orjson
    could change. Finding those costs about a fifth of what orjson saves. (One difference is
    left: orjson decodes arrays nested 995 to 1024 deep, where the stdlib raises
    RecursionError, as it does for anything deeper.)"""
    if _LONG_NUMBER not in content.translate(_DIGIT_MAP):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


async def _release(response: httpx.Response) -> None:
    """Close a response and let go of its stream. httpx's response and its stream refer to
    each other, so each request's objects (30-odd, with aiohttp's) were otherwise left for
    the garbage collector to find and free."""
    await response.aclose()
    response.stream = _READ_STREAM


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


def _auth_and_params(spec: SourceSpec) -> tuple[httpx.Auth | None, dict[str, str], dict[str, str]]:
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    auth: httpx.Auth | None = None
    match spec.auth:
        case BearerAuth(token=token):
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        case BasicAuth(username=username, password=password):
            auth = httpx.BasicAuth(username, password.get_secret_value())
        case ApiKeyAuth(key=key, header=header, param=param):
            if header:
                headers[header] = key.get_secret_value()
            elif param:
                params[param] = key.get_secret_value()
    return auth, headers, params


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every source: building one loads the CA bundle, about 16 ms of
    blocked event loop each, which a config of a hundred sources paid at every start."""
    return httpx.create_ssl_context()


def build_client(spec: SourceSpec, pool_size: int) -> tuple[httpx.AsyncClient, dict[str, str]]:
    """One client per source; the pool is as large as the most the source may ever run at once,
    so no request waits in the pool behind the concurrency limiter's back."""
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    timeout = httpx.Timeout(
        connect=spec.timeout.connect,
        read=spec.timeout.read,
        write=spec.timeout.read,
        pool=spec.timeout.total,
    )
    transport: httpx.AsyncBaseTransport
    if spec.transport == "httpx":
        transport = httpx.AsyncHTTPTransport(limits=limits, http2=False, verify=_tls_context())
    else:
        transport = AiohttpTransport(limits=limits, verify=_tls_context())
    auth, auth_headers, auth_params = _auth_and_params(spec)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    headers.update({name: str(value) for name, value in spec.headers.items()})
    headers.update(auth_headers)
    client = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        headers=headers,
        auth=auth,
        follow_redirects=False,  # SourceHttp follows them, refusing other hosts
    )
    # Query params are merged into each URL by the caller: httpx replaces a URL's query with
    # any params given (client-level ones included), which would drop a next link's query.
    return client, auth_params


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, FetchError) and exc.retryable


async def _sleep(seconds: float, interrupt: asyncio.Event | None) -> None:
    """Sleep, cut short when `interrupt` is set."""
    if interrupt is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupt.wait(), seconds)


class SourceHttp:
    """Fetches pages for one source with its client, limiter and retry policy."""

    def __init__(
        self,
        spec: SourceSpec,
        telemetry: RunTelemetry,
        redactor: Redactor,
        pool_size: int,
    ) -> None:
        self.spec = spec
        self.telemetry = telemetry
        self.redact = redactor
        self.client, self._auth_params = build_client(spec, pool_size)
        self.policy: RetryPolicy = spec.retry
        pagination = spec.pagination
        self._allow_other_hosts = (
            isinstance(pagination, NextUrlPagination) and pagination.allow_other_hosts
        )
        self._limiter: AsyncLimiter | None = None
        self.set_rate_limit(spec.rate_limit)
        # Told how every attempt went (the engine's adaptive concurrency listens here).
        self.observer: Callable[[AttemptOutcome], None] | None = None
        self._backoff_jitter = wait_random_exponential(
            multiplier=max(self.policy.backoff_base, 0.001), max=self.policy.backoff_max
        )
        # Monotonic time before which no attempt of this source is sent: the latest
        # Retry-After of a 429 or 503. It outlives a run of the source, so a quick retry of a
        # failed source still waits.
        self._not_before = 0.0
        # Attempts wait out the hold in line (asyncio.Lock is first come, first served): when
        # it ends they go in the order they were held, and a retry, in line from its 429 on,
        # goes first instead of losing the race to the server's free capacity again and again.
        self._hold_line = asyncio.Lock()

    @property
    def held_until(self) -> float | None:
        """The monotonic time the source's Retry-After hold ends, or None if it is not held."""
        return self._not_before if self._not_before > time.monotonic() else None

    def set_rate_limit(self, per_second: float | None) -> None:
        # A bucket of one second's worth of requests; below 1/s, one request per period.
        if not per_second:
            self._limiter = None
        elif per_second >= 1:
            self._limiter = AsyncLimiter(per_second, 1.0)
        else:
            self._limiter = AsyncLimiter(1, 1.0 / per_second)
        self.telemetry.source(self.spec.name).rate_limit = per_second

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(
        self,
        request: PageRequest,
        attempt_slot: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        interrupt: asyncio.Event | None = None,
    ) -> Response:
        """Fetch and decode one page, retrying as the policy says. Raises FetchError.

        `attempt_slot` is entered around each attempt's request only (the engine's pause gate
        and concurrency slots), so a backoff sleep or the source's Retry-After hold holds no
        slot; setting `interrupt` cuts a backoff sleep and the hold short, so a stop never
        waits out a Retry-After (the attempt goes on to `attempt_slot`, which refuses it).
        """

        # Most requests succeed at once: they skip tenacity, whose per-request setup and
        # bookkeeping cost a measurable share of a request's CPU.
        try:
            return await self._attempt(request, 1, attempt_slot, interrupt)
        except FetchError as exc:
            if not exc.retryable or self.policy.max_attempts == 1:
                raise
            first_failure = exc

        retrying = AsyncRetrying(
            sleep=functools.partial(_sleep, interrupt=interrupt),
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        attempt_number = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    if attempt_number == 1:
                        raise first_failure  # replayed: tenacity waits and retries as usual
                    return await self._attempt(request, attempt_number, attempt_slot, interrupt)
        except FetchError as exc:
            exc.attempts = attempt_number
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _attempt(
        self,
        request: PageRequest,
        attempt: int,
        attempt_slot: Callable[[], AbstractAsyncContextManager[None]] | None,
        interrupt: asyncio.Event | None,
    ) -> Response:
        http_request = self.client.build_request(
            request.method, self._full_url(request), json=request.json
        )
        shown_url = self.redact(str(http_request.url))
        async with await self._turn(attempt_slot, interrupt):
            stats = self.telemetry.source(self.spec.name)
            if stats.status is SourceStatus.BACKING_OFF:
                stats.status = SourceStatus.RUNNING
            stats.backoff_until = None
            request_id = self.telemetry.request_started(
                self.spec.name, request.method, shown_url, attempt
            )
            started, in_flight = time.monotonic(), stats.in_flight
            size = 0
            status: int | None = None
            timed_out = False
            try:
                async with asyncio.timeout(self.spec.timeout.total):
                    response = await self._send_following_redirects(http_request, attempt)
                    status = response.status_code
                    self._hold_for_retry_after(response)  # before the slot is given back
                    content = await self._read_body(response, shown_url, attempt)
                size = len(content)
            except TimeoutError:
                timed_out = True
                raise self._error(
                    f"no complete response within {self.spec.timeout.total:g} s (timeout.total)",
                    shown_url,
                    attempt,
                ) from None
            except httpx.TimeoutException as exc:
                timed_out = True
                raise self._error(f"timed out ({type(exc).__name__})", shown_url, attempt) from None
            except httpx.TransportError as exc:
                detail = self.redact(str(exc)) or type(exc).__name__
                raise self._error(f"connection failed: {detail}", shown_url, attempt) from None
            finally:
                self.telemetry.request_finished(request_id, size)
                if self.observer is not None:
                    ended = time.monotonic()
                    self.observer(AttemptOutcome(started, ended, in_flight, status, timed_out))
        return self._decode(response, content, shown_url, attempt)

    # -- the source's Retry-After hold --------------------------------------------------------

    async def _turn(
        self,
        attempt_slot: Callable[[], AbstractAsyncContextManager[None]] | None,
        interrupt: asyncio.Event | None,
    ) -> AbstractAsyncContextManager[None]:
        """What one attempt's request is sent within: a token of the rate limiter taken, then
        `attempt_slot`; with `retry_after: source`, only once the source's hold is over."""
        if self.policy.retry_after == "source":
            return self._held_turn(attempt_slot, interrupt)
        # No hold can begin: every request goes this way, so it takes no extra layer.
        if self._limiter is not None:
            await self._limiter.acquire()
        return attempt_slot() if attempt_slot else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def _held_turn(
        self,
        attempt_slot: Callable[[], AbstractAsyncContextManager[None]] | None,
        interrupt: asyncio.Event | None,
    ) -> AsyncIterator[None]:
        """`_turn` for `retry_after: source`: entered once the source's hold is over.

        A hold may begin while the attempt waits for its slot (a request in flight got a 429
        and gave its slot to this one): the attempt gives the slot back and waits again, so
        nothing reaches a server that said wait. Only `interrupt` lets it through a hold, on to
        `attempt_slot`, whose owner refuses it."""
        while True:
            if self._not_before > time.monotonic() or self._hold_line.locked():
                await self._wait_out_hold(interrupt)
            if self._limiter is not None:
                await self._limiter.acquire()
            async with attempt_slot() if attempt_slot else contextlib.nullcontext():
                if not self._holds(interrupt):
                    yield
                    return

    def _holds(self, interrupt: asyncio.Event | None) -> bool:
        if interrupt is not None and interrupt.is_set():
            return False
        return self._not_before > time.monotonic()

    async def _wait_out_hold(self, interrupt: asyncio.Event | None) -> None:
        async with self._hold_line:
            # Again until it is over: another 429 may extend the hold during the wait.
            while self._holds(interrupt):
                self._show_backing_off(self._not_before)
                await _sleep(self._not_before - time.monotonic(), interrupt)

    def _hold_for_retry_after(self, response: httpx.Response) -> None:
        """With `retry.retry_after: source`, a 429 or 503 with a Retry-After holds every
        attempt of the source until then (one longer than `retry.max_wait` fails its fetch
        instead, in `_decode`)."""
        if response.status_code not in _HOLDING_STATUSES:
            return
        if self.policy.retry_after != "source":
            return
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait and wait <= self.policy.max_wait:
            self._not_before = max(self._not_before, time.monotonic() + wait)
            self._show_backing_off(self._not_before)

    def _show_backing_off(self, until: float) -> None:
        stats = self.telemetry.source(self.spec.name)
        stats.backoff_until = max(until, self._not_before)
        if stats.status is SourceStatus.RUNNING:
            stats.status = SourceStatus.BACKING_OFF

    # -- requests -----------------------------------------------------------------------------

    def _full_url(self, request: PageRequest) -> str | httpx.URL:
        """The URL with the request's and the auth's params. Parsing a URL is a good part of
        a request's CPU time, so a URL without a query of its own (the common case) gets its
        params appended as text; one with a query has them merged, replacing its own."""
        params = {**request.params, **self._auth_params}
        if not params:
            return request.url
        if "?" not in request.url:
            return f"{request.url}?{urlencode(params, quote_via=quote)}"
        return httpx.URL(request.url).copy_merge_params(params)

    async def _read_body(self, response: httpx.Response, shown_url: str, attempt: int) -> bytes:
        """The body of a streamed response, refused past `max_response_size`: a broken or
        hostile server must not make the process hold gigabytes."""
        limit = self.spec.max_response_size
        try:
            declared = int(response.headers.get("Content-Length", "0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await _release(response)
            raise self._too_large(response, shown_url, attempt)
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise self._too_large(response, shown_url, attempt)
        finally:
            await _release(response)
        return bytes(body)

    def _too_large(self, response: httpx.Response, shown_url: str, attempt: int) -> FetchError:
        # Built only when refusing: `humanize` per response was a line of the profile.
        shown = humanize.naturalsize(self.spec.max_response_size, binary=True)
        message = (
            f"the response is larger than max_response_size ({shown}); raise "
            "max_response_size if the API really sends pages this large, or ask for "
            "smaller pages"
        )
        return self._error(message, shown_url, attempt, response=response, retryable=False)

    async def _send_following_redirects(
        self, http_request: httpx.Request, attempt: int
    ) -> httpx.Response:
        """Follow redirects by hand: httpx would forward custom auth headers (an API key) to
        another host, where only `Authorization` is dropped."""
        first = http_request.url
        for _ in range(MAX_REDIRECTS + 1):
            response = await self.client.send(http_request, stream=True)
            if not response.has_redirect_location:
                return response
            await _release(response)
            target = http_request.url.join(response.headers["Location"])
            if not same_origin(str(target), str(first)) and not self._allow_other_hosts:
                raise self._error(
                    f"HTTP {response.status_code} redirect to another host "
                    f"({self.redact(str(target.copy_with(query=None)))}) refused: it would "
                    "receive your credentials; set pagination.allow_other_hosts: true "
                    "if you trust it",
                    self.redact(str(http_request.url)),
                    attempt,
                    retryable=False,
                )
            keeps_body = response.status_code in (307, 308)
            headers = {
                name: value
                for name, value in http_request.headers.items()
                if name.lower() not in ("host", "content-length")
                and (keeps_body or name.lower() != "content-type")
            }
            http_request = self.client.build_request(
                http_request.method if keeps_body else "GET",
                target,
                content=http_request.content if keeps_body else None,
                headers=headers,
            )
        raise self._error(
            f"more than {MAX_REDIRECTS} redirects (a redirect loop?)",
            self.redact(str(http_request.url)),
            attempt,
            retryable=False,
        )

    def _decode(
        self, response: httpx.Response, content: bytes, shown_url: str, attempt: int
    ) -> Response:
        status = response.status_code
        if status >= 400:
            retryable = status in self.policy.statuses
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.policy.max_wait:
                raise self._error(
                    f"HTTP {status}: the server asks to wait {retry_after:.0f} s (Retry-After), "
                    f"more than retry.max_wait ({self.policy.max_wait:g} s); "
                    "raise retry.max_wait or run again later",
                    shown_url,
                    attempt,
                    response=response,
                    content=content,
                    retryable=False,
                )
            hint = "" if retryable else _status_hint(status)
            raise self._error(
                f"HTTP {status} {response.reason_phrase}{hint}",
                shown_url,
                attempt,
                response=response,
                content=content,
                retryable=retryable,
                retry_after=retry_after,
            )
        try:
            body = decode_json(content)
        except RecursionError:
            raise self._error(
                "response nests arrays and objects too deeply to decode (about 1000 levels "
                "or more)",
                shown_url,
                attempt,
                response=response,
                content=content,
                retryable=False,
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            content_type = response.headers.get("Content-Type", "no content type")
            raise self._error(
                f"response is not valid JSON ({content_type}; {exc})",
                shown_url,
                attempt,
                response=response,
                content=content,
            ) from None
        return Response(str(response.url), response.headers, body, len(content))

    def _error(
        self,
        message: str,
        shown_url: str,
        attempt: int,
        *,
        response: httpx.Response | None = None,
        content: bytes = b"",
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> FetchError:
        # Redacted before it is cut: cut first, a secret at the cut would show its first half.
        excerpt = self.redact(content[:_REDACTED_WINDOW].decode("utf-8", "replace"))[:_EXCERPT]
        error = FetchError(
            self.redact(message),
            url=shown_url,
            status=response.status_code if response is not None else None,
            body_excerpt=excerpt,
            retryable=retryable,
            retry_after=retry_after,
        )
        error.attempts = attempt
        return error

    # -- retry policy ----------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, FetchError) and exc.retry_after is not None:
            if exc.status in _HOLDING_STATUSES and self.policy.retry_after == "source":
                return 0.0  # the source's hold waits it out, the retry first in its line
            return exc.retry_after
        return float(self._backoff_jitter(state))

    async def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        # The retry goes once both its backoff and the source's hold are over.
        wait = max(state.upcoming_sleep, self._not_before - time.monotonic())
        if isinstance(exc, FetchError):
            self.telemetry.error(
                ErrorEvent(
                    at=time.time(),
                    source=self.spec.name,
                    status=exc.status,
                    error=exc.message,
                    url=exc.url,
                    body_excerpt=exc.body_excerpt,
                    attempt=state.attempt_number,
                    next_step=f"retrying in {wait:.1f} s",
                )
            )
        self._show_backing_off(time.monotonic() + wait)


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "; check the source's auth credentials (and the environment variable behind them)"
    if status == 404:
        return "; check the source's url"
    return ""
