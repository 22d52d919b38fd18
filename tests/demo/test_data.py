"""Demo records and cursors (``demo.data``): deterministic, O(1) to slice."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from tui_connector.demo import data

from .helpers import ids


def test_records_are_deterministic_and_well_formed() -> None:
    record = data.record("ds", 42)
    assert record["id"] == "ds-000042" and record["n"] == 42 and record["name"] == "ds item 42"
    assert record["updated_at"] == "2024-01-01T00:42:00Z"
    assert data.record("ds", 24 * 60)["updated_at"] == "2024-01-02T00:00:00Z"
    assert isinstance(record["value"], float) and record["value"] == data.record("ds", 42)["value"]
    assert len({data.record("ds", n)["value"] for n in range(100)}) > 90
    assert ids(data.records("ds", range(230, 237))) == [f"ds-{n:06d}" for n in range(230, 237)]


@pytest.mark.parametrize(
    "numbers",
    [
        range(0),
        range(1),
        range(5, 3),
        range(1441),
        range(1439, 1441),
        range(3, 1441, 7),
        data.select(3000, since=data.BASE_EPOCH + 86_400, shards=4, shard=3)[10:40],
    ],
)
def test_records_json_is_the_json_of_records(numbers: range) -> None:
    for dataset in ("a", "x_y-9"):
        text = data.records_json(dataset, numbers)
        assert text == json.dumps(data.records(dataset, numbers), separators=(",", ":"))
        assert [record["n"] for record in json.loads(text)] == list(numbers)


BASE = data.BASE_EPOCH
#: Instants around the records' minutes (record n is at BASE + 60 n), as exact epoch seconds.
EDGES: list[Fraction | int | None] = [
    None,
    BASE - 3600,
    BASE,
    BASE + Fraction(1, 1_000_000),
    BASE + 59,
    BASE + 60,
    BASE + 60 * 37 - Fraction(1, 1_000_000),
    BASE + 60 * 37 + Fraction(1, 1_000_000),
    BASE + 60 * 99,
    BASE + 60 * 100,
    BASE + 10**9,
]


def test_select_is_the_window_intersected_with_the_shard() -> None:
    total = 100
    for since in EDGES:
        for before in EDGES:
            for shards in (1, 3, 7):
                for shard in range(shards):
                    expected = [
                        n
                        for n in range(total)
                        if (since is None or BASE + 60 * n >= since)
                        and (before is None or BASE + 60 * n < before)
                        and n % shards == shard
                    ]
                    got = data.select(total, since, before, shards, shard)
                    assert list(got) == expected, (since, before, shards, shard)
    with pytest.raises(ValueError):
        data.select(10, shards=2, shard=2)


def test_cursors_round_trip_and_reject_garbage() -> None:
    for offset in (0, 1, 50, 999_999):
        cursor = data.encode_cursor(offset)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
        assert data.decode_cursor(cursor) == offset
    for bad in ("", "zz", "!!!", "bm9wZQ", data.encode_cursor(5)[:-1] + "$"):
        with pytest.raises(ValueError):
            data.decode_cursor(bad)
