"""Paginators built straight from a pagination dict and a request template (no YAML), the fake
servers they page through, and `drive`, which runs one to the end as the engine does."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import TypeAdapter

from tui_connector.config import Pagination, Scalar
from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import BasePaginator, RequestTemplate, build_paginator

BASE = "https://api.example.com/v1/items"

Server = Callable[[PageRequest], Page]

_PAGINATION: TypeAdapter[Any] = TypeAdapter(Pagination)


def make(
    pagination: Mapping[str, Any] | None = None,
    *,
    method: str = "GET",
    url: str = BASE,
    params: Mapping[str, Scalar] | None = None,
    body: Mapping[str, Any] | None = None,
    auth_param: str | None = None,
) -> BasePaginator[Any]:
    """The paginator of `pagination` (as written in sources.yaml; none by default)."""
    model = _PAGINATION.validate_python(pagination or {"type": "none"})
    return build_paginator(model, RequestTemplate(method, url, params, body, auth_param))


def rows(start: int, stop: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(start, stop)]


def page(
    records: list[Any],
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    url: str = BASE,
) -> Page:
    return Page(
        url=url, headers=headers or {}, body=records if body is None else body, records=records
    )


def query(request: PageRequest) -> dict[str, str]:
    """Every query parameter the request sends: those in its URL and those in `params`."""
    return {**dict(parse_qsl(urlsplit(request.url).query)), **request.params}


def full_url(request: PageRequest) -> str:
    """The URL httpx sends, built as the HTTP client builds it."""
    return str(httpx.Request(request.method, request.url, params=request.params or None).url)


@dataclass
class Run:
    requests: list[PageRequest] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    page_sizes: list[int] = field(default_factory=list)


def drive(paginator: BasePaginator[Any], server: Server, max_requests: int = 50) -> Run:
    """start → request → advance until the end, as the engine does, checking on every step
    that the state is plain JSON, survives a round trip, and is not modified by advance."""
    run = Run()
    state: dict[str, Any] | None = paginator.start()
    while state is not None:
        assert len(run.requests) < max_requests, "pagination did not end"
        assert_plain_json(state)
        state = json.loads(json.dumps(state))
        run.states.append(state)
        request = paginator.request(state)
        run.requests.append(request)
        fetched = server(request)
        run.records.extend(fetched.records)
        run.page_sizes.append(len(fetched.records))
        before = copy.deepcopy(state)
        state = paginator.advance(state, fetched)
        assert run.states[-1] == before, "advance modified its input state"
    return run


def assert_plain_json(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or isinstance(value, str | int | float | bool), value


# -- fake servers -----------------------------------------------------------------------------


def page_number_server(
    total: int,
    default_size: int = 10,
    repeat_last: bool = False,
    headers: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> Server:
    """Serves ?page=N (1-based) of `total` rows, `per_page` (or `default_size`) a page, the
    rows under "data" and `meta` beside them."""

    def serve(request: PageRequest) -> Page:
        params = query(request)
        number, size = int(params["page"]), int(params.get("per_page", default_size))
        last = max(1, -(-total // size))
        if repeat_last:
            number = min(number, last)
        found = rows((number - 1) * size, min(number * size, total))
        body = {"data": found} if meta is None else {"data": found, "meta": meta}
        return page(found, body, headers, full_url(request))

    return serve


def offset_server(total: int, cap: int) -> Server:
    """Serves ?offset=&limit= of `total` rows, at most `cap` a page, with X-Total-Count."""

    def serve(request: PageRequest) -> Page:
        start, limit = int(request.params["offset"]), int(request.params["limit"])
        found = rows(start, min(start + min(limit, cap), total))
        headers = {"X-Total-Count": str(total)}
        return page(found, {"items": found}, headers, url=full_url(request))

    return serve


def cursor_server(pages: list[list[Any]], cursors: list[Any], total: Any = None) -> Server:
    """Page i is served for cursor `cursors[i - 1]` (None for the first) and names cursors[i]."""

    def serve(request: PageRequest) -> Page:
        sent = request.params.get("cursor")
        index = 0 if sent is None else [str(c) for c in cursors].index(sent) + 1
        following = cursors[index] if index < len(cursors) else None
        meta = {"next": following} if total is None else {"next": following, "total": total}
        return page(pages[index], {"data": pages[index], "meta": meta})

    return serve


def link_server(total: int, size: int, make_link: Callable[[int], str | None]) -> Server:
    """Serves ?page=N; the Link header carries make_link(N) as rel=next plus other rels."""

    def serve(request: PageRequest) -> Page:
        number = int(query(request).get("page", "1"))
        found = rows((number - 1) * size, min(number * size, total))
        links = ['<https://api.example.com/v1/items?page=1>; rel="first"']
        target = make_link(number) if number * size < total else None
        if target is not None:
            links.append(f'<{target}>; rel="next"')
        return page(found, headers=httpx.Headers({"Link": ", ".join(links)}), url=full_url(request))

    return serve
