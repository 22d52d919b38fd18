"""Pages staged as Arrow columns (the fast way into a typed table): taken only when the table's
typed columns hold every value exactly; any other page goes as JSON lines, and either way a
batch becomes the same table and reads back every value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tui_connector.config import LoadedConfig
from tui_connector.sinks.arrow_schema import TableSchema, to_records
from tui_connector.sinks.column_pages import MIN_ROWS, ColumnPage
from tui_connector.sinks.jsonl import encode_lines

from helpers import JsonApi, run_engine

FIRST = [{"id": 1, "name": "a", "price": 1.5, "ok": True}, {"id": 2, "name": "b", "price": 2.0}]


def two_tables(*pages: list[Any]) -> tuple[TableSchema, TableSchema]:
    """Two schemas that converted the same pages the JSON way."""
    schemas = TableSchema(column_rows=1), TableSchema(column_rows=1)
    for schema in schemas:
        for page in pages:
            schema.convert([encode_lines(page)])
    return schemas


def staged_and_json_way(
    *pages: list[Any], before: Any = (FIRST,)
) -> tuple[list[Any], pa.Table, pa.Table]:
    """What `stage` made of each page after the batches `before`, the table they convert to as
    one batch, and the table the same batch makes staged as JSON lines; both leave the same
    schema and notes."""
    fast, slow = two_tables(*before)
    payloads = [fast.stage(page).payload for page in pages]
    table = fast.convert(payloads)
    expected = slow.convert([encode_lines(page) for page in pages])
    assert fast.schema == slow.schema and fast.notes == slow.notes
    return payloads, table, expected


@pytest.mark.parametrize(
    ("pages", "read"),
    [
        pytest.param(
            [
                [
                    {"id": 3, "name": "c", "price": 3, "ok": False},
                    {"name": None, "price": -0.25, "gone": None},  # only ever null: no column
                    {"id": -(2**63), "price": 2.0**53, "name": "ü\n\"'"},
                ]
            ],
            [
                {"id": 3, "name": "c", "price": 3.0, "ok": False},
                {"price": -0.25},
                {"id": -(2**63), "price": 2.0**53, "name": "ü\n\"'"},
            ],
            id="the typed columns",
        ),
        pytest.param(
            [[{"id": 4, "b": "x", "a": 1}, {"c": True, "a": 2}]],
            [{"id": 4, "a": 1, "b": "x"}, {"a": 2, "c": True}],
            id="new fields, in the order they appear",
        ),
        pytest.param(
            [[{"price": 2**53}], [{"price": 2**53 + 1}]],
            [{"price": 2.0**53}, {"price": 2**53 + 1}],
            id="an int a float column would round",
        ),
        pytest.param(
            [[{"x": 1}], [{"x": 2.5}]],
            [{"x": 1.0}, {"x": 2.5}],
            id="a new field's ints and floats across pages",
        ),
        pytest.param(
            [[{"x": 1}], [{"x": "a"}], [{"x": 2}]],
            [{"x": 1}, {"x": "a"}, {"x": 2}],
            id="a new field mixed in the batch that sees it first",
        ),
        pytest.param(
            [[{"x": 2**62}], [{"x": 0.5}]],
            [{"x": 2**62}, {"x": 0.5}],
            id="a new field's floats and ints beyond 2^53",
        ),
    ],
)
def test_a_page_of_exact_scalars_is_staged_as_columns_and_makes_the_same_table(
    pages: list[list[Any]], read: list[Any]
) -> None:
    payloads, table, expected = staged_and_json_way(*pages)
    assert all(isinstance(payload, ColumnPage) for payload in payloads)
    assert table.equals(expected)
    assert to_records(table) == read
    assert all(
        type(got["x"]) is type(want["x"])
        for got, want in zip(to_records(table), read, strict=True)
        if "x" in want
    )


@pytest.mark.parametrize(
    "page",
    [
        pytest.param([{"id": "3"}], id="a string into an int column"),
        pytest.param([{"price": "1.5 EUR"}], id="a string into a float column"),
        pytest.param([{"id": 1.0}], id="a float into an int column"),
        pytest.param([{"id": True}], id="a bool into an int column"),
        pytest.param([{"price": False}], id="a bool into a float column"),
        pytest.param([{"ok": 1}], id="an int into a bool column"),
        pytest.param([{"id": 2**63}], id="an int beyond int64"),
        pytest.param([{"price": 1.5}, {"price": -(2**60) - 1}], id="ints and floats, rounding"),
        pytest.param([{"id": 1}, {"id": "x"}], id="mixed int and string"),
        pytest.param([{"new": 1}, {"new": 1.5}], id="a new field's ints and floats"),
        pytest.param([{"new": math.nan}], id="a new field's NaN"),
        pytest.param([{"new": -math.inf}, {"new": 1.5}], id="a new field's infinity"),
        pytest.param([{"name": {"first": "a"}}], id="an object"),
        pytest.param([{"new": {"a": 1}}], id="a new object"),
        pytest.param([{"name": ["a"]}], id="an array"),
        pytest.param([{"id": 1}, [1, 2]], id="a record that is not an object"),
        pytest.param([{"id": 1}, "id"], id="a string record"),
        pytest.param([{"id": 1, "Name": "x"}], id="a key differing only in case"),
        pytest.param([{"id": 1, "_tc_page": 5}], id="a reserved name"),
        pytest.param([{"id": 1, "x__JSON": 5}], id="a JSON-text column's name"),
    ],
)
def test_a_page_the_typed_columns_do_not_hold_goes_as_json_lines_and_loses_nothing(
    page: list[Any],
) -> None:
    [payload], table, expected = staged_and_json_way(page)
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
    float column reads back as a float), a bool never as a number, a null (and NaN or an
    infinity, which JSON lacks) as absent."""
    present = {
        key: value
        for key, value in written.items()
        if value is not None and not (isinstance(value, float) and not math.isfinite(value))
    }
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


def test_a_batch_whose_json_lines_and_columns_bring_new_fields_decides_them_together() -> None:
    pages = [[{"x": 1, "y": 1}], [{"x": "a", "o": {"k": 1}}, {"x": 2}], [{"y": 2.5, "z": True}]]
    payloads, table, expected = staged_and_json_way(*pages)
    assert [isinstance(payload, ColumnPage) for payload in payloads] == [True, False, True]
    assert table.equals(expected)
    assert set(table.column_names) >= {"x__json", "y", "o", "z"} and "x" not in table.column_names
    assert to_records(table) == [
        {"x": 1, "y": 1.0},
        {"x": "a", "o": {"k": 1}},
        {"x": 2},
        {"y": 2.5, "z": True},
    ]


def test_a_batch_that_changes_a_typed_fields_type_keeps_the_earlier_pages_typed() -> None:
    schema, _ = two_tables(FIRST)
    pages = [[{"id": 8}], [{"id": "nine"}], [{"id": 10}]]
    payloads = [schema.stage(page).payload for page in pages]
    assert [isinstance(payload, ColumnPage) for payload in payloads] == [True, False, True]
    table = schema.convert(payloads)
    assert table.column("id").to_pylist() == [8, None, None]
    assert table.column("id__json").to_pylist() == [None, '"nine"', "10"]
    assert to_records(table) == [{"id": 8}, {"id": "nine"}, {"id": 10}]


def test_a_field_stored_as_json_text_takes_its_pages_as_json_lines() -> None:
    [payload], table, expected = staged_and_json_way(
        [{"id": 5, "name": "e"}], before=[FIRST, [{"id": "x"}]]
    )
    assert isinstance(payload, bytes) and table.equals(expected)
    assert to_records(table) == [{"id": 5, "name": "e"}]
    assert "id__json" in table.column_names


def test_nan_and_infinities_in_a_float_column_read_back_as_null_as_the_json_way_has_them() -> None:
    page = [{"price": math.nan, "id": 1}, {"price": math.inf}, {"price": -math.inf}, {"price": 1}]
    [payload], table, expected = staged_and_json_way(page)
    assert isinstance(payload, ColumnPage)
    assert table.equals(expected)
    assert to_records(table) == [{"id": 1}, {}, {}, {"price": 1.0}]


def test_a_field_that_fell_back_after_its_page_was_staged_gets_the_pages_values_as_text() -> None:
    schema = TableSchema(column_rows=1)
    schema.convert([encode_lines(FIRST)])
    staged = schema.stage([{"id": 7, "name": "g", "price": 1}, {"price": 0.5}])
    assert isinstance(staged.payload, ColumnPage)
    # Meanwhile other batches make both fields fall back to JSON text.
    schema.convert([encode_lines([{"id": "seven", "price": "1 EUR"}])])
    table = schema.convert([staged.payload])
    assert table.column("id__json").to_pylist() == ["7", None]
    # The page took the float column's values as floats: they stay in that column.
    assert table.column("price").to_pylist() == [1.0, 0.5]
    assert table.column("price__json").to_pylist() == [None, None]
    assert to_records(table) == [{"id": 7, "name": "g", "price": 1.0}, {"price": 0.5}]


def test_a_batch_of_both_kinds_of_page_keeps_their_order_and_every_value() -> None:
    schema = TableSchema(column_rows=1)
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


def test_an_empty_page_stages_nothing() -> None:
    staged = TableSchema(column_rows=1).stage([])
    assert staged.payload == b"" and staged.records == 0


def test_a_page_shorter_than_the_least_a_column_page_has_goes_as_json_lines() -> None:
    schema = TableSchema()
    schema.convert([encode_lines(FIRST)])
    assert isinstance(schema.stage(FIRST * (MIN_ROWS // 2 - 1)).payload, bytes)
    assert isinstance(schema.stage(FIRST * (MIN_ROWS // 2)).payload, ColumnPage)


LONG_PAGES = 5


def long_page(page: int, i: int) -> dict[str, Any]:
    """Pages long enough to be staged as columns: the same shape, then a type change in one
    record (that page goes as JSON lines, and the field is JSON text from then on), then a
    new field."""
    record: dict[str, Any] = {"id": f"{page}-{i}", "n": i, "v": i / 4, "ok": i % 2 == 0}
    if page == 3 and i == 7:
        record["n"] = f"{i} items"
    if page == 4:
        record["extra"] = i
    return record


@pytest.mark.parametrize("format", ["parquet", "delta"])
async def test_long_pages_land_as_columns_with_every_value_once(
    write_config: Callable[..., LoadedConfig], format: str
) -> None:
    def pages(path: str, query: dict[str, str]) -> dict[str, Any]:
        page = int(query["page"])
        if page >= LONG_PAGES:
            return {"items": []}
        return {"items": [long_page(page, i) for i in range(MIN_ROWS)]}

    api = JsonApi(pages)
    try:
        config = write_config(f"""
out: lake
format: {format}
commit_interval: 0
sources:
  long:
    url: {api.url}/long
    records: items
    pagination:
      type: page_number
      start: 0
""")
        result, engine = await run_engine(config)
    finally:
        api.close()
    assert result.exit_code == 0
    if format == "delta":
        rows = to_records(deltalake.DeltaTable(str(config.out / "long")).to_pyarrow_table())
    else:
        files = sorted(config.out.glob("long/*/*.parquet"))
        rows = [row for path in files for row in to_records(pq.read_table(path))]
    sent = {
        record["id"]: record
        for page in range(LONG_PAGES)
        for record in (long_page(page, i) for i in range(MIN_ROWS))
    }
    assert sorted(row["id"] for row in rows) == sorted(sent)
    for row in rows:
        assert row == sent[row["id"]] and type(row["n"]) is type(sent[row["id"]]["n"])
    info = engine.sink.info("long")
    assert info.json_columns == ("n",) and "extra: int64" in (info.schema or "")
