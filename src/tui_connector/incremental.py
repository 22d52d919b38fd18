"""Incremental runs as pure logic: the high-water mark of a stream, and which records of a page
are new. Nothing here does I/O.

A mark is `{"value": v, "keys": [...]}`: the highest cursor value retrieved so far, and the keys
of the records that carry exactly that value. The next run asks the server for records at or
after `v` (APIs differ on whether the bound is inclusive, so it is always treated as if it
were) and drops the ones it already has: below `v`, or at `v` with a known key. The mark only
advances when a stream completes, so an interrupted run asks again from the same place.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tui_connector.config import Incremental
from tui_connector.extract import compile_path, excerpt

Mark = dict[str, Any]


class IncrementalError(Exception):
    """The cursor field cannot order the records; the message says what to change."""


def _comparable(value: Any, where: str) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise IncrementalError(
            f"incremental.cursor_field gave {excerpt(value, 60)} {where}: a mark must be a "
            "number or a string (e.g. an ISO 8601 time); point cursor_field at such a field"
        )
    return value


def _newer(a: Any, b: Any) -> bool:
    """a > b, refusing to compare a number with a string."""
    if isinstance(a, str) != isinstance(b, str):
        raise IncrementalError(
            f"incremental cursor values of different types cannot be ordered: {a!r} and {b!r}; "
            "the field must hold only numbers or only strings (and 'initial' the same type)"
        )
    return bool(a > b)


def merged(mark: Mark | None, pending: Mark | None) -> Mark | None:
    """The mark after a completed run: the higher one; their keys joined when equal."""
    if pending is None:
        return mark
    if mark is None or _newer(pending["value"], mark["value"]):
        return pending
    if pending["value"] == mark["value"]:
        keys = sorted(set(mark["keys"]) | set(pending["keys"]))
        return {"value": mark["value"], "keys": keys}
    return mark


class HighWater:
    """Filters one stream's records against the committed mark and tracks the pending one."""

    def __init__(self, incremental: Incremental, mark: Mark | None, pending: Mark | None) -> None:
        self._cursor = compile_path(incremental.cursor_field)
        self._key = compile_path(incremental.primary_key) if incremental.primary_key else None
        if mark is None and incremental.initial is not None:
            mark = {"value": _comparable(incremental.initial, "as 'initial'"), "keys": []}
        self.mark = mark
        self.pending = pending
        self._known = frozenset(mark["keys"]) if mark else frozenset()
        self.without_cursor = 0  # records kept although they lack the cursor field

    @property
    def since(self) -> Any:
        """The value the request carries: where the last completed run stopped."""
        return None if self.mark is None else self.mark["value"]

    def _key_of(self, record: Any) -> str:
        if self._key is not None:
            return json.dumps(self._key.search(record), sort_keys=True, default=str)
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()

    def new_records(self, records: list[Any]) -> list[Any]:
        """The records not retrieved by an earlier run; the pending mark learns from them.

        Keys (a hash per record without a primary key) are computed only for the records at
        the page's highest value and, against the mark, at the mark's value: not one per
        record on the event loop."""
        mark = self.mark
        kept: list[Any] = []
        valued: list[tuple[Any, Any]] = []
        for record in records:
            value = self._cursor.search(record)
            if value is None:
                self.without_cursor += 1
                kept.append(record)
                continue
            value = _comparable(value, "for a record")
            if mark is not None:
                if _newer(mark["value"], value):
                    continue
                if value == mark["value"] and self._key_of(record) in self._known:
                    continue
            kept.append(record)
            valued.append((value, record))
        if valued:
            self._learn(valued)
        return kept

    def _learn(self, valued: list[tuple[Any, Any]]) -> None:
        top = valued[0][0]
        for value, _ in valued:
            if _newer(value, top):
                top = value
        pending = self.pending
        if pending is not None and _newer(pending["value"], top):
            return
        keys = set(pending["keys"]) if pending is not None and pending["value"] == top else set()
        keys.update(self._key_of(record) for value, record in valued if value == top)
        self.pending = {"value": top, "keys": sorted(keys)}
