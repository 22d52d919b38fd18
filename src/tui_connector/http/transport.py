"""`TruthfulTransport`: a source's transport, whose every failure is an `httpx.TransportError`
that says what happened, in plain words, from the underlying cause.

It wraps the transport that does the work (`httpx_aiohttp.AiohttpTransport` by default,
`httpx.AsyncHTTPTransport` with `transport: httpx`) around the request and around the
reading of the response's body, where a connection can break too, so both transports read
alike:

- "connection refused (host:port)", "connection reset by peer", "no route to host (host:port)"
  (the OS's words; where connecting failed, to which server);
- "the server closed the connection without a response", "... before the response was
  complete: <detail>";
- "the server sent an invalid HTTP response: <detail>" (a bad status line, a bad chunk,
  bytes that are not HTTP);
- "DNS lookup of <host> failed: <reason>", "TLS handshake failed: <reason>", "TLS
  certificate verification failed: <reason>";
- a connect, read, write or pool timeout stays a `httpx.TimeoutException`, saying how long
  was waited and which setting says so.

Only a timeout is a timeout: the others are connection errors for retries and for adaptive
concurrency (a refused connection says nothing about how loaded the server is). TLS failures
and URLs that are not HTTP are not worth another attempt (`worth_retrying`).

Upstream: httpx-aiohttp 0.2.0 maps errors in `httpx_aiohttp.transport.map_aiohttp_exceptions`
through `AIOHTTP_EXC_MAP`, where `aiohttp.ClientConnectionError` maps to `httpx.ConnectTimeout`.
The loop keeps the most derived target class among all the matching entries, and
`ConnectTimeout` is not a base of `ConnectError`, so the `ClientConnectionError` entry wins over
`ClientConnectorError -> ConnectError` (and `ServerDisconnectedError`, `ClientOSError` reset
and the like match it alone): a refused, reset or unanswered connection becomes a timeout.
`ClientResponseError` (how aiohttp reports a malformed response: bad status line, bad chunk)
is in no entry, so it escapes unmapped. A fix upstream would map `ClientConnectionError` to
`httpx.NetworkError` (or `ReadError`), pick the most specific *source* class rather than the
most derived target, and map `ClientResponseError` caused by an `HttpProcessingError` to
`httpx.RemoteProtocolError`. This module classifies from the cause chain whatever the inner
transport raised, so it stays right with or without such a fix.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import _EXC_SENTINEL
from aiohttp.http_exceptions import HttpProcessingError
from httpx_aiohttp import AiohttpTransport

# What a transport may raise for a failed exchange; anything else is a bug and stays one.
_FAILURES = (aiohttp.ClientError, HttpProcessingError, httpx.TransportError, OSError)
_DETAIL = 200  # characters of an underlying message kept in ours

# Errors of the connection the OS reports, in its words, and the class each is.
_CONNECT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
_TIMEOUT_ERRNOS = frozenset({errno.ETIMEDOUT})

# How httpcore (h11) words a connection closed early; every other protocol error is an
# invalid response.
_H11_NO_RESPONSE = "Server disconnected without sending a response"
_H11_CUT_SHORT = "peer closed connection without sending complete message body"


class TlsFailed(httpx.ConnectError):
    """The TLS handshake failed: the next attempt would meet the same certificate and the
    same protocol, so it is not worth one."""


def worth_retrying(error: httpx.TransportError) -> bool:
    """Whether another attempt may go differently: not after a TLS failure or for a URL that
    is not HTTP; after anything else, yes (a reset, a refusal while a server restarts, a
    garbled reply from an overloaded proxy, a timeout)."""
    return not isinstance(error, TlsFailed | httpx.UnsupportedProtocol)


# What ends an exchange without a response to read: a timeout of ours, or the transport's.
EXCHANGE_FAILURES = (TimeoutError, httpx.TransportError, httpx.DecodingError)


@dataclass(frozen=True)
class ExchangeFailure:
    """An exchange that got no usable response, as the user reads it."""

    message: str
    retryable: bool = True
    timed_out: bool = False


def exchange_failure(exc: BaseException, total_timeout: float) -> ExchangeFailure:
    """What one of `EXCHANGE_FAILURES` means (`total_timeout`: the request's `timeout.total`,
    which our own `asyncio.timeout` enforces)."""
    if isinstance(exc, TimeoutError):
        return ExchangeFailure(
            f"no complete response within {total_timeout:g} s (timeout.total)", timed_out=True
        )
    if isinstance(exc, httpx.TimeoutException):
        said = f"timed out ({type(exc).__name__})"
        return ExchangeFailure(f"{said}: {exc}" if str(exc) else said, timed_out=True)
    if isinstance(exc, httpx.TransportError):  # said plainly by `TruthfulTransport`
        return ExchangeFailure(str(exc) or type(exc).__name__, retryable=worth_retrying(exc))
    if isinstance(exc, httpx.DecodingError):  # httpx undoing the body's Content-Encoding
        return ExchangeFailure(
            f"the response body does not decode as its Content-Encoding says: {exc}"
        )
    raise TypeError(f"not an exchange failure: {exc!r}")


def truthful_transport(
    kind: Literal["aiohttp", "httpx"], limits: httpx.Limits, verify: ssl.SSLContext
) -> TruthfulTransport:
    """The transport of a source's client: `kind` is its `transport:` ("aiohttp" or "httpx")."""
    inner: httpx.AsyncBaseTransport
    if kind == "httpx":
        inner = httpx.AsyncHTTPTransport(limits=limits, http2=False, verify=verify)
    else:
        inner = AiohttpTransport(
            limits=limits, verify=verify, client=functools.partial(_session, limits, verify)
        )
    return TruthfulTransport(inner)


class TruthfulTransport(httpx.AsyncBaseTransport):
    """`inner`, with every failure told as it happened (see the module docstring)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.userinfo:
            # httpx has turned a URL's user:password into the Authorization header already;
            # aiohttp refuses a URL that still carries them beside that header.
            request.url = request.url.copy_with(userinfo=b"")
        try:
            response = await self.inner.handle_async_request(request)
        except _FAILURES as exc:
            raise explain(exc, request) from exc
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an async transport's
        response.stream = _TruthfulStream(stream, request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _TruthfulStream(httpx.AsyncByteStream):
    """A response body read through the inner transport's stream: a connection that breaks,
    or a body that is not HTTP, is explained as the request's own failures are."""

    __slots__ = ("_inner", "_request")

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except _FAILURES as exc:
            raise explain(exc, self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except _FAILURES as exc:
            raise explain(exc, self._request) from exc


# -- what happened ------------------------------------------------------------------------


def explain(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The `httpx.TransportError` that says what `exc`, raised by a transport for `request`,
    means: its class (a timeout only for a timeout) and a plain message from its cause."""
    causes = list(_causes(exc))
    # The transport's own error: aiohttp's, under httpx-aiohttp's mapping; else the top one.
    origin = next((e for e in causes if isinstance(e, aiohttp.ClientError)), exc)
    timeout = _timeout(origin, request)
    if timeout is not None:
        return timeout
    for cause in reversed(causes):  # the root cause first: it knows most
        found = _from_the_system(cause, causes, request)
        if found is not None:
            return found
    return _from_the_protocol(origin, causes, request)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it: its explicit cause, else the exception it wraps as its
    argument (httpcore re-raises its errors `from None`, the cause kept only there), else
    the one it was raised while handling, as a traceback shows them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = current.args[0] if current.args else None
        if current.__cause__ is not None:
            current = current.__cause__
        elif isinstance(wrapped, BaseException):
            current = wrapped
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__


def _timeout(origin: BaseException, request: httpx.Request) -> httpx.TimeoutException | None:
    limits = request.extensions.get("timeout", {})

    def waited(key: str) -> str:
        seconds = limits.get(key)
        return f"{seconds:g} s" if isinstance(seconds, int | float) else "the time allowed"

    if isinstance(origin, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout):
        return httpx.ConnectTimeout(
            f"no connection within {waited('connect')} (timeout.connect)", request=request
        )
    if isinstance(origin, httpx.PoolTimeout):
        return httpx.PoolTimeout(
            f"no free connection within {waited('pool')} (timeout.total)", request=request
        )
    if isinstance(origin, httpx.WriteTimeout):
        return httpx.WriteTimeout(
            f"the request could not be sent within {waited('write')} (timeout.read)",
            request=request,
        )
    if isinstance(origin, aiohttp.ServerTimeoutError | httpx.TimeoutException | TimeoutError):
        return httpx.ReadTimeout(
            f"the server sent nothing for {waited('read')} (timeout.read)", request=request
        )
    return None


def _from_the_system(
    cause: BaseException, causes: list[BaseException], request: httpx.Request
) -> httpx.TransportError | None:
    """What the OS or the TLS library said, if `cause` is theirs."""
    verify_message = getattr(cause, "verify_message", None)  # not on aiohttp's subclass
    if isinstance(cause, ssl.SSLCertVerificationError) and verify_message:
        return TlsFailed(f"TLS certificate verification failed: {verify_message}", request=request)
    if isinstance(cause, ssl.SSLError) and not isinstance(cause, aiohttp.ClientError):
        # OpenSSL's reason code, in words: WRONG_VERSION_NUMBER, TLSV1_ALERT_PROTOCOL_VERSION.
        reason = cause.reason.replace("_", " ").lower() if cause.reason else str(cause)
        return TlsFailed(f"TLS handshake failed: {reason}", request=request)
    if isinstance(cause, socket.gaierror):
        reason = cause.strerror or str(cause)
        return httpx.ConnectError(
            f"DNS lookup of {request.url.host} failed: {reason}", request=request
        )
    if isinstance(cause, aiohttp.ClientConnectionResetError) and cause.errno is None:
        # aiohttp's word for a transport that closed under a write.
        return httpx.WriteError(
            "the server closed the connection while the request was being sent",
            request=request,
        )
    if not isinstance(cause, OSError) or not cause.errno:
        return None
    said = os.strerror(cause.errno)
    said = said[:1].lower() + said[1:]  # "connection refused", "connection reset by peer"
    if cause.errno in _TIMEOUT_ERRNOS:
        return httpx.ConnectTimeout(f"{said} ({server_of(request)})", request=request)
    if cause.errno == errno.EPIPE:
        return httpx.WriteError(
            f"the server closed the connection while the request was being sent ({said})",
            request=request,
        )
    connecting = cause.errno in _CONNECT_ERRNOS or any(
        isinstance(e, aiohttp.ClientConnectorError | httpx.ConnectError) for e in causes
    )
    if connecting:  # which server would not take the connection: the operator's first question
        return httpx.ConnectError(f"{said} ({server_of(request)})", request=request)
    return httpx.ReadError(said, request=request)


def server_of(request: httpx.Request) -> str:
    """The host and port a request went to (never the URL's user or password)."""
    url = request.url
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{port}" if port else host


def _from_the_protocol(
    origin: BaseException, causes: list[BaseException], request: httpx.Request
) -> httpx.TransportError:
    """What the HTTP exchange said: no reply, a reply cut short, an invalid one."""
    parse_error = next((e for e in causes if isinstance(e, HttpProcessingError)), None)
    parsed = _flat(parse_error.message) if parse_error is not None else ""
    if isinstance(origin, aiohttp.ServerDisconnectedError):
        return _no_response(request)
    if isinstance(origin, _InvalidBody):
        return _invalid(parsed, request)
    if isinstance(origin, aiohttp.ClientPayloadError):  # aiohttp's: the body ended early
        return _cut_short(parsed or _flat(str(origin)), request)
    if parse_error is not None:
        return _invalid(parsed, request)
    if isinstance(
        origin, aiohttp.NonHttpUrlClientError | aiohttp.InvalidURL | httpx.UnsupportedProtocol
    ):
        scheme = request.url.scheme
        return httpx.UnsupportedProtocol(f"not an HTTP URL ({scheme}://)", request=request)
    if isinstance(origin, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(f"the proxy failed: {_flat(str(origin))}", request=request)
    if isinstance(origin, httpx.RemoteProtocolError):  # httpcore's, from h11
        said = str(origin)
        if said.startswith(_H11_NO_RESPONSE):
            return _no_response(request)
        if said.startswith(_H11_CUT_SHORT):
            return _cut_short(said, request)
        return _invalid(said, request)
    if isinstance(origin, httpx.TransportError) and str(origin):
        return type(origin)(_flat(str(origin)), request=request)
    detail = _flat(str(origin)) or type(origin).__name__
    return httpx.ReadError(f"the connection failed: {detail}", request=request)


def _no_response(request: httpx.Request) -> httpx.TransportError:
    return httpx.ReadError("the server closed the connection without a response", request=request)


def _cut_short(detail: str, request: httpx.Request) -> httpx.TransportError:
    return httpx.ReadError(
        f"the server closed the connection before the response was complete: {detail}",
        request=request,
    )


def _invalid(detail: str, request: httpx.Request) -> httpx.TransportError:
    return httpx.RemoteProtocolError(
        f"the server sent an invalid HTTP response: {detail}", request=request
    )


def _flat(text: str) -> str:
    """A library's message on one line, bounded: aiohttp's parser errors span several lines,
    with a caret under the offending byte."""
    lines = (line.strip() for line in text.splitlines())
    flat = " ".join(line for line in lines if line and set(line) != {"^"})
    return flat if len(flat) <= _DETAIL else flat[: _DETAIL - 1] + "…"


# -- aiohttp's session ----------------------------------------------------------------------


def _session(limits: httpx.Limits, verify: ssl.SSLContext) -> aiohttp.ClientSession:
    """The session httpx-aiohttp would make, whose connections tell a body's reader when the
    body turns out not to be HTTP."""
    return aiohttp.ClientSession(connector=_Connector(limits, verify))


class _Connector(aiohttp.TCPConnector):
    """httpx-aiohttp's connector (a pool of `limits`, `verify` for TLS), whose connections
    are `_BodyFailingResponseHandler`s."""

    def __init__(self, limits: httpx.Limits, verify: ssl.SSLContext) -> None:
        super().__init__(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=verify,
        )
        handler: type[ResponseHandler] = _BodyFailingResponseHandler
        self._factory = functools.partial(handler, loop=self._loop)


class _BodyFailingResponseHandler(ResponseHandler):
    """aiohttp's connection protocol, with the body's reader told of a parse error.

    aiohttp 3.14's C parser (llhttp), finding an error in a body that arrives after the
    headers (a bad chunk size), drops the body's reader without an error, puts the error on
    the protocol alone and stops its read timeout: the reader waited for more of the body
    until `timeout.total`, which then read as a timeout. Here the reader gets the error at
    once. (Upstream: `HttpParser.feed_data` in `aiohttp/_http_parser.pyx` sets
    `self._payload = None` before raising, where the pure-Python parser calls
    `set_exception` on the payload.)"""

    def set_exception(self, exc: BaseException, exc_cause: BaseException = _EXC_SENTINEL) -> None:
        body = self._payload
        super().set_exception(exc, exc_cause)
        if (
            isinstance(exc, HttpProcessingError)
            and body is not None
            and body.exception() is None
            and not body.is_eof()
        ):
            body.set_exception(_InvalidBody("the body is not valid HTTP"), exc)


class _InvalidBody(aiohttp.ClientPayloadError):
    """A body found invalid as it arrived; aiohttp's own `ClientPayloadError` says that the
    connection ended before the body did."""
