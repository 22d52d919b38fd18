"""The built-in demo API: every pagination style on 127.0.0.1, with knobs for latency and faults.

Routes (each dataset route is served under ``/v1`` without auth and under ``/secure`` with it):

- ``GET  {prefix}/pages/{ds}?page=N&per_page=M``        page numbers from 1, totals in body, header
- ``GET  {prefix}/offset/{ds}?offset=O&limit=L``        offset/limit, ``count``, ``X-Total-Count``
- ``GET  {prefix}/cursor/{ds}?cursor=C&limit=L``        opaque cursor in the body
- ``GET  {prefix}/header-cursor/{ds}?after=C&limit=L``  bare array, cursor in ``X-Next-Cursor``
- ``GET  {prefix}/next/{ds}?page=N&per_page=M``         absolute next URL in ``links.next``
- ``GET  {prefix}/link/{ds}?page=N&per_page=M``         bare array, RFC 8288 ``Link`` (relative)
- ``POST {prefix}/graphql``                             Relay-style connection
- ``GET  {prefix}/all/{ds}``                            the whole dataset, no pagination
- ``GET  {prefix}/bad/same-next/{ds}``                  a next link to the same request forever
- ``GET  {prefix}/bad/last-page-forever/{ds}``          pages past the end repeat the last one
- ``GET  {prefix}/bad/errors-200/{ds}``                 HTTP 200 with a GraphQL-style ``errors``
- ``GET  {prefix}/bad/text-plain/{ds}``                 like ``pages`` but ``text/plain``
- ``GET  {prefix}/bad/hang/{ds}``                       accepts the request, never answers
- ``GET  {prefix}/bad/trickle/{ds}?every_ms=N``         200, then endless JSON, a byte per N ms
- ``GET  {prefix}/bad/huge/{ds}?mb=N&length=0|1``       a valid JSON page of N MiB, streamed
- ``GET  {prefix}/bad/redirect-loop/{ds}?hop=N``        302 to itself with ``hop=N+1``, forever
- ``GET  {prefix}/bad/redirect-away/{ds}?to=URL``       302 to ``to`` (any absolute http(s) URL)
- ``GET  {prefix}/bad/status/{code}/{ds}``              always HTTP ``code`` (400-599), JSON error
- ``GET  {prefix}/bad/never-valid/{ds}``                200 ``application/json``, never JSON
- ``GET  {prefix}/bad/deep/{ds}?depth=N``               one record: arrays nested N deep
- ``GET|POST {prefix}/bad/echo-error/{ds}?status=N``    HTTP N (400) echoing the whole request
- ``GET  /secure/echo``                                 the request's headers and query (auth)
- ``GET|POST /_demo/knobs``, ``GET /_demo/log``, ``POST /_demo/reset``   control, never faulted

Selecting records (every dataset route but ``errors-200``; GraphQL variables in brackets), so
that date windows, incremental runs, value lists and parent/child partitions can be tested:

- ``updated_since`` / ``updated_before`` (``updatedSince`` / ``updatedBefore``): only records with
  ``since <= updated_at < before``. An ISO 8601 datetime (``Z`` or an offset, fractions), a date
  (midnight UTC), or epoch seconds; a number >= 10^11 is epoch milliseconds.
- ``shards=K&shard=I`` (``shards``, ``shard``): only records with ``n % K == I``.
- ``dataset_size=N`` (``datasetSize``): the dataset has N records instead of ``knobs.records``.

Pages, offsets, cursors and totals (``total``, ``X-Total-Count``, ``count``, ``has_more``, next
links, which keep every other param) then work over the selected records only, exactly as if the
dataset were just those. A bad value is a 400 (a GraphQL error for a variable).

Hostile servers (the ``/bad/`` routes from ``hang`` on), to test a client's defences end to end:

- ``hang`` sends nothing, ever: only a client's read timeout ends it. Logged (status 0) once the
  client has gone.
- ``trickle`` sends 200 and JSON headers (chunked), then ``{"data":[`` and the dataset's records,
  one byte every ``every_ms`` (default 100, at least 1) ms, forever: every byte resets a read
  timeout, so only a deadline on the whole response (or a size cap) ends it. Logged with status
  200 once the client has gone.
- ``huge`` is ``{"data":[...]}`` holding the dataset's records from 0, padded with spaces before
  ``]}`` to exactly ``mb`` MiB (default 64; with ``mb=0`` it is ``{"data":[]}``), generated and
  written in chunks of about 64 KiB. ``length=1`` sends ``Content-Length`` (a client can refuse
  on the header); the default, ``length=0``, sends it chunked (a client must cap while reading).
- ``redirect-loop`` answers 302 with ``Location: {path}?hop=N+1&<the other params>`` (a path
  relative to the host); ``redirect-away`` answers 302 with ``Location: <to>`` (400 unless ``to``
  is an absolute http or https URL), to test that a client refuses to follow to another host.
- ``status/{code}`` answers ``{"error": "<code> <reason> (...)"}`` with that status, 400-599 (for
  permanent 400 / 403 / 404 failures); ``never-valid`` answers 200 with the body ``{"data": [``.
- ``deep`` answers ``{"data": [R]}`` where the one record ``R`` is an array nested ``depth``
  (default 2000, at most 100000) levels deep: valid JSON past what a recursive decoder or
  encoder can follow.
- ``echo-error`` answers ``status`` (400-599, default 400) with a JSON body holding an ``error``
  and the request's ``method``, ``path``, ``query`` (every param), ``headers`` (every header,
  names lowercased) and ``body`` (as text): an API that echoes secrets back in its errors.

They go through the pipeline like the other dataset routes (capacity, latency, auth, faults, the
log). None holds more than a chunk of its body in memory; each notices within 50 ms that its
client has gone, and when the server stops their connections are aborted at once, so
``DemoServer.stop()`` does not wait for them. Like every dataset request, a streamed one is in the
log by the time its client has the whole reply; one the client gives up on, once the server has
seen it go.

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

Capacity (``DemoKnobs.capacity`` = N, live-changeable): at most N dataset requests are served at
once (latency, auth, faults and building the reply); a request arriving while N are served waits
for a turn (first come, first served) if fewer than ``capacity_queue`` (default ``max(1, N // 2)``)
already wait, else it is answered at once: 429 ``{"error": "over capacity"}`` with ``Retry-After``,
logged with fault ``"capacity"``. Past N concurrent requests latency rises, then 429s come.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import itertools
import json
import math
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from fractions import Fraction
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from tui_connector.demo import data
from tui_connector.demo.faults import FAULTS, decide, request_key

__all__ = [
    "FAULTS",
    "DemoKnobs",
    "DemoServer",
    "DemoState",
    "RequestLogEntry",
    "build_app",
    "serve_forever",
]

LOG_LIMIT = 1_000_000
MAX_PAGE_SIZE = 1000
_DATASET = re.compile(r"[a-z0-9_-]+")
_DS = "{ds:[a-z0-9_-]+}"
_JSON = "application/json"


# -- knobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoKnobs:
    """How the demo server behaves. Validated on construction; replace to change."""

    records: int = 1000
    page_size: int = 50
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    retry_after_s: float = 1.0
    slow_ms: float = 2000.0
    seed: int = 0
    token: str | None = None
    #: Dataset requests served at once (None: no limit); more wait in line, then get 429.
    capacity: int | None = None
    #: How many may wait in line for a turn (None: half the capacity, at least one).
    capacity_queue: int | None = None

    def __post_init__(self) -> None:
        _check_int("records", self.records, minimum=0)
        _check_int("page_size", self.page_size, minimum=1, maximum=MAX_PAGE_SIZE)
        _check_int("seed", self.seed)
        if self.capacity is not None:
            _check_int("capacity", self.capacity, minimum=1)
        if self.capacity_queue is not None:
            _check_int("capacity_queue", self.capacity_queue, minimum=0)
        for name in ("latency_ms", "fault_rate", "retry_after_s", "slow_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))
        if self.fault_rate > 1:
            raise ValueError(f"fault_rate must be between 0 and 1, not {self.fault_rate!r}")
        faults = self.faults
        if isinstance(faults, str) or not isinstance(faults, Iterable):
            raise TypeError("faults must be a list of fault names")
        faults = tuple(faults)
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown!r}; known: {', '.join(FAULTS)}")
        object.__setattr__(self, "faults", faults)
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise TypeError("token must be a non-empty string or null")

    def to_json(self) -> dict[str, Any]:
        """The knobs as JSON, the token masked (the control endpoints are unauthenticated)."""
        values = dataclasses.asdict(self)
        values["faults"] = list(self.faults)
        values["token"] = None if self.token is None else "***"
        return values

    @property
    def queue_limit(self) -> int:
        """How many requests may wait for a turn while ``capacity`` are being served."""
        if self.capacity_queue is not None:
            return self.capacity_queue
        return max(1, (self.capacity or 0) // 2)


def _check_int(
    name: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bounds}, not {value}")


# -- state ------------------------------------------------------------------------------------


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


# -- replies ----------------------------------------------------------------------------------

#: Where a reply's records go in its payload: they are serialised apart (``data.records_json``,
#: about 3x cheaper than ``json.dumps`` of dicts) and spliced in.
_RECORDS = "\x00records\x00"
_RECORDS_JSON = json.dumps(_RECORDS)


#: A reply's status meaning "never answer": hold the connection open until the client goes.
_NO_ANSWER = 0
#: The faults that cut a reply's body in half: they need a body of known size.
_CUTS = ("truncate", "drop-mid-body")


@dataclass(frozen=True, slots=True)
class _Stream:
    """A reply body written chunk by chunk as the client reads it, never whole in memory."""

    chunks: Generator[bytes, None, None]
    #: The body's length in bytes; None if it never ends.
    size: int | None
    #: Send ``Content-Length`` (``size``); otherwise the body is chunked.
    declare_size: bool = False
    #: Seconds to wait after each chunk (0: as fast as the client reads).
    every_s: float = 0.0


class _Reply:
    """What a dataset handler answers: ``payload`` as JSON (``records`` spliced in), or bytes
    sent as they are; or a ``stream``; or, with status ``_NO_ANSWER``, nothing at all."""

    __slots__ = ("content_type", "headers", "payload", "records", "status", "stream")

    def __init__(
        self,
        payload: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = _JSON,
        records: str | None = None,
        stream: _Stream | None = None,
    ) -> None:
        self.payload = payload
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.records = records
        self.stream = stream

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        text = json.dumps(self.payload, separators=(",", ":"))
        if self.records is not None:
            text = text.replace(_RECORDS_JSON, self.records, 1)
        return text.encode()

    def takes(self, fault: str) -> bool:
        """Whether ``fault``, one that alters a reply rather than replacing it, applies here."""
        if self.status == _NO_ANSWER:
            return fault == "slow"
        if fault in _CUTS:
            return self.stream is None or self.stream.size is not None
        return True


class _BadRequest(Exception):
    pass


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _int_param(query: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    return _whole(query.get(name), name, default, minimum)


def _whole(raw: object, name: str, default: int, minimum: int = 0) -> int:
    """A query param's text or a GraphQL variable's JSON as an integer (missing: ``default``)."""
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise TypeError
        value = int(raw)
    except (TypeError, ValueError):
        raise _BadRequest(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise _BadRequest(f"{name} must be >= {minimum}, not {value}")
    return value


def _size_param(query: Mapping[str, str], name: str, knobs: DemoKnobs) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return knobs.page_size
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, not {raw!r}") from None
    return min(max(value, 1), MAX_PAGE_SIZE)


def _cursor_param(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name)
    if not raw:
        return 0
    try:
        return data.decode_cursor(raw)
    except ValueError:
        raise _BadRequest(f"{name} is not a valid cursor: {raw!r}") from None


def _page_query(request: web.Request, page: int, per_page: int) -> str:
    """The request's query with ``page`` and ``per_page`` replaced (other params kept)."""
    rest = [(k, v) for k, v in request.query.items() if k not in ("page", "per_page")]
    return urlencode([("page", page), ("per_page", per_page), *rest])


def _page_params(request: web.Request, knobs: DemoKnobs) -> tuple[int, int]:
    page = _int_param(request.query, "page", 1, minimum=1)
    return page, _size_param(request.query, "per_page", knobs)


#: An epoch number this large is milliseconds: as seconds it would be past the year 5000.
_EPOCH_MS = 10**11
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*")
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch(raw: object) -> Fraction:
    """Exact epoch seconds from an ISO 8601 datetime or date (UTC unless it has an offset), or
    from epoch seconds or milliseconds (text or a JSON number). TypeError / ValueError /
    OverflowError if it is none of those.

    Exact (a Fraction, not a float) so that a bound a microsecond past a record's minute really
    excludes that record: window edges are where connectors lose or repeat records.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise TypeError(f"not a time: {raw!r}")
    if isinstance(raw, str) and not _NUMBER.fullmatch(raw):
        moment = datetime.fromisoformat(raw)  # "Z", offsets, fractions, bare dates (3.11+)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - _UNIX
        return delta.days * 86_400 + delta.seconds + Fraction(delta.microseconds, 1_000_000)
    seconds = Fraction(raw)
    return seconds / 1000 if abs(seconds) >= _EPOCH_MS else seconds


def _instant(raw: object, name: str) -> Fraction | None:
    if raw is None or raw == "":
        return None
    try:
        return _epoch(raw)
    except (TypeError, ValueError, OverflowError):
        raise _BadRequest(
            f"{name} must be an ISO 8601 datetime, a date, or epoch seconds or milliseconds, "
            f"not {raw!r}"
        ) from None


#: What selects a request's records: the GET routes' query params, and the GraphQL variables
#: that mean the same (in that order: since, before, shards, shard, dataset size).
_QUERY_SELECTION = ("updated_since", "updated_before", "shards", "shard", "dataset_size")
_GRAPHQL_SELECTION = ("updatedSince", "updatedBefore", "shards", "shard", "datasetSize")


def _selection(
    values: Mapping[str, Any], names: tuple[str, ...], knobs: DemoKnobs, prefix: str = ""
) -> range:
    """The record numbers a request sees: ``dataset_size`` records (default: the records knob)
    with ``updated_since <= updated_at < updated_before`` and ``n % shards == shard``. Paging,
    cursors and totals then work over this range as if it were the whole dataset."""
    since_name, before_name, shards_name, shard_name, size_name = names
    size = _whole(values.get(size_name), prefix + size_name, knobs.records)
    shards = _whole(values.get(shards_name), prefix + shards_name, 1, minimum=1)
    shard = _whole(values.get(shard_name), prefix + shard_name, 0)
    if shard >= shards:
        raise _BadRequest(
            f"{prefix}{shard_name} must be below {prefix}{shards_name} ({shards}), not {shard}"
        )
    since = _instant(values.get(since_name), prefix + since_name)
    before = _instant(values.get(before_name), prefix + before_name)
    return data.select(size, since, before, shards, shard)


def _selected(request: web.Request, knobs: DemoKnobs) -> range:
    return _selection(request.query, _QUERY_SELECTION, knobs)


def _slice(ds: str, selection: range, start: int, count: int) -> str:
    """The JSON of ``count`` selected records from ``start`` (an offset into the selection)."""
    return data.records_json(ds, selection[start : start + count])


def _has_next(page: int, per_page: int, total: int) -> bool:
    return page * per_page < total


# -- dataset handlers -------------------------------------------------------------------------

_Handler = Callable[[web.Request, DemoKnobs, bytes], _Reply]


def _pages(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    page, per_page = _page_params(request, knobs)
    selection = _selected(request, knobs)
    records = _slice(request.match_info["ds"], selection, (page - 1) * per_page, per_page)
    total = len(selection)
    payload = {
        "data": _RECORDS,
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": -(-total // per_page),
    }
    return _Reply(payload, headers={"X-Total-Count": str(total)}, records=records)


def _text_plain(request: web.Request, knobs: DemoKnobs, body: bytes) -> _Reply:
    reply = _pages(request, knobs, body)
    reply.content_type = "text/plain"
    return reply


def _offset(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    offset = _int_param(request.query, "offset", 0)
    limit = _size_param(request.query, "limit", knobs)
    selection = _selected(request, knobs)
    records = _slice(request.match_info["ds"], selection, offset, limit)
    total = len(selection)
    headers = {"X-Total-Count": str(total)}
    return _Reply({"results": _RECORDS, "count": total}, headers=headers, records=records)


def _cursor(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    offset = _cursor_param(request.query, "cursor")
    limit = _size_param(request.query, "limit", knobs)
    selection = _selected(request, knobs)
    records = _slice(request.match_info["ds"], selection, offset, limit)
    more = offset + limit < len(selection)
    payload = {
        "items": _RECORDS,
        "next_cursor": data.encode_cursor(offset + limit) if more else None,
        "has_more": more,
    }
    return _Reply(payload, records=records)


def _header_cursor(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    offset = _cursor_param(request.query, "after")
    limit = _size_param(request.query, "limit", knobs)
    selection = _selected(request, knobs)
    records = _slice(request.match_info["ds"], selection, offset, limit)
    end = offset + limit
    headers = {"X-Next-Cursor": data.encode_cursor(end)} if end < len(selection) else None
    return _Reply(_RECORDS, headers=headers, records=records)


def _next(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    page, per_page = _page_params(request, knobs)
    selection = _selected(request, knobs)
    records = _slice(request.match_info["ds"], selection, (page - 1) * per_page, per_page)
    following = None
    if _has_next(page, per_page, len(selection)):
        query = _page_query(request, page + 1, per_page)
        following = f"{request.scheme}://{request.host}{request.path}?{query}"
    return _Reply({"data": _RECORDS, "links": {"next": following}}, records=records)


def _link(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    page, per_page = _page_params(request, knobs)
    selection = _selected(request, knobs)
    records = _slice(request.match_info["ds"], selection, (page - 1) * per_page, per_page)
    links = [f'<{request.path}?{_page_query(request, 1, per_page)}>; rel="first"']
    if _has_next(page, per_page, len(selection)):
        links.append(f'<{request.path}?{_page_query(request, page + 1, per_page)}>; rel="next"')
    return _Reply(_RECORDS, headers={"Link": ", ".join(links)}, records=records)


def _all(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    records = data.records_json(request.match_info["ds"], _selected(request, knobs))
    return _Reply(_RECORDS, records=records)


def _graphql_error(message: str, status: int = 200) -> _Reply:
    return _Reply({"data": None, "errors": [{"message": message}]}, status=status)


def _graphql(_request: web.Request, knobs: DemoKnobs, body: bytes) -> _Reply:
    """A Relay-style ``items`` connection; the query text is not parsed, only the variables."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _graphql_error("the request body is not JSON", status=400)
    variables = document.get("variables") if isinstance(document, dict) else None
    if not isinstance(variables, dict):
        variables = {}
    ds = variables.get("dataset")
    if not isinstance(ds, str) or not _DATASET.fullmatch(ds):
        return _graphql_error("variables.dataset is required: a name like [a-z0-9_-]+")
    first = variables.get("first")
    if first is None:
        first = knobs.page_size
    elif isinstance(first, bool) or not isinstance(first, int):
        return _graphql_error("variables.first must be an integer")
    first = min(max(first, 1), MAX_PAGE_SIZE)
    after = variables.get("after")
    offset = 0
    if after is not None:
        try:
            offset = data.decode_cursor(after) if isinstance(after, str) else -1
        except ValueError:
            offset = -1
        if offset < 0:
            return _graphql_error("variables.after is not a valid cursor")
    try:
        selection = _selection(variables, _GRAPHQL_SELECTION, knobs, prefix="variables.")
    except _BadRequest as exc:
        return _graphql_error(str(exc))
    end = min(offset + first, len(selection))
    page_info = {
        "hasNextPage": end < len(selection),
        # Relay: the cursor of the last node returned (here: the offset just past it).
        "endCursor": data.encode_cursor(end) if end > offset else None,
    }
    payload = {"data": {"items": {"nodes": _RECORDS, "pageInfo": page_info}}}
    return _Reply(payload, records=_slice(ds, selection, offset, first))


def _same_next(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    per_page = _size_param(request.query, "per_page", knobs)
    itself = f"{request.scheme}://{request.host}{request.path_qs}"
    records = _slice(request.match_info["ds"], _selected(request, knobs), 0, per_page)
    return _Reply({"data": _RECORDS, "links": {"next": itself}}, records=records)


def _last_page_forever(request: web.Request, knobs: DemoKnobs, _body: bytes) -> _Reply:
    page, per_page = _page_params(request, knobs)
    selection = _selected(request, knobs)
    last = max(1, -(-len(selection) // per_page))
    start = (min(page, last) - 1) * per_page
    records = _slice(request.match_info["ds"], selection, start, per_page)
    return _Reply({"data": _RECORDS, "page": page, "per_page": per_page}, records=records)


def _errors_200(_request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    return _graphql_error("rate limited by upstream")


# -- hostile handlers -------------------------------------------------------------------------

_MIB = 1 << 20
#: About how many bytes a streamed body is written in at a time.
_CHUNK = 64 * 1024
#: About how many records make a ``_CHUNK`` (a record is 90 to 110 bytes of JSON).
_BATCH = 600
_PAGE_HEAD, _PAGE_TAIL = b'{"data":[', b"]}"


def _hang(_request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    return _Reply(None, status=_NO_ANSWER)


def _record_bytes(ds: str, n: int) -> bytes:
    return data.records_json(ds, range(n, n + 1))[1:-1].encode()


def _endless_page(ds: str) -> Generator[bytes, None, None]:
    """``{"data":[`` and then the records of ``ds``, each followed by a comma, forever."""
    yield _PAGE_HEAD
    for n in itertools.count():
        yield _record_bytes(ds, n) + b","


def _bytewise(chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
    for chunk in chunks:
        for i in range(len(chunk)):
            yield chunk[i : i + 1]


def _trickle(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    every_ms = _int_param(request.query, "every_ms", 100, minimum=1)
    chunks = _bytewise(_endless_page(request.match_info["ds"]))
    return _Reply(None, stream=_Stream(chunks, size=None, every_s=every_ms / 1000))


def _page_of_size(ds: str, size: int) -> Generator[bytes, None, None]:
    """``{"data":[...]}`` of exactly ``size`` bytes (at least 11): the records of ``ds`` from 0,
    as many as fit, then spaces before ``]}``; in chunks of about ``_CHUNK`` bytes."""
    room = size - len(_PAGE_HEAD) - len(_PAGE_TAIL)
    yield _PAGE_HEAD
    n, comma = 0, b""
    while True:  # whole batches while they fit
        batch = comma + data.records_json(ds, range(n, n + _BATCH))[1:-1].encode()
        if len(batch) > room:
            break
        yield batch
        room -= len(batch)
        n, comma = n + _BATCH, b","
    while True:  # then the records that still fit, one by one
        record = comma + _record_bytes(ds, n)
        if len(record) > room:
            break
        yield record
        room -= len(record)
        n, comma = n + 1, b","
    while room > 0:
        padding = min(room, _CHUNK)
        yield b" " * padding
        room -= padding
    yield _PAGE_TAIL


def _huge(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    mb = _int_param(request.query, "mb", 64)
    length = _int_param(request.query, "length", 0)
    if length > 1:
        raise _BadRequest(f"length must be 0 or 1, not {length}")
    size = max(mb * _MIB, len(_PAGE_HEAD) + len(_PAGE_TAIL))
    chunks = _page_of_size(request.match_info["ds"], size)
    return _Reply(None, stream=_Stream(chunks, size=size, declare_size=length == 1))


def _redirect(location: str) -> _Reply:
    return _Reply({"redirect": location}, 302, {"Location": location})


def _redirect_loop(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    hop = _int_param(request.query, "hop", 0)
    rest = [(k, v) for k, v in request.query.items() if k != "hop"]
    return _redirect(f"{request.path}?{urlencode([('hop', hop + 1), *rest])}")


def _redirect_away(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    target = request.query.get("to", "")
    parts = urlsplit(target)
    if not (target.isprintable() and parts.scheme in ("http", "https") and parts.hostname):
        raise _BadRequest(f"to must be an absolute http or https URL, not {target!r}")
    return _redirect(target)


def _error_status(raw: object, name: str, default: int) -> int:
    status = _whole(raw, name, default)
    if not 400 <= status <= 599:
        raise _BadRequest(f"{name} must be between 400 and 599, not {status}")
    return status


def _status(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    code = _error_status(request.match_info["code"], "code", 400)
    try:
        reason = HTTPStatus(code).phrase
    except ValueError:
        reason = "Error"
    return _Reply({"error": f"{code} {reason} (demo /bad/status)"}, code)


def _never_valid(_request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    return _Reply(b'{"data": [')


_MAX_DEPTH = 100_000


def _deep(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> _Reply:
    depth = _int_param(request.query, "depth", 2000, minimum=1)
    if depth > _MAX_DEPTH:
        raise _BadRequest(f"depth must be at most {_MAX_DEPTH}, not {depth}")
    return _Reply(b'{"data": [' + b"[" * depth + b"]" * depth + b"]}")


def _echo(request: web.BaseRequest) -> dict[str, Any]:
    """The request's method, path, every query param and every header (names lowercased;
    repeated ones joined with commas)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    query: dict[str, str] = {}
    for name, value in request.query.items():
        query[name] = f"{query[name]},{value}" if name in query else value
    return {"method": request.method, "path": request.path, "headers": headers, "query": query}


def _echo_error(request: web.Request, _knobs: DemoKnobs, body: bytes) -> _Reply:
    status = _error_status(request.query.get("status"), "status", 400)
    payload = {
        "error": "the request was refused; here it is (demo /bad/echo-error)",
        **_echo(request),
        "body": body.decode("utf-8", "replace"),
    }
    return _Reply(payload, status)


DATASET_ROUTES: tuple[tuple[str, str, _Handler], ...] = (
    ("GET", f"/pages/{_DS}", _pages),
    ("GET", f"/offset/{_DS}", _offset),
    ("GET", f"/cursor/{_DS}", _cursor),
    ("GET", f"/header-cursor/{_DS}", _header_cursor),
    ("GET", f"/next/{_DS}", _next),
    ("GET", f"/link/{_DS}", _link),
    ("POST", "/graphql", _graphql),
    ("GET", f"/all/{_DS}", _all),
    ("GET", f"/bad/same-next/{_DS}", _same_next),
    ("GET", f"/bad/last-page-forever/{_DS}", _last_page_forever),
    ("GET", f"/bad/errors-200/{_DS}", _errors_200),
    ("GET", f"/bad/text-plain/{_DS}", _text_plain),
    ("GET", f"/bad/hang/{_DS}", _hang),
    ("GET", f"/bad/trickle/{_DS}", _trickle),
    ("GET", f"/bad/huge/{_DS}", _huge),
    ("GET", f"/bad/redirect-loop/{_DS}", _redirect_loop),
    ("GET", f"/bad/redirect-away/{_DS}", _redirect_away),
    ("GET", "/bad/status/{code:[0-9]{3}}/" + _DS, _status),
    ("GET", f"/bad/never-valid/{_DS}", _never_valid),
    ("GET", f"/bad/deep/{_DS}", _deep),
    ("GET", f"/bad/echo-error/{_DS}", _echo_error),
    ("POST", f"/bad/echo-error/{_DS}", _echo_error),
)


# -- auth -------------------------------------------------------------------------------------


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def authorized(request: web.BaseRequest, token: str) -> bool:
    """Bearer token, ``X-API-Key``, ``api_key`` query param, or Basic ``demo:<token>``."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and _same(credentials, token):
            return True
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, colon, password = decoded.partition(":")
            if colon and user == "demo" and _same(password, token):
                return True
    key = request.headers.get("X-API-Key")
    if key is not None and _same(key, token):
        return True
    param = request.query.get("api_key")
    return param is not None and _same(param, token)


def _unauthorized() -> web.Response:
    return web.Response(
        body=_dumps({"error": "unauthorized"}),
        status=401,
        content_type=_JSON,
        headers={"WWW-Authenticate": 'Bearer realm="tui-connector demo"'},
    )


# -- the request pipeline ---------------------------------------------------------------------


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


def _fault_reply(fault: str, knobs: DemoKnobs) -> _Reply | None:
    if fault == "429":
        return _Reply(
            {"error": "too many requests"}, 429, {"Retry-After": _seconds(knobs.retry_after_s)}
        )
    if fault == "429-date":
        when = math.ceil(time.time() + knobs.retry_after_s)
        return _Reply(
            {"error": "too many requests"}, 429, {"Retry-After": formatdate(when, usegmt=True)}
        )
    if fault == "500":
        return _Reply({"error": "internal server error (injected fault)"}, 500)
    if fault == "503":
        return _Reply(
            {"error": "service unavailable (injected fault)"},
            503,
            {"Retry-After": _seconds(knobs.retry_after_s)},
        )
    if fault == "html-200":
        return _Reply(_HTML_ERROR_PAGE, content_type="text/html")
    return None


def _headers(reply: _Reply, fault: str | None) -> dict[str, str]:
    content_type = "text/html; charset=utf-8" if fault == "wrong-content-type" else None
    return {**(reply.headers or {}), "Content-Type": content_type or reply.content_type}


#: How often a held request (no answer, a streamed body) checks that its client is still there.
_POLL_S = 0.05
#: The connections of the requests held open (no answer yet, or a body being streamed):
#: aborted when the server stops, so that stopping never waits for them.
_HELD = web.AppKey("held", set[asyncio.Transport])

_Log = Callable[[int, str | None], None]


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
    request: web.Request, reply: _Reply, fault: str | None, log: _Log
) -> web.StreamResponse:
    """Send ``reply`` chunk by chunk: its ``stream``, or its body for ``drop-mid-body``. The cut
    faults (checked by ``_Reply.takes``) stop half way: ``truncate`` ends the response cleanly
    (its ``Content-Length`` is the half), ``drop-mid-body`` closes the connection."""
    stream = reply.stream
    if stream is None:
        payload = reply.body()
        stream = _Stream(_once(payload), size=len(payload), declare_size=True)
    cut: int | None = None
    if fault in _CUTS:
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
        body=_dumps({"error": "over capacity"}),
        status=429,
        content_type=_JSON,
        headers={"Retry-After": _seconds(knobs.retry_after_s)},
    )


def _dataset_endpoint(
    state: DemoState, handler: _Handler, secure: bool
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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

        if secure and knobs.token is not None and not authorized(request, knobs.token):
            log(401, None)
            return _unauthorized()
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
            except _BadRequest as exc:
                reply = _Reply({"error": str(exc)}, 400)
            if fault is not None and not reply.takes(fault):
                fault = None  # say, no half of a never-ending body: served unfaulted
        if reply.status == _NO_ANSWER:
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


# -- control endpoints ------------------------------------------------------------------------


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(payload), status=status, content_type=_JSON)


def _control_routes(state: DemoState) -> list[web.RouteDef]:
    async def get_knobs(_request: web.Request) -> web.Response:
        return _json_response(state.knobs.to_json())

    async def post_knobs(request: web.Request) -> web.Response:
        try:
            fields = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _json_response({"error": "the body must be a JSON object"}, 400)
        if not isinstance(fields, dict):
            return _json_response({"error": "the body must be a JSON object"}, 400)
        known = {f.name for f in dataclasses.fields(DemoKnobs)}
        unknown = sorted(set(fields) - known)
        if unknown:
            return _json_response({"error": f"unknown knob(s): {', '.join(unknown)}"}, 400)
        try:
            knobs = state.update_knobs(**fields)
        except (TypeError, ValueError) as exc:
            return _json_response({"error": str(exc)}, 400)
        return _json_response(knobs.to_json())

    async def get_log(_request: web.Request) -> web.Response:
        return _json_response([entry.to_json() for entry in state.log()])

    async def post_reset(_request: web.Request) -> web.Response:
        state.reset()
        return _json_response({"reset": True})

    async def echo(request: web.Request) -> web.Response:
        token = state.knobs.token
        if token is not None and not authorized(request, token):
            return _unauthorized()
        return _json_response(_echo(request))

    return [
        web.get("/_demo/knobs", get_knobs),
        web.post("/_demo/knobs", post_knobs),
        web.get("/_demo/log", get_log),
        web.post("/_demo/reset", post_reset),
        web.get("/secure/echo", echo),
    ]


def build_app(state: DemoState) -> web.Application:
    """The aiohttp application serving ``state``."""
    app = web.Application()
    app[_HELD] = set()

    async def abort_held(app: web.Application) -> None:
        for transport in app[_HELD]:
            transport.abort()

    app.on_shutdown.append(abort_held)
    routes = _control_routes(state)
    for prefix, secure in (("/v1", False), ("/secure", True)):
        for method, path, handler in DATASET_ROUTES:
            endpoint = _dataset_endpoint(state, handler, secure)
            routes.append(web.route(method, prefix + path, endpoint))
    app.add_routes(routes)
    return app


async def _start(
    state: DemoState, host: str, port: int, shutdown_timeout: float
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        build_app(state), access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)


# -- running it -------------------------------------------------------------------------------


class DemoServer:
    """The demo API on its own event loop in a daemon thread.

    ``with DemoServer(DemoKnobs(records=237)) as server: httpx.get(server.url + "/v1/all/x")``
    """

    def __init__(
        self,
        knobs: DemoKnobs | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shutdown_grace: float = 0.5,
    ):
        self.host = host
        self.shutdown_grace = shutdown_grace
        self._requested_port = port
        self.state = DemoState(knobs or DemoKnobs())
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # lifecycle

    def start(self) -> DemoServer:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("the demo server was already started")
        self._thread = threading.Thread(target=self._run, name="demo-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving (requests in flight get a short grace period) and join the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        thread.join()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        # asyncio.run, not a bare loop: it cancels and awaits the handlers still pending when
        # serving stops (a dropped or slowed reply), which a closed loop would leave for the
        # garbage collector to destroy later, logging "Task was destroyed but it is pending"
        # into whatever runs then.
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # pragma: no cover - reported through start()
            self._error = self._error or exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            runner, self._port = await _start(
                self.state, self.host, self._requested_port, shutdown_timeout=self.shutdown_grace
            )
        except BaseException as exc:
            self._error = exc
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    # what tests and the CLI use

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def knobs(self) -> DemoKnobs:
        return self.state.knobs

    def update_knobs(self, **fields: Any) -> DemoKnobs:
        """Change knobs live; TypeError / ValueError on unknown names or bad values."""
        return self.state.update_knobs(**fields)

    @property
    def in_flight(self) -> int:
        """Dataset requests being handled right now (waiting for a turn or served)."""
        return self.state.in_flight

    @property
    def serving(self) -> int:
        """Dataset requests being served right now (at most the ``capacity`` knob)."""
        return self.state.serving

    @property
    def waiting(self) -> int:
        """Dataset requests waiting for a turn to be served (``capacity`` reached)."""
        return self.state.waiting

    @property
    def max_serving(self) -> int:
        """The most dataset requests served at once since the start or the last reset."""
        return self.state.max_serving

    def log(self) -> list[RequestLogEntry]:
        """A copy of the request log (dataset routes only), oldest first."""
        return self.state.log()

    def reset(self) -> None:
        """Clear the request log, the per-request occurrence counters and ``max_serving``."""
        self.state.reset()


def serve_forever(knobs: DemoKnobs, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGINT or SIGTERM; print ``listening on <url>`` once bound. Blocking."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(knobs, host, port))


async def _serve_forever(knobs: DemoKnobs, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stopping.set)
    runner, bound = await _start(DemoState(knobs), host, port, shutdown_timeout=1.0)
    try:
        sys.stdout.write(f"listening on http://{host}:{bound}\n")
        sys.stdout.flush()
        await stopping.wait()
    finally:
        await runner.cleanup()
