"""The dashboard, driven by Textual's Pilot against the real demo API: keys reach the engine,
the screen tells the truth, quitting commits. Snapshots pin its appearance."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.content import Content
from textual.geometry import Size
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.telemetry import (
    ConcurrencyMode,
    ErrorEvent,
    SourceStats,
    SourceStatus,
    StreamStats,
    StreamStatus,
)
from tui_connector.tui import format as fmt
from tui_connector.tui.app import Dashboard
from tui_connector.tui.screens import HelpScreen, KeyList, SourceDetailScreen
from tui_connector.tui.widgets import (
    IN_FLIGHT_SHRINK_AFTER_SECONDS,
    MAX_IN_FLIGHT_SHOWN,
    MAX_PARTITIONS_SHOWN,
    InFlightPane,
    PartitionTable,
    SteadyFooter,
    shown_streams,
)

from helpers import RECORDS, async_wait_for, engine_of, expected_ids, lake_ids

SIZE = (140, 40)
TOKEN = "test-token-5f3a9"  # the session demo server's token (see conftest)
PAGES = "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 10\n"


def sources_yaml(base_url: str, names: list[str], options: str = PAGES) -> str:
    """Page-number sources, one per name, each on its own dataset of the demo server."""
    body = "".join(f"    {line}\n" for line in options.splitlines())
    return "sources:\n" + "".join(
        f"  {name}:\n    url: {base_url}/v1/pages/{name}\n{body}" for name in names
    )


def cell(app: Dashboard, source: str, column: str) -> str:
    value = app.sources_table.get_cell(source, column)
    return value.plain if isinstance(value, Text) else str(value)


def shown(static: Widget) -> str:
    """The text a Static shows, whatever it was given (a string, Text or a Rich table)."""
    assert isinstance(static, Static)
    content = static.content
    if isinstance(content, str):
        return content
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(content)
    return console.export_text()


def in_flight(app: Dashboard) -> str:
    return "\n".join(app.query_one(InFlightPane).lines())


def good_and_broken(demo: DemoServer, write_config: Callable[..., LoadedConfig]) -> LoadedConfig:
    """Two sources: one that finishes, one whose every request fails (404)."""
    return write_config(
        f"sources:\n  good:\n    url: {demo.url}/v1/all/good\n"
        f"  broken:\n    url: {demo.url}/v1/nowhere/broken\n"
    )


async def finished_with_its_error(app: Dashboard) -> None:
    """Once the run of `good_and_broken` is over and the errors pane lists its one error."""
    await async_wait_for(app.all_finished, what="the run")
    await async_wait_for(lambda: app.errors_table.row_count == 1, what="the error")


def requests_for(server: DemoServer, source: str) -> list[float]:
    return [entry.started for entry in server.log() if entry.path.endswith(f"/{source}")]


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
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
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


def record_notifications(app: Dashboard) -> list[tuple[str, str]]:
    """Every notification the app raises from now on, as (message, severity)."""
    notes: list[tuple[str, str]] = []
    notify = app.notify

    def recording(message: str, **options: object) -> None:
        notes.append((message, str(options.get("severity", "information"))))
        notify(message, **options)  # type: ignore[arg-type]

    app.notify = recording  # type: ignore[method-assign]
    return notes


async def test_plus_turns_an_auto_source_manual_and_a_turns_it_back(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=5000, page_size=10, latency_ms=20)
    config = write_config(sources_yaml(server.url, ["adaptive"], "concurrency: auto\n" + PAGES))
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
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


async def test_the_palette_returns_a_manual_source_to_auto(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    # Slow requests keep the process idle, so that Pilot types without waiting for it.
    server = demo_server_factory(records=1000, page_size=10, latency_ms=300)
    config = write_config(sources_yaml(server.url, ["tuned"], "concurrency: auto\n" + PAGES))
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: "halted" in stats and stats["halted"].pages >= 3)
        await pilot.press("s")
        await async_wait_for(lambda: cell(app, "halted", "status") == "stopped", what="stopped")
        assert stats["halted"].pages < 31
        await pilot.press("r")
        await async_wait_for(lambda: cell(app, "halted", "status") == "done", what="done")
    assert lake_ids(config.out) == expected_ids("halted", 300)


# -- what the screen says ---------------------------------------------------------------------


async def test_a_backing_off_source_shows_a_live_countdown(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("429",), retry_after_s=30)
    config = write_config(sources_yaml(server.url, ["throttled"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(
            lambda: cell(app, "throttled", "status").startswith("backing off"), what="backoff"
        )

        def countdown() -> int:
            status = cell(app, "throttled", "status")
            assert status.startswith("backing off"), status
            return int(status.removeprefix("backing off ").rstrip("s"))

        seconds = countdown()
        assert 25 <= seconds <= 30
        pane = in_flight(app)
        assert "throttled: backing off, next attempt in" in pane
        assert "HTTP 429" in pane
        await async_wait_for(lambda: countdown() < seconds, what="the countdown to tick")
        await pilot.press("q")
    assert app.return_value == 130


async def test_errors_pane_filters_to_the_selected_source_with_f(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    app = Dashboard(InProcessRun(Engine(good_and_broken(demo, write_config))))
    async with app.run_test(size=SIZE) as pilot:
        errors = app.errors_table
        await finished_with_its_error(app)
        assert errors.row_sources == {next(iter(errors.row_sources)): "broken"}
        await pilot.press("f")  # the selected source is "good": it has no errors
        assert errors.row_count == 0
        assert "Errors of good" in str(errors.border_title)
        await pilot.press("down")
        await async_wait_for(lambda: errors.row_count == 1, what="broken's error")
        await pilot.press("f")
        assert errors.row_count == 1
        assert "all sources" in str(errors.border_title)
        await pilot.press("e", "enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        assert isinstance(app.screen, SourceDetailScreen) and app.screen.source == "broken"


async def test_the_errors_pane_follows_new_errors_unless_focused(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["noisy"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        app.refresh_timer.pause()  # ticks by hand only
        telemetry = engine_of(app).telemetry
        errors = app.errors_table

        def add_errors(count: int) -> None:
            for _ in range(count):
                number = len(telemetry.errors)
                event = ErrorEvent(0.0, "noisy", 503, f"HTTP 503 #{number}", "", "", 1, "retry")
                telemetry.error(event)
            app.refresh_view()

        add_errors(60)
        await pilot.pause()
        assert errors.max_scroll_y > 0
        assert errors.scroll_y == errors.max_scroll_y
        add_errors(1)
        await pilot.pause()
        assert errors.scroll_y == errors.max_scroll_y
        await pilot.press("e", "ctrl+home")  # focused: new errors leave the view alone
        add_errors(1)
        await pilot.pause()
        assert errors.cursor_row == 0 and errors.scroll_y == 0


async def test_enter_opens_the_detail_screen_with_streams_and_no_secret(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        f"sources:\n  invoices:\n    url: {demo.url}/secure/cursor/invoices\n"
        "    records: items\n    params: {limit: 50}\n"
        "    auth: {type: bearer, token: '${API_TOKEN}'}\n"
        "    pagination: {type: cursor, cursor: next_cursor, cursor_param: cursor}\n",
        env={"API_TOKEN": TOKEN},
    )
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        screen = app.screen
        assert isinstance(screen, SourceDetailScreen)
        streams = screen.query_one("#streams")
        await async_wait_for(lambda: streams.row_count == 1, what="the stream row")  # type: ignore[attr-defined]
        await pilot.pause()
        assert "bearer token (hidden)" in shown(screen.query_one("#config-summary"))
        assert shown(screen.query_one("#detail-title")) == "invoices — done"
        assert TOKEN not in app.export_screenshot()
        await pilot.press("escape")
        await async_wait_for(lambda: not isinstance(app.screen, SourceDetailScreen))


async def test_a_click_on_a_source_selects_it_and_opens_its_detail(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["first", "second", "third"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        # The table's top border, its header, then one line per source.
        await pilot.click("#sources", offset=(4, 3))
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        assert isinstance(app.screen, SourceDetailScreen) and app.screen.source == "second"
        await pilot.press("escape")
        assert app.sources_table.selected_source == "second"


SHARDS = """\
sources:
  shards:
    url: {url}/v1/pages/{{ds}}
    records: data
    params: {{per_page: 20}}
    partitions: {{type: values, values: [{values}], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


async def test_a_partitioned_source_rolls_up_its_partitions_and_the_detail_lists_them(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(SHARDS.format(url=demo.url, values="alpha, beta, gamma"))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        stats = engine_of(app).telemetry.sources["shards"]
        assert (stats.streams_total, stats.streams_done, stats.streams_failed) == (3, 3, 0)
        await async_wait_for(lambda: cell(app, "shards", "progress") == "3/3 parts")
        assert cell(app, "shards", "records") == f"{3 * RECORDS:,}"
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        screen = app.screen
        assert isinstance(screen, SourceDetailScreen)
        table = screen.query_one("#streams", PartitionTable)
        await async_wait_for(lambda: table.row_count == 3, what="the partitions")
        pages = -(-RECORDS // 20)
        rows = {key: [value.plain for value in table.get_row(key)] for key in table.row_keys}
        assert set(rows) == {"alpha", "beta", "gamma"}
        for key, (partition, status, shown_pages, records, _, error) in rows.items():
            assert (partition, status, shown_pages) == (key, "done", f"{pages}/{pages}")
            assert (records, error) == (str(RECORDS), "—")
        assert table.border_title == "Partitions: 3 of 3 done, 0 running"
        assert table.border_subtitle is None
        summary = shown(screen.query_one("#config-summary"))
        assert "values (3): alpha, beta, gamma → url {ds}" in summary
        assert "3 of 3 done, 0 running" in shown(screen.query_one("#detail-figures"))
    expected = expected_ids("alpha") + expected_ids("beta") + expected_ids("gamma")
    assert lake_ids(config.out, "shards") == expected


async def test_the_partitions_list_is_bounded(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    names = [f"p{number:03d}" for number in range(MAX_PARTITIONS_SHOWN + 30)]
    shards = SHARDS.format(url=demo.url, values=", ".join(names))
    config = write_config(shards.replace("per_page: 20", "per_page: 500"))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, within=60, what="the run")
        total = len(names)
        await async_wait_for(lambda: cell(app, "shards", "progress") == f"{total}/{total} parts")
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        table = app.screen.query_one("#streams", PartitionTable)
        await async_wait_for(lambda: table.row_count == MAX_PARTITIONS_SHOWN, what="the rows")
        assert table.border_subtitle == "… and 30 more"


def test_partition_rollup_and_concurrency_texts() -> None:
    stats = SourceStats("s", partitioned=True, streams_total=40, streams_done=12)
    assert fmt.progress_text(stats) == "12/40 parts"
    stats.streams_failed = 3
    assert fmt.progress_text(stats) == "12/40 parts 3✗"
    stats.partitioned = False
    assert fmt.progress_text(stats) == "0 so far"
    stats.in_flight, stats.concurrency = 12, 20
    assert fmt.concurrency_text(stats) == "12/20"
    stats.concurrency_mode = ConcurrencyMode.AUTO
    assert fmt.concurrency_text(stats) == "12/20 A"
    stats.concurrency_mode = ConcurrencyMode.MANUAL
    assert fmt.concurrency_text(stats) == "12/20 M"
    stats.concurrency_reason, stats.concurrency_changed_at = "raised: throughput rising", 100.0
    assert fmt.concurrency_note(stats, 103.0) == (
        "s: limit 20, manual (a: auto) — raised: throughput rising, 3 seconds ago"
    )


def test_the_partitions_shown_put_running_then_failed_first() -> None:
    stats = SourceStats("s", partitioned=True, streams_total=10)
    for number in range(6):
        stats.streams[f"k{number}"] = StreamStats(f"k{number}", status=StreamStatus.DONE)
    stats.streams["k2"].status = StreamStatus.RUNNING
    stats.streams["k4"].status = StreamStatus.FAILED
    stats.streams["k5"].status = StreamStatus.RUNNING
    shown_keys, hidden = shown_streams(stats, limit=4)
    assert [stream.key for stream in shown_keys] == ["k2", "k5", "k4", "k0"]
    assert hidden == 6  # two done ones cut, four not started yet


async def test_the_in_flight_pane_is_bounded_and_builds_only_the_lines_on_screen(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=20, page_size=10)
    config = write_config(sources_yaml(server.url, ["a", "b", "c"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        app.refresh_timer.pause()  # ticks by hand only: one tick, one frame
        engine = engine_of(app)
        requests = engine.telemetry.in_flight
        for number in range(120):  # a synthetic burst, to measure what one tick costs
            engine.telemetry.request_started("abc"[number % 3], "GET", f"http://x/{number}", 1)
        app.refresh_view()
        await pilot.pause()
        pane = app.query_one(InFlightPane)
        lines = pane.lines()
        assert len(lines) == MAX_IN_FLIGHT_SHOWN + 1
        assert lines[-1] == f"… and {120 - MAX_IN_FLIGHT_SHOWN} more"
        assert pane.border_title == "In flight: 120"
        on_screen = pane.scrollable_content_region.height
        assert 0 < on_screen < len(lines)
        drawn = pane.lines_drawn
        app.refresh_view()
        await pilot.pause()
        assert 0 < pane.lines_drawn - drawn <= on_screen
        for request_id in list(requests):
            engine.telemetry.request_finished(request_id)
        await pilot.press("q")


@contextlib.asynccontextmanager
async def finished_run_ticked_by_hand(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> AsyncIterator[tuple[Dashboard, Callable[[float], Awaitable[None]]]]:
    """A dashboard whose run of one small source "a" has finished, with its timer stopped:
    `tick(seconds)` moves its clock on by that much and refreshes the view once."""
    server = demo_server_factory(records=20, page_size=10)
    config = write_config(sources_yaml(server.url, ["a"]))
    clock = [1_000.0]
    app = Dashboard(InProcessRun(Engine(config)), clock=lambda: clock[0])
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        app.refresh_timer.pause()

        async def tick(seconds_later: float) -> None:
            clock[0] += seconds_later
            app.refresh_view()
            await pilot.pause()

        yield app, tick
        await pilot.press("q")


async def test_the_in_flight_pane_grows_at_once_and_shrinks_only_when_fewer_lines_lasted(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    """A pane that followed each tick's count would make the errors pane below it jump (and
    re-lay the whole screen out) ten times a second."""
    async with finished_run_ticked_by_hand(demo_server_factory, write_config) as (app, tick):
        telemetry = engine_of(app).telemetry
        pane = app.in_flight_pane

        async def height_after_tick(seconds_later: float) -> int:
            await tick(seconds_later)
            return pane.outer_size.height

        idle = await height_after_tick(0)
        requests = [telemetry.request_started("a", "GET", f"http://x/{n}", 1) for n in range(6)]
        tall = await height_after_tick(0.1)
        assert tall == idle + 5  # six lines where "nothing in flight" was one
        for request_id in requests[3:]:
            telemetry.request_finished(request_id)
        assert await height_after_tick(0.1) == tall
        assert await height_after_tick(IN_FLIGHT_SHRINK_AFTER_SECONDS - 0.2) == tall
        assert pane.lines()[-1].endswith("http://x/2")  # the three left, over blank lines
        assert await height_after_tick(0.2) == tall - 3
        requests.append(telemetry.request_started("a", "GET", "http://x/6", 1))
        four = await height_after_tick(0.1)
        assert four == tall - 2  # growing: at once
        telemetry.request_finished(requests.pop())
        assert await height_after_tick(1.5) == four
        requests.append(telemetry.request_started("a", "GET", "http://x/7", 1))
        assert await height_after_tick(0.1) == four  # as tall as the pane again: wait anew
        telemetry.request_finished(requests.pop())
        assert await height_after_tick(1.5) == four
        assert await height_after_tick(0.6) == four - 1
        for request_id in requests[:3]:
            telemetry.request_finished(request_id)
        assert await height_after_tick(0.1) == idle  # nothing in flight: at once


async def test_the_in_flight_pane_scrolled_down_shrinks_at_once_rather_than_show_blank_lines(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    async with finished_run_ticked_by_hand(demo_server_factory, write_config) as (app, tick):
        telemetry = engine_of(app).telemetry
        pane = app.in_flight_pane
        requests = [telemetry.request_started("a", "GET", f"http://x/{n}", 1) for n in range(30)]
        await tick(0)
        rows = pane.scrollable_content_region.height
        assert rows < 30
        pane.scroll_end(animate=False, immediate=True)
        await tick(0)
        assert pane.scroll_y > 0
        for request_id in requests[3:]:
            telemetry.request_finished(request_id)
        await tick(0.1)
        shown = [pane.render_line(y).text.strip() for y in range(rows)]
        assert [row.split()[-1] for row in shown if row] == [f"http://x/{n}" for n in range(3)]
        for request_id in requests[:3]:
            telemetry.request_finished(request_id)


async def test_a_tick_with_nothing_new_updates_no_row(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["calm", "quiet"]))
    app = Dashboard(InProcessRun(Engine(config)), clock=lambda: 1_000.0)
    async with app.run_test(size=SIZE):
        await async_wait_for(app.all_finished, what="the run")
        await async_wait_for(lambda: not engine_of(app).telemetry.in_flight)
        app.refresh_view()
        updated = app.sources_table.rows_updated
        for _ in range(5):
            app.refresh_view()
        assert app.sources_table.rows_updated == updated


async def test_a_tick_that_changes_one_source_draws_only_its_row(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    names = ["one", "two", "three", "four"]
    config = write_config(sources_yaml(demo.url, names))
    app = Dashboard(InProcessRun(Engine(config)), clock=lambda: 1_000.0)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        await async_wait_for(lambda: not engine_of(app).telemetry.in_flight)
        app.refresh_timer.pause()  # ticks by hand only
        table = app.sources_table
        app.refresh_view()
        await pilot.pause()
        drawn = table.rows_drawn
        engine_of(app).telemetry.sources["three"].records += 1
        app.refresh_view()
        await pilot.pause()
        assert table.rows_drawn - drawn == 1
        assert cell(app, "three", "records") == f"{RECORDS + 1:,}"


async def test_the_panes_that_follow_the_selection_follow_it_at_once(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    app = Dashboard(InProcessRun(Engine(good_and_broken(demo, write_config))))
    async with app.run_test(size=SIZE) as pilot:
        errors = app.errors_table
        await finished_with_its_error(app)
        await pilot.press("f")
        app.refresh_timer.pause()  # no tick from here on: what changes, the key changed
        assert errors.row_count == 0
        await pilot.press("down")
        assert app.sources_table.selected_source == "broken"
        assert str(errors.border_title).startswith("Errors of broken")
        assert errors.row_count == 1
        await pilot.press("up")
        assert str(errors.border_title).startswith("Errors of good")
        assert errors.row_count == 0


async def test_help_lists_every_key(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["any"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await async_wait_for(lambda: isinstance(app.screen, HelpScreen), what="help")
        key_list = app.screen.query_one("#help-keys", KeyList)
        keys = {line.plain.split()[0] for line in key_list.lines(key_list.size.width) if line}
        for binding in Dashboard.BINDINGS:
            assert isinstance(binding, Binding) and binding.description
            assert (binding.key_display or binding.key) in keys, binding
        assert {"enter", "escape", "ctrl+p"} <= keys
        await pilot.press("escape")
        await async_wait_for(lambda: not isinstance(app.screen, HelpScreen), what="closed")


async def test_the_help_and_the_footer_are_not_rebuilt_each_time_the_help_opens(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    """A help screen built on every `?` cost 20 ms of CPU to open and 10 to close, and
    Textual rebuilds a footer's keys (and lays the screen out again) at every change of
    screen or focus, though the help opening and closing changes none of the keys shown."""
    config = write_config(sources_yaml(demo.url, ["any"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        footer = app.screen.query_one(SteadyFooter)
        await async_wait_for(lambda: bool(footer.children), what="the footer's keys")
        keys = list(footer.children)
        shown: list[object] = []
        for _ in range(2):
            await pilot.press("question_mark")
            await async_wait_for(lambda: isinstance(app.screen, HelpScreen), what="help")
            shown.append(app.screen)
            await pilot.press("escape")
            await async_wait_for(lambda: not isinstance(app.screen, HelpScreen), what="closed")
        await pilot.pause()
        assert shown[0] is shown[1]
        assert list(footer.children) == keys  # the same widgets
        app.bind("x", "bell", description="Ring")  # a key that does change what is shown
        app.screen.refresh_bindings()
        await async_wait_for(
            lambda: "Ring" in [getattr(key, "description", "") for key in footer.children],
            what="a new key in the footer",
        )


async def test_a_tick_after_the_screens_are_gone_does_nothing(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    """Closing, Textual empties the screen stack while the refresh timer can still fire (a
    fresh-clone test run once failed with ScreenStackError at exit)."""
    app = Dashboard(InProcessRun(Engine(write_config(sources_yaml(demo.url, ["any"])))))
    async with app.run_test(size=SIZE):
        app.refresh_timer.pause()
        stack = app._screen_stack  # as Textual leaves it while it closes the app
        screens = stack[:]
        stack.clear()
        try:
            app.refresh_view()
        finally:
            stack[:] = screens


def test_the_help_wraps_each_description_beside_its_key() -> None:
    sections = [
        ("Keys", [("p", "Pause the selected source until its requests commit"), ("ctrl+p", "x")]),
        ("More", [("", "A column note without a key")]),
    ]
    key_list = KeyList(sections)
    lines = [line.plain for line in key_list.lines(30)]
    assert lines == [
        "        Keys",
        "     p  Pause the selected",
        "        source until its",
        "        requests commit",
        "ctrl+p  x",
        "",
        "        More",
        "        A column note without",
        "        a key",
    ]
    assert key_list.get_content_height(Size(30, 10), Size(30, 10), 30) == len(lines)
    assert len(key_list.lines(200)) == 6  # nothing wraps
    # Too narrow for a description beside its key: it goes under it, and nothing is cut.
    narrow = [line.plain for line in key_list.lines(16)]
    assert narrow[:4] == ["Keys", "p", "  Pause the", "  selected"]
    assert max(len(line) for line in narrow) <= 16


async def test_the_command_palette_pauses_a_source_by_name(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    # Slow requests keep the process idle, so that Pilot types without waiting for it.
    server = demo_server_factory(records=1000, page_size=10, latency_ms=300)
    config = write_config(sources_yaml(server.url, ["alpha", "beta"]))
    app = Dashboard(InProcessRun(Engine(config)))
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(lambda: len(engine_of(app).telemetry.sources) == 2)
        await pilot.press("ctrl+p")
        await async_wait_for(lambda: CommandPalette.is_open(app), what="the palette")
        await pilot.press(*"pause beta")
        commands = app.screen.query_one(CommandList)

        def first_command_highlighted() -> bool:
            if commands.option_count == 0 or commands.highlighted != 0:
                return False
            prompt = commands.get_option_at_index(0).prompt
            return isinstance(prompt, Content) and prompt.plain.startswith("Pause beta")

        await async_wait_for(first_command_highlighted, what="the command")
        await pilot.press("enter")
        await async_wait_for(lambda: engine_of(app).is_paused("beta"), what="beta paused")
        assert not engine_of(app).is_paused("alpha")
        await pilot.press("q", "q")


# -- quitting -----------------------------------------------------------------------------------


async def test_q_after_the_run_exits_0_with_everything_committed(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=RECORDS, page_size=50)
    config = write_config(sources_yaml(server.url, ["kept", "also"], PAGES.replace("10", "50")))
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)))
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
    app = Dashboard(InProcessRun(Engine(config)), exit_when_done=True)
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
        app = Dashboard(InProcessRun(Engine(config)))
        async with app.run_test(size=SIZE):
            await async_wait_for(lambda: app.return_value is not None, what="exit")
    assert app.return_value == 2
    assert app.startup_error is not None and "in use by another run" in app.startup_error


# -- snapshots --------------------------------------------------------------------------------

FROZEN_AT = 1_000.0  # the dashboard's clock, stopped, so that nothing on screen moves
ADAPTIVE_REASON = "raised: throughput rising, latency steady (1.2 ms, baseline 1.1 ms); slow start"
SNAPSHOT_CONFIG = """\
sources:
  shards:
    url: {url}/v1/pages/{{ds}}
    records: data
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
    yield lambda: Dashboard(InProcessRun(Engine(config)), clock=lambda: FROZEN_AT)
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
    assert snap_compare(finished_run(), terminal_size=SIZE, run_before=settle)


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

    assert snap_compare(finished_run(), terminal_size=SIZE, run_before=open_detail)


def test_snapshot_help_screen(
    snap_compare: Callable[..., bool], finished_run: Callable[[], Dashboard]
) -> None:
    async def open_help(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await async_wait_for(lambda: isinstance(pilot.app.screen, HelpScreen), what="help")

    assert snap_compare(finished_run(), terminal_size=SIZE, run_before=open_help)
