"""Schemas that follow the data, end to end: records whose fields appear, disappear, change
type and nest deeper across pages and partitions land in Parquet files and a Delta table with
every value, once, read back as they were sent."""

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

PAGES = 5
PER_PAGE = 3


def drifting(partition: str, page: int, i: int) -> dict[str, Any]:
    """Page 0 sets the shape; later pages add fields, grow a struct, change types, nest
    deeper and drop fields; partition b carries a field the others never have."""
    record: dict[str, Any] = {"id": f"{partition}-{page}-{i}"}
    if page == 0:
        record |= {"price": 1 + i, "meta": {"a": i}}
    elif page == 1:
        record |= {"price": 2, "meta": {"a": 2, "b": "x"}, "tags": ["t", "u"]}
    elif page == 2:
        record |= {"price": f"{i} EUR", "meta": {"a": 3}, "tags": [1]}  # a number -> a string
    elif page == 3:
        record |= {"meta": {"a": {"deep": [1, {"deeper": True}]}}}  # a scalar -> an object
    # page 4: only the id: every other field is missing
    if partition == "b":
        record["only_b"] = page
    return record


def _page(path: str, query: dict[str, str]) -> dict[str, Any]:
    partition, page = path.rsplit("/", 1)[-1], int(query["page"])
    items = [drifting(partition, page, i) for i in range(PER_PAGE)] if page < PAGES else []
    return {"items": items}


@pytest.fixture
def api() -> Iterator[JsonApi]:
    api = JsonApi(_page)
    yield api
    api.close()


def _expected() -> dict[str, dict[str, Any]]:
    records = (
        drifting(partition, page, i)
        for partition in ("a", "b")
        for page in range(PAGES)
        for i in range(PER_PAGE)
    )
    return {record["id"]: record for record in records}


def _read(out: Path, format: str) -> list[dict[str, Any]]:
    from tui_connector.sinks.arrow_schema import to_records

    if format == "delta":
        return to_records(deltalake.DeltaTable(str(out / "drift")).to_pyarrow_table())
    return [
        record
        for path in sorted(out.glob("drift/*/*.parquet"))
        for record in to_records(pq.read_table(path))
    ]


@pytest.mark.parametrize("format", ["parquet", "delta"])
async def test_drifting_records_land_whole_and_once(
    api: JsonApi, write_config: Callable[..., LoadedConfig], format: str
) -> None:
    config = write_config(f"""
out: lake
format: {format}
commit_interval: 0
sources:
  drift:
    url: {api.url}/drift/{{part}}
    records: items
    partitions:
      type: values
      path: part
      values: [a, b]
    pagination:
      type: page_number
      start: 0
""")
    result, engine = await run_engine(config)
    assert result.exit_code == 0
    rows = _read(config.out, format)
    assert sorted(row["id"] for row in rows) == sorted(_expected())
    for row in rows:
        assert row == _expected()[row["id"]]
    info = engine.sink.info("drift")
    assert set(info.json_columns) == {"price", "meta", "tags"}  # tags: strings, then a number
    assert "only_b: int64" in (info.schema or "")
