"""Pagination strategies as pure logic: from a checkpointed state, the request for the page it
points at; from that page, the state for the next page or the end of the stream.

The state is the stream's checkpoint. It is stored as JSON, so it holds only JSON values, and
it carries everything a resumed run needs: the position, the counters the stop rules use, and
the digest of the last page the loop guard compares with. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import orjson

from tui_connector.config import (
    ApiKeyAuth,
    CursorPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    SourceSpec,
    StopRules,
    ValueRef,
    scalar_text,
)
from tui_connector.exchange import (
    DEFAULT_PORTS,
    InvalidUrl,
    Page,
    PageRequest,
    origin,
    origin_text,
    shorten,
    shown_url,
)
from tui_connector.extract import excerpt, header_value, read_value

__all__ = [
    "Page",
    "PageRequest",
    "PaginationError",
    "Paginator",
    "next_link",
    "place",
]

State = dict[str, Any]

_CURSOR_SHOWN = 16
_URL_SHOWN = 80
_FALSE_TEXTS = frozenset({"false", "0", "no"})


class PaginationError(Exception):
    """Pagination cannot go on safely; the message says why and what to change."""


class Paginator:
    """One source's pagination. Stateless itself: all position lives in the state dicts."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.pagination = spec.pagination
        self.style: str = spec.pagination.type
        # httpx replaces (not merges) a URL's query when given params, so a query written in the
        # config url travels in `params`, under the static and pagination params of that name.
        url = urlsplit(spec.url)
        self._url = urlunsplit((url.scheme, url.netloc, url.path, "", ""))
        self._static_params = {
            **dict(parse_qsl(url.query, keep_blank_values=True)),
            **{name: scalar_text(value) for name, value in spec.params.items()},
        }
        self._origin = _origin(spec.url)
        # The HTTP layer adds an API key param to every request; servers echo it into their
        # next links. It is kept out of the checkpoint (the state DB is not a secret store).
        auth = spec.auth
        self._auth_param = auth.param if isinstance(auth, ApiKeyAuth) else None

    # -- the three steps ------------------------------------------------------------------------

    def start(self) -> State:
        """The state of a stream that has fetched nothing yet."""
        pagination = self.pagination
        if isinstance(pagination, NoPagination):
            return {"style": self.style, "pages": 0, "records": 0}
        state: State = {
            "style": self.style,
            "pages": 0,
            "records": 0,
            "digest": None,
            "first_size": None,
            "total_records": None,
            "total_pages": None,
        }
        if isinstance(pagination, PageNumberPagination):
            state["page"] = pagination.start
        elif isinstance(pagination, OffsetPagination):
            state["offset"] = pagination.start
        elif isinstance(pagination, CursorPagination):
            state["cursor"] = None
        else:
            state["next"] = None
        return state

    def request(self, state: State) -> PageRequest:
        """The request for the page `state` points at."""
        self._check_state(state)
        pagination = self.pagination
        spec = self.spec
        params = dict(self._static_params)
        body = self._body_template()

        if isinstance(pagination, PageNumberPagination):
            params[pagination.page_param] = str(state["page"])
            if pagination.size_param is not None and pagination.size is not None:
                params[pagination.size_param] = str(pagination.size)
        elif isinstance(pagination, OffsetPagination):
            params[pagination.offset_param] = str(state["offset"])
            params[pagination.limit_param] = str(pagination.limit)
        elif isinstance(pagination, CursorPagination):
            cursor = state["cursor"]
            if cursor is not None:
                if pagination.cursor_param is not None:
                    params[pagination.cursor_param] = scalar_text(cursor)
                else:
                    assert pagination.cursor_body_field is not None  # config: exactly one
                    body = place(body, pagination.cursor_body_field, cursor)
        elif isinstance(pagination, NextUrlPagination) and state["next"] is not None:
            return PageRequest(spec.method, state["next"], {}, body)
        return PageRequest(spec.method, self._url, params, body)

    def advance(self, state: State, page: Page) -> State | None:
        """The state for the page after `page`, or None when the stream is finished.

        Raises PaginationError when going on would loop or is unsafe. Does not modify `state`.
        """
        pagination = self.pagination
        if isinstance(pagination, NoPagination):
            return None
        self._check_state(state)

        count = len(page.records)
        pages = state["pages"] + 1
        digest = _digest(page.records) if page.records else None
        if digest is not None and digest == state["digest"]:
            raise PaginationError(
                f"page {pages} returned the same records as page {pages - 1} "
                f"({self.describe(state)}); the server seems to repeat a page past the end. "
                "Stopping instead of writing duplicates; add a stop rule such as "
                "stop.short_page: true, stop.total_pages or stop.max_pages"
            )

        stop = pagination.stop
        advanced: State = {
            **state,
            "pages": pages,
            "records": state["records"] + count,
            "digest": digest,
            "first_size": count if state["first_size"] is None else state["first_size"],
            "total_records": self._total(stop.total_records, "total_records", state, page),
            "total_pages": self._total(stop.total_pages, "total_pages", state, page),
        }
        if self._stop_rules_end(stop, advanced, count, page):
            return None

        if isinstance(pagination, PageNumberPagination):
            advanced["page"] = state["page"] + 1
        elif isinstance(pagination, OffsetPagination):
            if count == 0:
                # The offset advances by the records received: with none it would stay put and
                # the same request would be sent forever.
                raise PaginationError(
                    f"page {pages} at offset {state['offset']} returned no records, so the "
                    "offset cannot advance; set stop.empty_page: true (the default) or a "
                    "total/max_pages stop rule"
                )
            advanced["offset"] = state["offset"] + count
        elif isinstance(pagination, CursorPagination):
            cursor = self._next_cursor(pagination, state, page)
            if cursor is None:
                return None
            advanced["cursor"] = cursor
        else:
            next_url = self._next_url(pagination, state, page)
            if next_url is None:
                return None
            advanced["next"] = next_url
        return advanced

    # -- parallel pages ----------------------------------------------------------------------

    def page_count(self, state: State) -> int | None:
        """After the first page: how many pages the stream has in all, when that is known up
        front, so the rest can be fetched concurrently. None means follow the pages one by one.

        Known means: page numbers or offsets, parallel enabled, and a total the server gave
        (total pages, or total records with a page size the first page proved). An offset API
        that returned a short first page caps the page size below the limit asked: computed
        offsets would skip records, so it goes one by one.
        """
        pagination = self.pagination
        if not isinstance(pagination, PageNumberPagination | OffsetPagination):
            return None
        if not pagination.parallel or state.get("pages") != 1:
            return None
        first_size = state.get("first_size") or 0
        total_pages = state.get("total_pages")
        total_records = state.get("total_records")
        count: int | None = None
        if isinstance(pagination, PageNumberPagination) and total_pages is not None:
            count = total_pages
        elif total_records is not None and first_size > 0:
            if isinstance(pagination, OffsetPagination) and first_size < pagination.limit:
                return None if total_records > first_size else 1
            count = -(-total_records // first_size)
        if count is None:
            return None
        max_pages = pagination.stop.max_pages
        return max(1, min(count, max_pages) if max_pages is not None else count)

    def seek(self, state: State, index: int) -> State:
        """The state pointing at page `index` (0 = the first page) of a stream whose first page
        `state` describes (see page_count)."""
        pagination = self.pagination
        if isinstance(pagination, PageNumberPagination):
            return {**state, "page": pagination.start + index}
        if isinstance(pagination, OffsetPagination):
            return {**state, "offset": pagination.start + index * int(state["first_size"])}
        raise PaginationError(f"pages of {self.style} pagination cannot be addressed directly")

    def describe(self, state: State) -> str:
        """A short human description of the position `state` points at."""
        if state.get("style") != self.style:
            # Never raise here: the engine shows this before the request reports the mismatch.
            return "checkpoint of another pagination type"
        if self.style == "none":
            return "single request"
        if self.style == "page_number":
            return f"page {state.get('page')}"
        if self.style == "offset":
            return f"offset {state.get('offset')}"
        if self.style == "cursor":
            cursor = state.get("cursor")
            return (
                "first page" if cursor is None else f"cursor {shorten(str(cursor), _CURSOR_SHOWN)}"
            )
        next_url = state.get("next")
        if next_url is None:
            return "first page"
        return f"next {shorten(shown_url(str(next_url)), _URL_SHOWN)}"

    # -- helpers ----------------------------------------------------------------------------------

    def _check_state(self, state: State) -> None:
        if state.get("style") != self.style:
            raise PaginationError(
                f"the saved checkpoint was written for pagination {state.get('style')!r} but "
                f"the config now says {self.style!r}; run with --full-refresh to start this "
                "stream over"
            )

    def _body_template(self) -> Any | None:
        return None if self.spec.body is None else copy.deepcopy(dict(self.spec.body))

    def _total(self, ref: ValueRef | None, rule: str, state: State, page: Page) -> int | None:
        """The latest total the server reported: this page's, else the one remembered."""
        if ref is None:
            return None
        value = read_value(ref, page.body, page.headers)
        if value is None:
            known: int | None = state[rule]
            return known
        return _whole_number(value, f"stop.{rule} read from {_where(ref)}")

    def _stop_rules_end(self, stop: StopRules, advanced: State, count: int, page: Page) -> bool:
        if stop.empty_page and count == 0:
            return True
        if stop.short_page and count < self._page_size(advanced):
            return True
        total_records = advanced["total_records"]
        if total_records is not None and advanced["records"] >= total_records:
            return True
        total_pages = advanced["total_pages"]
        if total_pages is not None and advanced["pages"] >= total_pages:
            return True
        if stop.has_more is not None:
            has_more = read_value(stop.has_more, page.body, page.headers)
            if has_more is not None and _is_false(has_more):
                return True
        return stop.max_pages is not None and advanced["pages"] >= stop.max_pages

    def _page_size(self, state: State) -> int:
        pagination = self.pagination
        if isinstance(pagination, PageNumberPagination) and pagination.size is not None:
            return pagination.size
        if isinstance(pagination, OffsetPagination):
            return pagination.limit
        first_size: int = state["first_size"]
        return first_size

    def _next_cursor(self, pagination: CursorPagination, state: State, page: Page) -> Any:
        cursor = read_value(pagination.cursor, page.body, page.headers)
        if cursor is None or cursor == "":
            return None
        if isinstance(cursor, bool) or not isinstance(cursor, str | int | float):
            raise PaginationError(
                f"the next cursor read from {_where(pagination.cursor)} is not a string or "
                f"number: {excerpt(cursor, 80)}; point pagination.cursor at the cursor value"
            )
        if cursor == state["cursor"]:
            raise PaginationError(
                "the server returned the same cursor twice in a row "
                f"({shorten(str(cursor), 40)}); stopping instead of looping forever"
            )
        return cursor

    def _next_url(self, pagination: NextUrlPagination, state: State, page: Page) -> str | None:
        ref = pagination.next
        if ref.header is not None and ref.header.lower() == "link":
            link_header = header_value(page.headers, ref.header)
            raw: Any = None if link_header is None else next_link(link_header)
        else:
            raw = read_value(ref, page.body, page.headers)
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise PaginationError(
                f"the next link read from {_where(ref)} is not a URL string: {excerpt(raw, 80)}"
            )
        next_url = self._without_auth_param(urljoin(page.url, raw.strip()))
        shown = shorten(shown_url(next_url), _URL_SHOWN)
        origin = _origin(next_url)
        if origin[0] not in DEFAULT_PORTS:
            raise PaginationError(f"the next link {shown} is not an http(s) URL")
        if origin != self._origin and not pagination.allow_other_hosts:
            raise PaginationError(
                f"the next link {shown} points to another host than the source URL "
                f"({shown_url(origin_text(self._origin))}); it could leak your credentials; "
                "set pagination.allow_other_hosts: true if you trust it"
            )
        if next_url in (state["next"], self._without_auth_param(page.url)):
            raise PaginationError(
                f"the server returned the same next link twice in a row ({shown}); "
                "stopping instead of looping forever"
            )
        return next_url

    def _without_auth_param(self, url: str) -> str:
        if self._auth_param is None:
            return url
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if not any(name == self._auth_param for name, _ in pairs):
            return url
        query = urlencode([(name, value) for name, value in pairs if name != self._auth_param])
        return urlunsplit(parts._replace(query=query))


# -- RFC 8288 Link header ----------------------------------------------------------------------

# One link: <uri-reference> followed by ;-separated parameters, quoted or not.
_LINK = re.compile(
    r'<(?P<url>[^>]*)>(?P<params>(?:\s*;\s*[^;,=\s]+(?:\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,"\s]*))?)*)'
)
_LINK_PARAM = re.compile(
    r';\s*(?P<name>[^;,=\s]+)(?:\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^;,"\s]*)))?'
)


def next_link(header: str) -> str | None:
    """The URL of the `rel="next"` link in a Link header (as written: maybe relative)."""
    for link in _LINK.finditer(header):
        for param in _LINK_PARAM.finditer(link["params"]):
            if param["name"].lower() != "rel":
                continue
            rel = param["quoted"] if param["quoted"] is not None else param["token"] or ""
            # rel may hold several space-separated relation types, e.g. rel="next last".
            if "next" in rel.lower().split():
                return link["url"].strip()
            break  # RFC 8288 §3.3: only the first rel parameter of a link counts
    return None


# -- small pure helpers -----------------------------------------------------------------------


def place(body: Any | None, dotted_path: str, value: Any) -> dict[str, Any]:
    """Put `value` at `dotted_path` in `body` (a fresh copy), creating objects on the way."""
    root: dict[str, Any] = body if isinstance(body, dict) else {}
    target = root
    *parents, last = dotted_path.split(".")
    for index, part in enumerate(parents):
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[: index + 1])
            raise PaginationError(
                f"{dotted_path!r}: the body's {where!r} is {excerpt(child, 60)}, not an object, "
                "so no value can be placed in it"
            )
        target = child
    target[last] = value
    return root


def _digest(records: list[Any]) -> str | None:
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


def _is_false(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _FALSE_TEXTS
    return value is False or (isinstance(value, int | float) and value == 0)


def _where(ref: ValueRef) -> str:
    return f"header {ref.header!r}" if ref.header is not None else f"body path {ref.path!r}"


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        return origin(url)
    except InvalidUrl as exc:
        raise PaginationError(str(exc)) from None
