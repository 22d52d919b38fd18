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

Faults (``DemoKnobs.fault_rate``) and latency apply to the dataset routes only; whether a request
faults is a pure function of the seed, the request and how often it was seen (see ``faults``).

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
import json
import math
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode

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


class _Reply:
    __slots__ = ("content_type", "headers", "payload", "records", "status")

    def __init__(
        self,
        payload: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
        content_type: str = _JSON,
        records: str | None = None,
    ) -> None:
        self.payload = payload
        self.status = status
        self.headers = headers
        self.content_type = content_type
        self.records = records

    def body(self) -> bytes:
        text = json.dumps(self.payload, separators=(",", ":"))
        if self.records is not None:
            text = text.replace(_RECORDS_JSON, self.records, 1)
        return text.encode()


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
    return None


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
        if secure and knobs.token is not None and not authorized(request, knobs.token):
            state.record(
                RequestLogEntry(started, time.monotonic(), request.method, path, query, 401, None)
            )
            return _unauthorized()
        key = request_key(request.method, path, query, body)
        occurrence = state.occurrence(key)  # counted always, so k does not depend on the rate
        fault = decide(knobs.seed, key, occurrence, knobs.fault_rate, knobs.faults)
        reply = _fault_reply(fault, knobs) if fault else None
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            state.record(
                RequestLogEntry(started, time.monotonic(), request.method, path, query, 0, fault)
            )
            # Writing this to the closed transport fails quietly inside aiohttp: nothing is sent.
            return web.Response(status=204)
        if fault == "slow":
            await asyncio.sleep(knobs.slow_ms / 1000)
        if reply is None:
            try:
                reply = handler(request, knobs, body)
            except _BadRequest as exc:
                reply = _Reply({"error": str(exc)}, 400)
        payload = reply.body()
        if fault == "truncate":
            payload = payload[: len(payload) // 2]
        response = web.Response(
            body=payload,
            status=reply.status,
            headers=reply.headers,
            content_type=reply.content_type,
        )
        state.record(
            RequestLogEntry(
                started, time.monotonic(), request.method, path, query, reply.status, fault
            )
        )
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
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query: dict[str, str] = {}
        for name, value in request.query.items():
            query[name] = f"{query[name]},{value}" if name in query else value
        return _json_response(
            {"method": request.method, "path": request.path, "headers": headers, "query": query}
        )

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

    def __init__(self, knobs: DemoKnobs | None = None, host: str = "127.0.0.1", port: int = 0):
        self.host = host
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
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # pragma: no cover - reported through start()
            self._error = self._error or exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            runner, self._port = await _start(
                self.state, self.host, self._requested_port, shutdown_timeout=0.5
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
