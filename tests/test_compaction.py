"""Compacting a lake of files (`tui-connector compact`, sinks.compaction): runs of small batch
files merged into larger ones on local disk and through obstore, every record kept exactly once,
the checkpoints' file counts kept true, and runs that resume after it, even when the compaction
or the run before it was killed midway."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_backfill import stream_rows
from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.failpoints import COMPACT_POINTS
from tui_connector.failpoints import ENV as CRASH_AT
from tui_connector.sinks.arrow_schema import to_records
from tui_connector.sinks.compaction import (
    JOURNALS,
    MERGED_PREFIX,
    LakeFiles,
    LocalFiles,
    ObjectFiles,
    finish_interrupted,
    prepare,
    publish,
)
from tui_connector.state.sqlite import RunLock

from helpers import cli, expected_ids, lake_ids, run_engine

Factory = Callable[..., DemoServer]
Write = Callable[..., LoadedConfig]

# Ten records a page, a file per page: an incremental source whose later runs append.
CHANGES = """
format: {format}
commit_interval: 0
sources:
  changes:
    url: {url}/v1/cursor/changes
    records: items
    params: {{limit: 10}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
    incremental:
      cursor_field: updated_at
      initial: "2024-01-01T00:00:00Z"
      param: updated_since
      primary_key: id
"""

# Two value partitions whose pages are fetched in parallel (pages done above a checkpoint).
REGIONS = """
format: parquet
commit_interval: 0
sources:
  regions:
    url: {url}/v1/pages/{{ds}}
    records: data
    concurrency: 4
    params: {{per_page: 10}}
    partitions: {{type: values, values: [north, south], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


def page_files(out: Path, source: str, suffix: str = ".parquet") -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.glob(f"{source}/*/page-*{suffix}"))


def parquet_ids(out: Path, source: str, partition: str = "*") -> Counter[str]:
    """Every record id in a source's Parquet files, read by DuckDB."""
    files = sorted(str(p) for p in out.glob(f"{source}/{partition}/page-*.parquet"))
    if not files:
        return Counter()
    query = f"SELECT id FROM read_parquet({files!r}, union_by_name = true)"
    return Counter(row[0] for row in duckdb.sql(query).fetchall())


def ids(out: Path, source: str, format: str) -> Counter[str]:
    return parquet_ids(out, source) if format == "parquet" else lake_ids(out, source)


def compact(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return cli("compact", "--config", str(config), *args, env=env)


@pytest.mark.parametrize("format", ["parquet", "jsonl"])
async def test_compact_merges_a_streams_files_and_later_runs_append_exactly_once(
    demo_server_factory: Factory, write_config: Write, format: str
) -> None:
    server = demo_server_factory(records=100)
    config = write_config(CHANGES.format(url=server.url, format=format))
    suffix = f".{format}"
    result, _ = await run_engine(config)
    assert result.done == ["changes"]
    assert len(page_files(config.out, "changes", suffix)) == 10
    assert stream_rows(config.state, "changes")["all"]["files"] == 10

    done = compact(config.path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"changes: {format}: 10 files → 1"
    assert page_files(config.out, "changes", suffix) == [f"changes/all/page-000000000{suffix}"]
    assert ids(config.out, "changes", format) == expected_ids("changes", 100)
    assert stream_rows(config.state, "changes")["all"]["files"] == 1
    assert not list(config.out.rglob(f"{MERGED_PREFIX}*"))
    assert not list((config.out / JOURNALS).iterdir())

    server.update_knobs(records=160)  # sixty newer records: the next run appends them
    result, _ = await run_engine(config)
    assert result.done == ["changes"], result
    assert ids(config.out, "changes", format) == expected_ids("changes", 160)
    files = page_files(config.out, "changes", suffix)
    assert len(files) > 1
    assert stream_rows(config.state, "changes")["all"]["files"] == len(files)

    again = compact(config.path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"changes: {format}: {len(files)} files → 1"
    assert ids(config.out, "changes", format) == expected_ids("changes", 160)
    result, _ = await run_engine(config)  # nothing new; the lake holds what it counts
    assert result.done == ["changes"], result
    assert ids(config.out, "changes", format) == expected_ids("changes", 160)
    nothing = compact(config.path)
    assert nothing.stdout.strip() == f"changes: {format}: 1 files, none to merge"


def test_a_run_killed_midway_resumes_exactly_once_after_a_compaction(
    demo_server_factory: Factory, tmp_path: Path
) -> None:
    server = demo_server_factory(records=150, latency_ms=5)
    config = tmp_path / "sources.yaml"
    config.write_text(REGIONS.format(url=server.url))
    out, state = tmp_path / "lake", tmp_path / ".tui-connector" / "state.db"
    killed = cli("run", "--headless", str(config), env={CRASH_AT: "lake.after_rename:20"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = len(page_files(out, "regions"))
    # Only files a committed checkpoint counts are merged; how many it counted at the kill
    # depends on when the last group commit happened.
    mergeable = any(row["files"] >= 2 for row in stream_rows(state, "regions").values())

    done = compact(config)
    assert done.returncode == 0, done.stderr
    if mergeable:
        assert len(page_files(out, "regions")) < before, done.stdout
    rows = stream_rows(state, "regions")
    assert {row["status"] for row in rows.values()} != {"done"}
    for partition, row in rows.items():
        assert row["files"] <= len(list((out / "regions" / partition).glob("page-*"))), row

    final = cli("run", "--headless", str(config))
    assert final.returncode == 0, final.stdout + final.stderr
    for region in ("north", "south"):
        assert parquet_ids(out, "regions", region) == expected_ids(region, 150), region
    for partition, row in stream_rows(state, "regions").items():
        assert row["files"] == len(list((out / "regions" / partition).glob("page-*"))), row


@pytest.mark.parametrize("then", ["run", "compact"])
@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "hit"),
    [(COMPACT_POINTS[0], 1), (COMPACT_POINTS[1], 1), (COMPACT_POINTS[1], 2)],
)
def test_a_compaction_killed_anywhere_leaves_a_lake_that_resumes_exactly_once(
    demo_server_factory: Factory, tmp_path: Path, point: str, hit: int, then: str
) -> None:
    server = demo_server_factory(records=100)
    config = tmp_path / "sources.yaml"
    config.write_text(CHANGES.format(url=server.url, format="parquet"))
    out, state = tmp_path / "lake", tmp_path / ".tui-connector" / "state.db"
    assert cli("run", "--headless", str(config)).returncode == 0
    stream = out / "changes" / "all"
    largest = max(path.stat().st_size for path in stream.iterdir())
    # Three files a merged one at most: ten files make several merges.
    target = str(3 * largest)

    killed = compact(config, "--target-size", target, env={CRASH_AT: f"{point}:{hit}"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    counted = stream_rows(state, "changes")["all"]["files"]
    assert counted < 10  # lowered before any file went...
    assert len(list(stream.glob("page-*.parquet"))) >= counted  # ...so a resume never refuses
    journal = out / JOURNALS / "changes.json"
    assert journal.exists() == (point == "compact.after_replace")

    if then == "run":
        server.update_knobs(records=130)
        finished = cli("run", "--headless", str(config))
        assert finished.returncode == 0, finished.stdout + finished.stderr
        expected = expected_ids("changes", 130)
    else:
        finished = compact(config, "--target-size", target)
        assert finished.returncode == 0, finished.stdout + finished.stderr
        expected = expected_ids("changes", 100)
        assert not list(stream.glob(f"{MERGED_PREFIX}*"))
    assert not journal.exists()
    assert parquet_ids(out, "changes") == expected
    files = len(list(stream.glob("page-*.parquet")))
    assert stream_rows(state, "changes")["all"]["files"] <= files

    # And the lake goes on: compacted again, then a run that appends.
    assert compact(config).returncode == 0
    assert stream_rows(state, "changes")["all"]["files"] == 1
    server.update_knobs(records=150)
    assert cli("run", "--headless", str(config)).returncode == 0
    assert parquet_ids(out, "changes") == expected_ids("changes", 150)


def test_compact_is_refused_while_a_run_holds_the_state(tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text("format: parquet\nsources:\n  a:\n    url: http://127.0.0.1:9/a\n")
    state = tmp_path / ".tui-connector" / "state.db"
    state.parent.mkdir()
    state.touch()
    lock = RunLock(state)
    lock.acquire()
    try:
        refused = compact(config)
    finally:
        lock.release()
    assert refused.returncode == 2
    assert "is in use by another run" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown source nope; the config defines: a"),
        (["--retention", "2 fortnights"], "is not a retention"),
        (["--target-size", "huge"], "is not a size"),
    ],
)
def test_compact_says_what_is_wrong_with_its_arguments(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n  a:\n    url: http://127.0.0.1:9/a\n    headers: {X: '${NO_SUCH_SECRET}'}\n"
    )
    (tmp_path / ".tui-connector").mkdir()
    (tmp_path / ".tui-connector" / "state.db").touch()
    result = compact(config, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- the merge itself, on local disk and through obstore --------------------------------------


def _write(files: LakeFiles, path: str, table: pa.Table) -> None:
    with files.writer(path) as out:
        pq.write_table(table, out)


def _records(files: LakeFiles, path: str) -> list[dict[str, Any]]:
    with files.reader(path) as handle:
        return to_records(pq.read_table(handle))


@pytest.fixture(params=["local", "obstore"])
def lake_files(request: pytest.FixtureRequest, tmp_path: Path) -> LakeFiles:
    if request.param == "local":
        return LocalFiles(tmp_path)
    return ObjectFiles.open(tmp_path.as_uri(), {})


def test_files_merge_while_their_columns_agree_and_keep_every_row_in_order(
    lake_files: LakeFiles,
) -> None:
    pages: list[list[dict[str, Any]]] = [
        [{"id": 0, "a": 1}, {"id": 1, "a": 2}],
        [{"id": 2, "a": 3, "b": {"x": 1}}],  # a new column
        [{"id": 3, "b": {"x": 2, "y": "more"}}],  # a struct that grew, a column missing
        [{"id": 4, "a": "text"}],  # a's type changed: a new file starts
        [{"id": 5, "a": "more text"}],
        [{"id": 6, "a": 7}],  # named at the checkpoint: not covered, left alone
    ]
    names = [f"page-{n:09d}.parquet" for n in range(len(pages))]
    for name, records in zip(names, pages, strict=True):
        _write(lake_files, f"s/p/{name}", pa.Table.from_pylist(records))
    _write(lake_files, f"s/p/{MERGED_PREFIX}left-by-a-crash.part", pa.table({"x": [1]}))

    compaction = prepare(lake_files, "s/p", ".parquet", below=5, also=frozenset({5}))
    assert [(m.into, m.replaces) for m in compaction.merges] == [
        (names[0], (names[1], names[2])),
        (names[3], (names[4],)),
    ]
    assert (compaction.found, compaction.files_after) == (6, 3)
    # Written aside: the page files are as they were.
    assert (
        sorted(name for name, _ in lake_files.listing("s/p") if name.startswith("page-")) == names
    )
    publish(lake_files, "s", compaction)

    assert sorted(name for name, _ in lake_files.listing("s/p")) == [names[0], names[3], names[5]]
    assert lake_files.listing(JOURNALS) == []
    assert _records(lake_files, f"s/p/{names[0]}") == pages[0] + pages[1] + pages[2]
    assert _records(lake_files, f"s/p/{names[3]}") == pages[3] + pages[4]
    assert _records(lake_files, f"s/p/{names[5]}") == pages[5]


def test_an_interrupted_compaction_is_finished_by_whoever_opens_the_source_next(
    lake_files: LakeFiles,
) -> None:
    for n in range(3):
        with lake_files.writer(f"s/p/page-{n:09d}.jsonl") as out:
            out.write(json.dumps({"id": n}).encode() + b"\n")
    compaction = prepare(lake_files, "s/p", ".jsonl", below=3)
    assert len(compaction.merges) == 1
    # What step 3 leaves: the journal written, nothing moved yet.
    journal = {"directory": "s/p", "merges": [vars(m) for m in compaction.merges]}
    journal["merges"][0]["replaces"] = list(journal["merges"][0]["replaces"])
    lake_files.put(f"{JOURNALS}/s.json", json.dumps(journal).encode())

    assert finish_interrupted(lake_files, "s")
    assert finish_interrupted(lake_files, "s") is False  # the journal is gone
    assert [name for name, _ in lake_files.listing("s/p")] == ["page-000000000.jsonl"]
    with lake_files.reader("s/p/page-000000000.jsonl") as handle:
        assert handle.read() == b'{"id": 0}\n{"id": 1}\n{"id": 2}\n'
