"""What a dataset request asks for, read from its path, query or GraphQL variables: a page, an
offset, a cursor, a page size, and which records it selects. A bad value raises
:class:`~tui_connector.demo.replies.BadRequest` naming the param.

Selecting records (every dataset route but ``errors-200``; GraphQL variables in brackets), so
that date windows, incremental runs, value lists and parent/child partitions can be tested:

- ``updated_since`` / ``updated_before`` (``updatedSince`` / ``updatedBefore``): only records with
  ``since <= updated_at < before``. An ISO 8601 datetime (``Z`` or an offset, fractions), a date
  (midnight UTC), or epoch seconds; a number >= 10^11 is epoch milliseconds.
- ``shards=K&shard=I`` (``shards``, ``shard``): only records with ``n % K == I``.
- ``dataset_size=N`` (``datasetSize``): the dataset has N records instead of ``knobs.records``.

Pages, offsets, cursors and totals (``total``, ``X-Total-Count``, ``count``, ``has_more``, next
links, which keep every other param) then work over the selected records only, exactly as if the
dataset were just those. A bad value is a 400 (a GraphQL error for a variable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tui_connector.demo import data
from tui_connector.demo.knobs import MAX_PAGE_SIZE, DemoKnobs
from tui_connector.demo.replies import BadRequest

#: A dataset's name (``data.records_json`` relies on it needing no JSON escaping).
DATASET_NAME = re.compile(r"[a-z0-9_-]+")
#: The ``{ds}`` segment of a dataset route's path.
DATASET_SEGMENT = f"{{ds:{DATASET_NAME.pattern}}}"


def int_param(query: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """The query param ``name`` as an integer >= ``minimum`` (missing: ``default``)."""
    return parse_int(query.get(name), name, default, minimum)


def parse_int(raw: object, name: str, default: int, minimum: int = 0) -> int:
    """A query param's text or a GraphQL variable's JSON as an integer (missing: ``default``)."""
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise TypeError
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise BadRequest(f"{name} must be >= {minimum}, not {value}")
    return value


def size_param(query: Mapping[str, str], name: str, knobs: DemoKnobs) -> int:
    """A page size from the query param ``name`` (missing: the ``page_size`` knob), clamped to
    1..``MAX_PAGE_SIZE``."""
    raw = query.get(name)
    if raw is None or raw == "":
        return knobs.page_size
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw!r}") from None
    return min(max(value, 1), MAX_PAGE_SIZE)


def cursor_param(query: Mapping[str, str], name: str) -> int:
    """The offset inside the cursor in the query param ``name`` (missing: 0)."""
    raw = query.get(name)
    if not raw:
        return 0
    try:
        return data.decode_cursor(raw)
    except ValueError:
        raise BadRequest(f"{name} is not a valid cursor: {raw!r}") from None


def page_query(request: web.Request, page: int, per_page: int) -> str:
    """The request's query with ``page`` and ``per_page`` replaced (other params kept)."""
    rest = [(k, v) for k, v in request.query.items() if k not in ("page", "per_page")]
    return urlencode([("page", page), ("per_page", per_page), *rest])


def page_params(request: web.Request, knobs: DemoKnobs) -> tuple[int, int]:
    """``(page, per_page)`` of a page-numbered request; pages count from 1."""
    page = int_param(request.query, "page", 1, minimum=1)
    return page, size_param(request.query, "per_page", knobs)


#: An epoch number this large is milliseconds: as seconds it would be past the year 5000.
_EPOCH_MS = 10**11
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*")
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch(raw: object) -> Fraction:
    """Exact epoch seconds from an ISO 8601 datetime or date (UTC unless it has an offset), or
    from epoch seconds or milliseconds (text or a JSON number). TypeError / ValueError /
    OverflowError if it is none of those.

    Exact (a Fraction, not a float) so that a bound a microsecond past a record's minute really
    excludes that record: window edges are where connectors lose or repeat records.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise TypeError(f"not a time: {raw!r}")
    if isinstance(raw, str) and not _NUMBER.fullmatch(raw):
        moment = datetime.fromisoformat(raw)  # "Z", offsets, fractions, bare dates (3.11+)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - _UNIX
        return delta.days * 86_400 + delta.seconds + Fraction(delta.microseconds, 1_000_000)
    seconds = Fraction(raw)
    return seconds / 1000 if abs(seconds) >= _EPOCH_MS else seconds


def _instant(raw: object, name: str) -> Fraction | None:
    if raw is None or raw == "":
        return None
    try:
        return _epoch(raw)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(
            f"{name} must be an ISO 8601 datetime, a date, or epoch seconds or milliseconds, "
            f"not {raw!r}"
        ) from None


#: What selects a request's records: the GET routes' query params, and the GraphQL variables
#: that mean the same (in that order: since, before, shards, shard, dataset size).
_QUERY_SELECTION = ("updated_since", "updated_before", "shards", "shard", "dataset_size")
GRAPHQL_SELECTION = ("updatedSince", "updatedBefore", "shards", "shard", "datasetSize")


def parse_selection(
    values: Mapping[str, Any], names: tuple[str, ...], knobs: DemoKnobs, prefix: str = ""
) -> range:
    """The record numbers a request sees: ``dataset_size`` records (default: the records knob)
    with ``updated_since <= updated_at < updated_before`` and ``n % shards == shard``. Paging,
    cursors and totals then work over this range as if it were the whole dataset."""
    since_name, before_name, shards_name, shard_name, size_name = names
    size = parse_int(values.get(size_name), prefix + size_name, knobs.records)
    shards = parse_int(values.get(shards_name), prefix + shards_name, 1, minimum=1)
    shard = parse_int(values.get(shard_name), prefix + shard_name, 0)
    if shard >= shards:
        raise BadRequest(
            f"{prefix}{shard_name} must be below {prefix}{shards_name} ({shards}), not {shard}"
        )
    since = _instant(values.get(since_name), prefix + since_name)
    before = _instant(values.get(before_name), prefix + before_name)
    return data.select(size, since, before, shards, shard)


def query_selection(request: web.Request, knobs: DemoKnobs) -> range:
    """The record numbers a GET request selects with its query params (:func:`parse_selection`)."""
    return parse_selection(request.query, _QUERY_SELECTION, knobs)


def records_at(ds: str, selection: range, start: int, count: int) -> str:
    """The JSON of ``count`` selected records from ``start`` (an offset into the selection)."""
    return data.records_json(ds, selection[start : start + count])


def has_next(page: int, per_page: int, total: int) -> bool:
    """Whether page ``page`` of ``per_page`` records is followed by another among ``total``."""
    return page * per_page < total
