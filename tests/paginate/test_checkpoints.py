"""The checkpoint JSON, pinned value for value for every style, parallel progress included.

State databases written by earlier releases hold exactly these dicts, and resume from them:
a change of key, value or digest here breaks a resume. These were produced by the release
before pagination became one class per style; do not update them to make a test pass."""

from __future__ import annotations

import json
from typing import Any

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import BasePaginator, ParallelPages, State

from .fakes import (
    BASE,
    Server,
    assert_plain_json,
    cursor_server,
    full_url,
    make,
    offset_server,
    page,
    page_number_server,
    query,
    rows,
)


def committed(
    paginator: BasePaginator[Any], serve: Server, commit_order: list[list[int]] = ()
) -> tuple[list[tuple[str, State]], dict[int, str]]:
    """The checkpoints the engine commits page after page (each with the stream's status),
    and the URL of each page fetched in parallel; those commit in batches `commit_order`."""
    checkpoints: list[tuple[str, State]] = []
    state = paginator.start()
    while True:
        step = paginator.step(state, serve(paginator.request(state)))
        checkpoints.append(("done" if step.finished else "running", step.checkpoint))
        if step.next is None:
            break
        state = step.next
    fetched: dict[int, str] = {}
    pages = step.parallel
    if pages is not None:
        assert sorted(index for batch in commit_order for index in batch) == pages.todo()
        for batch in commit_order:
            for index in batch:
                fetched[index] = full_url(pages.request(index))
            pages.commit(batch)
            checkpoints.append(("done" if pages.finished else "running", pages.checkpoint()))
            # The stored JSON resumes to the same progress.
            stored = json.loads(json.dumps(pages.checkpoint()))
            resumed = ParallelPages.resume(paginator, stored)
            assert resumed is not None and resumed.checkpoint() == stored
    for _, checkpoint in checkpoints:
        assert_plain_json(checkpoint)
    return checkpoints, fetched


def state(
    style: str,
    pages: int,
    records: int,
    digest: str,
    first_size: int,
    total_records: int | None = None,
    total_pages: int | None = None,
    **position: Any,
) -> State:
    """A checkpoint as stored, its one position key (page, offset, cursor, next) last."""
    return {
        "style": style,
        "pages": pages,
        "records": records,
        "digest": digest,
        "first_size": first_size,
        "total_records": total_records,
        "total_pages": total_pages,
        **position,
    }


# The loop guard's fingerprints of the pages rows(a, b) these servers send.
ROWS_0_2 = "2992783f7aa5f55b2628bef4ac9f813e"
ROWS_2_4 = "6b1a161fa49b22eb2ca5a322d0671d8b"
ROWS_4_5 = "e0de34b9fdd06def0b9a829044d3d76d"
ROWS_0_3 = "2b8fe96c4e614de757b7051cd799638c"
ROWS_1_4 = "b875264f336bf636c9c17e9f6cb21057"
ROWS_3_6 = "12e4f114f5510d9bc6892ac9cb252bc3"
ROWS_6_7 = "3e5d0dddf40a78fbee6da721667293f7"


def test_single_page_checkpoint() -> None:
    checkpoints, _ = committed(make(), lambda request: page(rows(0, 3)))
    assert checkpoints == [("done", {"style": "none", "pages": 0, "records": 0})]


def test_page_number_checkpoints() -> None:
    paginator = make({"type": "page_number", "size_param": "per_page", "size": 2})
    checkpoints, _ = committed(paginator, page_number_server(5, 2))
    assert checkpoints == [
        ("running", state("page_number", 1, 2, ROWS_0_2, 2, page=2)),
        ("running", state("page_number", 2, 4, ROWS_2_4, 2, page=3)),
        ("running", state("page_number", 3, 5, ROWS_4_5, 2, page=4)),
        # the empty fourth page ends it; the checkpoint still points at it
        ("done", state("page_number", 3, 5, ROWS_4_5, 2, page=4)),
    ]


def test_page_number_parallel_checkpoints() -> None:
    paginator = make({"type": "page_number", "stop": {"total_pages": "meta.pages"}})
    checkpoints, fetched = committed(
        paginator, page_number_server(10, 3, meta={"pages": 4}), [[2], [1], [3]]
    )
    first_page = state("page_number", 1, 3, ROWS_0_3, 3, total_pages=4, page=2)
    assert checkpoints == [
        ("running", {**first_page, "parallel": {"count": 4, "low": 1, "done": []}}),
        ("running", {**first_page, "parallel": {"count": 4, "low": 1, "done": [2]}}),
        ("running", {**first_page, "parallel": {"count": 4, "low": 3, "done": []}}),
        ("done", {**first_page, "parallel": {"count": 4, "low": 4, "done": []}}),
    ]
    assert fetched == {index: f"{BASE}?page={index + 1}" for index in (1, 2, 3)}


def test_offset_checkpoints() -> None:
    # a limit of 5 but pages of 3: the offset moves by the records received
    checkpoints, _ = committed(make({"type": "offset", "limit": 5}), offset_server(7, cap=3))
    assert checkpoints == [
        ("running", state("offset", 1, 3, ROWS_0_3, 3, offset=3)),
        ("running", state("offset", 2, 6, ROWS_3_6, 3, offset=6)),
        ("running", state("offset", 3, 7, ROWS_6_7, 3, offset=7)),
        ("done", state("offset", 3, 7, ROWS_6_7, 3, offset=7)),
    ]


def test_offset_parallel_checkpoints() -> None:
    paginator = make(
        {
            "type": "offset",
            "limit": 3,
            "start": 1,
            "stop": {"total_records": {"header": "X-Total-Count"}},
        }
    )
    checkpoints, fetched = committed(paginator, offset_server(10, cap=3), [[3], [1, 2]])
    first_page = state("offset", 1, 3, ROWS_1_4, 3, total_records=10, offset=4)
    assert checkpoints == [
        ("running", {**first_page, "parallel": {"count": 4, "low": 1, "done": []}}),
        ("running", {**first_page, "parallel": {"count": 4, "low": 1, "done": [3]}}),
        ("done", {**first_page, "parallel": {"count": 4, "low": 4, "done": []}}),
    ]
    assert fetched == {
        1: f"{BASE}?offset=4&limit=3",
        2: f"{BASE}?offset=7&limit=3",
        3: f"{BASE}?offset=10&limit=3",
    }


def test_cursor_checkpoints() -> None:
    paginator = make(
        {
            "type": "cursor",
            "cursor": "meta.next",
            "cursor_param": "cursor",
            "stop": {"total_records": "meta.total"},
        }
    )
    serve = cursor_server([rows(0, 2), rows(2, 4), rows(4, 5)], ["c1", 7], total=5)
    checkpoints, _ = committed(paginator, serve)
    assert checkpoints == [
        ("running", state("cursor", 1, 2, ROWS_0_2, 2, total_records=5, cursor="c1")),
        ("running", state("cursor", 2, 4, ROWS_2_4, 2, total_records=5, cursor=7)),
        # the total is reached: the checkpoint keeps pointing at the last page
        ("done", state("cursor", 2, 4, ROWS_2_4, 2, total_records=5, cursor=7)),
    ]


def test_next_url_checkpoints() -> None:
    def serve(request: PageRequest) -> Page:
        number = int(query(request).get("page", "1"))
        found = rows((number - 1) * 2, min(number * 2, 5))
        headers = {}
        if number * 2 < 5:  # the server echoes the API key into its links
            headers["Link"] = f'<{BASE}?page={number + 1}&api_key=s3cret>; rel="next"'
        return page(found, headers=headers, url=full_url(request))

    checkpoints, _ = committed(make({"type": "next_url"}, auth_param="api_key"), serve)
    assert checkpoints == [
        ("running", state("next_url", 1, 2, ROWS_0_2, 2, next=f"{BASE}?page=2")),
        ("running", state("next_url", 2, 4, ROWS_2_4, 2, next=f"{BASE}?page=3")),
        ("done", state("next_url", 2, 4, ROWS_2_4, 2, next=f"{BASE}?page=3")),
    ]
