"""What a headless run says of each source's lake: the format, destination, bytes written and a
Delta table's version on every progress line and in the summary, and each field that fell back
to JSON text, once."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import humanize
import pytest

from tui_connector.config import load_config
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.headless import HeadlessReporter
from tui_connector.in_process import InProcessRun

from helpers import LABEL_NOTE, bytes_on_disk, cli, three_formats_yaml

deltalake = pytest.importorskip("deltalake")


def test_json_progress_carries_each_lake_and_a_note_once(demo: DemoServer, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(three_formats_yaml(demo.url))
    result = cli("run", "--headless", str(config), "--progress", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    final = {event["source"]: event for event in events if event["event"] == "final"}
    lake = tmp_path / "lake"
    for source, format in (("plain", "jsonl"), ("drift", "parquet")):
        assert final[source]["format"] == format
        assert final[source]["destination"] == str(lake / source)
        assert final[source]["bytes_written"] == bytes_on_disk(lake / source)
        assert final[source]["table_version"] is None
    assert final["plain"]["json_columns"] == [] and final["drift"]["json_columns"] == ["label"]
    table = final["table"]
    assert table["format"] == "delta" and table["destination"] == str(lake / "table")
    assert table["table_version"] == deltalake.DeltaTable(str(lake / "table")).version()
    # What the table stores: its data files' sizes (not Arrow's size in memory, nor the log).
    stored = sum(path.stat().st_size for path in (lake / "table").glob("*.parquet"))
    assert table["bytes_written"] == stored and table["json_columns"] == []
    notes = [event for event in events if event["event"] == "lake_note"]
    assert [note["source"] for note in notes] == ["drift"]
    assert LABEL_NOTE in notes[0]["note"] and "'label__json'" in notes[0]["note"]
    assert events[-1]["event"] == "summary"


def test_progress_lines_and_the_summary_say_where_records_went(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    # Slow pages and progress every tenth of a second: many reports after the fallback, which
    # is told in one of them and never again.
    server = demo_server_factory(latency_ms=100)
    config = tmp_path / "sources.yaml"
    config.write_text(three_formats_yaml(server.url, drift_format="delta"))
    result = cli("run", "--headless", str(config), "--progress-interval", "0.1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    reports = [line for line in lines if line.startswith("drift ")]
    assert len(reports) >= 3, result.stdout
    told = [line for line in lines if LABEL_NOTE in line]
    assert len(told) == 1 and told[0].startswith("drift: "), result.stdout
    version = deltalake.DeltaTable(str(tmp_path / "lake" / "table")).version()
    last_table = [line for line in lines if line.startswith("table ")][-1]
    assert last_table.endswith(f" written to delta v{version}")
    plain = humanize.naturalsize(bytes_on_disk(tmp_path / "lake" / "plain"))
    summary = lines[lines.index(next(line for line in lines if line.startswith("done: "))) :]
    assert f"  plain: jsonl at lake/plain, {plain} written" in summary
    drift = next(line for line in summary if line.startswith("  drift: "))
    assert drift.startswith("  drift: delta v") and " at lake/drift, " in drift
    assert drift.endswith("written; stored as JSON text: label")
    assert any(line.startswith(f"  table: delta v{version} at lake/table, ") for line in summary)


async def test_the_summary_counts_the_runs_own_time_not_until_it_is_printed(
    demo: DemoServer, tmp_path: Path
) -> None:
    """A dashboard prints the summary when the operator quits, maybe long after the run."""
    config = tmp_path / "sources.yaml"
    config.write_text(f"sources:\n  a:\n    url: {demo.url}/v1/all/a\n")
    run = InProcessRun(Engine(load_config(config, env={})))
    await run.open()
    try:
        result = await run.run()
    finally:
        await run.close()
    telemetry = run.snapshot()
    telemetry.started_at = time.monotonic() - 100  # started 100 s ago, finished after 3
    telemetry.sources["a"].finished_at = telemetry.started_at + 3
    out = io.StringIO()
    HeadlessReporter(run, out=out).summary(result)
    assert "done: 1 done, 0 failed, 0 stopped; 237 records in 3 seconds\n" in out.getvalue()
