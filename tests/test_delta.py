"""Delta tables: merge by primary key across incremental runs, a replace that readers see whole
or not at all, and one writer per table. Against a small API on 127.0.0.1 whose records the
test edits between runs (the demo's data never changes)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.failpoints import ENV as CRASH_AT

from helpers import CLI, JsonApi, run_engine

deltalake = pytest.importorskip("deltalake")


class EditableApi(JsonApi):
    """`GET /items?updated_since=...` -> {"items": [records updated since]}, records by id."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, Any]] = {}
        super().__init__(self._items)
        self.url += "/items"

    def _items(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        since = query.get("updated_since", "")
        items = [r for r in self.records.values() if r["updated_at"] >= since]
        return {"items": sorted(items, key=lambda r: r["id"])}

    def put(self, n: int, value: str, minute: int) -> None:
        self.records[n] = {"id": n, "value": value, "updated_at": f"2025-01-01T00:{minute:02d}:00Z"}


@pytest.fixture
def api() -> Iterator[EditableApi]:
    api = EditableApi()
    yield api
    api.close()


def _config(api: EditableApi, write: str, extra: str = "") -> str:
    return f"""
out: lake
format: delta
sources:
  items:
    url: {api.url}
    records: items
    write: {write}
{extra}"""


MERGE = """    primary_key: id
    incremental:
      cursor_field: updated_at
      param: updated_since
      primary_key: id
"""


def _rows(table: Path) -> list[dict[str, Any]]:
    rows = deltalake.DeltaTable(str(table)).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda row: row["id"])


async def test_merge_keeps_one_row_per_key_with_the_newest_values(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    for n in range(5):
        api.put(n, "first", minute=n)
    config = write_config(_config(api, "merge", MERGE))
    result, _ = await run_engine(config)
    assert result.exit_code == 0
    table = config.out / "items"
    assert [row["value"] for row in _rows(table)] == ["first"] * 5

    api.put(3, "second", minute=10)  # updated
    api.put(4, "second", minute=11)
    api.put(5, "new", minute=12)  # inserted
    result, _ = await run_engine(config)
    assert result.exit_code == 0
    rows = _rows(table)
    assert [row["id"] for row in rows] == [0, 1, 2, 3, 4, 5]
    assert [row["value"] for row in rows] == ["first"] * 3 + ["second", "second", "new"]


def test_merge_on_files_is_a_config_error(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    from tui_connector.config import ConfigError

    with pytest.raises(ConfigError, match="only format: delta can do"):
        write_config(_config(api, "merge", MERGE).replace("format: delta", "format: parquet"))


def _run_cli(config: Path, env: dict[str, str] | None = None) -> Any:
    import os
    import subprocess

    return subprocess.run(
        [*CLI, "run", str(config), "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def test_a_replace_is_seen_whole_or_not_at_all_through_a_kill(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    for n in range(4):
        api.put(n, "old", minute=n)
    config = write_config(_config(api, "replace"))
    assert _run_cli(config.path).returncode == 0
    table = config.out / "items"
    assert [row["value"] for row in _rows(table)] == ["old"] * 4
    version = deltalake.DeltaTable(str(table)).version()

    api.records.clear()
    for n in range(10, 16):
        api.put(n, "new", minute=n)
    killed = _run_cli(config.path, {CRASH_AT: "lake.before_swap"})
    assert killed.returncode == -9, killed.stderr
    # Killed with the new set staged: readers still see the old set, whole.
    assert deltalake.DeltaTable(str(table)).version() == version
    assert [row["value"] for row in _rows(table)] == ["old"] * 4

    finished = _run_cli(config.path)
    assert finished.returncode == 0, finished.stderr
    rows = _rows(table)
    assert [row["id"] for row in rows] == list(range(10, 16))
    assert {row["value"] for row in rows} == {"new"}
    assert deltalake.DeltaTable(str(table)).version() == version + 1  # one swap commit
    assert not (config.out / "_tc_staging" / "items").exists()


def test_a_second_writer_is_refused_and_a_killed_runs_lock_taken_over(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    api.put(1, "x", minute=1)
    config = write_config(_config(api, "append"))
    lock = config.out / "_tc_locks" / "items.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"owner": "elsewhere:/other/state.db", "pid": 1, "since": "then"}))
    refused = _run_cli(config.path)
    assert refused.returncode != 0
    assert "is being written by another run (state elsewhere:/other/state.db" in refused.stdout
    assert f"delete {lock}" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not (config.out / "items").exists()

    # A lock our own state database left (its run was killed) is taken over, then released.
    lock.write_text(lock.read_text().replace("elsewhere:/other/state.db", _owner(config)))
    assert _run_cli(config.path).returncode == 0
    assert [row["id"] for row in _rows(config.out / "items")] == [1]
    assert not lock.exists()


def test_a_run_killed_in_a_tables_first_commit_leaves_data_files_the_next_run_clears(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    """Killed while delta-rs wrote the first commit: its data file and an empty log, and our
    own state's lock. Those files are no version's: the next run removes them and writes."""
    api.put(1, "x", minute=1)
    config = write_config(_config(api, "append"))
    table = config.out / "items"
    (table / "_delta_log").mkdir(parents=True)
    orphan = table / "part-00000-aa4b7424-ba2e-4ef0-9a73-2a39d30b1081-c000.snappy.parquet"
    orphan.write_bytes(b"PAR1 half written")
    lock = config.out / "_tc_locks" / "items.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"owner": _owner(config), "pid": 1, "since": "then"}))
    finished = _run_cli(config.path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert [row["id"] for row in _rows(table)] == [1]
    assert not orphan.exists()

    # Without a lock of our own the same files are someone else's: refused, left alone.
    (config.path.parent / "other").mkdir()
    other = write_config(_config(api, "append"), name="other/sources.yaml")
    foreign = other.out / "items"
    (foreign / "_delta_log").mkdir(parents=True)
    (foreign / orphan.name).write_bytes(b"PAR1 someone else's")
    refused = _run_cli(other.path)
    assert refused.returncode != 0
    assert f"{foreign} holds files but is not a Delta table" in refused.stdout
    assert (foreign / orphan.name).exists()


def _owner(config: LoadedConfig) -> str:
    from tui_connector.sinks.locks import run_owner

    return run_owner(config.state)


@pytest.mark.parametrize("parallel", [False, True], ids=["in-order", "parallel-pages"])
def test_a_kill_between_the_delta_commit_and_the_checkpoint_neither_loses_nor_repeats(
    demo: Any, write_config: Callable[..., LoadedConfig], parallel: bool
) -> None:
    """The commit of the third batch is in the table's log, its checkpoint is not: the
    resume finds the table a batch ahead and removes that batch's rows before fetching it
    again."""
    from collections import Counter

    from helpers import RECORDS, expected_ids

    config = write_config(f"""
out: lake
format: delta
commit_interval: 0
sources:
  customers:
    url: {demo.url}/v1/pages/customers
    records: data
    concurrency: 3
    pagination:
      type: page_number
      size_param: per_page
      size: 20
      parallel: {str(parallel).lower()}
      stop:
        total_records: total
""")
    killed = _run_cli(config.path, {CRASH_AT: "lake.after_rename:3"})
    assert killed.returncode == -9, killed.stderr
    table = deltalake.DeltaTable(str(config.out / "customers"))
    assert table.transaction_version("tui-connector/all") is not None
    finished = _run_cli(config.path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = _rows(config.out / "customers")
    assert Counter(row["id"] for row in rows) == expected_ids("customers", RECORDS)
    import sqlite3

    with sqlite3.connect(config.state) as db:
        (files,) = db.execute("select files from streams where source = 'customers'").fetchone()
    table = deltalake.DeltaTable(str(config.out / "customers"))
    assert table.transaction_version("tui-connector/all") == files


def test_a_directory_that_is_not_a_delta_table_is_refused_by_name(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    api.put(1, "x", minute=1)
    config = write_config(_config(api, "append"))
    foreign = config.out / "items"
    foreign.mkdir(parents=True)
    (foreign / "notes.csv").write_text("someone else's\n")
    refused = _run_cli(config.path)
    assert refused.returncode == 1
    assert f"{foreign} holds files but is not a Delta table" in refused.stdout
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.csv"]


def test_a_table_whose_columns_another_writer_typed_otherwise_keeps_every_value(
    api: EditableApi, write_config: Callable[..., LoadedConfig]
) -> None:
    """`id` and `value` exist already with other types: the run neither fails nor loses a
    value; what does not fit goes to JSON-text columns, and the other writer's row stays."""
    import pyarrow as pa

    from tui_connector.sinks.arrow_schema import to_records

    api.put(1, "x", minute=1)
    config = write_config(_config(api, "append"))
    table = config.out / "items"
    deltalake.write_deltalake(str(table), pa.table({"id": ["elsewhere"], "value": [3.5]}))
    finished = _run_cli(config.path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    read = deltalake.DeltaTable(str(table)).to_pyarrow_table()
    assert "value__json" in read.column_names  # a string into a float64 column
    records = sorted(to_records(read), key=lambda record: str(record["id"]))
    assert records == [
        {"id": 1, "updated_at": "2025-01-01T00:01:00Z", "value": "x"},
        {"id": "elsewhere", "value": 3.5},
    ]


def test_a_table_recreated_behind_the_states_back_is_noticed(
    demo: Any, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(f"""
out: lake
format: delta
commit_interval: 0
sources:
  customers:
    url: {demo.url}/v1/pages/customers
    records: data
    concurrency: 1
    pagination:
      type: page_number
      size_param: per_page
      size: 100
""")
    assert _run_cli(config.path).returncode == 0
    table = deltalake.DeltaTable(str(config.out / "customers"))
    batches = table.transaction_version("tui-connector/all")
    assert batches is not None and batches > 1
    rows = table.to_pyarrow_table()
    shutil.rmtree(config.out / "customers")  # and another tool makes a new one, same rows
    deltalake.write_deltalake(str(config.out / "customers"), rows)
    again = _run_cli(config.path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"holds 0 of the {batches} batches its checkpoint committed" in again.stdout


def test_a_replace_killed_before_some_partitions_started_completes_on_the_next_run(
    demo: Any, write_config: Callable[..., LoadedConfig]
) -> None:
    """Partitions that never started in the killed replace still hold the checkpoints of the
    run before; the next run fetches them into the staged table instead of calling them
    complete (or failing on their rows' absence from it)."""
    from collections import Counter

    from helpers import RECORDS, expected_ids

    config = write_config(f"""
out: lake
format: delta
commit_interval: 0
sources:
  stores:
    url: {demo.url}/v1/pages/{{store}}
    records: data
    write: replace
    concurrency: 1
    params: {{per_page: 50}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
    partitions:
      type: values
      values: [north, south, east]
      path: store
""")
    assert _run_cli(config.path).returncode == 0
    killed = _run_cli(config.path, {CRASH_AT: "lake.after_rename:1"})
    assert killed.returncode == -9, killed.stderr
    finished = _run_cli(config.path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = _rows(config.out / "stores")
    wanted = sum((expected_ids(store, RECORDS) for store in ("north", "south", "east")), Counter())
    assert Counter(row["id"] for row in rows) == wanted
    assert not (config.out / "_tc_staging" / "stores").exists()


async def test_a_clean_up_that_deletes_nothing_still_sets_the_streams_version_back(
    tmp_path: Path,
) -> None:
    """delta-rs commits nothing for a delete that matches no row: the version the table
    reports for the stream must still become the checkpoint's count."""
    import pyarrow as pa

    from tui_connector.sinks import StreamKey
    from tui_connector.sinks.delta import DeltaTableSink, Transaction, app_id

    stream = StreamKey("items", "gone")
    rows = pa.table({"id": [1], "_tc_partition": ["other"], "_tc_page": [0]})
    properties = deltalake.CommitProperties(app_transactions=[Transaction(app_id(stream), 3)])
    deltalake.write_deltalake(str(tmp_path / "items"), rows, commit_properties=properties)
    sink = DeltaTableSink("items", str(tmp_path), {})
    try:
        assert await sink.remove_uncovered(stream, keep_below=0, batches=0) == 0
    finally:
        await sink.aclose()
    table = deltalake.DeltaTable(str(tmp_path / "items"))
    assert table.transaction_version(app_id(stream)) == 0
    assert table.to_pyarrow_table().num_rows == 1


async def test_the_last_batches_of_a_tables_streams_wait_for_no_commit_gap(
    tmp_path: Path,
) -> None:
    """Batches wait up to the commit gap for other streams' to join their commit; once every
    stream that wrote has sent its last batch for now, nothing more can join, and the commit
    goes at once (a run's end waited out the gap before: up to half a second of nothing)."""
    import asyncio

    from tui_connector.sinks import StreamKey
    from tui_connector.sinks.delta import DeltaTableSink

    # The hang guard below is 10 s: a commit that waited for the gap fails the test (and
    # closing the sink then waits the gap out).
    gap = 60.0
    sink = DeltaTableSink("items", str(tmp_path), {}, commit_gap=gap)
    streams = [StreamKey("items", name) for name in ("a", "b")]
    try:
        # A first commit, so that the next ones are due only a gap later.
        first = sink.stage([{"id": "first"}], streams[0])
        assert await asyncio.wait_for(sink.write_batch(streams[0], 0, [first]), 10)
        writes = [
            asyncio.create_task(
                sink.write_batch(stream, 1, [sink.stage([{"id": stream.partition}], stream)])
            )
            for stream in streams
        ]
        lasts = [
            asyncio.create_task(
                sink.write_batch(
                    stream, 2, [sink.stage([{"id": f"{stream.partition}2"}], stream)], last=True
                )
            )
            for stream in streams
        ]
        assert await asyncio.wait_for(asyncio.gather(*writes, *lasts), 10) == [True] * 4
    finally:
        await sink.aclose()
    table = deltalake.DeltaTable(str(tmp_path / "items"))
    ids = sorted(row["id"] for row in table.to_pyarrow_table(columns=["id"]).to_pylist())
    assert ids == ["a", "a2", "b", "b2", "first"]


async def test_a_stream_whose_last_batch_closed_before_its_drain_holds_no_commit_back(
    tmp_path: Path,
) -> None:
    """A stream whose last page filled its batch has no batch open when it drains: the
    drain still tells the table that nothing follows, so the others' last batches commit at
    once, not a gap later."""
    import asyncio

    from tui_connector.sinks import StreamKey
    from tui_connector.sinks.batching import BatchWriter
    from tui_connector.sinks.delta import DeltaTableSink

    sink = DeltaTableSink("items", str(tmp_path), {}, commit_gap=60.0)  # the guard: 10 s
    a, b = StreamKey("items", "a"), StreamKey("items", "b")
    commits: list[int] = []
    try:
        assert await asyncio.wait_for(sink.write_batch(a, 0, [sink.stage([{"id": "0"}], a)]), 10)
        closed_by_size = BatchWriter(
            sink, a, lambda batch, wrote: commits.append(wrote), max_seconds=60, max_bytes=1
        )
        closed_by_drain = BatchWriter(
            sink, b, lambda batch, wrote: commits.append(wrote), max_seconds=60
        )
        closed_by_size.put(1, [{"id": "a"}], None)  # full at once: sent before the drain
        closed_by_drain.put(1, [{"id": "b"}], None)
        await asyncio.wait_for(asyncio.gather(closed_by_size.drain(), closed_by_drain.drain()), 10)
    finally:
        await sink.aclose()
    assert commits == [True, True]  # each page's batch once; the empty last one commits none
    table = deltalake.DeltaTable(str(tmp_path / "items"))
    assert sorted(row["id"] for row in table.to_pyarrow_table(columns=["id"]).to_pylist()) == [
        "0",
        "a",
        "b",
    ]
