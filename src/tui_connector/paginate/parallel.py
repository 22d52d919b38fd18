"""Pages addressed by index (page numbers, offsets), and fetching them concurrently once the
first page tells how many there are.

The parallel progress lives in the checkpoint beside the first page's state, under
`"parallel": {"count", "low", "done"}`: `count` pages in all, every page below the low-water
mark `low` committed, and `done` the pages committed above it. A resume fetches exactly the
pages still missing.

The loop guard holds here too (`check`): a page that returns the same records as the first
page or as a page next to it fails the stream before it is staged, so the repeat is not
written and the stream does not finish. The pages fetched meanwhile are distinct pages, kept
like those of any stream that fails midway.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any, TypeVar

from tui_connector.config import OffsetPagination, PageNumberPagination
from tui_connector.exchange import PageRequest
from tui_connector.paginate.base import BasePaginator, State, Step, page_digest
from tui_connector.paginate.errors import PaginationError

A = TypeVar("A", PageNumberPagination, OffsetPagination)


class AddressablePaginator(BasePaginator[A]):
    """A style whose page `i` can be requested without the pages before it."""

    def first_position(self) -> int:
        return self.pagination.start

    def page_count(self, state: State) -> int | None:
        """After the first page: how many pages the stream has in all, when that is known up
        front, so the rest can be fetched concurrently. None means follow the pages one by one.

        Known means: parallel enabled, and a total the server gave (see `known_count`)."""
        if not self.pagination.parallel or state.get("pages") != 1:
            return None
        count = self.known_count(state)
        if count is None:
            return None
        max_pages = self.stop.max_pages
        return max(1, min(count, max_pages) if max_pages is not None else count)

    def known_count(self, state: State) -> int | None:
        """The page count the totals after the first page imply: total records over the page
        size the first page proved."""
        first_size = state.get("first_size") or 0
        total_records = state.get("total_records")
        if total_records is None or first_size <= 0:
            return None
        return -(-total_records // first_size)

    def seek(self, state: State, index: int) -> State:
        """The state pointing at page `index` (0 = the first page) of a stream whose first page
        `state` describes (see page_count)."""
        return {**state, self.position: self.position_of(state, index)}

    @abstractmethod
    def position_of(self, state: State, index: int) -> Any:
        """The position of page `index` of a stream whose first page `state` describes."""

    def plan(self, state: State, following: State) -> Step:
        count = self.page_count(following)
        if count is None:
            return super().plan(state, following)
        if count == 1:  # the first page was the whole stream
            return Step(self, state)
        pages = ParallelPages(self, following, count)
        return Step(self, pages.checkpoint(), parallel=pages)


class ParallelPages:
    """The progress of a stream whose `count` pages are fetched concurrently: which are still
    to fetch, the request for each, and the checkpoint as pages commit in any order."""

    __slots__ = ("_digests", "_done", "_first_page", "_paginator", "count", "low")

    def __init__(
        self,
        paginator: BasePaginator[Any],
        first_page: State,
        count: int,
        low: int = 1,
        done: Iterable[int] = (),
    ) -> None:
        self._paginator = paginator
        self._first_page = first_page
        """The state after the first page, which every page's state is sought from."""
        self.count = count
        self.low = low
        """The low-water mark: every page below it is committed."""
        self._done = set(done)
        """The pages committed above the low-water mark."""
        self._digests: dict[int, str | None] = {0: first_page.get("digest")}
        """The fingerprints of the pages fetched (by this run) that a page yet to come may
        sit next to: page 0, and those from just below the low-water mark up."""

    @classmethod
    def resume(cls, paginator: BasePaginator[Any], checkpoint: State) -> ParallelPages | None:
        """The progress a checkpoint holds; None for a stream going one page at a time."""
        progress = checkpoint.get("parallel")
        if progress is None:
            return None
        first_page = {name: value for name, value in checkpoint.items() if name != "parallel"}
        return cls(paginator, first_page, progress["count"], progress["low"], progress["done"])

    @staticmethod
    def done_in(checkpoint: State) -> frozenset[int]:
        """The pages a checkpoint has committed above its low-water mark (none for a stream
        going one page at a time): their lake files are kept on resume."""
        progress = checkpoint.get("parallel") or {}
        return frozenset(progress.get("done", ()))

    def todo(self) -> list[int]:
        """The indexes of the pages still to fetch, in order."""
        done = self._done
        return [index for index in range(self.low, self.count) if index not in done]

    def state(self, index: int) -> State:
        """The state pointing at page `index` (0 = the first page)."""
        return self._paginator.seek(self._first_page, index)

    def request(self, index: int) -> PageRequest:
        return self._paginator.request(self.state(index))

    def check(self, index: int, records: list[Any]) -> None:
        """The loop guard for page `index`, fetched: raises PaginationError when it returned
        the same records as the first page or a page next to it (see `page_digest`).

        Only those: two pages anywhere in a stream share their size, first and last record
        far more often than two neighbours do (records without an id), and a server repeating
        pages repeats its first, or its last past the end. So the fingerprints kept are those
        of a window, not of every page."""
        digest = page_digest(records) if records else None
        if digest is not None:
            digests = self._digests
            for other in (0, index - 1, index + 1):
                if other != index and digests.get(other) == digest:
                    raise self._repeated(min(index, other), max(index, other))
            digests[index] = digest

    def commit(self, indexes: Iterable[int]) -> int:
        """Mark pages durable; returns the low-water mark they move to."""
        done = self._done
        done.update(indexes)
        low = self.low
        while low in done:
            done.discard(low)
            low += 1
        # Both neighbours of a page below `low - 1` are fetched: none to come is next to it.
        digests = self._digests
        for index in range(max(1, self.low - 1), low - 1):
            digests.pop(index, None)
        self.low = low
        return low

    @property
    def finished(self) -> bool:
        return self.low == self.count

    def checkpoint(self) -> State:
        progress = {"count": self.count, "low": self.low, "done": sorted(self._done)}
        return {**self._first_page, "parallel": progress}

    def describe(self) -> str:
        if self.finished:
            return "finished"
        return f"{self.low}/{self.count} pages (parallel)"

    def _repeated(self, earlier: int, later: int) -> PaginationError:
        paginator = self._paginator
        latter, former = (paginator.describe(self.state(index)) for index in (later, earlier))
        return paginator.repeated(later + 1, earlier + 1, f"requested as {latter} and {former}")
