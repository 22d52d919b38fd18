"""Dictionary encoding where it pays: a batch's Parquet file (plain, or in a Delta table)
dictionary-encodes the columns that repeat their values and writes distinct values plain, still
compressed; every value reads back as sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tui_connector.config import LoadedConfig

from helpers import JsonApi, run_engine

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
deltalake = pytest.importorskip("deltalake")

from tui_connector.sinks.dictionaries import dictionary_columns, distinct_columns  # noqa: E402

PAGES = 4
PER_PAGE = 300


def order(page: int, i: int) -> dict[str, Any]:
    n = page * PER_PAGE + i
    return {
        "id": f"order-{n}",  # distinct
        "amount": n * 1.25,  # distinct
        "status": ("new", "paid", "sent")[n % 3],  # repeats
        "country": None if n % 5 == 0 else ("NL", "DE")[n % 2],  # repeats, with nulls
        "customer": {"tier": ("gold", "basic")[n % 2], "since": f"2024-01-{1 + n % 28:02d}"},
        "lines": [{"sku": f"sku-{n}"}],
        "flag": n % 2 == 0,
    }


def _page(path: str, query: dict[str, str]) -> dict[str, Any]:
    page = int(query["page"])
    return {"items": [order(page, i) for i in range(PER_PAGE)] if page < PAGES else []}


@pytest.fixture
def api() -> Iterator[JsonApi]:
    api = JsonApi(_page)
    yield api
    api.close()


def dictionary_encoded(path: Path) -> dict[str, bool]:
    """Each column chunk of a Parquet file: whether it is dictionary-encoded (every row group
    agrees); and every chunk is Snappy-compressed."""
    metadata = pq.ParquetFile(path).metadata
    encoded: dict[str, bool] = {}
    for group in range(metadata.num_row_groups):
        for index in range(metadata.num_columns):
            column = metadata.row_group(group).column(index)
            assert column.compression == "SNAPPY", column.path_in_schema
            uses = "RLE_DICTIONARY" in column.encodings or "PLAIN_DICTIONARY" in column.encodings
            assert encoded.setdefault(column.path_in_schema, uses) == uses
    return encoded


def test_a_sample_of_each_scalar_column_decides_and_nested_columns_keep_dictionaries() -> None:
    table = pa.Table.from_pylist([order(0, i) for i in range(PER_PAGE)])
    assert sorted(distinct_columns(table)) == ["amount", "id"]
    assert dictionary_columns(table) == [
        "status",
        "country",
        "customer.tier",
        "customer.since",
        "lines.list.element.sku",
        "flag",  # Parquet encodes booleans its own way whatever this says
    ]
    repeating = table.select(["status", "country", "flag"])
    assert distinct_columns(repeating) == [] and dictionary_columns(repeating) is True
    # Half the values distinct still repeats; a column of nulls has nothing to decide.
    assert distinct_columns(pa.table({"half": ["a", "a", "b", "b"], "none": pa.nulls(4)})) == []


@pytest.mark.parametrize("format", ["parquet", "delta"])
async def test_repeating_columns_are_dictionary_encoded_and_distinct_ones_plain(
    api: JsonApi, write_config: Callable[..., LoadedConfig], format: str
) -> None:
    config = write_config(f"""
out: lake
format: {format}
sources:
  orders:
    url: {api.url}/orders
    records: items
    pagination:
      type: page_number
      start: 0
""")
    result, _ = await run_engine(config)
    assert result.exit_code == 0
    files = sorted((config.out / "orders").rglob("*.parquet"))
    assert files
    for path in files:
        encoded = dictionary_encoded(path)
        assert not encoded["id"] and not encoded["amount"], path
        assert encoded["status"] and encoded["country"], path
        assert encoded["customer.tier"], path
        if format == "delta":
            assert encoded["_tc_partition"] and encoded["_tc_page"], path
    if format == "delta":
        rows = deltalake.DeltaTable(str(config.out / "orders")).to_pyarrow_table()
    else:
        rows = pa.concat_tables(pq.read_table(path) for path in files)
    by_id = {row["id"]: row for row in rows.to_pylist()}
    expected = [order(page, i) for page in range(PAGES) for i in range(PER_PAGE)]
    assert len(by_id) == rows.num_rows == len(expected)
    for record in expected:
        assert {name: by_id[record["id"]][name] for name in record} == record
