"""Backfills end to end against the demo API: partitions of every kind, parallel pages,
incremental runs and adaptive concurrency, with kills and resumes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tui_connector.config import LoadedConfig, load_config
from tui_connector.demo.server import DemoServer
from tui_connector.demo.state import RequestLogEntry
from tui_connector.engine import Engine
from tui_connector.telemetry import SourceStatus, StreamStatus

from helpers import (
    async_wait_for,
    cli,
    crash_and_resume,
    expected_ids,
    lake_ids,
    run_engine,
    wait_for,
)

Factory = Callable[..., DemoServer]
Write = Callable[..., LoadedConfig]


def overlapping(entries: list[RequestLogEntry]) -> int:
    """The most requests of `entries` the server was handling at one instant."""
    events = sorted([(e.started, 1) for e in entries] + [(e.ended, -1) for e in entries])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def stream_rows(state: Path, source: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(state) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM streams WHERE source = ?", (source,)).fetchall()
    return {row["partition"]: dict(row) for row in rows}


def lake_records(out: Path, source: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for page in sorted(out.glob(f"{source}/*/page-*.jsonl"))
        for line in page.read_text().splitlines()
    ]


# -- value partitions ---------------------------------------------------------------------------

VALUES = """
sources:
  regions:
    url: {url}/v1/pages/{{ds}}
    records: data
    concurrency: 3
    params: {{per_page: 20}}
    partitions: {{type: values, values: [alpha, beta, gamma, delta], path: ds}}
    pagination:
      type: page_number
      parallel: false
      stop: {{total_records: total}}
"""


async def test_value_partitions_run_concurrently_each_with_its_checkpoint(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=100, latency_ms=20)
    config = write_config(VALUES.format(url=server.url))
    result, engine = await run_engine(config)
    assert result.done == ["regions"]
    for dataset in ("alpha", "beta", "gamma", "delta"):
        assert lake_ids(config.out, "regions", dataset) == expected_ids(dataset, 100)
    rows = stream_rows(config.state, "regions")
    assert sorted(rows) == ["alpha", "beta", "delta", "gamma"]
    assert {row["status"] for row in rows.values()} == {"done"}
    stats = engine.telemetry.sources["regions"]
    assert (stats.streams_total, stats.streams_done, stats.streams_failed) == (4, 4, 0)
    assert {s.status for s in stats.streams.values()} == {StreamStatus.DONE}
    # Streams of one source overlap, never beyond its concurrency of 3.
    assert overlapping(server.log()) == 3


# -- parallel pages -----------------------------------------------------------------------------

PARALLEL = """
sources:
  pages:
    url: {url}/v1/pages/pages
    records: data
    concurrency: 6
    params: {{per_page: 10}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  offsets:
    url: {url}/v1/offset/offsets
    records: results
    concurrency: 6
    pagination: {{type: offset, limit: 10, stop: {{total_records: count}}}}
"""


async def test_pages_of_one_stream_overlap_once_the_total_is_known(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=237, latency_ms=30)
    config = write_config(PARALLEL.format(url=server.url))
    result, engine = await run_engine(config)
    assert sorted(result.done) == ["offsets", "pages"]
    log = server.log()
    for source, route in (("pages", "/v1/pages/pages"), ("offsets", "/v1/offset/offsets")):
        assert lake_ids(config.out, source) == expected_ids(source), source
        requests = [e for e in log if e.path == route]
        assert len(requests) == 24  # each page once
        # The first page alone; after it, up to the source's concurrency at once.
        first = min(requests, key=lambda e: e.started)
        assert all(e.started >= first.ended for e in requests if e is not first)
        assert overlapping(requests) == 6, source
        stream = engine.telemetry.sources[source].streams["all"]
        assert (stream.pages, stream.records, stream.pages_total) == (24, 237, 24)
    row = stream_rows(config.state, "pages")["all"]
    assert row["status"] == "done" and row["position"] == 24
    assert json.loads(row["cursor"])["parallel"] == {"count": 24, "low": 24, "done": []}


async def test_a_stopped_parallel_stream_resumes_only_the_missing_pages(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=400, latency_ms=40)
    config = write_config(PARALLEL.format(url=server.url).split("  offsets:")[0])
    engine = Engine(config)
    async with engine:
        running = asyncio.create_task(engine.run())
        await async_wait_for(lambda: len(server.log()) >= 12, what="a dozen pages")
        engine.request_stop()
        result = await asyncio.wait_for(running, timeout=30)
    assert result.stopped == ["pages"]
    progress = json.loads(stream_rows(config.state, "pages")["all"]["cursor"])["parallel"]
    committed = set(range(progress["low"])) | set(progress["done"])
    assert 12 <= len(committed) < 40
    server.reset()
    result, _ = await run_engine(config)
    assert result.done == ["pages"]
    assert lake_ids(config.out, "pages") == expected_ids("pages", 400)
    fetched = [int(parse_qs(e.query)["page"][0]) - 1 for e in server.log()]
    assert sorted(fetched) == sorted(set(range(40)) - committed)


# -- parent -> child ------------------------------------------------------------------------------

PARENT_CHILD = """
sources:
  repos:
    url: {url}/v1/pages/repos
    records: data
    params: {{per_page: 3}}
    concurrency: 1
    pagination: {{type: page_number, parallel: false, stop: {{total_records: total}}}}
  issues:
    url: {url}/v1/pages/{{repo}}
    records: data
    concurrency: 4
    params: {{per_page: 5}}
    partitions:
      type: parent
      source: repos
      value: id
      path: repo
      copy_fields: {{repo_id: id, repo_name: name}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


async def test_children_start_as_parent_pages_land_and_carry_parent_fields(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=12, latency_ms=25)
    config = write_config(PARENT_CHILD.format(url=server.url))
    result, engine = await run_engine(config)
    assert sorted(result.done) == ["issues", "repos"]
    assert lake_ids(config.out, "repos") == expected_ids("repos", 12)
    children = lake_records(config.out, "issues")
    expected: Counter[str] = Counter()
    for parent in range(12):
        expected += expected_ids(f"repos-{parent:06d}", 12)
    assert Counter(record["id"] for record in children) == expected
    for record in children:
        parent_id = record["id"].rsplit("-", 1)[0]
        assert record["repo_id"] == parent_id
        assert record["repo_name"] == f"repos item {int(parent_id.split('-')[1])}"
    # The children did not wait for the parent to finish.
    log = server.log()
    last_parent_page = max(e.ended for e in log if e.path == "/v1/pages/repos")
    first_child = min(e.started for e in log if e.path != "/v1/pages/repos")
    assert first_child < last_parent_page
    assert engine.telemetry.sources["issues"].streams_total == 12
    # A second run finds every child done: no request at all.
    server.reset()
    result, _ = await run_engine(config)
    assert sorted(result.done) == ["issues", "repos"] and server.log() == []


async def test_a_child_run_alone_takes_its_partitions_from_the_parents_lake(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=6)
    config = write_config(PARENT_CHILD.format(url=server.url))
    only_parent, _ = await run_engine(config, only=["repos"])
    assert only_parent.done == ["repos"]
    result, engine = await run_engine(config, only=["issues"])
    assert result.done == ["issues"]
    assert engine.telemetry.sources["issues"].warnings == []
    assert len(lake_records(config.out, "issues")) == 36


async def test_a_child_of_a_failed_parent_fails_and_says_why(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=6)
    text = PARENT_CHILD.format(url=server.url).replace("v1/pages/repos", "v1/bad/errors-200/repos")
    config = write_config(
        text.replace("    records: data\n", "    records: data\n    errors: errors\n", 1)
    )
    result, engine = await run_engine(config)
    assert sorted(result.failed) == ["issues", "repos"]
    assert "parent source repos failed" in (engine.telemetry.sources["issues"].last_error or "")


# -- kill -9 mid-backfill, then resume -----------------------------------------------------------

BACKFILL = """
sources:
  regions:
    url: {url}/v1/pages/{{ds}}
    records: data
    concurrency: 4
    params: {{per_page: 20}}
    partitions: {{type: values, values: [north, south, east, west, centre], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  repos:
    url: {url}/v1/offset/repos
    records: results
    concurrency: 2
    params: {{dataset_size: 30}}
    pagination: {{type: offset, limit: 5, parallel: false, stop: {{total_records: count}}}}
  issues:
    url: {url}/v1/pages/{{repo}}
    records: data
    concurrency: 6
    params: {{per_page: 10, dataset_size: 25}}
    partitions: {{type: parent, source: repos, value: id, path: repo, copy_fields: [name]}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


# Kill loops: the slow set (CI runs it); test_cli's clean SIGKILL loop stays in the default run.
@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_kill_9_mid_backfill_then_resume_is_exact(
    demo_server_factory: Factory, tmp_path: Path, seed: int
) -> None:
    server = demo_server_factory(
        records=300, latency_ms=15, fault_rate=0.1, seed=seed, retry_after_s=0.05
    )
    config = tmp_path / "sources.yaml"
    config.write_text(BACKFILL.format(url=server.url))
    kills = crash_and_resume(config, tmp_path / ".tui-connector" / "state.db", seed)
    assert kills >= 1
    out = tmp_path / "lake"
    for region in ("north", "south", "east", "west", "centre"):
        assert lake_ids(out, "regions", region) == expected_ids(region, 300), region
    assert lake_ids(out, "repos") == expected_ids("repos", 30)
    children: Counter[str] = Counter()
    for parent in range(30):
        children += expected_ids(f"repos-{parent:06d}", 25)
    assert lake_ids(out, "issues") == children
    assert list(out.rglob("*.tmp")) == []
    # Finished partitions are not fetched again. (A killed run's slow requests may still be
    # served: they must not count.)
    wait_for(lambda: server.in_flight == 0, what="the killed runs' requests to end")
    server.reset()
    final = cli("run", "--headless", str(config))
    assert final.returncode == 0, final.stderr
    assert server.log() == []


def test_status_shows_sources_partitions_and_marks(demo: DemoServer, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(VALUES.format(url=demo.url))
    assert cli("run", "--headless", str(config)).returncode == 0
    summary = cli("status", "--config", str(config))
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert lines[0].split() == [
        "SOURCE",
        "STATUS",
        "STREAMS",
        "PAGES",
        "RECORDS",
        "HIGH-WATER",
        "MARK",
        "UPDATED",
    ]
    assert lines[1].split()[:4] == ["regions", "done", "4/4", "done"]
    streams = cli("status", "--config", str(config), "--streams")
    assert sorted(line.split()[1] for line in streams.stdout.splitlines()[1:]) == [
        "alpha",
        "beta",
        "delta",
        "gamma",
    ]
    load_config(config, env={})  # the documented shape stays valid
    assert SourceStatus.DONE.value in summary.stdout


# -- date windows --------------------------------------------------------------------------------

DATES = """
sources:
  activity:
    url: {url}/v1/offset/activity
    records: results
    concurrency: 4
    pagination: {{type: offset, limit: 20, stop: {{total_records: count}}}}
    partitions:
      type: dates
      start: 2024-01-01
      end: 2024-01-01T05:00:00Z
      step: 1h
      start_param: updated_since
      end_param: updated_before
"""


async def test_date_windows_fetch_each_record_once_in_its_window(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=280)  # one a minute: 4 h 40 min of records
    config = write_config(DATES.format(url=server.url))
    result, engine = await run_engine(config)
    assert result.done == ["activity"]
    assert lake_ids(config.out, "activity") == expected_ids("activity", 280)
    hours = [f"2024-01-01T{h:02d}-00-00" for h in range(5)]
    assert sorted(stream_rows(config.state, "activity")) == hours
    for hour, partition in enumerate(hours):
        ids = lake_ids(config.out, "activity", partition)
        wanted = range(60 * hour, min(60 * (hour + 1), 280))
        assert ids == Counter(f"activity-{n:06d}" for n in wanted), partition
    assert engine.telemetry.sources["activity"].streams_done == 5


@pytest.mark.slow
def test_kill_9_mid_date_backfill_then_resume_is_exact(
    demo_server_factory: Factory, tmp_path: Path
) -> None:
    server = demo_server_factory(
        records=300, latency_ms=20, fault_rate=0.1, seed=5, retry_after_s=0.05
    )
    config = tmp_path / "sources.yaml"
    config.write_text(DATES.format(url=server.url).replace("limit: 20", "limit: 5"))
    kills = crash_and_resume(config, tmp_path / ".tui-connector" / "state.db", seed=5)
    assert kills >= 1
    assert lake_ids(tmp_path / "lake", "activity") == expected_ids("activity", 300)
    wait_for(lambda: server.in_flight == 0, what="the killed runs' requests to end")
    server.reset()
    assert cli("run", "--headless", str(config)).returncode == 0
    assert server.log() == []  # every window finished: none fetched again


# -- incremental runs ----------------------------------------------------------------------------

INCREMENTAL = """
sources:
  changes:
    url: {url}/v1/cursor/changes
    records: items
    params: {{limit: 25}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
    incremental:
      cursor_field: updated_at
      initial: "2024-01-01T00:00:00Z"
      param: updated_since
      {key}
"""


@pytest.mark.parametrize("key", ["primary_key: id", ""], ids=["primary-key", "record-hash"])
async def test_incremental_runs_fetch_only_new_records_without_boundary_duplicates(
    demo_server_factory: Factory, write_config: Write, key: str
) -> None:
    server = demo_server_factory(records=100)
    config = write_config(INCREMENTAL.format(url=server.url, key=key))
    result, _ = await run_engine(config)
    assert result.done == ["changes"]
    assert lake_ids(config.out, "changes") == expected_ids("changes", 100)
    row = stream_rows(config.state, "changes")["all"]
    assert json.loads(row["mark"])["value"] == "2024-01-01T01:39:00Z"  # record 99
    first_queries = [parse_qs(e.query) for e in server.log()]
    assert first_queries[0]["updated_since"] == ["2024-01-01T00:00:00Z"]

    server.update_knobs(records=160)  # sixty newer records
    server.reset()
    result, engine = await run_engine(config)
    assert result.done == ["changes"]
    # The second run asked from the mark on, and kept only the new records: the boundary
    # record (99), returned again by the inclusive bound, is not written twice.
    assert parse_qs(server.log()[0].query)["updated_since"] == ["2024-01-01T01:39:00Z"]
    assert engine.telemetry.sources["changes"].records_this_run == 60
    assert lake_ids(config.out, "changes") == expected_ids("changes", 160)
    row = stream_rows(config.state, "changes")["all"]
    assert json.loads(row["mark"])["value"] == "2024-01-01T02:39:00Z"
    assert row["base"] == 4 and row["position"] > 4  # appended after the first run's pages

    server.reset()
    result, engine = await run_engine(config)  # nothing new: one request, nothing written
    assert result.done == ["changes"] and len(server.log()) == 1
    assert lake_ids(config.out, "changes") == expected_ids("changes", 160)

    status = cli("status", "--config", str(config.path))
    assert "2024-01-01T02:39:00Z" in status.stdout


async def test_an_interrupted_incremental_run_does_not_advance_the_mark(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=100, latency_ms=30)
    config = write_config(INCREMENTAL.format(url=server.url, key="primary_key: id"))
    engine = Engine(config)
    async with engine:
        running = asyncio.create_task(engine.run())
        await async_wait_for(lambda: len(server.log()) >= 2, what="two pages")
        engine.request_stop()
        await asyncio.wait_for(running, timeout=30)
    row = stream_rows(config.state, "changes")["all"]
    assert row["status"] == "stopped" and row["mark"] is None
    assert json.loads(row["pending_mark"])["value"] >= "2024-01-01T00:24:00Z"
    result, _ = await run_engine(config)
    assert result.done == ["changes"]
    assert lake_ids(config.out, "changes") == expected_ids("changes", 100)
    assert json.loads(stream_rows(config.state, "changes")["all"]["mark"])["value"] == (
        "2024-01-01T01:39:00Z"
    )


# -- adaptive concurrency ------------------------------------------------------------------------

ADAPTIVE = """
sources:
  busy:
    url: {url}/v1/pages/busy
    records: data
    concurrency: {{min: 1, max: 80, start: 2}}
    params: {{per_page: 5}}
    retry: {{backoff_base: 0.05, backoff_max: 0.5}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


async def test_auto_concurrency_settles_near_the_servers_capacity(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=6000, latency_ms=40, capacity=20, retry_after_s=0.05)
    config = write_config(ADAPTIVE.format(url=server.url))
    result, engine = await run_engine(config)
    assert result.done == ["busy"]
    assert lake_ids(config.out, "busy") == expected_ids("busy", 6000)
    stats = engine.telemetry.sources["busy"]
    log = server.log()
    rejected = sum(1 for e in log if e.status == 429)
    # Loose bounds: a noisy 2-core machine; the benchmark measures the real figures.
    assert 8 <= stats.concurrency <= 40, stats.concurrency_reason
    assert rejected <= 0.05 * len(log), f"{rejected} of {len(log)} got 429"
    second_half = [e for e in log if e.started >= log[len(log) // 2].started]
    assert overlapping(second_half) >= 10
    assert stats.concurrency_reason


# 100 pages: a slow start from 4 has sent 60 of them (windows of 4, 8, 16, 32) before its limit
# reaches 64, so it never has more than about 40 in flight; opened at once, it has 64.
KNOWN_PAGES = """
sources:
  known:
    url: {url}/v1/pages/known
    records: data
    concurrency: auto
    params: {{per_page: 10}}
    pagination: {{type: page_number, stop: {{total_records: {{header: X-Total-Count}}}}}}
"""

KNOWN_PARTITIONS = """
sources:
  parts:
    url: {url}/v1/all/{{ds}}
    concurrency: auto
    params: {{dataset_size: 2}}
    partitions: {{type: values, values: [{values}], path: ds}}
"""


async def test_auto_concurrency_opens_to_the_known_pages_at_once(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=1000, latency_ms=150)
    config = write_config(KNOWN_PAGES.format(url=server.url))
    result, _ = await run_engine(config)
    assert result.done == ["known"]
    assert lake_ids(config.out, "known") == expected_ids("known", 1000)
    log = server.log()
    assert len(log) == 100 and {e.status for e in log} == {200}
    assert overlapping(log) >= 48  # 64 paced over a round trip; a slow start stays near 40


async def test_auto_concurrency_opens_to_the_partitions_waiting_after_one_response(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(latency_ms=150)
    values = [f"p{index:03d}" for index in range(100)]
    config = write_config(KNOWN_PARTITIONS.format(url=server.url, values=", ".join(values)))
    result, _ = await run_engine(config)
    assert result.done == ["parts"]
    assert len(lake_records(config.out, "parts")) == 200
    assert overlapping(server.log()) >= 48


async def test_retrying_a_failed_parent_restarts_its_finished_child(
    demo_server_factory: Factory, write_config: Write
) -> None:
    server = demo_server_factory(records=6, token="wrong-for-now")
    text = PARENT_CHILD.format(url=server.url).replace("v1/pages/repos", "secure/pages/repos")
    config = write_config(
        text.replace(
            "    concurrency: 1\n",
            "    concurrency: 1\n    auth: {type: bearer, token: right-token}\n",
        )
    )
    engine = Engine(config)
    async with engine:
        running = asyncio.create_task(engine.run(until_done=False))
        stats = engine.telemetry.sources
        await async_wait_for(
            lambda: (
                stats["repos"].status is SourceStatus.FAILED
                and stats["issues"].status is SourceStatus.FAILED
            ),
            what="the parent failing (401) and its child with it",
        )
        server.update_knobs(token="right-token")
        assert engine.retry("repos")
        await async_wait_for(
            lambda: (
                stats["repos"].status is SourceStatus.DONE
                and stats["issues"].status is SourceStatus.DONE
            ),
            what="parent and child done after the retry",
        )
        engine.request_stop()
        await asyncio.wait_for(running, timeout=30)
    assert len(lake_records(config.out, "issues")) == 36
