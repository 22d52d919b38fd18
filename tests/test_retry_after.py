"""With `retry.retry_after: source`, a Retry-After holds its whole source: no stream, partition,
parallel page or retry of it is sent before the time the server asked for; a stop cuts the hold
short and a pause outlasts it. By default it delays only the request that got it. Against the
real demo API on 127.0.0.1, asserting on what the server saw."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.demo.state import RequestLogEntry
from tui_connector.engine import Engine, RunResult
from tui_connector.telemetry import SourceStats, SourceStatus

from helpers import async_wait_for, expected_ids, lake_ids
from helpers import run_engine as run

RETRY_AFTER = 1.0  # seconds, the demo server's Retry-After on a 429
# A request the client sent before it read a 429 may reach the server just after the 429 left.
SENT_BEFORE_THE_429 = 0.1
DATASETS = ("ra-a", "ra-b", "ra-c")
RECORDS = 2000  # per dataset: 200 pages of 10 each


def partitioned_source(url: str, name: str = "items", retry_after: str = "source") -> str:
    """One stream per dataset, each fetching its pages in parallel once the first page told the
    total: streams, partitions and parallel pages all share the source's limit."""
    return (
        f"  {name}:\n"
        f"    url: {url}/v1/pages/{{ds}}\n"
        "    records: data\n"
        "    concurrency: 4\n"
        f"    retry: {{retry_after: {retry_after}}}\n"
        "    params: {per_page: 10}\n"
        f"    partitions: {{type: values, values: [{', '.join(DATASETS)}], path: ds}}\n"
        "    pagination: {type: page_number, stop: {total_records: total}}\n"
    )


def every_record() -> Counter[str]:
    return sum((expected_ids(dataset, RECORDS) for dataset in DATASETS), Counter())


def throttling_server(factory: Callable[..., DemoServer], retry_after: float) -> DemoServer:
    """A server that answers 429 only when a test says so (`throttle_once`). Without latency, a
    request is decided (with the knobs of the moment) and logged with no await in between."""
    return factory(records=RECORDS, fault_rate=0.0, faults=("429",), retry_after_s=retry_after)


async def throttle_once(server: DemoServer) -> RequestLogEntry:
    """Answer the next request to arrive with a 429 (and Retry-After), and no other; that one.

    Faults are turned off as the 429 is logged, on the server's loop: no other request can be
    decided a fault meanwhile (see `throttling_server`)."""
    state = server.state
    throttled: list[RequestLogEntry] = []
    log = state.record

    def log_and_stop_throttling(entry: RequestLogEntry) -> None:
        if entry.status == 429 and not throttled:
            state.update_knobs(fault_rate=0.0)
            throttled.append(entry)
        log(entry)

    state.record = log_and_stop_throttling  # type: ignore[method-assign]
    state.update_knobs(fault_rate=1.0)
    try:
        await async_wait_for(lambda: bool(throttled), what="a 429")
    finally:
        del state.record  # the method again
    return throttled[0]


def sent_while_held(log: list[RequestLogEntry], retry_after: float) -> list[RequestLogEntry]:
    """The requests that reached the server while one of its 429s said to wait."""
    return [
        entry
        for throttled in log
        if throttled.status == 429
        for entry in log
        if throttled.ended + SENT_BEFORE_THE_429 < entry.started < throttled.ended + retry_after
    ]


@dataclass
class ThrottledRun:
    engine: Engine
    task: asyncio.Task[RunResult]
    stats: SourceStats  # of the throttled source
    throttled: RequestLogEntry  # the one 429


@contextlib.asynccontextmanager
async def throttled_run(
    server: DemoServer, config: LoadedConfig, source: str = "items"
) -> AsyncIterator[ThrottledRun]:
    """A run of `config`, under way, whose `source` has just been answered one 429."""
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run())
        stats = engine.telemetry.sources[source]
        await async_wait_for(lambda: stats.pages >= 10, what="first pages")
        yield ThrottledRun(engine, task, stats, await throttle_once(server))


async def test_no_request_of_the_source_reaches_the_server_before_its_retry_after(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = throttling_server(demo_server_factory, RETRY_AFTER)
    config = write_config("sources:\n" + partitioned_source(server.url))
    async with throttled_run(server, config) as under_way:
        task, stats = under_way.task, under_way.stats
        throttled = under_way.throttled
        hold_ends = throttled.ended + RETRY_AFTER
        # The dashboard shows the hold with its countdown (once the client has read the 429),
        # then the source running again.
        await async_wait_for(
            lambda: stats.status is SourceStatus.BACKING_OFF, within=5, what="backing off"
        )
        assert stats.backoff_until is not None and stats.backoff_until >= hold_ends
        await async_wait_for(
            lambda: stats.status is SourceStatus.RUNNING, what="running after the hold"
        )
        result = await asyncio.wait_for(task, timeout=60)
    assert result.done == ["items"], stats.last_error
    assert lake_ids(config.out, "items") == every_record()
    log = server.log()
    assert [e for e in log if e.status == 429] == [throttled]
    assert sent_while_held(log, RETRY_AFTER) == []
    # Every partition still had pages to fetch after the hold: all of them were held.
    assert {e.path for e in log if e.started >= hold_ends} == {
        f"/v1/pages/{dataset}" for dataset in DATASETS
    }


async def test_by_default_a_retry_after_delays_only_the_request_that_got_it(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = throttling_server(demo_server_factory, RETRY_AFTER)
    config = write_config("sources:\n" + partitioned_source(server.url, retry_after="request"))
    async with throttled_run(server, config) as under_way:
        task, stats = under_way.task, under_way.stats
        throttled = under_way.throttled
        result = await asyncio.wait_for(task, timeout=60)
    assert result.done == ["items"], stats.last_error
    assert lake_ids(config.out, "items") == every_record()
    log = server.log()
    assert [e for e in log if e.status == 429] == [throttled]
    assert sent_while_held(log, RETRY_AFTER)  # the other requests went on meanwhile
    [retried] = [
        e
        for e in log
        if e.started > throttled.ended and e.query == throttled.query and e.path == throttled.path
    ]
    assert retried.started >= throttled.ended + RETRY_AFTER - SENT_BEFORE_THE_429


async def test_a_stop_during_a_long_hold_ends_the_run_at_once_and_loses_nothing(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = throttling_server(demo_server_factory, retry_after=30)
    config = write_config("sources:\n" + partitioned_source(server.url))
    async with throttled_run(server, config) as under_way:
        engine, task, stats = under_way.engine, under_way.task, under_way.stats
        throttled = under_way.throttled
        # Well into the hold, the source has sent nothing more: it has nothing in flight.
        await async_wait_for(
            lambda: time.monotonic() > throttled.ended + 0.5 and stats.in_flight == 0,
            what="half a second of the hold",
        )
        assert stats.status is SourceStatus.BACKING_OFF
        backoff_until = stats.backoff_until
        assert backoff_until is not None and backoff_until - time.monotonic() > 20
        engine.request_stop()
        result = await asyncio.wait_for(task, timeout=60)
    assert [e for e in server.log() if e.started > throttled.ended + SENT_BEFORE_THE_429] == []
    assert time.monotonic() < backoff_until  # the run ended before the hold would have
    assert result.interrupted and result.stopped == ["items"]
    # The checkpoint holds what the stopped run fetched: the next run fetches only the rest.
    result, _ = await run(config)
    assert result.done == ["items"]
    assert lake_ids(config.out, "items") == every_record()
    fetched = Counter((e.path, e.query) for e in server.log() if e.status == 200)
    assert max(fetched.values()) == 1, [page for page, times in fetched.items() if times > 1]


async def test_a_pause_during_a_hold_sends_nothing_until_resumed_and_loses_nothing(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = throttling_server(demo_server_factory, RETRY_AFTER)
    config = write_config("sources:\n" + partitioned_source(server.url))
    pauses: list[tuple[float, float]] = []
    async with throttled_run(server, config) as under_way:
        engine, task, stats = under_way.engine, under_way.task, under_way.stats
        throttled = under_way.throttled
        # Paused during a hold, and still paused when it ends: nothing is sent.
        engine.pause("items")
        paused_at = time.monotonic()
        await async_wait_for(
            lambda: (
                time.monotonic() > throttled.ended + RETRY_AFTER
                and stats.status is SourceStatus.PAUSED
            ),
            what="paused past the hold's end",
        )
        assert stats.in_flight == 0
        engine.resume("items")
        pauses.append((paused_at, time.monotonic()))
        pages = stats.pages
        await async_wait_for(lambda: stats.pages >= pages + 10, what="pages after the resume")

        # Paused during a hold and resumed before it ends: the source still waits it out. The
        # hold is longer this time, so that a slow machine resumes well before its end.
        long_hold = 5 * RETRY_AFTER
        server.update_knobs(retry_after_s=long_hold)
        throttled = await throttle_once(server)
        engine.pause("items")
        paused_at = time.monotonic()
        await async_wait_for(lambda: stats.in_flight == 0, what="the requests in flight")
        engine.resume("items")
        pauses.append((paused_at, time.monotonic()))
        assert time.monotonic() < throttled.ended + long_hold, "resumed after the hold"
        assert stats.status is SourceStatus.BACKING_OFF

        result = await asyncio.wait_for(task, timeout=60)
    assert result.done == ["items"], stats.last_error
    assert lake_ids(config.out, "items") == every_record()
    log = server.log()
    for paused_at, resumed_at in pauses:
        sent = [e for e in log if paused_at + SENT_BEFORE_THE_429 < e.started < resumed_at]
        assert sent == [], "sent while paused"
    assert sent_while_held(log, RETRY_AFTER) == []


async def test_another_source_of_the_run_is_not_held(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    throttling = throttling_server(demo_server_factory, RETRY_AFTER)
    other = demo_server_factory(records=RECORDS, latency_ms=20)
    config = write_config(
        "sources:\n"
        + partitioned_source(throttling.url, name="held")
        + partitioned_source(other.url, name="free")
    )
    async with throttled_run(throttling, config, source="held") as under_way:
        task, throttled = under_way.task, under_way.throttled
        stats = under_way.engine.telemetry.sources
        await async_wait_for(
            lambda: stats["held"].status is SourceStatus.BACKING_OFF, within=5, what="backing off"
        )
        assert stats["free"].status is SourceStatus.RUNNING
        result = await asyncio.wait_for(task, timeout=60)
    assert sorted(result.done) == ["free", "held"]
    assert lake_ids(config.out, "held") == every_record()
    assert lake_ids(config.out, "free") == every_record()
    assert sent_while_held(throttling.log(), RETRY_AFTER) == []
    # The other source kept fetching, to the end of the hold.
    hold_ends = throttled.ended + RETRY_AFTER
    during = [e for e in other.log() if throttled.ended < e.started < hold_ends]
    assert len(during) >= 10, len(during)
    assert any(e.started > hold_ends - 0.2 for e in during)
