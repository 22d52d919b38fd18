"""The dashboard's appearance, pinned as SVG snapshots of a finished run on a stopped clock."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.telemetry import (
    ConcurrencyMode,
)
from tui_connector.tui.app import Dashboard
from tui_connector.tui.partitions import (
    PartitionTable,
)
from tui_connector.tui.screens import HelpScreen, SourceDetailScreen

from .dashboard import (
    SIZE,
    TOKEN,
    dashboard_on,
)
from helpers import async_wait_for, engine_of

# -- snapshots --------------------------------------------------------------------------------

FROZEN_AT = 1_000.0  # the dashboard's clock, stopped, so that nothing on screen moves
ADAPTIVE_REASON = "raised: throughput rising, latency steady (1.2 ms, baseline 1.1 ms); slow start"
# Wide enough for every column of the sources table, the lake's last.
WIDE = (160, SIZE[1])
# A file per page (commit_interval 0), so that the bytes each Parquet source writes do not depend
# on how its pages were batched. `shards` adds a field `label` that is a string in its first
# record and a number after: every stream's first page mixes the two, and whichever is converted
# first makes it JSON text from the start, whatever the order. `regions` is one page, so one
# commit: the Delta table's version is 0.
SNAPSHOT_CONFIG = """\
commit_interval: 0
sources:
  shards:
    url: {url}/v1/pages/{{ds}}
    format: parquet
    records: "data[*].merge(@, {{label: (n < `1` && name) || n}})"
    params: {{per_page: 50}}
    concurrency: auto
    partitions: {{type: values, values: [north, south, east, west], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  customers:
    url: {url}/v1/pages/customers
    records: data
    pagination:
      type: page_number
      size_param: per_page
      size: 50
      stop: {{total_records: total}}
  orders:
    url: {url}/v1/offset/orders
    records: results
    concurrency: 2
    pagination: {{type: offset, limit: 50, stop: {{total_records: {{header: X-Total-Count}}}}}}
  invoices:
    url: {url}/secure/cursor/invoices
    records: items
    params: {{limit: 50}}
    auth: {{type: bearer, token: "${{API_TOKEN}}"}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
  regions:
    url: {url}/v1/all/regions
    format: delta
  missing:
    url: {url}/v1/nowhere/missing
"""


@pytest.fixture
def finished_run(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[], Dashboard]]:
    """A dashboard whose run has finished, every time-dependent value pinned."""
    monkeypatch.chdir(tmp_path)  # paths are shown relative to the working directory
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    config = write_config(SNAPSHOT_CONFIG.format(url=demo.url), env={"API_TOKEN": TOKEN})
    # The demo server's port changes with every session: hide it like a secret.
    config.redactor.add(f"127.0.0.1:{demo.port}")
    yield lambda: dashboard_on(config, clock=lambda: FROZEN_AT)
    monkeypatch.delenv("TZ")
    time.tzset()


async def settle(pilot: Pilot[int]) -> None:
    """Wait for the run to finish, then pin what the engine stamped with the real clock."""
    app = pilot.app
    assert isinstance(app, Dashboard)
    await async_wait_for(app.all_finished, what="the run")
    await async_wait_for(lambda: not engine_of(app).telemetry.in_flight)
    telemetry = engine_of(app).telemetry
    telemetry.started_at = FROZEN_AT - 12
    for stats in telemetry.sources.values():
        stats.started_at, stats.finished_at = FROZEN_AT - 12, FROZEN_AT - 2
        if stats.concurrency_mode is ConcurrencyMode.AUTO:  # where the controller took it
            stats.concurrency, stats.concurrency_changed_at = 8, FROZEN_AT - 5
            stats.concurrency_reason = ADAPTIVE_REASON
    for stats in telemetry.sources.values():
        if stats.last_checkpoint_at is not None:
            stats.last_checkpoint_at = FROZEN_AT - 2
    errors = [dataclasses.replace(event, at=1_700_000_000.0) for event in telemetry.errors]
    telemetry.errors = deque(errors, maxlen=telemetry.errors.maxlen)
    app.refresh_view()  # notices the finish and notifies: let those toasts arrive, then clear
    await pilot.pause()
    app.clear_notifications()
    app.refresh_view()
    await pilot.pause()


def test_snapshot_main_screen(
    snap_compare: Callable[..., bool], finished_run: Callable[[], Dashboard]
) -> None:
    assert snap_compare(finished_run(), terminal_size=WIDE, run_before=settle)


def test_snapshot_detail_screen(
    snap_compare: Callable[..., bool], finished_run: Callable[[], Dashboard]
) -> None:
    async def open_detail(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(pilot.app.screen, SourceDetailScreen))
        screen = pilot.app.screen
        assert isinstance(screen, SourceDetailScreen)
        streams = screen.query_one("#streams", PartitionTable)
        await async_wait_for(lambda: streams.row_count == 4, what="partitions")
        await pilot.pause()

    assert snap_compare(finished_run(), terminal_size=WIDE, run_before=open_detail)


def test_snapshot_help_screen(
    snap_compare: Callable[..., bool], finished_run: Callable[[], Dashboard]
) -> None:
    async def open_help(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await async_wait_for(lambda: isinstance(pilot.app.screen, HelpScreen), what="help")

    assert snap_compare(finished_run(), terminal_size=SIZE, run_before=open_help)
