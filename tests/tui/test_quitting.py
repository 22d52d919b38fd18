"""Quitting: graceful with a countdown, at once on a second q, and exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.tui.app import Dashboard

from .dashboard import (
    PAGES,
    SIZE,
    dashboard_on,
    shown,
    sources_yaml,
)
from helpers import RECORDS, async_wait_for, engine_of, expected_ids, lake_ids

# -- quitting -----------------------------------------------------------------------------------


async def test_q_after_the_run_exits_0_with_everything_committed(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=RECORDS, page_size=50)
    config = write_config(sources_yaml(server.url, ["kept", "also"], PAGES.replace("10", "50")))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        await pilot.press("q")
        await async_wait_for(lambda: app.return_value is not None, what="exit")
    assert app.return_value == 0
    assert app.result is not None and not app.result.interrupted
    requests = len(server.log())
    # Nothing left to fetch: a new run on the same state makes no request.
    async with Engine(config) as engine:
        result = await asyncio.wait_for(engine.run(), timeout=30)
    assert result.exit_code == 0
    assert len(server.log()) == requests
    assert lake_ids(config.out, "kept") == expected_ids("kept")
    assert lake_ids(config.out, "also") == expected_ids("also")


async def test_q_mid_run_shows_the_grace_countdown_and_commits_before_exiting(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=300, page_size=10, latency_ms=1_000)
    config = write_config(sources_yaml(server.url, ["long"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "long" in stats and stats["long"].in_flight == 1)
        await pilot.press("q")
        banner = app.query_one("#quit-banner")
        assert banner.display
        assert "1 request in flight" in shown(banner)
        assert "Press q again" in shown(banner)
        await async_wait_for(lambda: app.return_value is not None, what="exit")
    assert app.return_value == 130
    fetched = {entry.query for entry in server.log() if entry.status == 200}
    server.update_knobs(latency_ms=0)
    # Every page fetched was committed: the resume fetches only the others, none twice.
    async with Engine(config) as engine:
        result = await asyncio.wait_for(engine.run(), timeout=60)
    assert result.done == ["long"]
    refetched = [e.query for e in server.log() if e.status == 200 and e.query in fetched]
    assert len(refetched) == len(fetched)
    assert lake_ids(config.out) == expected_ids("long", 300)


async def test_a_second_q_quits_at_once_and_releases_the_state(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    # The request takes 10 minutes and a graceful stop would wait all of it: only an exit at
    # once can end the app within the wait below.
    server = demo_server_factory(records=300, page_size=10, latency_ms=600_000)
    config = write_config(sources_yaml(server.url, ["stuck"]))
    app = Dashboard(InProcessRun(Engine(config, stop_grace=600)))
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "stuck" in stats and stats["stuck"].in_flight == 1)
        await pilot.press("q", "q")
        await async_wait_for(lambda: app.return_value is not None, within=60, what="exit")
    assert app.return_value == 130
    server.update_knobs(latency_ms=0)
    async with Engine(config) as engine:  # the lock was released
        result = await asyncio.wait_for(engine.run(), timeout=60)
    assert result.done == ["stuck"]
    assert lake_ids(config.out) == expected_ids("stuck", 300)


async def test_exit_when_done_exits_with_the_runs_code(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        f"sources:\n  fine:\n    url: {demo.url}/v1/all/fine\n"
        f"  broken:\n    url: {demo.url}/v1/nowhere/broken\n"
    )
    app = dashboard_on(config, exit_when_done=True)
    async with app.run_test(size=SIZE):
        await async_wait_for(lambda: app.return_value is not None, what="exit")
    assert app.return_value == 1
    assert app.result is not None
    assert app.result.done == ["fine"] and app.result.failed == ["broken"]


async def test_a_locked_state_exits_2_with_the_reason(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["locked"]))
    async with Engine(config):
        app = dashboard_on(config)
        async with app.run_test(size=SIZE):
            await async_wait_for(lambda: app.return_value is not None, what="exit")
    assert app.return_value == 2
    assert app.startup_error is not None and "in use by another run" in app.startup_error
