"""The front-end facade: the rules every front end shares (exit codes, when a run counts as
interrupted, the two-stage stop), the in-process run behind it and the one config
description."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.describe import describe_source
from tui_connector.engine import Engine
from tui_connector.facade import (
    ExitCode,
    RunError,
    RunResult,
    SourceDescription,
    TwoStageStop,
    grace_left,
    interrupted,
)
from tui_connector.in_process import InProcessRun

from helpers import async_wait_for

TOKEN = "test-token-5f3a9"


def test_exit_codes() -> None:
    assert RunResult(done=["a"]).exit_code == ExitCode.OK == 0
    assert RunResult(done=["a"], failed=["b"]).exit_code == ExitCode.FAILED == 1
    assert RunResult(failed=["b"], interrupted=True).exit_code == ExitCode.INTERRUPTED == 130
    assert ExitCode.USAGE == 2


@pytest.mark.parametrize(
    ("stop_requested", "finished_before_stop", "unfinished", "expected"),
    [
        (False, False, True, False),  # no stop: whatever is left, the run was not interrupted
        (True, False, True, True),  # stopped mid-run with work left
        (True, False, False, False),  # stopped, but every source got to its end meanwhile
        (True, True, True, False),  # `q` after the run: a source stopped by hand is no matter
    ],
)
def test_a_run_is_interrupted_only_by_a_stop_that_left_work_undone(
    stop_requested: bool, finished_before_stop: bool, unfinished: bool, expected: bool
) -> None:
    verdict = interrupted(
        stop_requested=stop_requested,
        finished_before_stop=finished_before_stop,
        unfinished=unfinished,
    )
    assert verdict is expected


def test_the_first_stop_is_graceful_and_every_later_one_immediate() -> None:
    calls: list[str] = []
    stop = TwoStageStop(
        graceful=lambda: calls.append("graceful"), immediate=lambda: calls.append("now")
    )
    assert not stop.requested
    stop.request()
    assert stop.requested and calls == ["graceful"]
    stop.request()
    stop.request()
    assert calls == ["graceful", "now", "now"]


def test_the_grace_counts_down_from_the_stop_request(
    write_config: Callable[..., LoadedConfig],
) -> None:
    config = write_config("sources:\n  a:\n    url: http://127.0.0.1:9/a\n")
    run = InProcessRun(Engine(config, stop_grace=30))
    assert run.facts.stop_grace == 30 and run.facts.selected == ("a",)
    assert grace_left(run, time.monotonic()) is None
    run.request_stop()
    requested_at = run.stop_requested_at
    assert requested_at is not None
    assert grace_left(run, requested_at + 12) == pytest.approx(18)


async def test_the_in_process_run_opens_runs_and_closes_an_engine(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(f"sources:\n  items:\n    url: {demo.url}/v1/all/items\n")
    run = InProcessRun(Engine(config))
    assert not run.is_paused("items")  # not set up yet: not paused either
    await run.open()
    try:
        result = await run.run()
    finally:
        await run.close()
    assert result == RunResult(done=["items"])
    stats = run.snapshot().sources["items"]
    assert stats.records == 237
    assert stats.last_checkpoint_at is not None  # when its last checkpoint committed


async def test_a_run_whose_state_is_locked_cannot_open(
    write_config: Callable[..., LoadedConfig],
) -> None:
    config = write_config("sources:\n  a:\n    url: http://127.0.0.1:9/a\n")
    async with Engine(config):
        with pytest.raises(RunError, match="in use by another run"):
            await InProcessRun(Engine(config)).open()


async def test_a_stop_once_every_source_finished_interrupts_nothing(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    """The dashboard's run always ends with a stop: once every source has finished, even one
    the operator stopped by hand, that stop interrupts nothing."""
    server = demo_server_factory(records=1000, page_size=10, latency_ms=20)
    config = write_config(
        f"sources:\n  halted:\n    url: {server.url}/v1/pages/halted\n    records: data\n"
        "    pagination: {type: page_number, size_param: per_page, size: 10}\n"
    )
    run = InProcessRun(Engine(config))
    await run.open()
    try:
        running = asyncio.create_task(run.run(until_done=False))
        stats = run.snapshot().sources["halted"]
        await async_wait_for(lambda: stats.pages >= 2, what="some pages")
        run.stop("halted")
        await async_wait_for(lambda: stats.status.finished, what="the source stopped")
        run.request_stop()
        result = await asyncio.wait_for(running, timeout=60)
    finally:
        await run.close()
    assert result == RunResult(stopped=["halted"], interrupted=False)
    assert result.exit_code == ExitCode.OK


def test_validate_and_the_detail_screen_describe_a_source_from_one_place(
    write_config: Callable[..., LoadedConfig],
) -> None:
    config = write_config(
        "sources:\n"
        "  parent:\n    url: http://127.0.0.1:9/p\n"
        "  shards:\n"
        "    url: http://127.0.0.1:9/v1/{ds}?key=${API_TOKEN}\n"
        "    concurrency: {min: 2, max: 8}\n"
        "    rate_limit: 5\n"
        "    headers: {X-Api-Token: '${API_TOKEN}'}\n"
        "    partitions: {type: parent, source: parent, value: id, path: ds}\n"
        "    incremental: {cursor_field: updated_at, param: since}\n",
        env={"API_TOKEN": TOKEN},
    )
    described = describe_source(config.sources["shards"], config.redactor)
    assert described.headline == (
        "GET http://127.0.0.1:9/v1/{ds}?key=***  pagination=none concurrency=auto (2-8), "
        "5 req/s partitions=parent of parent incremental=updated_at"
    )
    settings = dict(described.settings)
    assert settings["headers"] == "X-Api-Token: ***"
    assert settings["partitions"] == "parent of parent: one per record's id → url {ds}"
    assert settings["concurrency"] == "auto 2-8, starting at 4"
    assert TOKEN not in repr(described)
    assert (described.partitioned, described.adaptive) == (True, True)
    assert dict(described.settings_at(5))["concurrency"] == "auto 2-8, starting at 4 (now 5)"
    assert described.settings_at(4) == described.settings


def test_a_description_is_plain_data() -> None:
    described = SourceDescription("a", "GET x", (("concurrency", "4"),), 4, False, False)
    assert dict(described.settings_at(6)) == {"concurrency": "4 (now 6)"}
