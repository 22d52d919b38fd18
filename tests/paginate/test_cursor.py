"""`type: cursor` (paginate/cursor.py): in a query param, in a header, in a GraphQL body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError

from .fakes import BASE, Server, cursor_server, drive, make, page, rows

IN_QUERY = {"type": "cursor", "cursor": "meta.next", "cursor_param": "cursor"}


def test_cursor_in_query_param() -> None:
    paginator = make(IN_QUERY, params={"limit": 2})
    run = drive(paginator, cursor_server([rows(0, 2), rows(2, 4), rows(4, 5)], ["c1", "c2", None]))
    assert [r.params for r in run.requests] == [
        {"limit": "2"},
        {"limit": "2", "cursor": "c1"},
        {"limit": "2", "cursor": "c2"},
    ]
    assert run.records == rows(0, 5)
    assert [paginator.describe(s) for s in run.states] == ["first page", "cursor c1", "cursor c2"]


def test_empty_string_cursor_ends_the_stream() -> None:
    run = drive(make(IN_QUERY), cursor_server([rows(0, 2), rows(2, 3)], ["c1", ""]))
    assert len(run.requests) == 2


def test_integer_cursor_is_sent_as_text() -> None:
    run = drive(make(IN_QUERY), cursor_server([rows(0, 2), rows(2, 3)], [1002]))
    assert run.requests[1].params == {"cursor": "1002"}
    assert run.states[1]["cursor"] == 1002


def test_cursor_from_a_header() -> None:
    paginator = make(
        {"type": "cursor", "cursor": {"header": "X-Next-Cursor"}, "cursor_param": "after"}
    )
    cursors = {None: "abc", "abc": "def", "def": None}
    served: dict[str | None, list[Any]] = {None: rows(0, 3), "abc": rows(3, 6), "def": rows(6, 7)}

    def serve(request: PageRequest) -> Page:
        sent = request.params.get("after")
        following = cursors[sent]
        headers = httpx.Headers({"x-next-cursor": following} if following else {})
        return page(served[sent], headers=headers)

    run = drive(paginator, serve)
    assert [r.params.get("after") for r in run.requests] == [None, "abc", "def"]
    assert run.records == rows(0, 7)


def test_short_cursor_page_compares_with_the_first_page() -> None:
    pages, cursors = [rows(0, 3), rows(3, 5), rows(5, 8)], ["c1", "c2", None]
    by_default = drive(make(IN_QUERY), cursor_server(pages, cursors))
    assert len(by_default.requests) == 3
    asked = drive(make({**IN_QUERY, "stop": {"short_page": True}}), cursor_server(pages, cursors))
    assert len(asked.requests) == 2


def test_same_cursor_twice_is_a_loop() -> None:
    paginator = make({"type": "cursor", "cursor": "next", "cursor_param": "cursor"})

    def serve(request: PageRequest) -> Page:
        number = int(request.params.get("cursor", "0").removeprefix("c") or 0)
        records = rows(number * 2, number * 2 + 2)
        # The server gets stuck on c2: it names it again when asked for c2.
        return page(records, {"next": f"c{min(number + 1, 2)}"})

    with pytest.raises(PaginationError, match=r"same cursor twice in a row \(c2\)"):
        drive(paginator, serve)


@pytest.mark.parametrize("bad", [{"after": "x"}, ["x"], True])
def test_cursor_that_is_not_a_scalar_is_refused(bad: Any) -> None:
    paginator = make(IN_QUERY)
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


def test_graphql_relay_cursor_in_the_json_body() -> None:
    template = {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": None}}
    paginator = make(
        {
            "type": "cursor",
            "cursor": "data.items.pageInfo.endCursor",
            "cursor_body_field": "variables.after",
            "stop": {"has_more": "data.items.pageInfo.hasNextPage"},
        },
        method="POST",
        body=template,
    )
    run = drive(paginator, relay_server(total=10))
    assert [r.json for r in run.requests] == [
        {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": None}},
        {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": "o4"}},
        {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": "o8"}},
    ]
    assert all(r.params == {} and r.url == BASE for r in run.requests)
    assert run.records == rows(0, 10)
    assert template == {"query": GRAPHQL_QUERY, "variables": {"first": 4, "after": None}}


def test_body_cursor_creates_missing_objects_and_keeps_numbers() -> None:
    paginator = make(
        {"type": "cursor", "cursor": "next", "cursor_body_field": "variables.page.after"},
        method="POST",
        body={"query": "q"},
    )
    state = paginator.start()
    assert paginator.request(state).json == {"query": "q"}
    following = paginator.advance(state, page(rows(0, 1), {"next": 17}))
    assert following is not None
    assert paginator.request(following).json == {
        "query": "q",
        "variables": {"page": {"after": 17}},
    }


def test_body_cursor_through_a_non_object_is_refused() -> None:
    paginator = make(
        {"type": "cursor", "cursor": "next", "cursor_body_field": "variables.after"},
        method="POST",
        body={"variables": "oops"},
    )
    following = paginator.advance(paginator.start(), page(rows(0, 1), {"next": "c1"}))
    assert following is not None
    with pytest.raises(PaginationError, match="'variables' is \"oops\", not an object"):
        paginator.request(following)


def test_long_cursor_is_shortened_in_describe() -> None:
    paginator = make({"type": "cursor", "cursor": "n", "cursor_param": "c"})
    following = paginator.advance(paginator.start(), page(rows(0, 1), {"n": "eyJvZmYiOjEwMH0" * 4}))
    assert following is not None
    assert paginator.describe(following) == "cursor eyJvZmYiOjEwMH0…"
