"""Traps real servers set, end to end over real HTTP on 127.0.0.1: a `has_more` value that
turns null on the last page, and a 1-based page-number API asked for page 0 (which answers
with page 1) while its pages are fetched in parallel."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tui_connector.config import LoadedConfig

from helpers import JsonApi, lake_ids, run_done, run_failed

PER_PAGE = 10
TOTAL = 95  # ten pages, the last one short


def item_ids(count: int = TOTAL) -> Counter[str]:
    return Counter(f"item-{n:03d}" for n in range(count))


class PagedApi(JsonApi):
    """`GET /items?page=N`: pages from 1, `PER_PAGE` records each, the total in the body, and
    `next` (a link, null on the last page). Like many real APIs it answers page 0 and pages
    past the end with its nearest page, so only what the client does tells where it ends."""

    def __init__(self) -> None:
        self.pages_served: list[int] = []
        super().__init__(self._respond)

    def _respond(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        last = -(-TOTAL // PER_PAGE)
        number = min(max(int(query.get("page", "1")), 1), last)
        self.pages_served.append(int(query.get("page", "1")))
        first = (number - 1) * PER_PAGE
        items = [{"id": f"item-{n:03d}"} for n in range(first, min(first + PER_PAGE, TOTAL))]
        following = f"/items?page={number + 1}" if number < last else None
        return {"items": items, "total": TOTAL, "next": following}


@pytest.fixture
def api() -> Iterator[PagedApi]:
    api = PagedApi()
    yield api
    api.close()


def source(api: PagedApi, pagination: str) -> str:
    return (
        f"commit_interval: 0\nsources:\n  items:\n    url: {api.url}/items\n"
        f"    records: items\n    pagination: {pagination}\n"
    )


# -- stop.has_more ----------------------------------------------------------------------------


async def test_has_more_pointing_at_a_link_that_turns_null_ends_the_stream(
    api: PagedApi, write_config: Callable[..., LoadedConfig]
) -> None:
    """Read like a missing key, the null never ended it: page 11 repeated page 10."""
    config = write_config(source(api, "{type: page_number, stop: {has_more: next}}"))
    await run_done(config)
    assert lake_ids(config.out) == item_ids()
    assert api.pages_served == list(range(1, 11))


async def test_has_more_missing_from_the_first_page_fails_the_stream_naming_it(
    api: PagedApi, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(source(api, "{type: page_number, stop: {has_more: meta.next}}"))
    error = await run_failed(config)
    assert error.startswith("stop.has_more: the first page has no body path 'meta.next'"), error
    assert "top-level keys are: items, total, next" in error
    assert api.pages_served == [1]
    assert lake_ids(config.out) == Counter()


# -- the loop guard with parallel pages -------------------------------------------------------


async def test_parallel_pages_from_0_of_an_api_counting_from_1_fail_before_writing_twice(
    api: PagedApi, write_config: Callable[..., LoadedConfig]
) -> None:
    """Page 0 answers with page 1: pages 0 to 9 wrote page 1 twice and never asked for page
    10. The sequential walk always caught it; parallel pages now do too, before the repeat is
    written."""
    pages = "{type: page_number, start: START, stop: {total_records: total}}"
    config = write_config(source(api, pages.replace("START", "0")))
    error = await run_failed(config)
    assert error.startswith(
        "page 2 returned the same records as page 1 (requested as page 1 and page 0); "
        "an API counting its pages from 1 answers page 0 with page 1"
    ), error
    assert "check pagination.start" in error
    written = lake_ids(config.out)
    assert set(written.values()) == {1}
    assert item_ids(PER_PAGE) <= written

    api.pages_served.clear()
    fixed = write_config(source(api, pages.replace("START", "1")))
    await run_done(fixed, full_refresh=True)
    assert lake_ids(fixed.out) == item_ids()
    assert sorted(api.pages_served) == list(range(1, 11))
