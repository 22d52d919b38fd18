"""Pages fetched concurrently once the first page tells how many there are
(paginate/parallel.py): the one-call decision after a page, and the progress as pages
commit in any order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tui_connector.exchange import Page, PageRequest
from tui_connector.paginate import PaginationError, ParallelPages

from .fakes import full_url, make, offset_server, page, page_number_server, rows

NUMBERED_WITH_TOTAL = {"type": "page_number", "stop": {"total_pages": "meta.pages"}}


def first_step(pagination: dict[str, Any], server: Any) -> Any:
    paginator = make(pagination)
    start = paginator.start()
    return paginator, start, paginator.step(start, server(paginator.request(start)))


def test_a_known_page_count_switches_to_parallel() -> None:
    _, _, step = first_step(NUMBERED_WITH_TOTAL, page_number_server(20, 5, meta={"pages": 4}))
    pages = step.parallel
    assert pages is not None and step.next is None and not step.finished
    assert (pages.count, pages.low, pages.todo()) == (4, 1, [1, 2, 3])
    assert [full_url(pages.request(index)) for index in pages.todo()] == [
        f"https://api.example.com/v1/items?page={number}" for number in (2, 3, 4)
    ]
    assert step.checkpoint == pages.checkpoint()
    assert step.describe() == pages.describe() == "1/4 pages (parallel)"


def test_pages_commit_in_any_order_behind_a_low_water_mark() -> None:
    _, _, step = first_step(NUMBERED_WITH_TOTAL, page_number_server(50, 5, meta={"pages": 10}))
    pages = step.parallel
    assert pages is not None
    assert pages.commit([3, 5]) == 1
    assert pages.checkpoint()["parallel"] == {"count": 10, "low": 1, "done": [3, 5]}
    assert pages.commit([2, 1]) == 4
    assert pages.checkpoint()["parallel"] == {"count": 10, "low": 4, "done": [5]}
    assert pages.todo() == [4, 6, 7, 8, 9]
    assert pages.describe() == "4/10 pages (parallel)"
    pages.commit([4, 6, 7, 8, 9])
    assert pages.finished and pages.todo() == []
    assert pages.describe() == "finished"


def test_a_resume_fetches_exactly_the_pages_missing() -> None:
    paginator, _, step = first_step(
        NUMBERED_WITH_TOTAL, page_number_server(50, 5, meta={"pages": 10})
    )
    assert step.parallel is not None
    step.parallel.commit([1, 2, 5, 7])
    stored = json.loads(json.dumps(step.parallel.checkpoint()))
    assert ParallelPages.done_in(stored) == {5, 7}
    resumed = ParallelPages.resume(make(NUMBERED_WITH_TOTAL), stored)
    assert resumed is not None
    assert (resumed.count, resumed.low, resumed.todo()) == (10, 3, [3, 4, 6, 8, 9])
    assert resumed.request(3) == paginator.request(paginator.seek(stored, 3))
    assert resumed.checkpoint() == stored


def test_a_stream_going_one_by_one_has_no_parallel_progress() -> None:
    paginator = make({"type": "page_number"})
    assert ParallelPages.resume(paginator, paginator.start()) is None
    assert ParallelPages.done_in(paginator.start()) == frozenset()


def test_a_first_page_that_is_the_whole_stream_finishes_it() -> None:
    _, start, step = first_step(NUMBERED_WITH_TOTAL, page_number_server(5, 5, meta={"pages": 1}))
    assert step.finished and step.checkpoint == start


@pytest.mark.parametrize(
    "pagination",
    [
        {"type": "page_number"},  # no total
        {**NUMBERED_WITH_TOTAL, "parallel": False},
        # the server caps the page at 3 below the limit of 5: offsets would skip records
        {"type": "offset", "limit": 5, "stop": {"total_records": {"header": "X-Total-Count"}}},
    ],
)
def test_without_a_usable_count_pages_go_one_by_one(pagination: dict[str, Any]) -> None:
    server = (
        offset_server(20, cap=3)
        if pagination["type"] == "offset"
        else page_number_server(20, 5, meta={"pages": 4})
    )
    paginator, _, step = first_step(pagination, server)
    assert step.parallel is None and step.next is not None
    assert step.checkpoint == step.next
    assert step.describe() == paginator.describe(step.next)


def test_pages_of_a_followed_style_cannot_be_addressed() -> None:
    paginator = make({"type": "cursor", "cursor": "n", "cursor_param": "c"})
    following = paginator.advance(paginator.start(), page(rows(0, 2), {"n": "c1"}))
    assert following is not None
    assert paginator.page_count(following) is None
    progress = ParallelPages(paginator, following, 3)
    with pytest.raises(PaginationError, match="pages of cursor pagination cannot be addressed"):
        progress.request(1)


# -- the loop guard ---------------------------------------------------------------------------


def one_based_from_zero() -> tuple[Callable[[PageRequest], Page], ParallelPages]:
    """A 1-based API of 50 records asked for page 0 first, which it answers with page 1."""
    server = page_number_server(50, 5, meta={"pages": 10})

    def serve(request: PageRequest) -> Page:
        number = max(1, int(request.params["page"]))
        return server(PageRequest(request.method, request.url, {"page": str(number)}, None))

    _, _, step = first_step({**NUMBERED_WITH_TOTAL, "start": 0}, serve)
    assert step.parallel is not None
    return serve, step.parallel


def ten_pages() -> ParallelPages:
    """The progress of a stream of ten pages of five records, after its first page."""
    _, _, step = first_step(NUMBERED_WITH_TOTAL, page_number_server(50, 5, meta={"pages": 10}))
    assert step.parallel is not None
    return step.parallel


def test_a_second_page_repeating_the_first_fails_with_a_hint_at_start() -> None:
    serve, pages = one_based_from_zero()
    with pytest.raises(
        PaginationError,
        match=r"^page 2 returned the same records as page 1 \(requested as page 1 and page 0\); "
        r"an API counting its pages from 1 answers page 0 with page 1.*check pagination\.start",
    ):
        pages.check(1, serve(pages.request(1)).records)


def test_a_page_repeating_a_neighbour_fails_whichever_comes_first() -> None:
    pages = ten_pages()
    pages.check(1, rows(5, 10))
    pages.check(6, rows(30, 35))
    with pytest.raises(PaginationError, match=r"^page 7 returned the same records as page 6 "):
        pages.check(5, rows(30, 35))  # the server repeats its page 6 past the end
    pages.check(3, rows(15, 20))
    with pytest.raises(PaginationError, match=r"\(requested as page 4 and page 3\)"):
        pages.check(2, rows(15, 20))


def test_a_late_page_repeating_the_first_fails() -> None:
    pages = ten_pages()
    pages.check(1, rows(5, 10))
    pages.commit(range(1, 8))
    with pytest.raises(PaginationError, match=r"^page 10 returned the same records as page 1 "):
        pages.check(9, rows(0, 5))  # a server answering pages it lacks with its first


def test_committed_pages_still_guard_the_pages_next_to_them() -> None:
    pages = ten_pages()
    for index in (1, 2, 3):
        pages.check(index, rows(5 * index, 5 * index + 5))
    assert pages.commit([1, 2, 3]) == 4
    with pytest.raises(PaginationError, match=r"^page 5 returned the same records as page 4 "):
        pages.check(4, rows(15, 20))


def test_pages_apart_may_share_their_first_and_last_record() -> None:
    """Records without an id: two pages far apart share size, first and last record often."""
    pages = ten_pages()
    pages.check(1, [{"ok": True}, {"ok": False}])
    pages.check(3, [{"ok": True}, {"ok": False}])
