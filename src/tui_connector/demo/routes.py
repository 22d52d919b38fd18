"""The dataset routes: every pagination style and the APIs that misbehave politely; the table
of every dataset route (these, then the hostile ones of ``hostile``).

Routes (each dataset route is served under ``/v1`` without auth, under ``/secure`` with the
``token`` knob's token, and under ``/oauth`` with an access token of ``POST /oauth/token``):

- ``GET  {prefix}/pages/{ds}?page=N&per_page=M``        page numbers from 1, totals in body, header
- ``GET  {prefix}/offset/{ds}?offset=O&limit=L``        offset/limit, ``count``, ``X-Total-Count``
- ``GET  {prefix}/cursor/{ds}?cursor=C&limit=L``        opaque cursor in the body
- ``GET  {prefix}/header-cursor/{ds}?after=C&limit=L``  bare array, cursor in ``X-Next-Cursor``
- ``GET  {prefix}/next/{ds}?page=N&per_page=M``         absolute next URL in ``links.next``
- ``GET  {prefix}/link/{ds}?page=N&per_page=M``         bare array, RFC 8288 ``Link`` (relative)
- ``POST {prefix}/graphql``                             Relay-style connection
- ``GET  {prefix}/all/{ds}``                            the whole dataset, no pagination
- ``GET  {prefix}/export/{ds}?page=N&per_page=M``       JSON Lines, ``X-Total-Count``, ``Link``
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
- ``POST /oauth/token``                                 OAuth2 token endpoint (``oauth``)
- ``GET|POST /_demo/knobs``, ``GET /_demo/log``, ``POST /_demo/reset``   control, never faulted

The routes from ``hang`` on are the hostile ones (``hostile``); the last three lines are the
server's own (``server``). Which records a route pages over: ``params``.
"""

from __future__ import annotations

import json

from aiohttp import web

from tui_connector.demo import data
from tui_connector.demo.hostile import HOSTILE_ROUTES
from tui_connector.demo.knobs import MAX_PAGE_SIZE, DemoKnobs
from tui_connector.demo.params import (
    DATASET_NAME,
    DATASET_SEGMENT,
    GRAPHQL_SELECTION,
    cursor_param,
    has_next,
    int_param,
    page_params,
    page_query,
    parse_selection,
    query_selection,
    records_at,
    size_param,
)
from tui_connector.demo.replies import RECORDS, BadRequest, Handler, Reply

JSON_LINES_TYPE = "application/x-ndjson"


def _pages(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    page, per_page = page_params(request, knobs)
    selection = query_selection(request, knobs)
    records = records_at(request.match_info["ds"], selection, (page - 1) * per_page, per_page)
    total = len(selection)
    payload = {
        "data": RECORDS,
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": -(-total // per_page),
    }
    return Reply(payload, headers={"X-Total-Count": str(total)}, records=records)


def _text_plain(request: web.Request, knobs: DemoKnobs, body: bytes) -> Reply:
    reply = _pages(request, knobs, body)
    reply.content_type = "text/plain"
    return reply


def _offset(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    offset = int_param(request.query, "offset", 0)
    limit = size_param(request.query, "limit", knobs)
    selection = query_selection(request, knobs)
    records = records_at(request.match_info["ds"], selection, offset, limit)
    total = len(selection)
    headers = {"X-Total-Count": str(total)}
    return Reply({"results": RECORDS, "count": total}, headers=headers, records=records)


def _cursor(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    offset = cursor_param(request.query, "cursor")
    limit = size_param(request.query, "limit", knobs)
    selection = query_selection(request, knobs)
    records = records_at(request.match_info["ds"], selection, offset, limit)
    more = offset + limit < len(selection)
    payload = {
        "items": RECORDS,
        "next_cursor": data.encode_cursor(offset + limit) if more else None,
        "has_more": more,
    }
    return Reply(payload, records=records)


def _header_cursor(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    offset = cursor_param(request.query, "after")
    limit = size_param(request.query, "limit", knobs)
    selection = query_selection(request, knobs)
    records = records_at(request.match_info["ds"], selection, offset, limit)
    end = offset + limit
    headers = {"X-Next-Cursor": data.encode_cursor(end)} if end < len(selection) else None
    return Reply(RECORDS, headers=headers, records=records)


def _next(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    page, per_page = page_params(request, knobs)
    selection = query_selection(request, knobs)
    records = records_at(request.match_info["ds"], selection, (page - 1) * per_page, per_page)
    following = None
    if has_next(page, per_page, len(selection)):
        query = page_query(request, page + 1, per_page)
        following = f"{request.scheme}://{request.host}{request.path}?{query}"
    return Reply({"data": RECORDS, "links": {"next": following}}, records=records)


def _link(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    page, per_page = page_params(request, knobs)
    selection = query_selection(request, knobs)
    records = records_at(request.match_info["ds"], selection, (page - 1) * per_page, per_page)
    links = [f'<{request.path}?{page_query(request, 1, per_page)}>; rel="first"']
    if has_next(page, per_page, len(selection)):
        links.append(f'<{request.path}?{page_query(request, page + 1, per_page)}>; rel="next"')
    return Reply(RECORDS, headers={"Link": ", ".join(links)}, records=records)


def _all(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    records = data.records_json(request.match_info["ds"], query_selection(request, knobs))
    return Reply(RECORDS, records=records)


def _export(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    """JSON Lines, as export and bulk endpoints send them: a record a line, the total in a
    header and the next page in a relative ``Link``."""
    page, per_page = page_params(request, knobs)
    selection = query_selection(request, knobs)
    start = (page - 1) * per_page
    lines = data.records_json_lines(request.match_info["ds"], selection[start : start + per_page])
    headers = {"X-Total-Count": str(len(selection))}
    if has_next(page, per_page, len(selection)):
        headers["Link"] = f'<{request.path}?{page_query(request, page + 1, per_page)}>; rel="next"'
    return Reply(lines.encode(), headers=headers, content_type=JSON_LINES_TYPE)


def _graphql_error(message: str, status: int = 200) -> Reply:
    return Reply({"data": None, "errors": [{"message": message}]}, status=status)


def _graphql(_request: web.Request, knobs: DemoKnobs, body: bytes) -> Reply:
    """A Relay-style ``items`` connection; the query text is not parsed, only the variables."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _graphql_error("the request body is not JSON", status=400)
    variables = document.get("variables") if isinstance(document, dict) else None
    if not isinstance(variables, dict):
        variables = {}
    ds = variables.get("dataset")
    if not isinstance(ds, str) or not DATASET_NAME.fullmatch(ds):
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
        selection = parse_selection(variables, GRAPHQL_SELECTION, knobs, prefix="variables.")
    except BadRequest as exc:
        return _graphql_error(str(exc))
    end = min(offset + first, len(selection))
    page_info = {
        "hasNextPage": end < len(selection),
        # Relay: the cursor of the last node returned (here: the offset just past it).
        "endCursor": data.encode_cursor(end) if end > offset else None,
    }
    payload = {"data": {"items": {"nodes": RECORDS, "pageInfo": page_info}}}
    return Reply(payload, records=records_at(ds, selection, offset, first))


def _same_next(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    per_page = size_param(request.query, "per_page", knobs)
    itself = f"{request.scheme}://{request.host}{request.path_qs}"
    records = records_at(request.match_info["ds"], query_selection(request, knobs), 0, per_page)
    return Reply({"data": RECORDS, "links": {"next": itself}}, records=records)


def _last_page_forever(request: web.Request, knobs: DemoKnobs, _body: bytes) -> Reply:
    page, per_page = page_params(request, knobs)
    selection = query_selection(request, knobs)
    last = max(1, -(-len(selection) // per_page))
    start = (min(page, last) - 1) * per_page
    records = records_at(request.match_info["ds"], selection, start, per_page)
    return Reply({"data": RECORDS, "page": page, "per_page": per_page}, records=records)


def _errors_200(_request: web.Request, _knobs: DemoKnobs, _body: bytes) -> Reply:
    return _graphql_error("rate limited by upstream")


#: Every dataset route: (method, path under the ``/v1`` or ``/secure`` prefix, handler).
DATASET_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", f"/pages/{DATASET_SEGMENT}", _pages),
    ("GET", f"/offset/{DATASET_SEGMENT}", _offset),
    ("GET", f"/cursor/{DATASET_SEGMENT}", _cursor),
    ("GET", f"/header-cursor/{DATASET_SEGMENT}", _header_cursor),
    ("GET", f"/next/{DATASET_SEGMENT}", _next),
    ("GET", f"/link/{DATASET_SEGMENT}", _link),
    ("POST", "/graphql", _graphql),
    ("GET", f"/all/{DATASET_SEGMENT}", _all),
    ("GET", f"/export/{DATASET_SEGMENT}", _export),
    ("GET", f"/bad/same-next/{DATASET_SEGMENT}", _same_next),
    ("GET", f"/bad/last-page-forever/{DATASET_SEGMENT}", _last_page_forever),
    ("GET", f"/bad/errors-200/{DATASET_SEGMENT}", _errors_200),
    ("GET", f"/bad/text-plain/{DATASET_SEGMENT}", _text_plain),
    *HOSTILE_ROUTES,
)
