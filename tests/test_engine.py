"""The engine end to end, in-process, against the real demo API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tui_connector.config import LoadedConfig, load_config
from tui_connector.demo.server import DemoServer
from tui_connector.engine import YOUNG_GENERATION_THRESHOLD, Engine
from tui_connector.http.client import tls_context
from tui_connector.sinks import local
from tui_connector.state import StateLockedError
from tui_connector.telemetry import SourceStatus

from helpers import RECORDS, ROOT, async_wait_for, expected_ids, lake_ids, serving
from helpers import run_engine as run

TOKEN = "test-token-5f3a9"


def one_source(url: str, body: str) -> str:
    return f"sources:\n  items:\n    url: {url}\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )


# -- the documented example: every pagination style ----------------------------------------


async def test_documented_example_fetches_every_record_exactly_once(
    demo: DemoServer, tmp_path: Path
) -> None:
    config_path = tmp_path / "sources.yaml"
    config_path.write_text((ROOT / "sources.yaml").read_text())
    config = load_config(config_path, env={"DEMO_URL": demo.url, "DEMO_TOKEN": TOKEN})
    result, engine = await run(config)
    assert result.failed == [], [engine.telemetry.sources[n].last_error for n in result.failed]
    assert sorted(result.done) == sorted(config.sources)
    datasets = {
        "customers": "customers",
        "orders": "orders",
        "invoices": "invoices",
        "events": "events",
        "products": "products",
        "shipments": "shipments",
        "tickets": "tickets",
        "regions": "regions",
    }
    for source, dataset in datasets.items():
        assert lake_ids(config.out, source) == expected_ids(dataset), source
    # The backfill examples: date windows, values, parent -> child, incremental.
    assert lake_ids(config.out, "activity") == expected_ids("activity")
    with sqlite3.connect(config.state) as db:
        windows = db.execute("SELECT count(*) FROM streams WHERE source = 'activity'").fetchone()
    assert windows == (4,)  # four 6-hour windows (the demo's 237 records fill the first)
    stores = sum((expected_ids(f"store-{s}") for s in ("north", "south", "east")), Counter())
    assert lake_ids(config.out, "stores") == stores
    assert lake_ids(config.out, "repos") == expected_ids("repos", 20)
    issues = sum((expected_ids(f"repos-{n:06d}", 15) for n in range(20)), Counter())
    assert lake_ids(config.out, "issues") == issues
    assert lake_ids(config.out, "changes") == expected_ids("changes")
    # A second run fetches nothing again but what an incremental source asks for: newer
    # records than its mark (there are none: one request, nothing written).
    requests_before = len(demo.log())
    result, _ = await run(config)
    assert result.exit_code == 0
    new_requests = demo.log()[requests_before:]
    assert [e.path for e in new_requests] == ["/v1/cursor/changes"]
    assert lake_ids(config.out, "changes") == expected_ids("changes")


# -- stop rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "pagination", "expected_pages"),
    [
        # An empty page ends a page-number stream (default rule): 5 pages of data + 1 empty.
        ("pages/sr1", "type: page_number\nsize_param: per_page\nsize: 50", 6),
        # total_records stops before the empty page.
        (
            "pages/sr2",
            "type: page_number\nsize_param: per_page\nsize: 50\nstop: {total_records: total}",
            5,
        ),
        (
            "pages/sr3",
            "type: page_number\nsize_param: per_page\nsize: 50\nstop: {total_pages: total_pages}",
            5,
        ),
        (
            "pages/sr4",
            "type: page_number\nsize_param: per_page\nsize: 50\n"
            "stop: {total_records: {header: X-Total-Count}}",
            5,
        ),
        # A short page ends the stream only when asked: page 5 has 37 records.
        (
            "pages/sr5",
            "type: page_number\nsize_param: per_page\nsize: 50\nstop: {short_page: true}",
            5,
        ),
        ("pages/sr6", "type: page_number\nsize_param: per_page\nsize: 50\nstop: {max_pages: 2}", 2),
        (
            "cursor/sr7",
            "type: cursor\ncursor: next_cursor\ncursor_param: cursor\nstop: {has_more: has_more}",
            5,
        ),
        ("offset/sr8", "type: offset\nlimit: 50\nstop: {total_records: count}", 5),
    ],
)
async def test_stop_rules(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    route: str,
    pagination: str,
    expected_pages: int,
) -> None:
    records = (
        "items"
        if route.startswith("cursor")
        else ("results" if route.startswith("offset") else "data")
    )
    body = f"records: {records}\npagination:\n" + "".join(
        f"  {line}\n" for line in pagination.splitlines()
    )
    config = write_config(one_source(f"{demo.url}/v1/{route}", body))
    result, engine = await run(config)
    assert result.done == ["items"], engine.telemetry.sources["items"].last_error
    assert engine.telemetry.sources["items"].pages == expected_pages
    dataset = route.split("/")[1]
    want = expected_ids(dataset, 100) if expected_pages == 2 else expected_ids(dataset)
    assert lake_ids(config.out) == want


async def test_short_pages_mid_stream_do_not_end_it(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    # The server caps per_page at 1000 but here we ask 60 while 'size' says 100: every page is
    # "short" compared to 100, yet the stream must read all of them.
    config = write_config(
        one_source(
            f"{demo.url}/v1/offset/short?limit=40",
            "records: results\npagination:\n  type: offset\n  limit_param: lim\n  limit: 100\n",
        )
    )
    result, _ = await run(config)
    assert result.done == ["items"]
    assert lake_ids(config.out) == expected_ids("short")


# -- misbehaving servers ------------------------------------------------------------------


async def test_loop_guard_same_next_link(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(
            f"{demo.url}/v1/bad/same-next/loop",
            "records: data\npagination:\n  type: next_url\n  next: links.next\n",
        )
    )
    result, engine = await run(config)
    assert result.failed == ["items"]
    error = engine.telemetry.sources["items"].last_error or ""
    assert "same" in error and "twice" in error, error
    # The guard fires before the repeated page is written: no id is in the lake twice.
    assert all(count == 1 for count in lake_ids(config.out).values())


async def test_loop_guard_last_page_forever(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(
            f"{demo.url}/v1/bad/last-page-forever/lpf",
            "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 50\n",
        )
    )
    result, engine = await run(config)
    assert result.failed == ["items"]
    assert "same records" in (engine.telemetry.sources["items"].last_error or "")
    assert lake_ids(config.out) == expected_ids("lpf")


async def test_errors_with_http_200_fail_the_source(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(f"{demo.url}/v1/bad/errors-200/e", "records: data\nerrors: errors\n")
    )
    result, engine = await run(config)
    assert result.failed == ["items"]
    assert "rate limited by upstream" in (engine.telemetry.sources["items"].last_error or "")


async def test_text_plain_json_is_accepted(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(
            f"{demo.url}/v1/bad/text-plain/tp",
            "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 50\n",
        )
    )
    result, _ = await run(config)
    assert result.done == ["items"]
    assert lake_ids(config.out) == expected_ids("tp")


async def test_one_failing_source_does_not_stop_the_others(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        "sources:\n"
        f"  good:\n    url: {demo.url}/v1/all/good\n"
        f"  denied:\n    url: {demo.url}/secure/all/denied\n"
        "    auth: {type: bearer, token: wrong-token-123}\n"
    )
    result, engine = await run(config)
    assert result.done == ["good"] and result.failed == ["denied"]
    assert result.exit_code == 1
    error = engine.telemetry.sources["denied"].last_error or ""
    assert "HTTP 401" in error and "wrong-token-123" not in error
    assert lake_ids(config.out, "good") == expected_ids("good")


# -- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "429-date"])
async def test_retry_after_is_honoured(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    fault: str,
) -> None:
    server = demo_server_factory(
        records=20, page_size=10, fault_rate=0.3, faults=(fault,), retry_after_s=1.0, seed=3
    )
    config = write_config(
        one_source(
            f"{server.url}/v1/pages/ra",
            "records: data\nretry: {max_attempts: 10, backoff_base: 0}\npagination:\n"
            "  type: page_number\n  size_param: per_page\n  size: 10\n",
        )
    )
    result, engine = await run(config)
    assert result.done == ["items"]
    assert lake_ids(config.out) == expected_ids("ra", 20)
    log = server.log()
    throttled = [entry for entry in log if entry.status == 429]
    assert throttled, "the seed should produce at least one 429"
    assert engine.telemetry.sources["items"].retries == len(throttled)
    for entry in throttled:
        retry = next(e for e in log if e.started > entry.ended and e.query == entry.query)
        # The HTTP-date form has one-second resolution; the server rounds it up.
        assert retry.started - entry.ended >= 0.9, (entry, retry)


async def test_an_overloaded_server_is_not_stormed_while_fetches_back_off(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    # Two served at once, one waits in line, the rest get 429 with Retry-After.
    server = demo_server_factory(
        records=400, latency_ms=20, capacity=2, capacity_queue=1, retry_after_s=0.3
    )
    config = write_config(
        one_source(
            f"{server.url}/v1/pages/calm",
            "records: data\nconcurrency: 4\nparams: {per_page: 10}\n"
            "pagination: {type: page_number, stop: {total_records: total}}\n",
        )
    )
    result, engine = await run(config)
    assert result.done == ["items"], engine.telemetry.sources["items"].last_error
    assert lake_ids(config.out) == expected_ids("calm", 400)
    # A fetch waiting out its Retry-After keeps its place under the limit: no new request
    # takes its room and runs into the same overload (that stormed: hundreds of 429s).
    throttled = sum(1 for entry in server.log() if entry.status == 429)
    assert throttled <= 20, throttled


async def test_retry_after_beyond_the_cap_fails_fast(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("429",), retry_after_s=3600)
    config = write_config(one_source(f"{server.url}/v1/all/cap", "retry: {max_wait: 5}\n"))
    result, engine = await run(config)  # would wait an hour without the cap (run's guard: 60 s)
    assert result.failed == ["items"]
    assert "retry.max_wait" in (engine.telemetry.sources["items"].last_error or "")


async def test_faults_are_retried_to_an_exact_lake(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(
        records=300,
        page_size=20,
        fault_rate=0.25,
        seed=5,
        faults=("429", "500", "503", "drop", "truncate"),
        retry_after_s=0.05,
    )
    config = write_config(
        one_source(
            f"{server.url}/v1/cursor/faulty",
            "records: items\nparams: {limit: 20}\n"
            "retry: {max_attempts: 12, backoff_base: 0.01, backoff_max: 0.05}\n"
            "pagination:\n  type: cursor\n  cursor: next_cursor\n  cursor_param: cursor\n",
        )
    )
    result, engine = await run(config)
    assert result.done == ["items"], engine.telemetry.sources["items"].last_error
    assert lake_ids(config.out) == expected_ids("faulty", 300)
    assert engine.telemetry.sources["items"].retries > 0
    assert engine.telemetry.errors, "each failed attempt is recorded in the error ring"


# -- controls -------------------------------------------------------------------------------


async def test_pause_issues_no_request_until_resumed(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=400, page_size=10, latency_ms=5)
    page = "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 10\n"
    config = write_config(
        "sources:\n"
        + "".join(
            f"  {name}:\n    url: {server.url}/v1/pages/{name}\n"
            + "".join(f"    {line}\n" for line in page.splitlines())
            for name in ("paused", "busy")
        )
    )
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run())
        stats = engine.telemetry.sources
        await async_wait_for(lambda: stats["paused"].pages >= 3, what="first pages")
        engine.pause("paused")
        await async_wait_for(
            lambda: stats["paused"].status is SourceStatus.PAUSED, what="paused status"
        )
        requests_while_paused = sum(1 for e in server.log() if "/paused" in e.path)
        busy_pages = stats["busy"].pages
        # While the other source makes real progress, the paused one sends nothing.
        await async_wait_for(lambda: stats["busy"].pages >= busy_pages + 10, what="busy progress")
        assert sum(1 for e in server.log() if "/paused" in e.path) == requests_while_paused
        assert stats["paused"].in_flight == 0
        engine.resume("paused")
        result = await asyncio.wait_for(task, timeout=60)
    assert sorted(result.done) == ["busy", "paused"]
    assert lake_ids(config.out, "paused") == expected_ids("paused", 400)


async def test_paused_means_every_fetched_page_is_in_the_lake_even_after_a_quick_resume(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = demo_server_factory(records=5000, page_size=10, latency_ms=10)
    config = write_config(
        "commit_interval: 30\n"  # only pausing, stopping or ending closes a batch
        + one_source(
            f"{server.url}/v1/cursor/pp",
            "records: items\nparams: {limit: 10}\n"
            "pagination: {type: cursor, cursor: next_cursor, cursor_param: cursor}\n",
        )
    )
    disk = threading.Event()  # held: the first pause's write waits on a slow disk
    writing = threading.Event()
    real = local.write_file_sync

    def slow_disk(*args: Any) -> int:
        writing.set()
        disk.wait(timeout=30)
        return real(*args)

    monkeypatch.setattr(local, "write_file_sync", slow_disk)
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run())
        stream = lambda: engine.telemetry.sources["items"]  # noqa: E731
        await async_wait_for(lambda: stream().pages >= 3, what="first pages")
        engine.pause("items")
        await async_wait_for(writing.is_set, what="the pause's write")  # and it waits
        engine.resume("items")
        fetched = stream().pages
        await async_wait_for(lambda: stream().pages >= fetched + 3, what="pages after resume")
        engine.pause("items")  # while the first settle still waits
        runner = engine.runners["items"]
        await async_wait_for(lambda: runner.gate.busy == 0, what="its last fetch staged")
        disk.set()
        await async_wait_for(lambda: stream().status is SourceStatus.PAUSED, what="paused")
        # Paused promises a kill now re-fetches nothing: every fetched page is written.
        assert sum(lake_ids(config.out).values()) == stream().records
        engine.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def test_stop_request_commits_and_resume_finishes(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=300, page_size=10, latency_ms=5)
    config = write_config(
        one_source(
            f"{server.url}/v1/pages/st",
            "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 10\n",
        )
    )
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run())
        await async_wait_for(lambda: engine.telemetry.sources["items"].pages >= 5)
        engine.request_stop()
        result = await asyncio.wait_for(task, timeout=30)
    assert result.interrupted and result.exit_code == 130
    fetched = len(server.log())
    # Everything fetched was committed: the resume asks only for the pages not yet fetched.
    result, _ = await run(config)
    assert result.done == ["items"]
    # 30 pages of data and the empty one that ends the stream, none of them fetched twice.
    assert fetched < 31
    assert len(server.log()) == 31
    assert lake_ids(config.out) == expected_ids("st", 300)


async def test_concurrency_and_rate_limit_can_change_live(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(one_source(f"{demo.url}/v1/all/live", "concurrency: 2\n"))
    engine = Engine(config)
    async with engine:
        engine.set_concurrency("items", 9)
        engine.set_rate_limit("items", 50)
        assert engine.runners["items"].limit.limit == 9
        assert engine.telemetry.sources["items"].concurrency == 9
        assert engine.telemetry.sources["items"].rate_limit == 50
        result = await engine.run()
    assert result.done == ["items"]


# -- state ------------------------------------------------------------------------------------


async def test_second_run_on_the_same_state_refuses(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(one_source(f"{demo.url}/v1/all/lock", ""))
    async with Engine(config):
        with pytest.raises(StateLockedError, match=r"in use by another run \(process \d+"):
            async with Engine(config):
                pass


async def test_a_source_that_cannot_be_set_up_releases_the_state_and_its_lock(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(one_source(f"{demo.url}/v1/all/tls", ""))
    unreadable = tmp_path / "not-a-ca-bundle.pem"
    unreadable.write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_FILE", str(unreadable))
    tls_context.cache_clear()  # made again, from the bad bundle
    try:
        with pytest.raises(ssl.SSLError):
            async with Engine(config):
                pass
    finally:
        monkeypatch.delenv("SSL_CERT_FILE")
        tls_context.cache_clear()
    async with Engine(config):  # the lock was released: a new run may start
        pass


async def test_state_records_streams_and_secrets_stay_out(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(
            f"{demo.url}/secure/next/sec",
            "records: data\nauth: {type: api_key, key: '${API_TOKEN}', param: api_key}\n"
            "pagination:\n  type: next_url\n  next: links.next\n",
        ),
        env={"API_TOKEN": TOKEN},
    )
    result, _ = await run(config)
    assert result.done == ["items"]
    with sqlite3.connect(config.state) as db:
        rows = db.execute("SELECT source, partition, status, records FROM streams").fetchall()
        dump = "\n".join(db.iterdump())
    assert rows == [("items", "all", "done", RECORDS)]
    assert TOKEN not in dump
    for page in config.out.rglob("*.jsonl"):
        assert TOKEN not in page.read_text()
    json.dumps(rows)


async def test_stop_cuts_a_retry_after_wait_short(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("429",), retry_after_s=60)
    config = write_config(one_source(f"{server.url}/v1/all/wait", ""))
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run())
        stats = engine.telemetry.sources["items"]
        await async_wait_for(lambda: stats.status is SourceStatus.BACKING_OFF, what="backoff")
        backoff_until = stats.backoff_until
        assert backoff_until is not None and backoff_until - time.monotonic() > 30
        engine.request_stop()
        result = await asyncio.wait_for(task, timeout=60)
    assert time.monotonic() < backoff_until  # the run ended before the wait would have
    assert result.interrupted and result.stopped == ["items"]
    assert len(server.log()) == 1  # the retry was never sent


async def test_retry_restarts_a_failed_source_from_its_checkpoint(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    # 200 pages of 5 ms: the faults must begin while pages are left (20 pages without
    # latency were once all fetched before the test saw the fifth).
    server = demo_server_factory(records=2000, page_size=10, latency_ms=5)
    config = write_config(
        one_source(
            f"{server.url}/v1/pages/again",
            "records: data\nretry: {max_attempts: 2, backoff_base: 0}\npagination:\n"
            "  type: page_number\n  size_param: per_page\n  size: 10\n",
        )
    )
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run(until_done=False))
        stats = engine.telemetry.sources["items"]
        await async_wait_for(lambda: stats.pages >= 5, what="some pages")
        server.update_knobs(fault_rate=1.0, faults=("500",))
        await async_wait_for(lambda: stats.status is SourceStatus.FAILED, what="failure")
        assert "HTTP 500" in (stats.last_error or "") and "after 2 attempts" in stats.last_error
        pages_at_failure = stats.pages
        server.update_knobs(fault_rate=0.0)
        assert engine.retry("items")
        await async_wait_for(lambda: stats.status is SourceStatus.DONE, what="done after retry")
        engine.request_stop()
        await asyncio.wait_for(task, timeout=30)
    assert stats.pages == 201 and pages_at_failure < 201
    assert lake_ids(config.out) == expected_ids("again", 2000)
    ok_pages = [e.query for e in server.log() if e.status == 200]
    assert len(ok_pages) == len(set(ok_pages))  # no page fetched twice


async def test_a_changed_config_refuses_to_resume_until_full_refresh(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=300, latency_ms=5)
    pages = "records: data\npagination:\n  type: page_number\n  size_param: per_page\n"
    config = write_config(one_source(f"{server.url}/v1/pages/fp", pages + "  size: 10\n"))
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run())
        await async_wait_for(lambda: engine.telemetry.sources["items"].pages >= 3)
        engine.request_stop()
        await asyncio.wait_for(task, timeout=30)
    changed = write_config(one_source(f"{server.url}/v1/pages/fp", pages + "  size: 25\n"))
    result, engine = await run(changed)
    assert result.failed == ["items"]
    assert "changed since its checkpoint" in (engine.telemetry.sources["items"].last_error or "")
    result, _ = await run(changed, full_refresh=True)
    assert result.done == ["items"]
    assert lake_ids(changed.out) == expected_ids("fp", 300)


async def test_redirects_stay_on_the_source_host(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    from aiohttp import web

    async def same_host(request: web.Request) -> web.Response:
        raise web.HTTPFound("/target")

    async def target(request: web.Request) -> web.Response:
        return web.json_response([{"id": "moved-1"}])

    async def other_host(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{demo.port}/v1/all/moved")

    app = web.Application()
    app.router.add_get("/same", same_host)
    app.router.add_get("/other", other_host)
    app.router.add_get("/target", target)
    async with serving(app) as url:
        config = write_config(
            "sources:\n"
            f"  same:\n    url: {url}/same\n"
            f"  other:\n    url: {url}/other\n"
            "    auth: {type: api_key, key: k-123456, header: X-Api-Key}\n"
        )
        result, engine = await run(config)
    assert result.done == ["same"] and result.failed == ["other"]
    assert lake_ids(config.out, "same") == {"moved-1": 1}
    error = engine.telemetry.sources["other"].last_error or ""
    assert "redirect to another host" in error and "k-123456" not in error


async def test_the_plain_httpx_transport_is_selectable(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(
            f"{demo.url}/v1/link/plain",
            "transport: httpx\nparams: {per_page: 50}\npagination:\n  type: next_url\n",
        )
    )
    assert config.sources["items"].transport == "httpx"
    result, engine = await run(config)
    assert result.done == ["items"], engine.telemetry.sources["items"].last_error
    assert lake_ids(config.out) == expected_ids("plain")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_fetched_pages_leave_no_garbage_for_the_collector(
    demo: DemoServer, write_config: Callable[..., LoadedConfig], transport: str
) -> None:
    """A response and its httpx stream refer to each other, and jmespath's own `search` left
    its interpreter in a cycle: left so, every request (30-odd objects), page and
    incremental record waited for the garbage collector. Pages, redirects (a loop of 11
    responses) and an incremental cursor read from each record. (With httpx's own pool a
    redirect's connection, its body unread, is closed, and asyncio's socket transport leaves
    a cycle of its own: the redirects are counted with aiohttp's.)"""
    looping = f"  looping:\n    url: {demo.url}/v1/bad/redirect-loop/looping\n"
    config = write_config(
        f"defaults:\n  transport: {transport}\n  retry: {{max_attempts: 1}}\n"
        "sources:\n"
        f"  pages:\n    url: {demo.url}/v1/link/plain\n    params: {{per_page: 5}}\n"
        "    pagination: {type: next_url}\n"
        f"  changes:\n    url: {demo.url}/v1/cursor/changes\n    records: items\n"
        "    params: {limit: 100}\n"
        "    pagination: {type: cursor, cursor: next_cursor, cursor_param: cursor}\n"
        "    incremental: {cursor_field: updated_at, param: updated_since}\n"
        + (looping if transport == "aiohttp" else "")
    )
    gc.collect()
    gc.disable()
    try:
        result, engine = await run(config)
        garbage = gc.collect()
    finally:
        gc.enable()
    assert sorted(result.done) == ["changes", "pages"]
    assert result.failed == (["looping"] if transport == "aiohttp" else [])
    assert engine.telemetry.sources["pages"].pages == 48
    assert engine.telemetry.sources["changes"].records == RECORDS
    assert garbage < 200, f"{garbage} objects in reference cycles"  # 570 to 2037 without the fixes


async def test_a_run_collects_young_objects_less_often_and_then_restores_the_collector(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        one_source(f"{demo.url}/v1/link/plain", "pagination:\n  type: next_url\n")
    )
    before = gc.get_threshold()
    async with Engine(config) as engine:
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:])
        result = await engine.run()
    assert result.done == ["items"]
    assert gc.get_threshold() == before
    assert not gc.get_freeze_count()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_url_with_user_and_password_logs_in_with_them(
    write_config: Callable[..., LoadedConfig], transport: str
) -> None:
    from aiohttp import BasicAuth, web

    async def guarded(request: web.Request) -> web.Response:
        said = BasicAuth.decode(request.headers.get("Authorization", "Basic Og=="))
        if (said.login, said.password) != ("reader", "s3cret-pw"):
            raise web.HTTPUnauthorized()
        return web.json_response([{"id": "in-1"}])

    app = web.Application()
    app.router.add_get("/guarded", guarded)
    async with serving(app) as url:
        config = write_config(
            f"sources:\n  items:\n    url: {url.replace('//', '//reader:s3cret-pw@')}/guarded\n"
            f"    transport: {transport}\n"
        )
        result, engine = await run(config)
    assert result.done == ["items"], engine.telemetry.sources["items"].last_error
    assert lake_ids(config.out) == {"in-1": 1}
