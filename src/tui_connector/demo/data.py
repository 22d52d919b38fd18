"""Deterministic demo records, generated on the fly, and the opaque cursors that point into them.

Record ``n`` (0-based) of dataset ``D`` is a pure function of ``(D, n)``: nothing is precomputed,
so a dataset of any size costs nothing until a slice of it is asked for.

What a request asks for is a ``range`` of record numbers (:func:`select`): a time window on
``updated_at`` and a shard ``n % K == I`` are both arithmetic progressions, and so is their
intersection, so slicing a selection for a page (``selection[offset:offset + count]``) is O(1)
however large the dataset.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import time
from fractions import Fraction
from typing import Any

#: 2024-01-01T00:00:00Z, the ``updated_at`` of record 0; record n is n minutes later.
BASE_EPOCH = 1_704_067_200
_CURSOR_PREFIX = "o:"


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(BASE_EPOCH + 86_400 * days))


#: "THH:MM:00Z" for each minute of a day.
_CLOCK = tuple(f"T{m // 60:02d}:{m % 60:02d}:00Z" for m in range(1440))


def updated_at(n: int) -> str:
    """2024-01-01T00:00:00Z plus ``n`` minutes, ISO 8601 in UTC."""
    days, minute = divmod(n, 1440)
    return _day(days) + _CLOCK[minute]


def value(n: int) -> float:
    """A fixed pseudo-random value in [0, 10000) with two decimals (a multiplicative hash)."""
    return ((n * 2_654_435_761) % 1_000_000) / 100


def record(dataset: str, n: int) -> dict[str, Any]:
    """Record ``n`` of ``dataset``."""
    return {
        "id": f"{dataset}-{n:06d}",
        "n": n,
        "name": f"{dataset} item {n}",
        "updated_at": updated_at(n),
        "value": value(n),
    }


def records(dataset: str, numbers: range) -> list[dict[str, Any]]:
    """The records numbered ``numbers`` (a slice of :func:`select`), in that order."""
    return [record(dataset, n) for n in numbers]


def records_json(dataset: str, numbers: range) -> str:
    """``json.dumps(records(...), separators=(",", ":"))``, written directly: about 3x cheaper.

    ``dataset`` must need no JSON escaping (the server only accepts ``[a-z0-9_-]+``).
    """
    return f"[{','.join(_record_texts(dataset, numbers))}]"


def records_json_lines(dataset: str, numbers: range) -> str:
    """The same records as JSON Lines: one record's JSON a line, each line ended."""
    return "".join(f"{text}\n" for text in _record_texts(dataset, numbers))


def _record_texts(dataset: str, numbers: range) -> list[str]:
    day, clock = _day, _CLOCK
    return [
        f'{{"id":"{dataset}-{n:06d}","n":{n},"name":"{dataset} item {n}",'
        f'"updated_at":"{day(n // 1440)}{clock[n % 1440]}",'
        f'"value":{((n * 2_654_435_761) % 1_000_000) / 100!r}}}'
        for n in numbers
    ]


def first_at_or_after(epoch: Fraction | int) -> int:
    """The first record number ``n`` whose ``updated_at`` is at or after ``epoch`` (seconds,
    exact: a Fraction, so a bound one microsecond past a minute excludes that minute's record).
    Not clipped: negative before 2024-01-01, past the end for instants after the last record."""
    return math.ceil((Fraction(epoch) - BASE_EPOCH) / 60)


def select(
    total: int,
    since: Fraction | int | None = None,
    before: Fraction | int | None = None,
    shards: int = 1,
    shard: int = 0,
) -> range:
    """The record numbers of a dataset of ``total`` records with ``since <= updated_at < before``
    (epoch seconds; None is unbounded) and ``n % shards == shard``, ascending.

    A range rather than a list, so pages are O(1) slices and ``len`` is the window's total.
    """
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1}, not {shard}")
    lo = 0 if since is None else min(max(first_at_or_after(since), 0), total)
    hi = total if before is None else min(max(first_at_or_after(before), 0), total)
    return range(lo + (shard - lo) % shards, hi, shards)


def encode_cursor(offset: int) -> str:
    """An opaque cursor for the record at ``offset`` (urlsafe base64, no padding)."""
    raw = f"{_CURSOR_PREFIX}{offset}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The offset inside a cursor made by :func:`encode_cursor`; ``ValueError`` if it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    digits = raw.removeprefix(_CURSOR_PREFIX)
    if digits == raw or not digits.isdigit() or not digits.isascii():
        raise ValueError(f"invalid cursor {cursor!r}")
    return int(digits)
