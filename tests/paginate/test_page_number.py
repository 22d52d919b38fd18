"""`type: page_number` (paginate/page_number.py), and the loop guard every style shares."""

from __future__ import annotations

import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError

from .fakes import drive, make, page, page_number_server, query, rows


def test_page_number_until_empty_page() -> None:
    paginator = make(
        {"type": "page_number", "size_param": "per_page", "size": 10}, params={"sort": "id"}
    )
    run = drive(paginator, page_number_server(total=30))
    assert [r.params for r in run.requests] == [
        {"sort": "id", "page": str(n), "per_page": "10"} for n in (1, 2, 3, 4)
    ]
    assert run.records == rows(0, 30)
    assert [paginator.describe(s) for s in run.states] == ["page 1", "page 2", "page 3", "page 4"]


def test_page_number_custom_start_and_param() -> None:
    paginator = make({"type": "page_number", "page_param": "p", "start": 0})

    def serve(request: PageRequest) -> Page:
        number = int(request.params["p"])
        return page(rows(number * 10, number * 10 + 2) if number < 2 else [])

    run = drive(paginator, serve)
    assert [r.params for r in run.requests] == [{"p": "0"}, {"p": "1"}, {"p": "2"}]
    assert run.page_sizes == [2, 2, 0]


def test_short_page_does_not_end_pagination_by_default() -> None:
    paginator = make({"type": "page_number", "size_param": "per_page", "size": 10})
    run = drive(paginator, page_number_server(total=25))
    # The short page does not end it: the empty page after it does.
    assert run.page_sizes == [10, 10, 5, 0]
    assert run.records == rows(0, 25)


def test_short_page_ends_pagination_when_asked() -> None:
    paginator = make(
        {
            "type": "page_number",
            "size_param": "per_page",
            "size": 10,
            "stop": {"short_page": True},
        }
    )
    run = drive(paginator, page_number_server(total=25))
    assert run.page_sizes == [10, 10, 5]
    assert run.records == rows(0, 25)


def test_short_page_without_size_compares_with_the_first_page() -> None:
    paginator = make({"type": "page_number", "stop": {"short_page": True}})
    run = drive(paginator, page_number_server(total=25, default_size=10))
    assert len(run.requests) == 3


def test_page_past_the_end_repeating_the_last_page_is_caught() -> None:
    paginator = make({"type": "page_number", "size_param": "per_page", "size": 10})
    with pytest.raises(PaginationError, match="page 4 returned the same records as page 3"):
        drive(paginator, page_number_server(total=30, repeat_last=True))


def test_repeats_are_told_apart_by_integers_past_64_bits() -> None:
    """The fingerprint is exact for integers orjson cannot encode (they take the stdlib)."""
    paginator = make({"type": "page_number", "stop": {"max_pages": 3}})

    def serve(request: PageRequest) -> Page:
        found = [{"id": 2**70 + int(query(request)["page"])}]
        return page(found, {"data": found})

    run = drive(paginator, serve)
    assert run.records == [{"id": 2**70 + number} for number in (1, 2, 3)]
    with pytest.raises(PaginationError, match="page 2 returned the same records as page 1"):
        drive(paginator, lambda request: page([{"id": 2**70}], {"data": [{"id": 2**70}]}))


def test_empty_pages_are_not_taken_for_repeats() -> None:
    paginator = make({"type": "page_number", "stop": {"empty_page": False, "max_pages": 5}})
    run = drive(paginator, page_number_server(total=10))
    assert len(run.requests) == 5
    assert run.records == rows(0, 10)


def test_page_0_of_an_api_counting_from_1_is_caught_with_a_hint_at_start() -> None:
    paginator = make({"type": "page_number", "start": 0})
    server = page_number_server(total=30)

    def serve(request: PageRequest) -> Page:
        number = max(1, int(request.params["page"]))
        return server(PageRequest(request.method, request.url, {"page": str(number)}, None))

    with pytest.raises(
        PaginationError,
        match=r"^page 2 returned the same records as page 1 \(the latter requested as page 1\); "
        r"an API counting its pages from 1 answers page 0 with page 1.*pagination\.start",
    ):
        drive(paginator, serve)
