#!/usr/bin/env python3
"""Take the README's screenshots: the real dashboard, driven headlessly against the built-in
demo API, saved as SVG into screenshots/.

    .venv/bin/python scripts/screenshots.py

- dashboard.svg  mid-run: one source paused, one backing off (a 429 with a long Retry-After),
                 recent errors from injected 500/503 faults
- detail.svg     the detail screen of a running backfill: partitions, adaptive concurrency
- help.svg       the keys
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tui_connector.config import load_config
from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.telemetry import SourceStatus
from tui_connector.tui.app import Dashboard
from tui_connector.tui.screens import HelpScreen, SourceDetailScreen

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "screenshots"
SIZE = (160, 40)
TOKEN = "demo-token-7d2c"

CONFIG = """\
out: lake
state: .tui-connector/state.db
defaults:
  concurrency: 4
  retry: {{max_attempts: 8, backoff_base: 0.3, backoff_max: 2}}
sources:
  customers:
    url: {main}/v1/pages/customers
    records: data
    format: delta
    pagination:
      type: page_number
      size_param: per_page
      size: 50
      stop: {{total_records: total}}
  orders:
    url: {main}/v1/offset/orders
    records: results
    format: parquet
    concurrency: 2
    pagination:
      type: offset
      limit: 50
      stop: {{total_records: {{header: X-Total-Count}}}}
  invoices:
    url: {main}/secure/cursor/invoices
    records: items
    params: {{limit: 50}}
    auth: {{type: bearer, token: "${{DEMO_TOKEN}}"}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
  events:
    url: {main}/v1/header-cursor/events
    params: {{limit: 50}}
    pagination: {{type: cursor, cursor: {{header: X-Next-Cursor}}, cursor_param: after}}
  products:
    url: {main}/secure/next/products
    records: data
    params: {{per_page: 50}}
    auth: {{type: api_key, key: "${{DEMO_TOKEN}}", header: X-API-Key}}
    pagination: {{type: next_url, next: links.next}}
  partners:
    url: {throttled}/v1/pages/partners
    records: data
    retry: {{max_attempts: 5, max_wait: 300}}
    pagination: {{type: page_number, size_param: per_page, size: 50}}
  regions:
    url: {main}/v1/all/regions
  stores:
    url: {main}/v1/pages/{{store}}
    records: data
    concurrency: auto
    params: {{per_page: 50}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
    partitions:
      type: values
      values: [north, south, east, west, centre, harbour, airport, station]
      path: store
"""


async def wait_until(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def take(workdir: Path, main_url: str, throttled_url: str) -> None:
    config_path = workdir / "sources.yaml"
    config_path.write_text(CONFIG.format(main=main_url, throttled=throttled_url))
    config = load_config(config_path, env={"DEMO_TOKEN": TOKEN})
    engine = Engine(config)
    app = Dashboard(InProcessRun(engine))
    stats = engine.telemetry.sources
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: "orders" in stats and stats["orders"].pages >= 3, "orders")
        app.sources_table.select_source("orders")
        await pilot.press("p")
        await wait_until(lambda: stats["orders"].status is SourceStatus.PAUSED, "pause")
        await wait_until(
            lambda: stats["partners"].status is SourceStatus.BACKING_OFF, "partners backing off"
        )
        await wait_until(lambda: len(engine.telemetry.errors) >= 6, "some errors")
        # Some seconds of throughput for the detail screen's sparkline.
        await wait_until(lambda: app.history.samples_taken >= 6, "throughput samples")
        app.sources_table.select_source("customers")
        await pilot.pause()
        app.refresh_view()
        await pilot.pause()
        app.save_screenshot("dashboard.svg", str(OUT))

        app.sources_table.select_source("stores")
        await wait_until(lambda: stats["stores"].streams_done >= 1, "a finished partition")
        await wait_until(lambda: stats["stores"].concurrency_changed_at is not None, "a limit")
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, SourceDetailScreen), "detail screen")
        detail = app.screen
        await wait_until(lambda: detail.query_one("#streams").row_count > 1, "streams")
        await pilot.pause()
        app.save_screenshot("detail.svg", str(OUT))

        await pilot.press("escape", "question_mark")
        await wait_until(lambda: isinstance(app.screen, HelpScreen), "help screen")
        await pilot.pause()
        app.save_screenshot("help.svg", str(OUT))

        await pilot.press("escape", "q", "q")
        await wait_until(lambda: app.return_value is not None, "exit")
    print(f"wrote dashboard.svg, detail.svg, help.svg to {OUT}")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    main_knobs = DemoKnobs(
        records=20_000,
        page_size=50,
        latency_ms=60,
        fault_rate=0.05,
        faults=("500", "503"),
        retry_after_s=1.0,
        seed=11,
        token=TOKEN,
    )
    # Every request of this one is throttled with a long Retry-After: "backing off" for minutes.
    throttled_knobs = DemoKnobs(records=5_000, fault_rate=1.0, faults=("429",), retry_after_s=120)
    with (
        DemoServer(main_knobs) as main_server,
        DemoServer(throttled_knobs) as throttled_server,
        tempfile.TemporaryDirectory(prefix="tui-connector-screens-") as workdir,
    ):
        previous = Path.cwd()
        os.chdir(workdir)  # the dashboard shows paths relative to the working directory
        try:
            asyncio.run(take(Path(workdir), main_server.url, throttled_server.url))
        finally:
            os.chdir(previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
