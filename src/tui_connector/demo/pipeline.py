"""The request pipeline every dataset route goes through: admission (``capacity``), latency,
auth, the fault draw, the handler, and sending its reply (whole, streamed, or never), logging the
request as it ends. Requests held open (no answer, a streamed body) are watched for their client
going and aborted when the server stops.

Faults (``DemoKnobs.fault_rate``; ``DemoKnobs.faults`` picks among them, by default all of
``FAULTS``) and latency apply to the dataset routes only; whether a request faults is a pure
function of the seed, the request and how often it was seen (see ``faults``). Each faulted
request is logged with the fault's name:

- ``429``: 429 with ``Retry-After`` in seconds (``retry_after_s``); ``429-date``: the same with an
  HTTP date. ``500``: a 500. ``503``: a 503 with ``Retry-After`` in seconds.
- ``slow``: the reply comes ``slow_ms`` (default 2000) late. A client whose read timeout is
  shorter sees a read timeout: this is how read timeouts are tested (``hang`` never answers).
- ``drop``: the connection is closed before anything is sent (logged with status 0).
- ``truncate``: the first half of the body, with a ``Content-Length`` to match (or chunked, as the
  route does): a clean response whose body is not valid JSON.
- ``html-200``: 200 ``text/html`` with a proxy's HTML error page (``<h1>502 Bad Gateway</h1>``).
- ``wrong-content-type``: the right JSON reply, labelled ``text/html; charset=utf-8`` (a client
  should still accept it: it is valid JSON).
- ``drop-mid-body``: the status and headers with the whole body's ``Content-Length`` (or chunked,
  as the route does), half the body, then the connection closed: the client sees a connection
  closed mid-body, not a clean short body.

``429`` to ``503``, ``html-200`` and ``drop`` replace any route's reply; ``truncate`` and
``drop-mid-body`` need a body of known size and ``wrong-content-type`` a reply, so those do not
apply to ``trickle`` (the first two) nor to ``hang`` (all three): such a request is served
unfaulted and logged with fault None.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from email.utils import formatdate

from aiohttp import web

from tui_connector.demo.faults import decide, request_key
from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.replies import (
    CUTS,
    JSON_TYPE,
    NO_ANSWER,
    BadRequest,
    Handler,
    Reply,
    StreamedBody,
    json_bytes,
)
from tui_connector.demo.state import DemoState, RequestLogEntry


def _seconds(value: float) -> str:
    """Retry-After delta seconds: an integer when whole, else a short decimal (demo speed-up)."""
    if value == int(value):
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


#: What the ``html-200`` fault answers: a proxy's error page, with status 200.
_HTML_ERROR_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<h1>502 Bad Gateway</h1>\r\n"
    b"<p>The upstream server sent an invalid response (injected fault).</p>\r\n"
    b"<hr><center>demo-proxy</center>\r\n</body>\r\n</html>\r\n"
)


def _fault_reply(fault: str, knobs: DemoKnobs) -> Reply | None:
    if fault == "429":
        return Reply(
            {"error": "too many requests"}, 429, {"Retry-After": _seconds(knobs.retry_after_s)}
        )
    if fault == "429-date":
        when = math.ceil(time.time() + knobs.retry_after_s)
        return Reply(
            {"error": "too many requests"}, 429, {"Retry-After": formatdate(when, usegmt=True)}
        )
    if fault == "500":
        return Reply({"error": "internal server error (injected fault)"}, 500)
    if fault == "503":
        return Reply(
            {"error": "service unavailable (injected fault)"},
            503,
            {"Retry-After": _seconds(knobs.retry_after_s)},
        )
    if fault == "html-200":
        return Reply(_HTML_ERROR_PAGE, content_type="text/html")
    return None


def _headers(reply: Reply, fault: str | None) -> dict[str, str]:
    content_type = "text/html; charset=utf-8" if fault == "wrong-content-type" else None
    return {**(reply.headers or {}), "Content-Type": content_type or reply.content_type}


#: How often a held request (no answer, a streamed body) checks that its client is still there.
_POLL_S = 0.05
#: The connections of the requests held open (no answer yet, or a body being streamed):
#: aborted when the server stops, so that stopping never waits for them.
_HELD = web.AppKey("held", set[asyncio.Transport])

_Log = Callable[[int, str | None], None]


def track_held_connections(app: web.Application) -> None:
    """Keep the connections of ``app``'s held requests, to abort them when it shuts down."""
    app[_HELD] = set()

    async def abort_held(app: web.Application) -> None:
        for transport in app[_HELD]:
            transport.abort()

    app.on_shutdown.append(abort_held)


def _gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _hold(request: web.BaseRequest, seconds: float | None) -> bool:
    """Wait ``seconds`` (None: forever) while the client stays connected: True once waited out,
    False as soon as the connection is gone (the client left, or the server aborted it)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not _gone(request):
        if deadline is None:
            await asyncio.sleep(_POLL_S)
            continue
        left = deadline - time.monotonic()
        await asyncio.sleep(min(max(left, 0.0), _POLL_S))
        if left <= _POLL_S:
            return not _gone(request)
    return False


@contextlib.contextmanager
def _held(request: web.Request) -> Iterator[None]:
    """Mark the request's connection as held open, to be aborted if the server stops."""
    held, transport = request.app[_HELD], request.transport
    if transport is not None:
        held.add(transport)
    try:
        yield
    finally:
        held.discard(transport)


async def _no_answer(request: web.Request, log: _Log, fault: str | None) -> web.StreamResponse:
    """Hold the connection, sending nothing, until the client leaves or the server stops."""
    try:
        with _held(request):
            await _hold(request, None)
    finally:
        log(0, fault)
    # Sent to a closed connection: aiohttp fails quietly, nothing is sent.
    return web.Response(status=204)


def _once(chunk: bytes) -> Generator[bytes, None, None]:
    yield chunk


async def _send_stream(
    request: web.Request, reply: Reply, fault: str | None, log: _Log
) -> web.StreamResponse:
    """Send ``reply`` chunk by chunk: its ``stream``, or its body for ``drop-mid-body``. The cut
    faults (checked by ``Reply.takes``) stop half way: ``truncate`` ends the response cleanly
    (its ``Content-Length`` is the half), ``drop-mid-body`` closes the connection."""
    stream = reply.stream
    if stream is None:
        payload = reply.body()
        stream = StreamedBody(_once(payload), size=len(payload), declare_size=True)
    cut: int | None = None
    if fault in CUTS:
        assert stream.size is not None
        cut = stream.size // 2
    response = web.StreamResponse(status=reply.status, headers=_headers(reply, fault))
    if stream.declare_size:
        response.content_length = cut if fault == "truncate" else stream.size
    status, logged = 0, False

    def finish() -> None:
        nonlocal logged
        if not logged:
            logged = True
            log(status, fault)

    try:
        # A client gone (or aborted as the server stops) makes a write raise a ConnectionError:
        # the end of this reply, not an error to report. aiohttp then finishes it quietly.
        with _held(request), contextlib.suppress(ConnectionError):
            await response.prepare(request)
            status = reply.status
            pieces = _first(stream.chunks, cut)
            piece = next(pieces, None)
            while piece is not None:
                following = next(pieces, None)
                if following is None:
                    # Logged before the reply is complete, as an ordinary one is before it is
                    # sent: once a client has a whole reply, the request is in the log.
                    finish()
                await response.write(piece)
                # A fast client never makes write() wait: let the other requests run meanwhile.
                if following is not None and not await _hold(request, stream.every_s):
                    break  # the client has gone
                piece = following
            else:
                if fault == "drop-mid-body":
                    if request.transport is not None:
                        request.transport.close()  # once what was written is sent
                else:
                    await response.write_eof()
    finally:
        stream.chunks.close()
        finish()
    return response


def _first(chunks: Iterator[bytes], count: int | None) -> Generator[bytes, None, None]:
    """``chunks`` up to ``count`` bytes in all (None: all of them)."""
    if count is None:
        yield from chunks
        return
    for chunk in chunks:
        if len(chunk) >= count:
            yield chunk[:count]
            return
        yield chunk
        count -= len(chunk)


def _over_capacity(knobs: DemoKnobs) -> web.Response:
    return web.Response(
        body=json_bytes({"error": "over capacity"}),
        status=429,
        content_type=JSON_TYPE,
        headers={"Retry-After": _seconds(knobs.retry_after_s)},
    )


#: Who may use a route: None to let a request through, else the response refusing it.
Guard = Callable[[web.Request, DemoKnobs], Awaitable[web.Response | None]]


def dataset_endpoint(
    state: DemoState, handler: Handler, guard: Guard | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The endpoint running ``handler`` in the pipeline, for requests ``guard`` lets through."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state.in_flight += 1
        try:
            # Admission first; the "work" (latency, auth, faults, building the reply) is served.
            started = time.monotonic()
            if not await state.admit():
                path, query = request.path, request.query_string
                state.record(
                    RequestLogEntry(
                        started, time.monotonic(), request.method, path, query, 429, "capacity"
                    )
                )
                return _over_capacity(state.knobs)
            try:
                return await handle(request, started)
            finally:
                state.release()
        finally:
            state.in_flight -= 1

    async def handle(request: web.Request, started: float) -> web.StreamResponse:
        knobs = state.knobs
        body = await request.read() if request.body_exists else b""
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000)
        path = request.path
        query = request.query_string

        def log(status: int, fault: str | None) -> None:
            ended = time.monotonic()
            state.record(
                RequestLogEntry(started, ended, request.method, path, query, status, fault)
            )

        refused = None if guard is None else await guard(request, knobs)
        if refused is not None:
            log(refused.status, None)
            return refused
        key = request_key(request.method, path, query, body)
        occurrence = state.occurrence(key)  # counted always, so k does not depend on the rate
        fault = decide(knobs.seed, key, occurrence, knobs.fault_rate, knobs.faults)
        reply = _fault_reply(fault, knobs) if fault else None
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            log(0, fault)
            # Writing this to the closed transport fails quietly inside aiohttp: nothing is sent.
            return web.Response(status=204)
        if fault == "slow":
            await asyncio.sleep(knobs.slow_ms / 1000)
        if reply is None:
            try:
                reply = handler(request, knobs, body)
            except BadRequest as exc:
                reply = Reply({"error": str(exc)}, 400)
            if fault is not None and not reply.takes(fault):
                fault = None  # say, no half of a never-ending body: served unfaulted
        if reply.status == NO_ANSWER:
            return await _no_answer(request, log, fault)
        if reply.stream is not None or fault == "drop-mid-body":
            return await _send_stream(request, reply, fault, log)
        payload = reply.body()
        if fault == "truncate":
            payload = payload[: len(payload) // 2]
        response = web.Response(body=payload, status=reply.status, headers=_headers(reply, fault))
        log(reply.status, fault)
        return response

    return endpoint
