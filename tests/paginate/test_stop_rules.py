"""The stop rules every style shares (paginate/base.py): totals, has_more, max_pages, empty
pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError

from .fakes import drive, make, page, page_number_server, rows


def test_total_records_from_a_header_string() -> None:
    paginator = make(
        {
            "type": "page_number",
            "stop": {"total_records": {"header": "X-Total-Count"}},
        }
    )
    run = drive(
        paginator,
        page_number_server(total=25, headers=httpx.Headers({"x-total-count": " 25 "})),
    )
    # Without the total the short third page would not end it (short_page is off).
    assert len(run.requests) == 3
    assert run.states[-1]["total_records"] == 25


def test_total_is_remembered_from_pages_that_carried_it() -> None:
    paginator = make({"type": "page_number", "stop": {"total_pages": "meta.pages"}})

    def serve(request: PageRequest) -> Page:
        number = int(request.params["page"])
        found = rows(number * 10, number * 10 + 10)
        meta = {"pages": "3"} if number == 1 else {}
        return page(found, {"data": found, "meta": meta})

    run = drive(paginator, serve)
    assert [r.params["page"] for r in run.requests] == ["1", "2", "3"]


@pytest.mark.parametrize("bad", ["many", "12.5", -1, True, {"n": 1}])
def test_total_that_is_not_a_number_names_its_source(bad: Any) -> None:
    paginator = make({"type": "page_number", "stop": {"total_records": {"header": "X-Total"}}})
    headers = {"X-Total": bad}
    with pytest.raises(PaginationError, match=r"stop\.total_records read from header 'X-Total'"):
        paginator.advance(paginator.start(), page(rows(0, 1), headers=headers))


def test_total_as_a_json_number() -> None:
    paginator = make({"type": "offset", "limit": 4, "stop": {"total_records": "meta.total"}})

    def serve(request: PageRequest) -> Page:
        start = int(request.params["offset"])
        found = rows(start, start + 4)  # the server has more, but the total says 8
        return page(found, {"data": found, "meta": {"total": 8.0}})

    assert len(drive(paginator, serve).requests) == 2


@pytest.mark.parametrize("false_value", [False, "false", "False", 0, "0"])
def test_has_more_false_ends_the_stream(false_value: Any) -> None:
    paginator = make({"type": "page_number", "stop": {"has_more": "has_more"}})

    def serve(request: PageRequest) -> Page:
        number = int(request.params["page"])
        found = rows(number * 10, number * 10 + 10)
        return page(found, {"data": found, "has_more": true_or(number < 3, false_value)})

    assert len(drive(paginator, serve).requests) == 3


def true_or(condition: bool, false_value: Any) -> Any:
    return True if condition else false_value


@pytest.mark.parametrize("no_more", [None, "", [], {}, 0.0, " no "])
def test_a_null_or_empty_has_more_ends_the_stream(no_more: Any) -> None:
    """An API's `next` that becomes null on the last page (read as missing, it never ended)."""
    paginator = make({"type": "page_number", "stop": {"has_more": "links.next"}})

    def serve(request: PageRequest) -> Page:
        number = min(int(request.params["page"]), 3)  # past the end: the last page again
        found = rows(number * 10, number * 10 + 10)
        following = f"/items?page={number + 1}" if number < 3 else no_more
        return page(found, {"data": found, "links": {"next": following}})

    assert len(drive(paginator, serve).requests) == 3


@pytest.mark.parametrize("more", [True, "true", "yes", 1, "/items?page=2", [1], {"a": None}])
def test_a_truthy_has_more_goes_on(more: Any) -> None:
    paginator = make({"type": "page_number", "stop": {"has_more": "more"}})
    state = paginator.advance(paginator.start(), page(rows(0, 2), {"more": more}))
    assert state is not None and state["page"] == 2


def test_has_more_missing_from_a_later_page_ends_the_stream() -> None:
    paginator = make({"type": "page_number", "stop": {"has_more": {"header": "X-Has-More"}}})
    first = paginator.advance(paginator.start(), page(rows(0, 2), headers={"x-has-more": "1"}))
    assert first is not None
    assert paginator.advance(first, page(rows(2, 4))) is None


@pytest.mark.parametrize(
    ("has_more", "body", "headers", "message"),
    [
        (
            "meta.has_more",
            {"data": [], "meta": {"hasMore": True}},
            {},
            r"^stop\.has_more: the first page has no body path 'meta\.has_more' \(the "
            r"response's top-level keys are: data, meta\); point has_more at",
        ),
        ("more", {"data": [], "next": None}, {}, r"no body path 'more'"),
        ("[0].more", [{"id": 1}], {}, r"no body path '\[0\]\.more' \(the response is a JSON"),
        ({"header": "X-Has-More"}, {}, {"X-More": "1"}, r"no header 'X-Has-More'; point"),
    ],
)
def test_has_more_missing_from_the_first_page_is_a_config_mistake(
    has_more: Any, body: Any, headers: dict[str, str], message: str
) -> None:
    paginator = make({"type": "page_number", "stop": {"has_more": has_more}})
    with pytest.raises(PaginationError, match=message):
        paginator.advance(paginator.start(), page(rows(0, 1), body, headers))


@pytest.mark.parametrize(
    ("has_more", "body"),
    [
        ("meta.next", {"meta": {"next": None}}),
        ("data[0].next", {"data": [{"next": None}]}),
        ("meta | next", {"meta": {"next": None}}),
        ("next", {"next": None}),
    ],
)
def test_a_null_has_more_on_the_first_page_is_a_one_page_stream(has_more: str, body: Any) -> None:
    paginator = make({"type": "page_number", "stop": {"has_more": has_more}})
    assert paginator.advance(paginator.start(), page(rows(0, 1), body)) is None


def test_max_pages() -> None:
    paginator = make({"type": "page_number", "stop": {"max_pages": 2}})
    run = drive(paginator, page_number_server(total=100))
    assert len(run.requests) == 2
    assert run.records == rows(0, 20)


def test_empty_page_false_continues_past_an_empty_page() -> None:
    paginator = make(
        {
            "type": "cursor",
            "cursor": "next",
            "cursor_param": "c",
            "stop": {"empty_page": False},
        }
    )
    served = {None: ([], "a"), "a": (rows(0, 2), "b"), "b": (rows(2, 3), None)}

    def serve(request: PageRequest) -> Page:
        found, following = served[request.params.get("c")]
        return page(found, {"next": following})

    run = drive(paginator, serve)
    assert run.records == rows(0, 3)
    assert len(run.requests) == 3


def test_empty_page_ends_even_when_the_server_names_a_next_cursor() -> None:
    paginator = make({"type": "cursor", "cursor": "next", "cursor_param": "c"})
    assert paginator.advance(paginator.start(), page([], {"next": "more"})) is None


def test_a_lone_last_page_without_has_more_ends_by_a_rule_read_before_it() -> None:
    # An API that leaves has_more out of its last page, when a stream's first page is its last:
    # a short page ends it before has_more is read, so no config mistake is reported.
    paginator = make(
        {
            "type": "page_number",
            "size_param": "per_page",
            "size": 10,
            "stop": {"has_more": "meta.has_more", "short_page": True},
        }
    )
    assert paginator.advance(paginator.start(), page(rows(0, 3), {"data": rows(0, 3)})) is None
    with pytest.raises(PaginationError, match="short_page, total_records or total_pages"):
        make({"type": "page_number", "stop": {"has_more": "meta.has_more"}}).advance(
            paginator.start(), page(rows(0, 3), {"data": rows(0, 3)})
        )
