"""Checkpoints as a resumed run reads them (paginate/base.py): a fresh paginator continues from
any stored state exactly, refuses another style's, and every style keeps its keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError

from .fakes import (
    BASE,
    Server,
    drive,
    link_server,
    make,
    offset_server,
    page,
    page_number_server,
    rows,
)


@pytest.mark.parametrize(
    ("pagination", "server"),
    [
        ({"type": "page_number"}, page_number_server(total=35)),
        ({"type": "offset", "limit": 10}, offset_server(total=35, cap=10)),
        ({"type": "next_url"}, link_server(35, 10, lambda n: f"{BASE}?page={n + 1}")),
    ],
)
def test_resuming_from_any_checkpoint_continues_identically(
    pagination: dict[str, Any], server: Server
) -> None:
    def with_body(request: PageRequest) -> Page:
        served = server(request)
        return Page(served.url, served.headers, {"data": served.records}, served.records)

    whole = drive(make(pagination), with_body)
    for index, checkpoint in enumerate(whole.states):
        # A fresh paginator, as after a restart, from the stored JSON text.
        resumed = make(pagination)
        state: dict[str, Any] | None = json.loads(json.dumps(checkpoint))
        requests = []
        while state is not None:
            request = resumed.request(state)
            requests.append(request)
            state = resumed.advance(state, with_body(request))
        assert requests == whole.requests[index:]


def test_checkpoint_of_another_style_is_refused() -> None:
    offset = make({"type": "offset"})
    numbered = make({"type": "page_number"})
    checkpoint = offset.start()
    assert numbered.describe(checkpoint) == "checkpoint of another pagination type"
    with pytest.raises(PaginationError, match="--full-refresh"):
        numbered.request(checkpoint)
    with pytest.raises(PaginationError, match="written for pagination 'offset'"):
        numbered.advance(checkpoint, page(rows(0, 1)))


def test_state_keys_per_style() -> None:
    common = {"style", "pages", "records", "digest", "first_size", "total_records", "total_pages"}
    expected = {
        "page_number": common | {"page"},
        "offset": common | {"offset"},
        "next_url": common | {"next"},
    }
    for style, keys in expected.items():
        assert set(make({"type": style}).start()) == keys
    cursor = make({"type": "cursor", "cursor": "n", "cursor_param": "c"})
    assert set(cursor.start()) == common | {"cursor"}
    assert set(make().start()) == {"style", "pages", "records"}


def test_counters_in_the_state() -> None:
    run = drive(make({"type": "page_number"}), page_number_server(total=25))
    assert [(s["pages"], s["records"]) for s in run.states] == [(0, 0), (1, 10), (2, 20), (3, 25)]
