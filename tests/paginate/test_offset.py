"""`type: offset` (paginate/offset.py)."""

from __future__ import annotations

import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError

from .fakes import drive, make, offset_server, page, rows


def test_offset_advances_by_records_received_not_by_limit() -> None:
    paginator = make({"type": "offset", "limit": 100})
    run = drive(paginator, offset_server(total=70, cap=30))
    assert [r.params["offset"] for r in run.requests] == ["0", "30", "60", "70"]
    assert {r.params["limit"] for r in run.requests} == {"100"}
    assert run.records == rows(0, 70)
    assert paginator.describe(run.states[1]) == "offset 30"


def test_offset_custom_params_and_start() -> None:
    paginator = make(
        {
            "type": "offset",
            "offset_param": "skip",
            "limit_param": "take",
            "limit": 5,
            "start": 10,
            "stop": {"short_page": True},
        }
    )

    def serve(request: PageRequest) -> Page:
        skip, take = int(request.params["skip"]), int(request.params["take"])
        return page(rows(skip, min(skip + take, 22)))

    run = drive(paginator, serve)
    assert [r.params["skip"] for r in run.requests] == ["10", "15", "20"]
    assert run.records == rows(10, 22)


def test_offset_with_empty_pages_allowed_refuses_to_stand_still() -> None:
    paginator = make({"type": "offset", "stop": {"empty_page": False}})
    with pytest.raises(PaginationError, match="offset cannot advance"):
        drive(paginator, offset_server(total=3, cap=100))
