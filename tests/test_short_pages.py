"""Batches of many short pages into a typed table (Parquet, Delta; the crash soak writes a page a
batch): a page that cannot be encoded among them fails its stream at that page, leaving no trace,
and killed runs resume into exactly every record once."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.failpoints import ENV as CRASH_AT
from tui_connector.failpoints import POINTS

from helpers import cli, expected_ids, run_engine, serving, table_ids

SHORT = 100  # records a page: workload 2's, fewer than a page staged as columns has


def page_of(page: int, rows: int = SHORT) -> list[dict[str, Any]]:
    return [{"id": f"{page}-{i}", "n": i, "v": i / 4, "ok": i % 2 == 0} for i in range(rows)]


@pytest.mark.parametrize("format", ["parquet", "delta"])
async def test_a_stream_fails_at_a_page_that_cannot_be_encoded_among_short_ones_and_resumes_there(
    write_config: Callable[..., LoadedConfig], format: str
) -> None:
    pages_served: list[int] = []
    deep = [True]

    async def items(request: web.Request) -> web.Response:
        page = int(request.query["page"])
        pages_served.append(page)
        if page >= 6:
            return web.json_response({"items": []})
        if page == 2 and deep[0]:  # one record nested too deep, written as text
            body = '{"items": [' + "[" * 1000 + "]" * 1000 + "]}"
            return web.Response(text=body, content_type="application/json")
        return web.json_response({"items": page_of(page)})

    app = web.Application()
    app.router.add_get("/items", items)
    async with serving(app) as url:
        config = write_config(f"""
out: lake
format: {format}
commit_interval: 60
sources:
  items:
    url: {url}/items
    records: items
    pagination: {{type: page_number, start: 0}}
""")
        result, engine = await run_engine(config)
        assert result.failed == ["items"]
        error = engine.telemetry.sources["items"].last_error or ""
        assert "too deeply to be written" in error
        assert ids_in(config, format) == ids_of(0, 1)  # the pages before it, nothing of it
        deep[0] = False
        pages_served.clear()
        result, engine = await run_engine(config)
        assert result.done == ["items"]
    assert pages_served == [2, 3, 4, 5, 6]  # resumed at the page that failed
    assert ids_in(config, format) == ids_of(*range(6))


def ids_of(*pages: int) -> Counter[str]:
    return Counter(record["id"] for page in pages for record in page_of(page))


def ids_in(config: LoadedConfig, format: str) -> Counter[str]:
    return table_ids(str(config.out), format, "items")


# Parallel pages (streams of one table) and cursors, 100 records a page, batches of several.
KILLED = """
format: {format}
out: {out}
commit_interval: 0.2
sources:
  regions:
    url: {url}/v1/pages/{{ds}}
    records: data
    concurrency: 4
    params: {{per_page: 100}}
    partitions: {{type: values, values: [north, south], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  events:
    url: {url}/v1/cursor/events
    records: items
    params: {{limit: 100}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
"""
KILLED_RECORDS = 2000


# A kill loop: the slow set, which CI runs too.
@pytest.mark.slow
@pytest.mark.parametrize("format", ["parquet", "delta"])
def test_killed_runs_with_short_pages_resume_into_every_record_once(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path, format: str
) -> None:
    server = demo_server_factory(records=KILLED_RECORDS, latency_ms=5)
    lake = str(tmp_path / "lake")
    config = tmp_path / "sources.yaml"
    config.write_text(KILLED.format(format=format, out=lake, url=server.url))
    kills = 0
    for point in POINTS:  # a batch converted, in place but not checkpointed, checkpointing
        killed = cli("run", "--headless", str(config), env={CRASH_AT: f"{point}:2"})
        assert killed.returncode in (0, -signal.SIGKILL), killed.stderr
        kills += killed.returncode == -signal.SIGKILL
    assert kills >= 2  # the runs got as far as each crash point
    final = cli("run", "--headless", str(config))
    assert final.returncode == 0, final.stdout + final.stderr
    regions = expected_ids("north", KILLED_RECORDS) + expected_ids("south", KILLED_RECORDS)
    assert table_ids(lake, format, "regions") == regions
    assert table_ids(lake, format, "events") == expected_ids("events", KILLED_RECORDS)
