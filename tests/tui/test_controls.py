"""Keys reach the engine: pause, resume, concurrency, auto, retry and stop, by key or the
command palette, against the real demo API."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.command import CommandList, CommandPalette
from textual.content import Content

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.telemetry import (
    ConcurrencyMode,
    SourceStatus,
)
from tui_connector.tui.app import Dashboard

from .dashboard import (
    PAGES,
    SIZE,
    cell,
    dashboard_on,
    in_flight,
    record_notifications,
    requests_for,
    sources_yaml,
)
from helpers import async_wait_for, engine_of, expected_ids, lake_ids


def test_the_dashboard_asks_the_engine_to_pace_for_a_responsive_loop(
    write_config: Callable[..., LoadedConfig],
) -> None:
    config = write_config(sources_yaml("http://127.0.0.1:9", ["items"]))
    engine = Engine(config)
    assert not engine.pacer.interactive  # headless: throughput first
    Dashboard(InProcessRun(engine))
    assert engine.pacer.interactive  # an operator watches: responses are paced too


# -- controls ---------------------------------------------------------------------------------


async def test_p_pauses_the_selected_source_and_p_again_resumes_it(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=1000, page_size=10, latency_ms=20)
    busy = sources_yaml(server.url, ["busy"], PAGES.replace("size: 10", "size: 2"))
    idle = sources_yaml(server.url, ["idle"]).removeprefix("sources:\n")
    config = write_config(busy + idle)
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await pilot.press("down")
        assert app.sources_table.selected_source == "idle"
        await async_wait_for(lambda: "idle" in stats and stats["idle"].pages >= 3, what="pages")
        await pilot.press("p")
        assert engine_of(app).is_paused("idle")
        await async_wait_for(lambda: stats["idle"].status is SourceStatus.PAUSED, what="paused")
        paused_at = time.monotonic()
        await async_wait_for(lambda: cell(app, "idle", "status") == "paused", what="shown")
        busy_pages = stats["busy"].pages
        # The other source makes real progress meanwhile...
        await async_wait_for(lambda: stats["busy"].pages >= busy_pages + 10, what="busy")
        assert "idle: paused" in in_flight(app)
        # ...while the paused one starts no request at all.
        assert [t for t in requests_for(server, "idle") if t > paused_at] == []
        assert stats["idle"].in_flight == 0
        await pilot.press("p")
        assert not engine_of(app).is_paused("idle")
        await async_wait_for(lambda: stats["idle"].status is SourceStatus.DONE, what="done")
        await async_wait_for(lambda: cell(app, "idle", "status") == "done", what="done shown")
        assert [t for t in requests_for(server, "idle") if t > paused_at]
    assert lake_ids(config.out, "idle") == expected_ids("idle", 1000)


async def test_pausing_is_shown_until_the_request_in_flight_has_committed(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=100, page_size=10, latency_ms=400)
    config = write_config(sources_yaml(server.url, ["slow"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "slow" in stats and stats["slow"].in_flight == 1)
        await pilot.press("p")
        await async_wait_for(lambda: cell(app, "slow", "status") == "pausing", what="pausing")
        assert stats["slow"].in_flight == 1
        await async_wait_for(lambda: cell(app, "slow", "status") == "paused", what="paused")
        assert stats["slow"].in_flight == 0
        assert stats["slow"].last_checkpoint_at is not None  # its pages are committed
        await pilot.press("q", "q")


async def test_shift_p_pauses_and_resumes_every_source(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=1000, page_size=10, latency_ms=20)
    config = write_config(sources_yaml(server.url, ["one", "two", "three"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        engine = engine_of(app)
        await async_wait_for(lambda: len(engine.runners) == 3 and engine.telemetry.sources)
        await pilot.press("P")
        assert all(engine.is_paused(name) for name in engine.runners)
        await async_wait_for(
            lambda: all(cell(app, name, "status") == "paused" for name in engine.runners),
            what="all paused",
        )
        await pilot.press("P")
        assert not any(engine.is_paused(name) for name in engine.runners)
        await async_wait_for(app.all_finished, what="all done")
    for name in ("one", "two", "three"):
        assert lake_ids(config.out, name) == expected_ids(name, 1000)


async def test_plus_and_minus_change_the_concurrency_the_engine_uses(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["first", "second"], "concurrency: 3\n"))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        engine = engine_of(app)
        runners = engine.runners
        await async_wait_for(lambda: len(runners) == 2 and len(engine.telemetry.sources) == 2)
        await pilot.press("down", "+")
        assert runners["second"].limit.limit == 4
        assert runners["first"].limit.limit == 3
        await async_wait_for(lambda: cell(app, "second", "concurrency").endswith("/4"))
        await pilot.press("-", "-", "-")
        assert runners["second"].limit.limit == 1
        await pilot.press("-")  # already at the minimum: stays, and says so
        assert runners["second"].limit.limit == 1
        assert engine_of(app).telemetry.sources["second"].concurrency == 1
        await async_wait_for(lambda: cell(app, "second", "concurrency").endswith("/1"))


async def test_plus_turns_an_auto_source_manual_and_a_turns_it_back(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=5000, page_size=10, latency_ms=20)
    config = write_config(sources_yaml(server.url, ["adaptive"], "concurrency: auto\n" + PAGES))
    app = dashboard_on(config)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "adaptive" in stats and stats["adaptive"].pages >= 2)
        source = stats["adaptive"]
        assert source.concurrency_mode is ConcurrencyMode.AUTO
        await async_wait_for(lambda: cell(app, "adaptive", "concurrency").endswith(" A"))
        await async_wait_for(lambda: "adaptive: limit" in str(app.sources_table.border_subtitle))

        await pilot.press("+")
        assert source.concurrency_mode is ConcurrencyMode.MANUAL
        limit = source.concurrency
        assert engine_of(app).runners["adaptive"].limit.limit == limit
        assert source.concurrency_reason == f"set to {limit} by the operator"
        assert [note for note in notes if "now manual" in note[0]] == [
            (f"adaptive: concurrency now manual at {limit}; a returns it to auto", "information")
        ]
        await async_wait_for(
            lambda: cell(app, "adaptive", "concurrency").endswith(f"/{limit} M"), what="M"
        )
        note = str(app.sources_table.border_subtitle)
        assert f"limit {limit}, manual" in note and "by the operator" in note
        await pilot.press("+")  # still manual: no second notice
        assert source.concurrency == limit + 1
        assert len([note for note in notes if "now manual" in note[0]]) == 1
        # A manual limit stays where the operator put it while pages keep coming.
        pages = source.pages
        await async_wait_for(lambda: source.pages >= pages + 20, what="more pages")
        assert source.concurrency == limit + 1
        assert source.concurrency_mode is ConcurrencyMode.MANUAL

        await pilot.press("a")
        assert source.concurrency_mode is ConcurrencyMode.AUTO
        assert ("adaptive: concurrency adaptive again, from " in notes[-1][0]) is True
        await async_wait_for(lambda: cell(app, "adaptive", "concurrency").endswith(" A"))
        await pilot.press("a")  # already auto: said so, nothing changes
        assert notes[-1] == ("adaptive: concurrency is already adaptive (auto)", "information")
        assert source.concurrency_mode is ConcurrencyMode.AUTO
        await pilot.press("q", "q")


async def test_a_on_a_fixed_source_warns_and_changes_nothing(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=1000, page_size=10, latency_ms=20)
    config = write_config(sources_yaml(server.url, ["fixed"], "concurrency: 3\n" + PAGES))
    app = dashboard_on(config)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "fixed" in stats and stats["fixed"].pages >= 1)
        await pilot.press("a")
        assert notes and notes[-1][1] == "warning"
        assert notes[-1][0].startswith("fixed has a fixed concurrency (3)")
        assert stats["fixed"].concurrency_mode is ConcurrencyMode.FIXED
        assert stats["fixed"].concurrency == 3
        await pilot.press("+")  # a fixed source turns neither manual nor auto
        assert stats["fixed"].concurrency_mode is ConcurrencyMode.FIXED
        assert not [note for note in notes if "now manual" in note[0]]
        await async_wait_for(lambda: cell(app, "fixed", "concurrency").endswith("/4"))
        assert app.sources_table.border_subtitle is None
        await pilot.press("q", "q")


async def test_plus_on_a_done_source_warns_and_changes_nothing(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=30, page_size=10, latency_ms=0)
    config = write_config(sources_yaml(server.url, ["quick"], "concurrency: 3\n" + PAGES))
    app = dashboard_on(config)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "quick" in stats and stats["quick"].status.finished)
        await pilot.press("+")
        assert notes and notes[-1] == ("quick is done: no request is left to limit", "warning")
        assert stats["quick"].concurrency == 3
        await pilot.press("q", "q")


async def test_the_palette_returns_a_manual_source_to_auto(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    # Slow requests keep the process idle, so that Pilot types without waiting for it.
    server = demo_server_factory(records=1000, page_size=10, latency_ms=300)
    config = write_config(sources_yaml(server.url, ["tuned"], "concurrency: auto\n" + PAGES))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "tuned" in stats)
        await pilot.press("-")
        assert stats["tuned"].concurrency_mode is ConcurrencyMode.MANUAL
        await pilot.press("ctrl+p")
        await async_wait_for(lambda: CommandPalette.is_open(app), what="the palette")
        await pilot.press(*"auto concurrency for tuned")
        commands = app.screen.query_one(CommandList)

        def first_command_highlighted() -> bool:
            if commands.option_count == 0 or commands.highlighted != 0:
                return False
            prompt = commands.get_option_at_index(0).prompt
            return isinstance(prompt, Content) and prompt.plain.startswith(
                "Auto concurrency for tuned\n"
            )

        await async_wait_for(first_command_highlighted, what="the command")
        await pilot.press("enter")
        await async_wait_for(
            lambda: stats["tuned"].concurrency_mode is ConcurrencyMode.AUTO, what="auto"
        )
        await pilot.press("q", "q")


async def test_r_retries_a_failed_source_to_completion(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=200, page_size=10, latency_ms=20)
    config = write_config(
        sources_yaml(server.url, ["again"], "retry: {max_attempts: 2, backoff_base: 0}\n" + PAGES)
    )
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "again" in stats and stats["again"].pages >= 5)
        server.update_knobs(fault_rate=1.0, faults=("500",))
        await async_wait_for(lambda: cell(app, "again", "status") == "failed", what="failed")
        assert "HTTP 500" in (stats["again"].last_error or "")
        assert app.errors_table.row_count >= 2  # the retried attempt and the final failure
        server.update_knobs(fault_rate=0.0)
        await pilot.press("r")
        await async_wait_for(lambda: cell(app, "again", "status") == "done", what="done")
        await pilot.press("q")
    assert app.return_value == 0
    assert lake_ids(config.out) == expected_ids("again", 200)
    pages = [entry.query for entry in server.log() if entry.status == 200]
    assert len(pages) == len(set(pages))  # no page fetched twice


async def test_s_stops_the_selected_source_and_r_resumes_it(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=300, page_size=10, latency_ms=10)
    config = write_config(sources_yaml(server.url, ["halted"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "halted" in stats and stats["halted"].pages >= 3)
        await pilot.press("s")
        await async_wait_for(lambda: cell(app, "halted", "status") == "stopped", what="stopped")
        assert stats["halted"].pages < 31
        await pilot.press("r")
        await async_wait_for(lambda: cell(app, "halted", "status") == "done", what="done")
    assert lake_ids(config.out) == expected_ids("halted", 300)
