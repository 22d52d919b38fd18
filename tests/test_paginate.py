"""Pagination strategies against small fake servers: every style, every stop rule, the loop
guard, and checkpoints that survive a JSON round trip (which is what resume does)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml

from tui_connector.config import SourceSpec, load_config
from tui_connector.exchange import PageRequest
from tui_connector.paginate import Page, PaginationError, Paginator, next_link

BASE = "https://api.example.com/v1/items"

Server = Callable[[PageRequest], Page]


def spec_from(tmp_path: Path, **source: Any) -> SourceSpec:
    path = tmp_path / "sources.yaml"
    config = {"sources": {"items": {"url": BASE, **source}}}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return load_config(path, env={}).sources["items"]


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


def drive(paginator: Paginator, server: Server, max_requests: int = 50) -> Run:
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


def page_number_server(
    total: int, default_size: int = 10, repeat_last: bool = False, headers: Any = None
) -> Server:
    def serve(request: PageRequest) -> Page:
        params = query(request)
        number, size = int(params["page"]), int(params.get("per_page", default_size))
        last = max(1, -(-total // size))
        if repeat_last:
            number = min(number, last)
        found = rows((number - 1) * size, min(number * size, total))
        return page(found, {"data": found}, headers, full_url(request))

    return serve


# -- none -------------------------------------------------------------------------------------


def test_no_pagination_is_one_request(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, params={"flag": True, "n": 3, "name": "x"})
    paginator = Paginator(spec)
    run = drive(paginator, lambda request: page(rows(0, 3)))
    assert run.requests == [PageRequest("GET", BASE, {"flag": "true", "n": "3", "name": "x"}, None)]
    assert run.records == rows(0, 3)
    assert paginator.describe(paginator.start()) == "single request"


def test_post_body_is_a_fresh_copy_each_time(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, method="POST", body={"filter": {"kind": ["a"]}})
    paginator = Paginator(spec)
    first = paginator.request(paginator.start())
    assert first.json == {"filter": {"kind": ["a"]}}
    first.json["filter"]["kind"].append("mutated")
    assert paginator.request(paginator.start()).json == {"filter": {"kind": ["a"]}}
    assert spec.body == {"filter": {"kind": ["a"]}}


# -- page_number ------------------------------------------------------------------------------


def test_page_number_until_empty_page(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        params={"sort": "id"},
        records="data",
        pagination={"type": "page_number", "size_param": "per_page", "size": 10},
    )
    paginator = Paginator(spec)
    run = drive(paginator, page_number_server(total=30))
    assert [r.params for r in run.requests] == [
        {"sort": "id", "page": str(n), "per_page": "10"} for n in (1, 2, 3, 4)
    ]
    assert run.records == rows(0, 30)
    assert [paginator.describe(s) for s in run.states] == ["page 1", "page 2", "page 3", "page 4"]


def test_page_number_custom_start_and_param(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "page_number", "page_param": "p", "start": 0})

    def serve(request: PageRequest) -> Page:
        number = int(request.params["p"])
        return page(rows(number * 10, number * 10 + 2) if number < 2 else [])

    run = drive(Paginator(spec), serve)
    assert [r.params for r in run.requests] == [{"p": "0"}, {"p": "1"}, {"p": "2"}]
    assert run.page_sizes == [2, 2, 0]


def test_short_page_does_not_end_pagination_by_default(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "size_param": "per_page", "size": 10},
    )
    run = drive(Paginator(spec), page_number_server(total=25))
    # The short page does not end it: the empty page after it does.
    assert run.page_sizes == [10, 10, 5, 0]
    assert run.records == rows(0, 25)


def test_short_page_ends_pagination_when_asked(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={
            "type": "page_number",
            "size_param": "per_page",
            "size": 10,
            "stop": {"short_page": True},
        },
    )
    run = drive(Paginator(spec), page_number_server(total=25))
    assert run.page_sizes == [10, 10, 5]
    assert run.records == rows(0, 25)


def test_short_page_without_size_compares_with_the_first_page(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path, records="data", pagination={"type": "page_number", "stop": {"short_page": True}}
    )
    run = drive(Paginator(spec), page_number_server(total=25, default_size=10))
    assert len(run.requests) == 3


def test_page_past_the_end_repeating_the_last_page_is_caught(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "size_param": "per_page", "size": 10},
    )
    with pytest.raises(PaginationError, match="page 4 returned the same records as page 3"):
        drive(Paginator(spec), page_number_server(total=30, repeat_last=True))


def test_repeats_are_told_apart_by_integers_past_64_bits(tmp_path: Path) -> None:
    """The fingerprint is exact for integers orjson cannot encode (they take the stdlib)."""
    spec = spec_from(
        tmp_path, records="data", pagination={"type": "page_number", "stop": {"max_pages": 3}}
    )

    def serve(request: PageRequest) -> Page:
        found = [{"id": 2**70 + int(query(request)["page"])}]
        return page(found, {"data": found})

    run = drive(Paginator(spec), serve)
    assert run.records == [{"id": 2**70 + number} for number in (1, 2, 3)]
    with pytest.raises(PaginationError, match="page 2 returned the same records as page 1"):
        drive(Paginator(spec), lambda request: page([{"id": 2**70}], {"data": [{"id": 2**70}]}))


def test_empty_pages_are_not_taken_for_repeats(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "stop": {"empty_page": False, "max_pages": 5}},
    )
    run = drive(Paginator(spec), page_number_server(total=10))
    assert len(run.requests) == 5
    assert run.records == rows(0, 10)


# -- offset -----------------------------------------------------------------------------------


def offset_server(total: int, cap: int) -> Server:
    def serve(request: PageRequest) -> Page:
        start, limit = int(request.params["offset"]), int(request.params["limit"])
        found = rows(start, min(start + min(limit, cap), total))
        return page(found, {"items": found}, url=full_url(request))

    return serve


def test_offset_advances_by_records_received_not_by_limit(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, records="items", pagination={"type": "offset", "limit": 100})
    paginator = Paginator(spec)
    run = drive(paginator, offset_server(total=70, cap=30))
    assert [r.params["offset"] for r in run.requests] == ["0", "30", "60", "70"]
    assert {r.params["limit"] for r in run.requests} == {"100"}
    assert run.records == rows(0, 70)
    assert paginator.describe(run.states[1]) == "offset 30"


def test_offset_custom_params_and_start(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        pagination={
            "type": "offset",
            "offset_param": "skip",
            "limit_param": "take",
            "limit": 5,
            "start": 10,
            "stop": {"short_page": True},
        },
    )

    def serve(request: PageRequest) -> Page:
        skip, take = int(request.params["skip"]), int(request.params["take"])
        return page(rows(skip, min(skip + take, 22)))

    run = drive(Paginator(spec), serve)
    assert [r.params["skip"] for r in run.requests] == ["10", "15", "20"]
    assert run.records == rows(10, 22)


def test_offset_with_empty_pages_allowed_refuses_to_stand_still(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "offset", "stop": {"empty_page": False}})
    with pytest.raises(PaginationError, match="offset cannot advance"):
        drive(Paginator(spec), offset_server(total=3, cap=100))


# -- cursor -----------------------------------------------------------------------------------


def cursor_server(pages: list[list[Any]], cursors: list[Any]) -> Server:
    """Page i is served for cursor `cursors[i - 1]` (None for the first) and names cursors[i]."""

    def serve(request: PageRequest) -> Page:
        sent = request.params.get("cursor")
        index = 0 if sent is None else [str(c) for c in cursors].index(sent) + 1
        following = cursors[index] if index < len(cursors) else None
        body = {"data": pages[index], "meta": {"next": following}}
        return page(pages[index], body)

    return serve


def test_cursor_in_query_param(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        params={"limit": 2},
        records="data",
        pagination={"type": "cursor", "cursor": "meta.next", "cursor_param": "cursor"},
    )
    paginator = Paginator(spec)
    run = drive(paginator, cursor_server([rows(0, 2), rows(2, 4), rows(4, 5)], ["c1", "c2", None]))
    assert [r.params for r in run.requests] == [
        {"limit": "2"},
        {"limit": "2", "cursor": "c1"},
        {"limit": "2", "cursor": "c2"},
    ]
    assert run.records == rows(0, 5)
    assert [paginator.describe(s) for s in run.states] == ["first page", "cursor c1", "cursor c2"]


def test_empty_string_cursor_ends_the_stream(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "cursor", "cursor": "meta.next", "cursor_param": "cursor"},
    )
    run = drive(Paginator(spec), cursor_server([rows(0, 2), rows(2, 3)], ["c1", ""]))
    assert len(run.requests) == 2


def test_integer_cursor_is_sent_as_text(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "cursor", "cursor": "meta.next", "cursor_param": "cursor"},
    )
    run = drive(Paginator(spec), cursor_server([rows(0, 2), rows(2, 3)], [1002]))
    assert run.requests[1].params == {"cursor": "1002"}
    assert run.states[1]["cursor"] == 1002


def test_cursor_from_a_header(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        pagination={
            "type": "cursor",
            "cursor": {"header": "X-Next-Cursor"},
            "cursor_param": "after",
        },
    )
    cursors = {None: "abc", "abc": "def", "def": None}
    served: dict[str | None, list[Any]] = {None: rows(0, 3), "abc": rows(3, 6), "def": rows(6, 7)}

    def serve(request: PageRequest) -> Page:
        sent = request.params.get("after")
        following = cursors[sent]
        headers = httpx.Headers({"x-next-cursor": following} if following else {})
        return page(served[sent], headers=headers)

    run = drive(Paginator(spec), serve)
    assert [r.params.get("after") for r in run.requests] == [None, "abc", "def"]
    assert run.records == rows(0, 7)


def test_short_cursor_page_compares_with_the_first_page(tmp_path: Path) -> None:
    pagination = {"type": "cursor", "cursor": "meta.next", "cursor_param": "cursor"}
    pages, cursors = [rows(0, 3), rows(3, 5), rows(5, 8)], ["c1", "c2", None]
    by_default = drive(
        Paginator(spec_from(tmp_path, records="data", pagination=pagination)),
        cursor_server(pages, cursors),
    )
    assert len(by_default.requests) == 3
    pagination["stop"] = {"short_page": True}
    asked = drive(
        Paginator(spec_from(tmp_path, records="data", pagination=pagination)),
        cursor_server(pages, cursors),
    )
    assert len(asked.requests) == 2


def test_same_cursor_twice_is_a_loop(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        pagination={"type": "cursor", "cursor": "next", "cursor_param": "cursor"},
    )

    def serve(request: PageRequest) -> Page:
        number = int(request.params.get("cursor", "0").removeprefix("c") or 0)
        records = rows(number * 2, number * 2 + 2)
        # The server gets stuck on c2: it names it again when asked for c2.
        return page(records, {"next": f"c{min(number + 1, 2)}"})

    with pytest.raises(PaginationError, match=r"same cursor twice in a row \(c2\)"):
        drive(Paginator(spec), serve)


@pytest.mark.parametrize("bad", [{"after": "x"}, ["x"], True])
def test_cursor_that_is_not_a_scalar_is_refused(tmp_path: Path, bad: Any) -> None:
    spec = spec_from(
        tmp_path,
        pagination={"type": "cursor", "cursor": "meta.next", "cursor_param": "cursor"},
    )
    paginator = Paginator(spec)
    with pytest.raises(PaginationError, match=r"body path 'meta\.next' is not a string or number"):
        paginator.advance(paginator.start(), page(rows(0, 1), {"meta": {"next": bad}}))


GRAPHQL_QUERY = "query($first: Int, $after: String) { items(first: $first, after: $after) {…} }"


def relay_server(total: int) -> Server:
    """A GraphQL Relay connection: cursors are opaque strings, pageInfo says if there is more."""

    def serve(request: PageRequest) -> Page:
        assert request.method == "POST"
        assert request.json is not None
        variables = request.json["variables"]
        start = 0 if variables.get("after") is None else int(variables["after"].removeprefix("o"))
        nodes = rows(start, min(start + variables["first"], total))
        end = start + len(nodes)
        body = {
            "data": {
                "items": {
                    "nodes": nodes,
                    "pageInfo": {"endCursor": f"o{end}", "hasNextPage": end < total},
                }
            }
        }
        return page(nodes, body)

    return serve


def test_graphql_relay_cursor_in_the_json_body(tmp_path: Path) -> None:
    template = {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": None}}
    spec = spec_from(
        tmp_path,
        method="POST",
        body=template,
        records="data.items.nodes",
        errors="errors",
        pagination={
            "type": "cursor",
            "cursor": "data.items.pageInfo.endCursor",
            "cursor_body_field": "variables.after",
            "stop": {"has_more": "data.items.pageInfo.hasNextPage"},
        },
    )
    run = drive(Paginator(spec), relay_server(total=10))
    assert [r.json for r in run.requests] == [
        {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": None}},
        {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": "o4"}},
        {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": "o8"}},
    ]
    assert all(r.params == {} and r.url == BASE for r in run.requests)
    assert run.records == rows(0, 10)
    assert spec.body == template


def test_body_cursor_creates_missing_objects_and_keeps_numbers(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        method="POST",
        body={"query": "q"},
        pagination={
            "type": "cursor",
            "cursor": "next",
            "cursor_body_field": "variables.page.after",
        },
    )
    paginator = Paginator(spec)
    state = paginator.start()
    assert paginator.request(state).json == {"query": "q"}
    following = paginator.advance(state, page(rows(0, 1), {"next": 17}))
    assert following is not None
    assert paginator.request(following).json == {
        "query": "q",
        "variables": {"page": {"after": 17}},
    }


def test_body_cursor_through_a_non_object_is_refused(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        method="POST",
        body={"variables": "oops"},
        pagination={"type": "cursor", "cursor": "next", "cursor_body_field": "variables.after"},
    )
    paginator = Paginator(spec)
    following = paginator.advance(paginator.start(), page(rows(0, 1), {"next": "c1"}))
    assert following is not None
    with pytest.raises(PaginationError, match="'variables' is \"oops\", not an object"):
        paginator.request(following)


def test_long_cursor_is_shortened_in_describe(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "cursor", "cursor": "n", "cursor_param": "c"})
    paginator = Paginator(spec)
    following = paginator.advance(paginator.start(), page(rows(0, 1), {"n": "eyJvZmYiOjEwMH0" * 4}))
    assert following is not None
    assert paginator.describe(following) == "cursor eyJvZmYiOjEwMH0…"


# -- next_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a.test/x?page=2>; rel="next"', "https://a.test/x?page=2"),
        ("<https://a.test/x?page=2>; rel=next", "https://a.test/x?page=2"),
        (
            '<https://a.test/x?p=1>; rel="prev", <https://a.test/x?p=3>; rel="next"',
            "https://a.test/x?p=3",
        ),
        ('<https://a.test/x?p=3>; rel="next last"', "https://a.test/x?p=3"),
        ('<https://a.test/x?p=9>; rel="last", </x?p=3>; title="a, b"; REL="Next"', "/x?p=3"),
        ('<https://a.test/x?a=1,2>; rel="next"', "https://a.test/x?a=1,2"),
        (
            '<https://a.test/x?p=1>;rel="first",<https://a.test/x?p=2>;rel="next"',
            "https://a.test/x?p=2",
        ),
        ('<https://a.test/x?p=1>; rel="prev"', None),
        # RFC 8288 §3.3: a second rel parameter on the same link is ignored.
        ('<https://a.test/x?p=1>; rel="prev"; rel="next"', None),
        ('<https://a.test/x?p=1>; rel="nextpage"', None),
        ("", None),
    ],
)
def test_next_link_parsing(header: str, expected: str | None) -> None:
    assert next_link(header) == expected


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


def test_next_url_from_relative_link_header(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, params={"per_page": 2}, pagination={"type": "next_url"})
    paginator = Paginator(spec)
    run = drive(paginator, link_server(5, 2, lambda n: f"items?page={n + 1}&per_page=2"))
    assert [(r.url, r.params) for r in run.requests] == [
        (BASE, {"per_page": "2"}),
        ("https://api.example.com/v1/items?page=2&per_page=2", {}),
        ("https://api.example.com/v1/items?page=3&per_page=2", {}),
    ]
    assert run.records == rows(0, 5)
    assert paginator.describe(run.states[0]) == "first page"
    assert paginator.describe(run.states[1]) == (
        "next https://api.example.com/v1/items?page=2&per_page=2"
    )


def test_next_url_from_a_body_path(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path, records="results", pagination={"type": "next_url", "next": "links.next"}
    )

    def serve(request: PageRequest) -> Page:
        number = int(query(request).get("page", "1"))
        found = rows(number * 10, number * 10 + 3)
        following = f"/v1/items?page={number + 1}" if number < 3 else None
        return page(found, {"results": found, "links": {"next": following}}, url=full_url(request))

    run = drive(Paginator(spec), serve)
    assert [full_url(r) for r in run.requests] == [
        BASE,
        f"{BASE}?page=2",
        f"{BASE}?page=3",
    ]


def test_next_url_from_a_plain_header(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url", "next": {"header": "X-Next"}})
    paginator = Paginator(spec)
    state = paginator.start()
    following = paginator.advance(state, page(rows(0, 2), headers={"x-next": f"{BASE}?after=9"}))
    assert following is not None
    assert paginator.request(following) == PageRequest("GET", f"{BASE}?after=9", {}, None)
    assert paginator.advance(following, page(rows(2, 3), url=f"{BASE}?after=9")) is None


def test_next_link_to_another_host_is_refused(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url"})
    with pytest.raises(PaginationError) as caught:
        drive(Paginator(spec), link_server(5, 2, lambda n: f"https://evil.test/steal?page={n + 1}"))
    message = str(caught.value)
    assert "https://evil.test/steal?page=2 points to another host" in message
    assert "could leak your credentials" in message
    assert "allow_other_hosts: true" in message


@pytest.mark.parametrize(
    "target",
    [
        "http://api.example.com/v1/items?page=2",  # a downgrade to plain http
        "https://api.example.com:8443/v1/items?page=2",
        "//cdn.example.com/v1/items?page=2",
    ],
)
def test_scheme_port_and_host_all_count(tmp_path: Path, target: str) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url"})
    with pytest.raises(PaginationError, match="points to another host"):
        drive(Paginator(spec), link_server(5, 2, lambda n: target))


def test_explicit_default_port_is_the_same_host(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url"})
    run = drive(
        Paginator(spec),
        link_server(5, 2, lambda n: f"https://API.example.com:443/v1/items?page={n + 1}"),
    )
    assert run.records == rows(0, 5)


def test_other_hosts_allowed_when_trusted(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url", "allow_other_hosts": True})
    run = drive(Paginator(spec), link_server(5, 2, lambda n: f"https://mirror.test/x?page={n + 1}"))
    assert run.requests[1].url == "https://mirror.test/x?page=2"
    assert run.records == rows(0, 5)


def test_next_link_that_is_not_http_is_refused(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url", "allow_other_hosts": True})
    with pytest.raises(PaginationError, match="not an http"):
        drive(Paginator(spec), link_server(5, 2, lambda n: "ftp://files.test/items"))


def test_same_next_link_twice_is_a_loop(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url"})
    # Page 2 links to itself: the second time round the guard stops it.
    with pytest.raises(PaginationError, match="same next link twice in a row"):
        drive(Paginator(spec), link_server(50, 2, lambda n: f"{BASE}?page=2"))


def test_next_link_to_the_page_just_fetched_is_a_loop(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, params={"page": 0}, pagination={"type": "next_url"})
    paginator = Paginator(spec)
    state = paginator.start()
    requested = full_url(paginator.request(state))
    with pytest.raises(PaginationError, match="same next link twice"):
        paginator.advance(
            state, page(rows(0, 2), headers={"Link": f'<{requested}>; rel="next"'}, url=requested)
        )


def test_secrets_in_next_links_are_masked_in_messages(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "next_url"})
    paginator = Paginator(spec)
    link = '<https://user:pw@evil.test/x?api_key=s3cret&page=2>; rel="next"'
    with pytest.raises(PaginationError) as caught:
        paginator.advance(paginator.start(), page(rows(0, 1), headers={"Link": link}))
    assert "s3cret" not in str(caught.value)
    assert "pw" not in str(caught.value)
    following = {**paginator.start(), "next": f"{BASE}?access_token=s3cret&page=2"}
    assert paginator.describe(following) == f"next {BASE}?access_token=***&page=2"


# -- stop rules -------------------------------------------------------------------------------


def test_total_records_from_a_header_string(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={
            "type": "page_number",
            "stop": {"total_records": {"header": "X-Total-Count"}},
        },
    )
    run = drive(
        Paginator(spec),
        page_number_server(total=25, headers=httpx.Headers({"x-total-count": " 25 "})),
    )
    # Without the total the short third page would not end it (short_page is off).
    assert len(run.requests) == 3
    assert run.states[-1]["total_records"] == 25


def test_total_is_remembered_from_pages_that_carried_it(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "stop": {"total_pages": "meta.pages"}},
    )

    def serve(request: PageRequest) -> Page:
        number = int(request.params["page"])
        found = rows(number * 10, number * 10 + 10)
        meta = {"pages": "3"} if number == 1 else {}
        return page(found, {"data": found, "meta": meta})

    run = drive(Paginator(spec), serve)
    assert [r.params["page"] for r in run.requests] == ["1", "2", "3"]


@pytest.mark.parametrize("bad", ["many", "12.5", -1, True, {"n": 1}])
def test_total_that_is_not_a_number_names_its_source(tmp_path: Path, bad: Any) -> None:
    spec = spec_from(
        tmp_path,
        pagination={"type": "page_number", "stop": {"total_records": {"header": "X-Total"}}},
    )
    paginator = Paginator(spec)
    headers = {"X-Total": bad}
    with pytest.raises(PaginationError, match=r"stop\.total_records read from header 'X-Total'"):
        paginator.advance(paginator.start(), page(rows(0, 1), headers=headers))


def test_total_as_a_json_number(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "offset", "limit": 4, "stop": {"total_records": "meta.total"}},
    )

    def serve(request: PageRequest) -> Page:
        start = int(request.params["offset"])
        found = rows(start, start + 4)  # the server has more, but the total says 8
        return page(found, {"data": found, "meta": {"total": 8.0}})

    assert len(drive(Paginator(spec), serve).requests) == 2


@pytest.mark.parametrize("false_value", [False, "false", "False", 0, "0"])
def test_has_more_false_ends_the_stream(tmp_path: Path, false_value: Any) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "stop": {"has_more": "has_more"}},
    )

    def serve(request: PageRequest) -> Page:
        number = int(request.params["page"])
        found = rows(number * 10, number * 10 + 10)
        return page(found, {"data": found, "has_more": true_or(number < 3, false_value)})

    assert len(drive(Paginator(spec), serve).requests) == 3


def true_or(condition: bool, false_value: Any) -> Any:
    return True if condition else false_value


def test_missing_has_more_is_ignored(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "stop": {"has_more": {"header": "X-Has-More"}}},
    )
    run = drive(Paginator(spec), page_number_server(total=20))
    # Ends on the empty third page, as if has_more were not configured.
    assert len(run.requests) == 3


def test_max_pages(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        records="data",
        pagination={"type": "page_number", "stop": {"max_pages": 2}},
    )
    run = drive(Paginator(spec), page_number_server(total=100))
    assert len(run.requests) == 2
    assert run.records == rows(0, 20)


def test_empty_page_false_continues_past_an_empty_page(tmp_path: Path) -> None:
    spec = spec_from(
        tmp_path,
        pagination={
            "type": "cursor",
            "cursor": "next",
            "cursor_param": "c",
            "stop": {"empty_page": False},
        },
    )
    served = {None: ([], "a"), "a": (rows(0, 2), "b"), "b": (rows(2, 3), None)}

    def serve(request: PageRequest) -> Page:
        found, following = served[request.params.get("c")]
        return page(found, {"next": following})

    run = drive(Paginator(spec), serve)
    assert run.records == rows(0, 3)
    assert len(run.requests) == 3


def test_empty_page_ends_even_when_the_server_names_a_next_cursor(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, pagination={"type": "cursor", "cursor": "next", "cursor_param": "c"})
    paginator = Paginator(spec)
    assert paginator.advance(paginator.start(), page([], {"next": "more"})) is None


# -- resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pagination", "server"),
    [
        ({"type": "page_number"}, page_number_server(total=35)),
        ({"type": "offset", "limit": 10}, offset_server(total=35, cap=10)),
        ({"type": "next_url"}, link_server(35, 10, lambda n: f"{BASE}?page={n + 1}")),
    ],
)
def test_resuming_from_any_checkpoint_continues_identically(
    tmp_path: Path, pagination: dict[str, Any], server: Server
) -> None:
    spec = spec_from(tmp_path, records="data", pagination=pagination)

    def with_body(request: PageRequest) -> Page:
        served = server(request)
        return Page(served.url, served.headers, {"data": served.records}, served.records)

    whole = drive(Paginator(spec), with_body)
    for index, checkpoint in enumerate(whole.states):
        # A fresh paginator, as after a restart, from the stored JSON text.
        resumed = Paginator(spec)
        state: dict[str, Any] | None = json.loads(json.dumps(checkpoint))
        requests = []
        while state is not None:
            request = resumed.request(state)
            requests.append(request)
            state = resumed.advance(state, with_body(request))
        assert requests == whole.requests[index:]


def test_checkpoint_of_another_style_is_refused(tmp_path: Path) -> None:
    offset = Paginator(spec_from(tmp_path, pagination={"type": "offset"}))
    numbered = Paginator(spec_from(tmp_path, pagination={"type": "page_number"}))
    checkpoint = offset.start()
    assert numbered.describe(checkpoint) == "checkpoint of another pagination type"
    with pytest.raises(PaginationError, match="--full-refresh"):
        numbered.request(checkpoint)
    with pytest.raises(PaginationError, match="written for pagination 'offset'"):
        numbered.advance(checkpoint, page(rows(0, 1)))


def test_state_keys_per_style(tmp_path: Path) -> None:
    common = {"style", "pages", "records", "digest", "first_size", "total_records", "total_pages"}
    expected = {
        "page_number": common | {"page"},
        "offset": common | {"offset"},
        "next_url": common | {"next"},
    }
    for style, keys in expected.items():
        spec = spec_from(tmp_path, pagination={"type": style})
        assert set(Paginator(spec).start()) == keys
    cursor = spec_from(tmp_path, pagination={"type": "cursor", "cursor": "n", "cursor_param": "c"})
    assert set(Paginator(cursor).start()) == common | {"cursor"}
    assert set(Paginator(spec_from(tmp_path)).start()) == {"style", "pages", "records"}


def test_counters_in_the_state(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, records="data", pagination={"type": "page_number"})
    run = drive(Paginator(spec), page_number_server(total=25))
    assert [(s["pages"], s["records"]) for s in run.states] == [(0, 0), (1, 10), (2, 20), (3, 25)]


def test_query_written_in_the_config_url_is_kept(tmp_path: Path) -> None:
    # httpx drops a URL's own query when it is given params: it must travel in params.
    path = tmp_path / "sources.yaml"
    path.write_text(
        f"sources:\n  items:\n    url: '{BASE}?kind=a&page=9&empty='\n"
        "    params: {kind: b}\n    pagination: {type: page_number}\n",
        encoding="utf-8",
    )
    spec = load_config(path, env={}).sources["items"]
    request = Paginator(spec).request(Paginator(spec).start())
    assert request.url == BASE
    assert request.params == {"kind": "b", "page": "1", "empty": ""}
    assert full_url(request) == f"{BASE}?kind=b&page=1&empty="
