"""Delta tables compacted and vacuumed by `tui-connector compact` (sinks.maintenance), and what
`status` shows of each source's lake: its format, destination and table version."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from test_backfill import stream_rows
from test_compaction import CHANGES, compact, parquet_ids
from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.sinks import StreamKey
from tui_connector.sinks.delta import STAGING, app_id
from tui_connector.sinks.maintenance import parse_retention, table_retention_hours
from tui_connector.state.sqlite import StateStore

from helpers import cli, expected_ids, free_port, run_engine

Factory = Callable[..., DemoServer]
Write = Callable[..., LoadedConfig]


def table_ids(table: Path) -> Counter[str]:
    return Counter(DeltaTable(str(table)).to_pyarrow_table(columns=["id"])["id"].to_pylist())


def data_files(table: Path) -> list[Path]:
    return list(table.glob("*.parquet"))


async def test_compact_optimizes_and_vacuums_a_delta_table_and_runs_go_on(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=100)
    config = write_config(CHANGES.format(url=server.url, format="delta"))
    table = config.out / "changes"
    result, _ = await run_engine(config)
    assert result.done == ["changes"]
    version = DeltaTable(str(table)).version()
    assert len(DeltaTable(str(table)).file_uris()) == 10

    done = compact(config.path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"changes: delta: version {version} → {version + 1}: 10 files compacted into 1; "
        "vacuum deleted 0 files unused for 168 h"
    )
    compacted = DeltaTable(str(table))
    assert len(compacted.file_uris()) == 1
    assert table_ids(table) == expected_ids("changes", 100)
    # The streams' transaction versions are what their checkpoints count: a run resumes.
    files = stream_rows(config.state, "changes")["all"]["files"]
    assert compacted.transaction_version(app_id(StreamKey("changes", "all"))) == files == 10
    assert len(data_files(table)) == 11  # the small files stay for older versions' readers

    server.update_knobs(records=130)
    result, _ = await run_engine(config)
    assert result.done == ["changes"], result
    assert table_ids(table) == expected_ids("changes", 130)

    # A forced vacuum with no retention deletes what no current file needs; a staged replace
    # beside the table is not the table's: it stays.
    staging = config.out / STAGING / "changes"
    write_deltalake(str(staging), pa.table({"id": ["staged"]}))
    write_deltalake(str(staging), pa.table({"id": ["staged"]}), mode="overwrite")
    unused = len(data_files(table))  # once the optimize replaced them all
    forced = compact(config.path, "--retention", "0h", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"vacuum deleted {unused} files unused for 0 h" in forced.stdout, forced.stdout
    assert len(data_files(table)) == len(DeltaTable(str(table)).file_uris()) == 1
    assert table_ids(table) == expected_ids("changes", 130)
    assert DeltaTable(str(staging)).to_pyarrow_table()["id"].to_pylist() == ["staged"]
    assert len(data_files(staging)) == 2


async def test_a_retention_shorter_than_the_tables_is_refused_before_anything_changes(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=30)
    config = write_config(
        CHANGES.format(url=server.url, format="delta")
        + f"""
  files:
    format: parquet
    url: {server.url}/v1/cursor/changes
    records: items
    params: {{limit: 10}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
"""
    )
    result, _ = await run_engine(config)
    assert sorted(result.done) == ["changes", "files"]
    version = DeltaTable(str(config.out / "changes")).version()
    parquet_files = sorted((config.out / "files" / "all").iterdir())

    refused = compact(config.path, "--retention", "1d")
    assert refused.returncode == 2
    assert "a vacuum retention of 24 h is shorter than the 168 h the table keeps" in refused.stderr
    assert "readers still reading an older version" in refused.stderr
    assert "Pass --force" in refused.stderr
    assert DeltaTable(str(config.out / "changes")).version() == version
    assert sorted((config.out / "files" / "all").iterdir()) == parquet_files  # nor the files

    longer = compact(config.path, "--retention", "2w")
    assert longer.returncode == 0, longer.stderr
    assert "vacuum deleted 0 files unused for 336 h" in longer.stdout
    assert parquet_ids(config.out, "files") == expected_ids("changes", 30)


def test_retentions_read_as_hours() -> None:
    assert [parse_retention(text) for text in ("168h", "7d", "1w", "0h", " 2D ")] == [
        168,
        168,
        168,
        0,
        48,
    ]
    for bad in ("7", "30m", "-1d", "a week"):
        with pytest.raises(ValueError, match="is not a retention"):
            parse_retention(bad)
    setting = "delta.deletedFileRetentionDuration"
    assert table_retention_hours({}) == 168
    assert table_retention_hours({setting: "interval 2 days"}) == 48
    assert table_retention_hours({setting: "interval 1 week"}) == 168
    assert table_retention_hours({setting: "interval 90 minutes"}) == 1.5
    assert table_retention_hours({setting: "whenever"}) is None


# -- status --------------------------------------------------------------------------------------

TWO_FORMATS = """
commit_interval: 0
sources:
  changes:
    format: delta
    url: {url}/v1/cursor/changes
    records: items
    headers: {{X-Token: "${{SOURCE_TOKEN}}"}}
    params: {{limit: 50}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
  pages:
    format: parquet
    url: {url}/v1/cursor/pages
    records: items
    params: {{limit: 50}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
  never:
    url: {url}/v1/cursor/never
    records: items
"""


async def test_status_shows_each_sources_format_destination_and_table_version(
    demo: DemoServer, write_config: Write
) -> None:
    config = write_config(TWO_FORMATS.format(url=demo.url), env={"SOURCE_TOKEN": "t0k3n"})
    result, _ = await run_engine(config, only=["changes", "pages"])
    assert sorted(result.done) == ["changes", "pages"]
    version = DeltaTable(str(config.out / "changes")).version()

    # Without the sources' secrets in the environment: status reads only the lake's settings.
    status = cli("status", "--config", str(config.path))
    assert status.returncode == 0, status.stderr
    assert lake_rows(status.stdout) == [
        ["SOURCE", "FORMAT", "DESTINATION", "VERSION"],
        ["changes", "delta", str(config.out / "changes"), str(version)],
        ["pages", "parquet", str(config.out / "pages")],
    ]
    rows = json.loads(cli("status", "--config", str(config.path), "--json").stdout)
    lakes = {row["source"]: row["lake"] for row in rows}
    assert lakes["changes"] == {
        "format": "delta",
        "destination": str(config.out / "changes"),
        "version": str(version),
        "problem": None,
    }
    assert lakes["pages"]["format"] == "parquet" and lakes["pages"]["version"] == ""

    # Without deltalake installed: the version is "?", and the pip install that brings it.
    hidden = (
        "import sys; sys.modules['deltalake'] = None; sys.argv[0] = 'tui-connector'\n"
        "from tui_connector.cli import main; main()"
    )
    status = cli_code(hidden, "status", "--config", str(config.path))
    assert status.returncode == 0, status.stderr
    assert lake_rows(status.stdout)[1] == ["changes", "delta", str(config.out / "changes"), "?"]
    assert "changes: table version ?: format: delta needs the 'deltalake' package" in status.stdout
    assert "pip install 'tui-connector[delta]'" in status.stdout


def lake_rows(status: str) -> list[list[str]]:
    """The lake table of `status`'s output (after the checkpoints' table), split in cells."""
    lines = status.splitlines()
    table = []
    for line in lines[lines.index("") + 1 :]:
        if ": " in line:  # the reasons under the table
            break
        table.append(line.split())
    return table


def cli_code(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line, run by `code` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


async def test_status_shows_a_question_mark_and_why_when_a_table_cannot_be_read(
    tmp_path: Path,
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(
        "out: s3://lake-bucket/tables\nformat: delta\n"
        f"storage: {{aws_endpoint_url: 'http://127.0.0.1:{free_port()}', allow_http: "
        "'true', aws_region: us-east-1, aws_access_key_id: key, "
        "aws_secret_access_key: 's3cr3t-never-shown'}\n"
        "sources:\n  events:\n    url: http://127.0.0.1:9/events\n"
    )
    store = StateStore(tmp_path / ".tui-connector" / "state.db")
    await store.open()
    await store.start_stream("events", "all", {}, "s3://lake-bucket/tables/events", "f")
    await store.close()

    status = await asyncio.to_thread(cli, "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert lake_rows(status.stdout)[1] == ["events", "delta", "s3://lake-bucket/tables/events", "?"]
    lines = status.stdout.splitlines()
    reason = next(line for line in lines if line.startswith("events: table version ?: "))
    assert "cannot open the Delta table s3://lake-bucket/tables/events" in reason
    assert reason.endswith("Connection refused (os error 111)"), reason
    assert "s3cr3t-never-shown" not in status.stdout + status.stderr
