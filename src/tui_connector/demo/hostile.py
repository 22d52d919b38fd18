"""The hostile dataset routes (the ``/bad/`` routes from ``hang`` on), to test a client's
defences end to end:

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
``DemoServer.stop()`` does not wait for them (``pipeline`` does both). Like every dataset request,
a streamed one is in the log by the time its client has the whole reply; one the client gives up
on, once the server has seen it go.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from tui_connector.demo import data
from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.params import DATASET_SEGMENT, int_param, parse_int
from tui_connector.demo.replies import NO_ANSWER, BadRequest, Handler, Reply, StreamedBody

_MIB = 1 << 20
#: About how many bytes a streamed body is written in at a time.
_CHUNK = 64 * 1024
#: About how many records make a ``_CHUNK`` (a record is 90 to 110 bytes of JSON).
_BATCH = 600
_PAGE_HEAD, _PAGE_TAIL = b'{"data":[', b"]}"


def _hang(_request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    return Reply(None, status=NO_ANSWER)


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


def _trickle(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    every_ms = int_param(request.query, "every_ms", 100, minimum=1)
    chunks = _bytewise(_endless_page(request.match_info["ds"]))
    return Reply(None, stream=StreamedBody(chunks, size=None, every_s=every_ms / 1000))


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


def _huge(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    mb = int_param(request.query, "mb", 64)
    length = int_param(request.query, "length", 0)
    if length > 1:
        raise BadRequest(f"length must be 0 or 1, not {length}")
    size = max(mb * _MIB, len(_PAGE_HEAD) + len(_PAGE_TAIL))
    chunks = _page_of_size(request.match_info["ds"], size)
    return Reply(None, stream=StreamedBody(chunks, size=size, declare_size=length == 1))


def _redirect(location: str) -> Reply:
    return Reply({"redirect": location}, 302, {"Location": location})


def _redirect_loop(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    hop = int_param(request.query, "hop", 0)
    rest = [(k, v) for k, v in request.query.items() if k != "hop"]
    return _redirect(f"{request.path}?{urlencode([('hop', hop + 1), *rest])}")


def _redirect_away(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    target = request.query.get("to", "")
    parts = urlsplit(target)
    if not (target.isprintable() and parts.scheme in ("http", "https") and parts.hostname):
        raise BadRequest(f"to must be an absolute http or https URL, not {target!r}")
    return _redirect(target)


def _error_status(raw: object, name: str, default: int) -> int:
    status = parse_int(raw, name, default)
    if not 400 <= status <= 599:
        raise BadRequest(f"{name} must be between 400 and 599, not {status}")
    return status


def _status(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    code = _error_status(request.match_info["code"], "code", 400)
    try:
        reason = HTTPStatus(code).phrase
    except ValueError:
        reason = "Error"
    return Reply({"error": f"{code} {reason} (demo /bad/status)"}, code)


def _never_valid(_request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    return Reply(b'{"data": [')


_MAX_DEPTH = 100_000


def _deep(request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    depth = int_param(request.query, "depth", 2000, minimum=1)
    if depth > _MAX_DEPTH:
        raise BadRequest(f"depth must be at most {_MAX_DEPTH}, not {depth}")
    return Reply(b'{"data": [' + b"[" * depth + b"]" * depth + b"]}")


def echo_request(request: web.BaseRequest) -> dict[str, Any]:
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


def _echo_error(request: web.Request, _knobs: DemoKnobs, body: bytes) -> Reply:
    status = _error_status(request.query.get("status"), "status", 400)
    payload = {
        "error": "the request was refused; here it is (demo /bad/echo-error)",
        **echo_request(request),
        "body": body.decode("utf-8", "replace"),
    }
    return Reply(payload, status)


#: The hostile dataset routes: (method, path under the prefix, handler).
HOSTILE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", f"/bad/hang/{DATASET_SEGMENT}", _hang),
    ("GET", f"/bad/trickle/{DATASET_SEGMENT}", _trickle),
    ("GET", f"/bad/huge/{DATASET_SEGMENT}", _huge),
    ("GET", f"/bad/redirect-loop/{DATASET_SEGMENT}", _redirect_loop),
    ("GET", f"/bad/redirect-away/{DATASET_SEGMENT}", _redirect_away),
    ("GET", "/bad/status/{code:[0-9]{3}}/" + DATASET_SEGMENT, _status),
    ("GET", f"/bad/never-valid/{DATASET_SEGMENT}", _never_valid),
    ("GET", f"/bad/deep/{DATASET_SEGMENT}", _deep),
    ("GET", f"/bad/echo-error/{DATASET_SEGMENT}", _echo_error),
    ("POST", f"/bad/echo-error/{DATASET_SEGMENT}", _echo_error),
)
