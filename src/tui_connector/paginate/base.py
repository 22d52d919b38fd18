"""The steps every pagination style shares, as a template method: the checkpoint's counters,
the loop guard against a server repeating a page, the stop rules, and the style check of a
resumed checkpoint. A style fills in only where its position starts, how a request carries
it, where it goes after a page, and how it reads (see `BasePaginator`'s hooks).

The state is the stream's checkpoint. It is stored as JSON, so it holds only JSON values, and
it carries everything a resumed run needs: the position, the counters the stop rules use, and
the digest of the last page the loop guard compares with. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import orjson

from tui_connector.config import (
    CursorPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    StopRules,
    ValueRef,
)
from tui_connector.exchange import Page, PageRequest
from tui_connector.extract import excerpt, finds_value, read_value, shape_hint
from tui_connector.paginate.errors import PaginationError
from tui_connector.paginate.request import RequestTemplate

if TYPE_CHECKING:
    from tui_connector.paginate.parallel import ParallelPages

State = dict[str, Any]
"""A stream's checkpoint: plain JSON values only."""

AnyPagination = (
    NoPagination | PageNumberPagination | OffsetPagination | CursorPagination | NextUrlPagination
)
P = TypeVar("P", bound=AnyPagination)

_NO_STOP_RULES = StopRules()
_PAST_THE_END = (
    "the server seems to repeat a page past the end",
    "add a stop rule such as stop.short_page: true, stop.total_pages or stop.max_pages",
)
_NO_MORE_TEXTS = frozenset({"", "false", "0", "no"})


@dataclass(slots=True)
class Step:
    """What one fetched page leads to, decided in one call (`BasePaginator.step`). One is made
    for every page, so it is not frozen (a frozen dataclass takes ~4x as long to make)."""

    paginator: BasePaginator[Any] = field(repr=False, compare=False)
    checkpoint: State
    """The cursor to commit once the page is durable."""
    next: State | None = None
    """The state of the next page to fetch one by one; None when no page follows one by one."""
    parallel: ParallelPages | None = None
    """The rest of the stream, whose pages are known up front: fetch them concurrently."""

    @property
    def finished(self) -> bool:
        return self.next is None and self.parallel is None

    def describe(self) -> str:
        """Where the stream stands once this page is committed."""
        if self.parallel is not None:
            return self.parallel.describe()
        if self.next is None:
            return "finished"
        return self.paginator.describe(self.next)


class BasePaginator(ABC, Generic[P]):
    """One stream's pagination in one style. Stateless itself: all position lives in the state
    dicts, so one paginator serves a whole stream, a resume included."""

    style: ClassVar[str]
    """The config's `pagination.type`, also written into every checkpoint."""
    position: ClassVar[str]
    """The checkpoint key holding where the next page is."""

    def __init__(self, pagination: P, template: RequestTemplate) -> None:
        self.pagination = pagination
        self.template = template
        # The single-page style has no stop rules: its first page is its last.
        self.stop: StopRules = getattr(pagination, "stop", _NO_STOP_RULES)

    # -- the generic steps ----------------------------------------------------------------------

    def start(self) -> State:
        """The state of a stream that has fetched nothing yet."""
        return {
            "style": self.style,
            "pages": 0,
            "records": 0,
            "digest": None,
            "first_size": None,
            "total_records": None,
            "total_pages": None,
            self.position: self.first_position(),
        }

    def request(self, state: State) -> PageRequest:
        """The request for the page `state` points at."""
        self.check_state(state)
        return self.request_at(state)

    def advance(self, state: State, page: Page) -> State | None:
        """The state for the page after `page`, or None when the stream is finished.

        Raises PaginationError when going on would loop or is unsafe. Does not modify `state`.
        """
        self.check_state(state)
        records = page.records
        count = len(records)
        pages = state["pages"] + 1
        digest = page_digest(records) if records else None
        if digest is not None and digest == state["digest"]:
            raise self.repeated(pages, pages - 1, f"the latter requested as {self.describe(state)}")
        stop = self.stop
        advanced: State = {
            **state,
            "pages": pages,
            "records": state["records"] + count,
            "digest": digest,
            "first_size": count if state["first_size"] is None else state["first_size"],
            "total_records": _total(stop.total_records, "total_records", state, page),
            "total_pages": _total(stop.total_pages, "total_pages", state, page),
        }
        if self._stop_rules_end(advanced, count, page):
            return None
        position = self.next_position(state, page, pages)
        if position is None:
            return None
        advanced[self.position] = position
        return advanced

    def step(self, state: State, page: Page) -> Step:
        """`advance`, and what follows: finished, the next page one by one, or the rest of the
        pages concurrently (the parallel progress then goes into the checkpoint)."""
        following = self.advance(state, page)
        if following is None:
            # The checkpoint keeps pointing at the last page: a finished stream is not resumed.
            return Step(self, state)
        return self.plan(state, following)

    def describe(self, state: State) -> str:
        """A short human description of the position `state` points at."""
        if state.get("style") != self.style:
            # Never raise here: the engine shows this before the request reports the mismatch.
            return "checkpoint of another pagination type"
        return self.describe_position(state)

    def check_state(self, state: State) -> None:
        if state.get("style") != self.style:
            raise PaginationError(
                f"the saved checkpoint was written for pagination {state.get('style')!r} but "
                f"the config now says {self.style!r}; run with --full-refresh to start this "
                "stream over"
            )

    def repeated(self, later: int, earlier: int, requested: str) -> PaginationError:
        """The loop guard's error: the `later`-th page of the stream returned the same records
        as the `earlier`-th (`requested` says how they were asked for)."""
        cause, fix = self.first_page_repeated if earlier == 1 else _PAST_THE_END
        return PaginationError(
            f"page {later} returned the same records as page {earlier} ({requested}); {cause}. "
            f"Stopping instead of writing duplicates; {fix}"
        )

    # -- what a style fills in ------------------------------------------------------------------

    first_page_repeated: ClassVar[tuple[str, str]] = (
        "the server seems to repeat its first page",
        "check the pagination settings against the API's documentation",
    )
    """Why a page would repeat the first, and what to check (the loop guard's message)."""

    def first_position(self) -> Any:
        """The position of the first page (None: the request without a position)."""
        return None

    @abstractmethod
    def request_at(self, state: State) -> PageRequest:
        """The request for the page at the position `state` holds (its style checked)."""

    def next_position(self, state: State, page: Page, pages: int) -> Any:
        """The position of the page after `page` (the `pages`-th), or None: no page follows.
        Runs only when no stop rule ended the stream."""
        return None

    @abstractmethod
    def describe_position(self, state: State) -> str:
        """How the position `state` holds reads in the dashboard and in messages."""

    def page_size(self, state: State) -> int:
        """The size of a full page, for `stop.short_page`: the first page's, unless the
        request fixes it."""
        first_size: int = state["first_size"]
        return first_size

    def plan(self, state: State, following: State) -> Step:
        """The step to the page after `state`'s, which `following` points at."""
        return Step(self, following, following)

    def page_count(self, state: State) -> int | None:
        """After the first page: how many pages the stream has in all, when known up front
        (see `AddressablePaginator`). None means follow the pages one by one."""
        return None

    def seek(self, state: State, index: int) -> State:
        """The state pointing at page `index` (0 = the first page)."""
        raise PaginationError(f"pages of {self.style} pagination cannot be addressed directly")

    # -- helpers --------------------------------------------------------------------------------

    def _stop_rules_end(self, advanced: State, count: int, page: Page) -> bool:
        stop = self.stop
        if stop.empty_page and count == 0:
            return True
        if stop.short_page and count < self.page_size(advanced):
            return True
        total_records = advanced["total_records"]
        if total_records is not None and advanced["records"] >= total_records:
            return True
        total_pages = advanced["total_pages"]
        if total_pages is not None and advanced["pages"] >= total_pages:
            return True
        if stop.has_more is not None and not _has_more(stop.has_more, advanced["pages"], page):
            return True
        return stop.max_pages is not None and advanced["pages"] >= stop.max_pages


def where(ref: ValueRef) -> str:
    """Where a value is read from, for messages."""
    return f"header {ref.header!r}" if ref.header is not None else f"body path {ref.path!r}"


def _total(ref: ValueRef | None, rule: str, state: State, page: Page) -> int | None:
    """The latest total the server reported: this page's, else the one remembered."""
    if ref is None:
        return None
    value = read_value(ref, page.body, page.headers)
    if value is None:
        known: int | None = state[rule]
        return known
    return _whole_number(value, f"stop.{rule} read from {where(ref)}")


def page_digest(records: list[Any]) -> str | None:
    """A page's fingerprint for the loop guard: its size and its first and last records.
    Two pages in a row agreeing on all three are a repeat (no real page starts and ends
    where the previous one did), and hashing three records instead of a thousand keeps a
    large page from blocking the event loop for a millisecond.

    orjson writes it in a fifth of the stdlib's time (this runs for every page). It writes
    NaN and the infinities, which only a body the stdlib decoded can hold, as null: a record
    differing from the one a page before only by those still counts as the same. None when
    the records are nested too deeply to write (the lake refuses them, saying so)."""
    sample = [len(records), records[0], records[-1]]
    try:
        canonical = orjson.dumps(sample, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers past 64 bits, nesting past 254 levels
        try:
            canonical = json.dumps(sample, sort_keys=True, separators=(",", ":")).encode()
        except RecursionError:
            return None
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def _whole_number(value: Any, where: str) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdecimal():
            number = int(text)
    if number is None or number < 0:
        raise PaginationError(f"{where} is not a whole number: {excerpt(value, 80)}")
    return number


def _has_more(ref: ValueRef, pages: int, page: Page) -> bool:
    """Whether `stop.has_more` says another page follows the `pages`-th. Null, false, 0, an
    empty string, list or object (and the texts false, 0, no) say none does; so does a value
    missing from a later page (APIs drop the key on their last page). Missing from the first
    page, it is a path or header that is not there at all: a config mistake, which read as
    "no more" would end every stream after one page without a word."""
    value = read_value(ref, page.body, page.headers)
    if value is None and pages == 1 and not finds_value(ref, page.body, page.headers):
        found = f" ({shape_hint(page.body)})" if ref.path is not None else ""
        raise PaginationError(
            f"stop.has_more: the first page has no {where(ref)}{found}; point has_more at "
            "the value that says whether another page follows (null, false, 0, an empty "
            "string or an empty list there end the stream), or remove it. If the API leaves "
            "it out of a last page, and a stream's first page may be its last, add a rule "
            "that ends such a page first: short_page, total_records or total_pages"
        )
    if isinstance(value, str):
        return value.strip().lower() not in _NO_MORE_TEXTS
    if isinstance(value, int | float):  # bool included: False == 0
        return value != 0
    if isinstance(value, list | dict):
        return len(value) > 0
    return value is not None
