"""What the dashboard says of each source's lake: its format and destination, the bytes this run
wrote, a Delta table's version, the inferred columns, and each field that fell back to JSON text,
told once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.tui import format as fmt
from tui_connector.tui.app import Dashboard
from tui_connector.tui.screens import SourceDetailScreen

from .dashboard import SIZE, cell, dashboard_on, record_notifications, shown
from helpers import LABEL_NOTE, async_wait_for, bytes_on_disk, three_formats_yaml

deltalake = pytest.importorskip("deltalake")


def lake_summary(app: Dashboard) -> str:
    """The detail screen's lake pane, its words one space apart (the pane wraps them)."""
    return " ".join(shown(app.screen.query_one("#lake-summary")).split())


async def finished(app: Dashboard) -> None:
    await async_wait_for(app.all_finished, what="the run")
    await async_wait_for(lambda: not app.telemetry.in_flight, what="nothing in flight")
    app.refresh_view()


async def test_the_sources_table_shows_each_lake_and_what_this_run_wrote_there(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(three_formats_yaml(demo.url, "parquet"))
    lake = config.out
    assert lake is not None
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await finished(app)
        await pilot.pause()
        assert cell(app, "plain", "lake") == "jsonl"
        assert cell(app, "drift", "lake") == "parquet"
        version = deltalake.DeltaTable(str(lake / "table")).version()
        assert version >= 1  # four pages: one commit each, or fewer when grouped
        assert cell(app, "table", "lake") == f"delta v{version}"
        for source in ("plain", "drift"):  # files: what this run wrote is what is on disk
            assert cell(app, source, "written") == fmt.size(bytes_on_disk(lake / source))
        assert cell(app, "table", "written") != fmt.size(0)


@pytest.mark.parametrize("drift_format", ["parquet", "delta"])
async def test_a_field_that_falls_back_to_json_text_is_told_once_and_shown_in_the_detail(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    drift_format: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # the destination is shown relative to the working directory
    config = write_config(three_formats_yaml(demo.url, drift_format))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notifications(app)
        await finished(app)
        await pilot.pause()
        drift = app.telemetry.sources["drift"]
        for _ in range(3):  # later checkpoints read the lake again, and tell it no more
            assert drift.last_checkpoint_at is not None
            drift.last_checkpoint_at += 1
            app.refresh_view()
            await pilot.pause()
        app.show_detail("drift")  # nor does the source's detail
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        app.refresh_view()
        await pilot.pause()
        told = [(message, severity) for message, severity in notes if "label" in message]
        assert len(told) == 1, notes
        assert told[0][1] == "warning" and LABEL_NOTE in told[0][0]
        assert "JSON text in 'label__json'" in told[0][0]

        summary = lake_summary(app)
        kind = "Parquet files" if drift_format == "parquet" else "a Delta table"
        assert f"format {kind}" in summary
        assert "destination lake/drift" in summary
        assert "JSON text label field" in summary
        assert LABEL_NOTE in summary
        assert "n: int64" in summary and "label__json: string" in summary
        assert "label: " not in summary  # never a typed column: mixed from the first page
        if drift_format == "delta":
            version = deltalake.DeltaTable("lake/drift").version()
            assert f"version {version}" in summary


async def test_a_delta_source_s_detail_shows_its_version_and_columns(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(three_formats_yaml(demo.url, "parquet"))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await finished(app)
        app.show_detail("table")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        app.refresh_view()
        await pilot.pause()
        summary = lake_summary(app)
        table = deltalake.DeltaTable("lake/table")
        assert "format a Delta table" in summary
        assert "destination lake/table" in summary
        assert f"version {table.version()}" in summary
        assert "JSON text" not in summary
        columns = [field.name for field in table.schema().fields]
        for name in ("id", "n", "name", "updated_at", "value"):
            assert name in columns and f"{name}: " in summary
        assert "_tc_" not in summary  # the sink's own columns are not the source's
        written = summary.split("written", 1)[1].split("by this run", 1)[0].strip()
        assert written == cell(app, "table", "written") != fmt.size(0)
