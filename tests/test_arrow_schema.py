"""The schema that follows the data: batches of JSON lines become Arrow tables of one evolving
schema per table, which pyarrow's Parquet writer and deltalake accept, and which read back to
every value exactly once."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from tui_connector.sinks import arrow_schema
from tui_connector.sinks.arrow_schema import TableSchema, to_records
from tui_connector.sinks.jsonl import encode_lines


def convert(schema: TableSchema, *pages: list[Any]) -> pa.Table:
    return schema.convert([encode_lines(page) for page in pages])


def types(table_or_schema: pa.Table | pa.Schema) -> dict[str, str]:
    schema = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    return {field.name: str(field.type) for field in schema}


def same(read: Any, written: Any) -> bool:
    """Equal, an int and a float of the same value counting as the same number (an int in a
    float64 column reads back as a float) but a bool never as a number."""
    if isinstance(written, dict):
        return (
            isinstance(read, dict)
            and read.keys() == written.keys()
            and all(same(read[key], written[key]) for key in written)
        )
    if isinstance(written, list):
        return (
            isinstance(read, list) and len(read) == len(written) and all(map(same, read, written))
        )
    numbers = (int, float)
    if isinstance(written, numbers) and not isinstance(written, bool):
        return isinstance(read, numbers) and not isinstance(read, bool) and read == written
    return type(read) is type(written) and read == written


def test_json_types_map_to_arrow_types_and_iso_strings_stay_strings() -> None:
    record = {
        "id": 1,
        "price": 9.5,
        "ok": True,
        "name": "x",
        "at": "2024-01-01T00:00:00Z",
        "day": "2024-01-01",
        "local": "2024-01-01 10:00:00+02:00",
        "owner": {"login": "a", "since": "2024-01-01T00:00:00Z", "site": {"admin": False}},
        "tags": ["a", "b"],
        "rows": [{"n": 1}],
    }
    table = convert(TableSchema(), [record])
    assert types(table) == {
        "id": "int64",
        "price": "double",
        "ok": "bool",
        "name": "string",
        "at": "string",
        "day": "string",
        "local": "string",
        "owner": "struct<login: string, since: string, site: struct<admin: bool>>",
        "tags": "list<item: string>",
        "rows": "list<item: struct<n: int64>>",
    }
    assert to_records(table) == [record]


def test_a_new_field_is_a_new_column_and_a_missing_one_is_null() -> None:
    schema = TableSchema()
    convert(schema, [{"id": 1, "owner": {"login": "a"}}])
    table = convert(schema, [{"id": 2, "owner": {"login": "b", "site": {"admin": True}}}])
    assert types(table) == {
        "id": "int64",
        "owner": "struct<login: string, site: struct<admin: bool>>",
    }
    table = convert(schema, [{"extra": "x"}], [{"id": 3}])
    assert list(types(table)) == ["id", "owner", "extra"]
    assert table.schema.field("extra").nullable
    assert to_records(table) == [{"extra": "x"}, {"id": 3}]
    assert schema.take_news() == [] and schema.json_columns == frozenset()


def test_a_field_only_ever_null_or_empty_is_no_column_until_a_value_shows_up() -> None:
    schema = TableSchema()
    table = convert(
        schema, [{"id": 1, "gone": None, "obj": {}, "list": [], "deep": {"e": {}, "l": [[]]}}]
    )
    assert types(table) == {"id": "int64"}
    table = convert(
        schema, [{"id": 2, "gone": "now", "obj": {"a": 1}, "list": [], "deep": {"e": {}}}]
    )
    assert types(table) == {"id": "int64", "gone": "string", "obj": "struct<a: int64>"}
    table = convert(schema, [{"obj": {}, "list": [1.5], "deep": {"l": [[2]], "e": {"z": None}}}])
    assert types(table)["list"] == "list<item: double>"
    assert types(table)["deep"] == "struct<l: list<item: list<item: int64>>>"
    # Once the type is known an empty object is a struct of nulls, an empty list is empty.
    table = convert(schema, [{"obj": {}, "list": [], "deep": {"l": []}}])
    assert to_records(table) == [{"obj": {}, "list": [], "deep": {"l": []}}]
    assert schema.take_news() == []


def test_an_int_widens_into_a_float_column_within_2_to_the_53() -> None:
    schema = TableSchema()
    assert types(convert(schema, [{"v": 1}, {"v": 2.5}])) == {"v": "double"}
    table = convert(schema, [{"v": 2**53}, {"v": -3}])
    assert types(table) == {"v": "double"} and to_records(table) == [{"v": 2.0**53}, {"v": -3.0}]
    assert schema.take_news() == []
    # A 19-digit id stays an exact int64 however many float columns the table has.
    table = convert(schema, [{"v": 0.5, "id": 1234567890123456789}])
    assert to_records(table) == [{"v": 0.5, "id": 1234567890123456789}]
    assert types(table)["id"] == "int64"


@pytest.mark.parametrize(
    ("first", "then", "change"),
    [
        (1, "1", "int64 -> string"),
        (1, 1.5, "int64 -> double"),
        (1.5, 2**53 + 1, "double -> an int beyond 2^53"),
        (1, 2**63, "an int beyond int64"),
        ("a", True, "string -> bool"),
        ({"a": 1}, 5, "struct<a: int64> -> int64"),
        ({"a": 1}, {"a": "x"}, "int64 -> string"),
        ({"a": 1}, {"a": 1, "A": 2}, "keys 'a' and 'A' differ only in case"),
        ([1], [1, "x"], "mixed number and string"),
        ([1], {"a": 1}, "list<item: int64> -> object"),
        ({"a": 1.5}, {"a": 2**62}, "double -> an int beyond 2^53"),
    ],
)
def test_a_type_change_falls_back_to_json_text_once_and_loses_nothing(
    first: Any, then: Any, change: str
) -> None:
    schema = TableSchema()
    first_table = convert(schema, [{"id": 1, "f": first}])
    typed = types(first_table)["f"]
    table = convert(schema, [{"id": 2, "f": then}])
    assert types(table) == {"id": "int64", "f": typed, "f__json": "string"}
    assert schema.take_news() == [
        f"column 'f' changed type ({change}): from now on its values are stored as JSON text "
        "in 'f__json'"
    ]
    assert schema.json_columns == {"f"}
    # From then on every value of the field is JSON text, including ones that would fit.
    later = convert(schema, [{"id": 3, "f": first}])
    assert later.column("f").null_count == 1 and later.column("f__json").to_pylist() != [None]
    read = to_records(pa.concat_tables([first_table, table, later], promote_options="default"))
    assert all(
        map(same, read, [{"id": 1, "f": first}, {"id": 2, "f": then}, {"id": 3, "f": first}])
    )
    assert schema.take_news() == []


def test_a_field_mixed_in_the_first_batch_that_sees_it_is_json_text_from_the_start() -> None:
    schema = TableSchema()
    records = [{"a": 1}, {"a": "one"}, {"a": None}, {"a": [1, {"b": None}]}, {"a": 2**70}]
    table = convert(schema, records)
    assert types(table) == {"a__json": "string"}
    assert table.column("a__json").to_pylist() == ["1", '"one"', None, '[1,{"b":null}]', str(2**70)]
    assert to_records(table) == [{"a": 1}, {"a": "one"}, {}, {"a": [1, {"b": None}]}, {"a": 2**70}]
    assert schema.take_news() == [
        "field 'a' holds mixed array and number and string: from now on its values are stored "
        "as JSON text in 'a__json'"
    ]


def test_records_that_are_not_objects_are_wrapped_in_value() -> None:
    schema = TableSchema()
    table = convert(schema, [{"value": 1}, 2, None])
    assert types(table) == {"value": "int64"}
    assert to_records(table) == [{"value": 1}, {"value": 2}, {}]


def test_an_empty_batch_is_an_empty_table_of_the_schema_so_far() -> None:
    schema = TableSchema()
    assert schema.convert([]).num_columns == 0
    convert(schema, [{"a": 1}])
    table = schema.convert([b"", b""])
    assert table.num_rows == 0 and table.schema == schema.schema


def test_what_only_the_stdlib_encoder_writes_reads_back() -> None:
    """A page with an int past 64 bits is encoded by the stdlib, which writes NaN as NaN."""
    table = convert(TableSchema(), [{"big": 2**64, "small": -(2**63) - 1, "v": math.nan}])
    assert types(table) == {"big__json": "string", "small__json": "string", "v": "double"}
    (record,) = to_records(table)
    assert record["big"] == 2**64 and record["small"] == -(2**63) - 1 and math.isnan(record["v"])


def nested(depth: int, leaf: Any = 1) -> Any:
    for level in range(depth):
        leaf = {"a": leaf} if level % 2 else [leaf]
    return leaf


def test_nesting_deeper_than_delta_reads_back_falls_back_to_json_text(tmp_path: Path) -> None:
    schema = TableSchema()
    table = convert(schema, [{"fits": nested(32), "deep": nested(33), "deeper": nested(400)}])
    assert types(table).keys() == {"fits", "deep__json", "deeper__json"}
    assert schema.json_columns == {"deep", "deeper"} and len(schema.take_news()) == 2
    write_deltalake(tmp_path, table, mode="append", schema_mode="merge")
    expected = [{"fits": nested(32), "deep": nested(33), "deeper": nested(400)}]
    assert to_records(DeltaTable(tmp_path).to_pyarrow_table()) == expected


ODD_NAMES = [
    "",
    " ",
    "with space",
    "a.b",
    "ünï✓",
    "a\nb",
    "x",
    "x__json",
    "X",
    "_tc_page",
    "__json_78",
]


def test_any_json_key_gets_a_column_both_writers_take_and_reads_back_under_its_name(
    tmp_path: Path,
) -> None:
    schema = TableSchema()
    record = {name: index for index, name in enumerate(ODD_NAMES)}
    record["nested"] = {
        name: index for index, name in enumerate(ODD_NAMES) if name not in ("", "X")
    }
    record["keyless"] = {"": 1, "a": 2}
    table = convert(schema, [record])
    assert types(table)["nested"].startswith("struct<")
    # Reserved names, one differing only in case from an earlier field's, and an object with an
    # empty key (which DuckDB would rename) become JSON text.
    assert schema.json_columns == {"", "x__json", "X", "_tc_page", "__json_78", "keyless"}
    assert not any(name.startswith("_tc_") for name in table.column_names)
    folded = [name.casefold() for name in table.column_names]
    assert len(folded) == len(set(folded))
    assert to_records(table) == [record]
    assert len(schema.take_news()) == 6
    pq.write_table(table, tmp_path / "page.parquet")
    write_deltalake(tmp_path / "delta", table, mode="append", schema_mode="merge")
    assert to_records(pq.read_table(tmp_path / "page.parquet")) == [record]
    by_duckdb = duckdb.read_parquet(str(tmp_path / "page.parquet")).arrow().read_all()
    assert to_records(by_duckdb) == [record]
    assert to_records(DeltaTable(tmp_path / "delta").to_pyarrow_table()) == [record]


def test_the_same_records_in_the_same_order_give_the_same_schema_and_a_resume_continues() -> None:
    pages = [[{"a": 1, "b": {"c": "x"}}], [{"a": "s", "B": 1, "b": {"d": [1]}}], [{"e": 1.5}]]
    first, second = TableSchema(), TableSchema()
    for page in pages:
        assert convert(first, page).equals(convert(second, page))
    resumed = TableSchema(first.schema.append(pa.field("_tc_page", pa.int64())))
    assert resumed.schema == first.schema and resumed.json_columns == first.json_columns
    page = [{"a": 2, "B": 2, "b": {"c": "y", "f": True}, "new": 1}]
    assert convert(resumed, page).equals(convert(first, page))
    assert resumed.take_news() == []


def test_the_fast_and_the_slow_path_make_the_same_table() -> None:
    """The JSON reader takes these batches; the Python path must give the same tables, since
    any batch may take either."""
    pages = [
        [{"id": 1, "at": "2024-01-01T00:00:00Z", "o": {"x": 1, "e": {}}, "n": None}],
        [{"id": 2, "o": {"x": 2, "y": [1.5, 2]}, "t": ["a"], "v": 1}, {"v": 2.5, "z": {}}],
        [{"o": {"y": []}, "deep": {"a": {"b": {"c": 1}}}}],
    ]
    fast, slow = TableSchema(), TableSchema()
    for page in pages:
        expected = fast.convert([encode_lines(page)])
        assert slow._convert_slowly(encode_lines(page)).equals(expected)
    assert fast.schema == slow.schema


def test_threads_converting_batches_of_one_table_agree_on_one_schema() -> None:
    schema = TableSchema()
    batches = [
        [{"id": n, f"f{n % 7}": n, "o": {f"k{n % 5}": n, "at": "2024-01-01"}, "v": n % 3 or "s"}]
        for n in range(60)
    ]
    tables: dict[int, pa.Table] = {}

    def work(start: int) -> None:
        for index in range(start, len(batches), 4):
            tables[index] = convert(schema, batches[index])

    threads = [threading.Thread(target=work, args=(start,)) for start in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = schema.schema
    for index, batch in enumerate(batches):
        for field in tables[index].schema:
            assert field.name in final.names
        assert to_records(tables[index]) == batch
    assert schema.json_columns == {"v"}
    assert len(schema.take_news()) == 1


class CountedReads:
    """The JSON reader's readings of whole batches (a page's own sample is not counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.explicit: list[list[str]] = []
        read = arrow_schema._read

        def counted(data: pa.Buffer, explicit: pa.Schema, new_fields: str) -> pa.Table:
            self.explicit.append(explicit.names)
            return read(data, explicit, new_fields)

        monkeypatch.setattr(arrow_schema, "_read", counted)


def test_a_tables_first_batch_with_dates_is_read_once_and_keeps_their_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader takes ISO strings for timestamps: the first page's sample says which fields
    are dates, so the whole batch is read once with them as text (not read again)."""
    pages = [
        [{"id": n, "at": f"2024-01-0{n % 9 + 1}T10:00:00Z", "day": "2024-02-01"} for n in range(3)],
        [{"id": 9, "at": "2024-03-01T00:00:00.123456+02:00", "day": "2024-02-02", "x": 1}],
    ]
    reads = CountedReads(monkeypatch)
    schema = TableSchema()
    table = convert(schema, *pages)
    assert reads.explicit == [[], ["at", "day"]]  # the first page's sample, then the batch
    assert types(table) == {"id": "int64", "at": "string", "day": "string", "x": "int64"}
    assert to_records(table) == [record for page in pages for record in page]
    # A date first seen past the first page still keeps its text (the batch read again).
    later = [[{"id": 10}], [{"id": 11, "seen": "2024-04-01T00:00:00Z"}]]
    reads.explicit.clear()
    table = convert(schema, *later)
    assert len(reads.explicit) == 2 and types(table)["seen"] == "string"
    assert to_records(table)[1] == {"id": 11, "seen": "2024-04-01T00:00:00Z"}


def _race(
    monkeypatch: pytest.MonkeyPatch, first: list[list[Any]], meanwhile: list[list[Any]]
) -> tuple[pa.Table, list[list[str]], TableSchema]:
    """Convert the batch of pages `first`, while its reading is held until `meanwhile`
    (another batch of the table, in another thread) has changed the schema; `first`'s table,
    the explicit fields of each of its readings, and the schema."""
    schema = TableSchema()
    parse = arrow_schema._parse
    held, released = threading.Event(), threading.Event()
    readings: list[list[str]] = []

    def parse_held(chunks: Any, explicit: pa.Schema) -> Any:
        if threading.current_thread().name == "first":
            readings.append(explicit.names)
            try:
                return parse(chunks, explicit)
            finally:
                held.set()
                assert released.wait(10)
        return parse(chunks, explicit)

    monkeypatch.setattr(arrow_schema, "_parse", parse_held)
    outcome: dict[str, pa.Table | Exception] = {}

    def convert_first() -> None:
        try:
            outcome["first"] = convert(schema, *first)
        except Exception as exc:  # raised below, in the test's thread
            outcome["first"] = exc

    thread = threading.Thread(target=convert_first, name="first")
    thread.start()
    assert held.wait(10)
    convert(schema, *meanwhile)
    released.set()
    thread.join(10)
    assert not thread.is_alive()
    if isinstance(outcome["first"], Exception):
        raise outcome["first"]
    return outcome["first"], readings, schema


def test_a_batch_whose_schema_another_changed_meanwhile_alike_is_not_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = [[{"id": 1, "name": "a", "at": "2024-01-01T00:00:00Z"}], [{"id": 2, "name": "b"}]]
    meanwhile = [{"id": 3, "name": "c", "at": "2024-01-02T00:00:00Z", "more": True}]
    table, readings, schema = _race(monkeypatch, first, [meanwhile])
    assert readings == [[]]  # read once: what the other batch decided agrees with it
    assert to_records(table) == [record for page in first for record in page]
    assert types(schema.schema) == {"id": "int64", "name": "string", "at": "string", "more": "bool"}


def test_a_batch_whose_schema_another_changed_meanwhile_otherwise_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other batch made `v` a float64 column: the held one's ints go into it, read again
    with that schema."""
    first = [{"id": 1, "v": 2, "t": "x"}, {"id": 2, "v": 3, "t": "y"}]
    meanwhile = [{"id": 3, "v": 4.5, "t": "z"}]
    table, readings, _ = _race(monkeypatch, [first], [meanwhile])
    assert readings == [[], ["id", "v", "t"]]
    assert types(table)["v"] == "double" and table["v"].to_pylist() == [2.0, 3.0]
    assert to_records(table) == first


def test_a_batch_whose_field_another_made_json_text_meanwhile_stores_it_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = [{"id": 1, "t": "x"}, {"id": 2, "t": "y"}]
    meanwhile = [{"id": 3, "t": "z"}, {"id": 4, "t": {"o": 1}}]
    table, readings, schema = _race(monkeypatch, [first], [meanwhile])
    assert readings == [[]] and schema.json_columns == {"t"}
    assert table["t__json"].to_pylist() == ['"x"', '"y"'] and to_records(table) == first


@pytest.mark.parametrize(
    ("value", "typed"),
    [([], [1]), ({}, {"a": 1}), ({"n": None}, {"a": 1}), ([{"n": None}], ["x"])],
    ids=["empty-list", "empty-object", "null-leaf", "list-of-null-leaves"],
)
def test_a_batch_raced_by_one_that_typed_a_field_it_holds_no_value_of_yet_keeps_it(
    monkeypatch: pytest.MonkeyPatch, value: Any, typed: Any
) -> None:
    """Read a second time (for a new date), a batch has no column for a field with no value
    yet: another batch typing that field meanwhile must not make its values vanish."""
    first = [[{"id": 1, "f": value}], [{"id": 2, "at": "2024-01-01"}]]
    table, readings, _ = _race(monkeypatch, first, [[{"id": 3, "f": typed}]])
    assert len(readings) == 2  # read again with the schema the other batch left
    expected = TableSchema()
    convert(expected, [{"id": 3, "f": typed}])
    assert to_records(table) == to_records(convert(expected, *first))


def test_a_list_whose_first_element_is_null_reads_back_in_every_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The JSON reader infers such a list as an array Arrow's own checks refuse."""
    alone = [{"id": 1, "n": [None, 1], "o": {"m": [None, "x"]}}]
    assert to_records(convert(TableSchema(), alone)) == alone
    dated = [[{"at": "2024-01-02T10:00:00Z", "n": [None, 1]}], [{"id": 1}]]
    assert to_records(convert(TableSchema(), *dated)) == [
        record for page in dated for record in page
    ]
    table, _, _ = _race(monkeypatch, [[{"id": 1, "n": [None, 1]}]], [[{"id": 3, "n": [2]}]])
    assert to_records(table) == [{"id": 1, "n": [None, 1]}]


def test_a_null_record_is_no_object_for_the_json_reader() -> None:
    """pyarrow's reader crashes the process on a batch whose first line is `null`. (A record
    that is no object is `{"value": record}`, and a null value reads as absent.)"""
    records = [None, {"a": 1}, 7]
    assert to_records(convert(TableSchema(), records)) == [{}, {"a": 1}, {"value": 7}]
    # Lines not ended by a newline are not vouched for either.
    assert to_records(TableSchema().convert([b'{"a": 1}\nnull'])) == [{"a": 1}, {}]


def test_dates_inside_an_object_of_a_first_batch_fix_no_other_leaf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only top-level dates are taken from the first page: fixing an object's type from it
    would make its int leaf refuse the next page's floats (and the batch take the slow path)."""
    slow: list[bytes] = []
    convert_slowly = TableSchema._convert_slowly
    monkeypatch.setattr(
        TableSchema,
        "_convert_slowly",
        lambda self, data: slow.append(data) or convert_slowly(self, data),
    )
    pages = [[{"s": {"at": "2024-01-01T00:00:00Z", "v": 1}}], [{"s": {"v": 1.5}}]]
    table = convert(TableSchema(), *pages)
    assert slow == [] and types(table) == {"s": "struct<at: string, v: double>"}
    assert to_records(table) == [{"s": {"at": "2024-01-01T00:00:00Z", "v": 1}}, {"s": {"v": 1.5}}]


DRIFT = [
    [{"id": 1, "name": "a", "price": 1, "owner": {"login": "x"}, "tags": ["t"]}, {"id": 2}],
    [{"id": 3, "price": 2.5, "owner": {"login": "y", "site": {"admin": True}}, "note": "n"}],
    [{"id": 4, "price": "free", "owner": {"login": "z", "site": {"admin": False, "rank": 1}}}],
    [{"id": 5, "owner": "gone", "tags": [], "name": {"first": "b"}}, 7],
    [{"id": 6, "owner": {"login": "w"}, "tags": ["u", "v"], "price": 3, "Note": 1}],
    [{"id": 7, "deep": {"a": {"b": {"c": [{"d": 1}]}}}, "name": "c"}],
]


def test_drifting_batches_land_in_parquet_and_delta_every_value_once(tmp_path: Path) -> None:
    written: list[Any] = []
    schema = TableSchema()
    delta = tmp_path / "delta"
    for page, records in enumerate(DRIFT):
        if page == 3:  # a resumed run: the schema as the Delta table holds it
            schema = TableSchema(pa.schema(DeltaTable(delta).schema().to_arrow()))
        table = convert(schema, records)
        rows = pa.array(range(len(written), len(written) + len(records)), pa.int64())
        table = table.append_column("_tc_page", pa.array([page] * len(records), pa.int64()))
        table = table.append_column("_tc_row", rows)
        pq.write_table(table, tmp_path / f"page-{page}.parquet")
        write_deltalake(delta, table, mode="append", schema_mode="merge")
        written += [record if isinstance(record, dict) else {"value": record} for record in records]

    def check(table: pa.Table) -> None:
        read = to_records(table.sort_by("_tc_row"))
        assert len(read) == len(written) and all(map(same, read, written)), read

    check(DeltaTable(delta).to_pyarrow_table())
    files = sorted(tmp_path.glob("*.parquet"))
    check(ds.dataset(files, schema=table.schema).to_table())
    # File by file: DuckDB 2.0.1's union_by_name fails ("requires a flat vector") when a struct
    # gained a struct field after a file that holds a null of it.
    by_duckdb = [duckdb.read_parquet(str(path)).arrow().read_all() for path in files]
    check(pa.concat_tables(by_duckdb, promote_options="permissive"))
    assert schema.json_columns == {"price", "owner", "name", "Note"}
