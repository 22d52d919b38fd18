"""A run of 120 sources, of which about 20 rows fit: the filters (`/` by name, `t` by status)
and the sort (`o`, `O`, a click on a header) find the failing ones, the selection stays on its
source while rows move, and the totals stay those of the whole run."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from textual.pilot import Pilot

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.tui.app import Dashboard
from tui_connector.tui.commands import DashboardCommands
from tui_connector.tui.finder import NameFilterInput
from tui_connector.tui.screens import SourceDetailScreen
from tui_connector.tui.table import CELL_PADDING
from tui_connector.tui.widgets import SOURCE_COLUMNS

from .dashboard import PAGES, dashboard_on, shown, sources_yaml
from helpers import async_wait_for

TALL = (160, 48)
NAMES = [f"s{number:03d}" for number in range(120)]
BROKEN = NAMES[::12]  # ten sources whose every request is answered 404: they fail


def many_sources(demo: DemoServer, write_config: Callable[..., LoadedConfig]) -> LoadedConfig:
    working = [name for name in NAMES if name not in BROKEN]
    broken = "".join(f"  {name}:\n    url: {demo.url}/v1/nowhere/{name}\n" for name in BROKEN)
    pages = PAGES.replace("size: 10", "size: 100")
    return write_config(sources_yaml(demo.url, working, pages) + broken)


def header_offset(column_key: str) -> tuple[int, int]:
    """Where to click the sources table (its border included) on a column's header."""
    x = 1  # the border
    for column in SOURCE_COLUMNS:
        if column.key == column_key:
            return x + CELL_PADDING, 1
        x += column.width + 2 * CELL_PADDING
    raise KeyError(column_key)


@contextlib.asynccontextmanager
async def finished_run_of_many(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> AsyncIterator[tuple[Dashboard, Pilot[int], LoadedConfig]]:
    """The dashboard of a finished run of the 120 sources, on a 48-line terminal."""
    config = many_sources(demo, write_config)
    app = dashboard_on(config)
    async with app.run_test(size=TALL) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        app.refresh_view()
        yield app, pilot, config


async def test_the_status_and_name_filters_find_the_failed_sources_among_120(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    async with finished_run_of_many(demo, write_config) as (app, pilot, config):
        table = app.sources_table
        # The config's order: every source has a row, a fraction of them on screen.
        assert table.row_keys == list(config.sources)
        assert table.scrollable_content_region.height < 30
        assert table.border_title == "Sources: 120"
        totals = shown(app.totals_line)
        assert "110/120 done" in totals and "10 failed" in totals

        await pilot.press("t")  # failed
        assert table.row_keys == BROKEN
        assert table.border_title == "Sources: 10 of 120 · failed"
        assert shown(app.totals_line) == totals  # the totals stay those of the whole run

        await pilot.press("slash")
        name_filter = app.query_one(NameFilterInput)
        assert name_filter.display and name_filter.has_focus
        offered = {bound.binding.action for bound in app.active_bindings.values() if bound.enabled}
        assert "toggle_pause" not in offered and "quit" not in offered  # the footer's too
        await pilot.press("s", "0", "1")  # typed into the filter, not taken as keys
        assert table.row_keys == ["s012"]
        assert table.border_title == "Sources: 1 of 120 · failed · name ~ “s01”"
        await pilot.press("enter")  # kept: the sources have the keys again
        assert table.has_focus and name_filter.display
        offered = {bound.binding.action for bound in app.active_bindings.values() if bound.enabled}
        assert "toggle_pause" in offered
        await pilot.press("t", "t", "t")  # backing off, paused, running: none of these
        assert table.row_keys == [] and table.selected_source is None
        assert table.border_title == "Sources: 0 of 120 · running · name ~ “s01”"
        await pilot.press("p")  # nothing selected: nothing paused
        assert not any(app.facade.is_paused(name) for name in NAMES)
        await pilot.press("t")  # all again; the name filter still holds
        assert table.row_keys == [name for name in config.sources if "s01" in name]

        await pilot.press("slash", "escape")  # cleared and closed
        assert not name_filter.display and name_filter.value == "" and table.has_focus
        assert len(table.row_keys) == 120 and table.border_title == "Sources: 120"

        palette = {command.title: command for command in DashboardCommands(app.screen).commands()}
        palette["Show only failed sources"].callback()
        assert table.row_keys == BROKEN
        palette["Show all sources"].callback()
        assert len(table.row_keys) == 120
        await pilot.press("q")


async def test_sorting_by_a_column_moves_rows_and_keeps_the_selected_source(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    async with finished_run_of_many(demo, write_config) as (app, pilot, _config):
        table = app.sources_table
        await pilot.press("down", "down")  # s000 failing, the config lists it last
        assert table.selected_source == "s003" and table.cursor_row == 2

        await pilot.click("#sources", offset=header_offset("errors"))
        # The failed sources first (each had an error), then the others in the config's order.
        assert table.row_keys[:10] == BROKEN
        assert table.border_title == "Sources: 120 · by err ↓"
        assert [column.label for column in SOURCE_COLUMNS if column.key == "errors"] == ["err"]
        assert table.header_label(SOURCE_COLUMNS[10]) == "↓err"
        assert table.selected_source == "s003"
        assert table.cursor_row == table.row_keys.index("s003") == 12

        await pilot.click("#sources", offset=header_offset("errors"))  # again: the other way
        assert table.row_keys[-10:] == BROKEN and table.border_title.endswith("by err ↑")
        assert table.selected_source == "s003"
        await pilot.press("O")  # reversed again
        assert table.row_keys[:10] == BROKEN and table.selected_source == "s003"

        await pilot.press("o")  # the next column
        assert table.border_title == "Sources: 120 · by conc ↓"
        assert table.selected_source == "s003"
        await pilot.press("enter")  # what is selected is what opens
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        assert isinstance(app.screen, SourceDetailScreen) and app.screen.source == "s003"
        await pilot.press("o")  # the sources table is not on screen: the key does nothing
        assert table.border_title == "Sources: 120 · by conc ↓"
        await pilot.press("escape", "q")
