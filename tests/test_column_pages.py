"""Pages staged as Arrow columns (the fast way into a typed table): taken only when the table's
typed columns hold every value exactly; any other page goes as JSON lines, and either way a
batch becomes the same table and reads back every value."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

from tui_connector.sinks.arrow_schema import TableSchema, to_records
from tui_connector.sinks.column_pages import ColumnPage
from tui_connector.sinks.jsonl import encode_lines

FIRST = [{"id": 1, "name": "a", "price": 1.5, "ok": True}, {"id": 2, "name": "b", "price": 2.0}]


def two_tables(*pages: list[Any]) -> tuple[TableSchema, TableSchema]:
    """Two schemas that converted the same pages the JSON way."""
    schemas = TableSchema(), TableSchema()
    for schema in schemas:
        for page in pages:
            schema.convert([encode_lines(page)])
    return schemas


def staged_and_json_way(page: list[Any], *before: list[Any]) -> tuple[Any, pa.Table, pa.Table]:
    """What `stage` made of `page` after `before` (FIRST by default), the table it converts
    to, and the table the same page makes staged as JSON lines."""
    fast, slow = two_tables(*(before or [FIRST]))
    payload = fast.stage(page).payload
    table = fast.convert([payload])
    expected = slow.convert([encode_lines(page)])
    assert fast.schema == slow.schema and fast.notes == slow.notes
    return payload, table, expected


def test_a_page_the_typed_columns_hold_is_staged_as_columns_and_makes_the_same_table() -> None:
    page = [
        {"id": 3, "name": "c", "price": 3, "ok": False},  # an int in the float column
        {"name": None, "price": -0.25, "gone": None},  # a field only ever null: no column
        {"id": -(2**63), "price": 2.0**53, "name": "ü\n\"'"},
    ]
    payload, table, expected = staged_and_json_way(page)
    assert isinstance(payload, ColumnPage)
    assert table.equals(expected)
    assert to_records(table) == [
        {"id": 3, "name": "c", "price": 3.0, "ok": False},
        {"price": -0.25},
        {"id": -(2**63), "price": 2.0**53, "name": "ü\n\"'"},
    ]


@pytest.mark.parametrize(
    "page",
    [
        pytest.param([{"id": 3, "new": 1}], id="a new field"),
        pytest.param([{"id": "3"}], id="a string into an int column"),
        pytest.param([{"price": "1.5 EUR"}], id="a string into a float column"),
        pytest.param([{"id": 1.0}], id="a float into an int column"),
        pytest.param([{"id": True}], id="a bool into an int column"),
        pytest.param([{"price": False}], id="a bool into a float column"),
        pytest.param([{"ok": 1}], id="an int into a bool column"),
        pytest.param([{"id": 2**63}], id="an int beyond int64"),
        pytest.param([{"price": 2**53 + 1}], id="an int a float column would round"),
        pytest.param([{"price": 1.5}, {"price": -(2**60) - 1}], id="ints and floats, rounding"),
        pytest.param([{"id": 1}, {"id": "x"}], id="mixed int and string"),
        pytest.param([{"name": {"first": "a"}}], id="an object"),
        pytest.param([{"name": ["a"]}], id="an array"),
        pytest.param([{"id": 1}, [1, 2]], id="a record that is not an object"),
        pytest.param([{"id": 1}, "id"], id="a string record"),
        pytest.param([{"id": 1, "Name": "x"}], id="a key differing only in case"),
        pytest.param([{"id": 1, "_tc_page": 5}], id="a reserved name"),
    ],
)
def test_a_page_the_typed_columns_do_not_hold_goes_as_json_lines_and_loses_nothing(
    page: list[Any],
) -> None:
    payload, table, expected = staged_and_json_way(page)
    assert isinstance(payload, bytes)
    assert table.equals(expected)
    records = to_records(table)
    assert len(records) == len(page)
    for read, written in zip(records, page, strict=True):
        if isinstance(written, dict):
            assert json_equal(read, written)
        else:
            assert read == {"value": written}


def json_equal(read: dict[str, Any], written: dict[str, Any]) -> bool:
    """Equal as JSON: an int and a float of the same value count as one number (an int in a
    float column reads back as a float), a bool never as a number, a null as absent."""
    present = {key: value for key, value in written.items() if value is not None}
    if read.keys() != present.keys():
        return False
    for key, value in present.items():
        got = read[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            if type(got) is not type(value) or got != value:
                return False
        elif isinstance(got, bool) or got != value:
            return False
    return True


def test_a_field_stored_as_json_text_takes_its_pages_as_json_lines() -> None:
    before = [FIRST, [{"id": "x"}]]  # id falls back to JSON text
    payload, table, expected = staged_and_json_way([{"id": 5, "name": "e"}], *before)
    assert isinstance(payload, bytes) and table.equals(expected)
    assert to_records(table) == [{"id": 5, "name": "e"}]
    assert "id__json" in table.column_names


def test_nan_and_infinities_read_back_as_null_as_the_json_way_has_them() -> None:
    page = [{"price": math.nan, "id": 1}, {"price": math.inf}, {"price": -math.inf}, {"price": 1.0}]
    payload, table, expected = staged_and_json_way(page)
    assert isinstance(payload, ColumnPage)
    assert table.equals(expected)
    assert to_records(table) == [{"id": 1}, {}, {}, {"price": 1.0}]


def test_a_field_that_fell_back_after_its_page_was_staged_keeps_the_page_in_its_typed_column() -> (
    None
):
    schema = TableSchema()
    schema.convert([encode_lines(FIRST)])
    staged = schema.stage([{"id": 7, "name": "g"}])
    assert isinstance(staged.payload, ColumnPage)
    schema.convert([encode_lines([{"id": "seven"}])])  # meanwhile another batch: id -> JSON text
    table = schema.convert([staged.payload])
    assert table.column("id").to_pylist() == [7] and table.column("id__json").to_pylist() == [None]
    assert to_records(table) == [{"id": 7, "name": "g"}]


def test_a_batch_of_both_kinds_of_page_keeps_their_order_and_every_value() -> None:
    schema = TableSchema()
    schema.convert([encode_lines(FIRST)])
    pages = [
        [{"id": 10, "price": 1.25}],
        [{"id": 11, "extra": [1, 2]}],  # a new field: JSON lines
        [{"id": 12, "name": "m"}, {"id": 13}],
        [{"id": "14"}],  # a type change: JSON lines
        [{"id": 15, "ok": True}],
    ]
    payloads = [schema.stage(page).payload for page in pages]
    assert [isinstance(payload, ColumnPage) for payload in payloads] == [
        True,
        False,
        True,
        False,
        True,
    ]
    table = schema.convert(payloads)
    assert table.schema == schema.schema
    assert to_records(table) == [
        {"id": 10, "price": 1.25},
        {"id": 11, "extra": [1, 2]},
        {"id": 12, "name": "m"},
        {"id": 13},
        {"id": "14"},
        {"id": 15, "ok": True},
    ]


def test_an_empty_page_and_a_table_without_columns_yet_stage_json_lines() -> None:
    assert TableSchema().stage([{"id": 1}]).payload == b'{"id":1}\n'
    schema, _ = two_tables(FIRST)
    staged = schema.stage([])
    assert staged.payload == b"" and staged.records == 0
