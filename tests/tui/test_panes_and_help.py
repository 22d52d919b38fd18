"""How the panes refresh (only what changed, bounded, steady heights) and the help screen."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.tui.app import Dashboard
from tui_connector.tui.screens import HelpScreen, KeyList, SourceDetailScreen
from tui_connector.tui.widgets import (
    IN_FLIGHT_SHRINK_AFTER_SECONDS,
    MAX_IN_FLIGHT_SHOWN,
    InFlightPane,
    SteadyFooter,
)

from .dashboard import (
    SIZE,
    cell,
    dashboard_on,
    finished_with_its_error,
    good_and_broken,
    sources_yaml,
)
from helpers import RECORDS, async_wait_for, engine_of


async def test_the_in_flight_pane_is_bounded_and_builds_only_the_lines_on_screen(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=20, page_size=10)
    config = write_config(sources_yaml(server.url, ["a", "b", "c"]))
    app = dashboard_on(config)
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
    app = dashboard_on(config, clock=lambda: clock[0])
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
    app = dashboard_on(config, clock=lambda: 1_000.0)
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
    app = dashboard_on(config, clock=lambda: 1_000.0)
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
    app = dashboard_on(config)
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


async def test_toasts_cover_neither_the_help_nor_a_sources_detail_and_come_back_after(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["any"]))
    app = dashboard_on(config)

    def toasts(shown: bool) -> list[Widget]:
        """The current screen's toasts that are (or are not) on the screen."""
        return [toast for toast in app.screen.query("Toast") if bool(toast.region) is shown]

    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.notify("a note that lasts", timeout=600)
        await async_wait_for(lambda: bool(toasts(shown=True)), what="the toast on the dashboard")
        for key, kind in (("question_mark", HelpScreen), ("enter", SourceDetailScreen)):
            await pilot.press(key)
            await async_wait_for(lambda k=kind: isinstance(app.screen, k), what=kind.__name__)
            await async_wait_for(lambda: bool(toasts(shown=False)), what="the toast, hidden")
            assert toasts(shown=True) == []
            await pilot.press("escape")
            await async_wait_for(lambda: bool(toasts(shown=True)), what="the toast back")


async def test_the_help_and_the_footer_are_not_rebuilt_each_time_the_help_opens(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    """A help screen built on every `?` cost 20 ms of CPU to open and 10 to close, and
    Textual rebuilds a footer's keys (and lays the screen out again) at every change of
    screen or focus, though the help opening and closing changes none of the keys shown."""
    config = write_config(sources_yaml(demo.url, ["any"]))
    app = dashboard_on(config)
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
    app = dashboard_on(config)
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
