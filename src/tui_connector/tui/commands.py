"""Command palette (ctrl+p) commands: every dashboard action, for the selected source or for
any source by name. Each says which key does the same, read from the binding table as the
user's keymap left it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui_connector.telemetry import ConcurrencyMode, SourceStatus
from tui_connector.tui.arrange import StatusFilter
from tui_connector.tui.widgets import SOURCE_COLUMNS

if TYPE_CHECKING:
    from tui_connector.tui.app import Dashboard


class PaletteCommand(NamedTuple):
    title: str
    help: str
    callback: Callable[[], object]
    discover: bool


class DashboardCommands(Provider):
    @property
    def dashboard(self) -> Dashboard:
        from tui_connector.tui.app import Dashboard

        assert isinstance(self.app, Dashboard)
        return self.app

    def commands(self) -> Iterator[PaletteCommand]:
        app = self.dashboard
        keys = app.keys
        yield PaletteCommand(
            "Pause all sources",
            f"Like {keys['pause-all']}: no new requests anywhere",
            app.controls.pause_all,
            True,
        )
        yield PaletteCommand(
            "Resume all sources", f"Like {keys['pause-all']} again", app.controls.resume_all, True
        )
        yield PaletteCommand(
            "Errors: all sources / selected source",
            f"Like {keys['filter-errors']}: filter the errors pane",
            app.action_toggle_error_filter,
            True,
        )
        yield PaletteCommand(
            "Focus errors", f"Like {keys['errors']}", app.action_focus_errors, True
        )
        yield PaletteCommand(
            "Show keys", f"Like {keys['help']}: the help screen", app.action_help, True
        )
        yield PaletteCommand(
            "Quit gracefully",
            f"Like {keys['quit']}: let requests in flight finish and commit, then exit",
            app.action_quit,
            True,
        )
        yield PaletteCommand(
            "Quit now",
            f"Like {keys['quit']} twice: exit without waiting (committed pages are safe)",
            app.quit_now,
            False,
        )
        yield from self._finder_commands(app)
        selected = app.selected_source()
        for name in app.facts.selected:
            yield from self._source_commands(app, name, discover=name == selected)

    def _finder_commands(self, app: Dashboard) -> Iterator[PaletteCommand]:
        keys = app.keys
        finder = app.finder
        yield PaletteCommand(
            "Find sources by name",
            f"Like {keys['filter-sources']}: show only the sources whose name holds a text",
            app.action_filter_sources,
            True,
        )
        status = keys["status-filter"]
        for status_filter in StatusFilter:
            title = (
                "Show all sources"
                if status_filter is StatusFilter.ALL
                else f"Show only {status_filter.label} sources"
            )
            yield PaletteCommand(
                title,
                f"Like {status}: filter the sources by status",
                partial(finder.show_status, status_filter),
                status_filter is not StatusFilter.ALL or app.finder.arrangement.filtered,
            )
        sort = keys["sort"]
        for column in SOURCE_COLUMNS:
            yield PaletteCommand(
                f"Sort sources by {column.label}",
                f"Like {sort} or a click on its header (again: the other way)",
                partial(finder.sort_by, column.key),
                False,
            )
        yield PaletteCommand(
            "Sources in the config's order",
            f"Like {sort} after the last column: no sort",
            partial(finder.sort_by, None),
            False,
        )
        yield PaletteCommand(
            "Reverse the sources' sort",
            f"Like {keys['reverse-sort']}",
            finder.reverse,
            False,
        )

    def _source_commands(
        self, app: Dashboard, name: str, *, discover: bool
    ) -> Iterator[PaletteCommand]:
        keys = app.keys
        stats = app.telemetry.sources.get(name)
        controls = app.controls
        paused = controls.is_paused(name)
        yield PaletteCommand(
            f"{'Resume' if paused else 'Pause'} {name}",
            f"Like {keys['pause']} on its row",
            partial(controls.toggle_pause, name),
            discover,
        )
        if stats is not None and stats.status in (SourceStatus.FAILED, SourceStatus.STOPPED):
            yield PaletteCommand(
                f"Retry {name}",
                f"Like {keys['retry']}: start again from its checkpoint",
                partial(controls.retry, name),
                discover,
            )
        yield PaletteCommand(
            f"Stop {name}",
            f"Like {keys['stop']}: no new requests; it can be retried",
            partial(controls.stop, name),
            discover,
        )
        adaptive = app.facade.describe(name).adaptive
        manual = " (it turns manual)" if adaptive else ""
        yield PaletteCommand(
            f"Raise concurrency of {name}",
            f"Like {keys['more']}: one more request in flight{manual}",
            partial(controls.change_concurrency, name, 1),
            discover,
        )
        yield PaletteCommand(
            f"Lower concurrency of {name}",
            f"Like {keys['less']}: one request fewer in flight{manual}",
            partial(controls.change_concurrency, name, -1),
            discover,
        )
        if adaptive:
            auto = stats is None or stats.concurrency_mode is not ConcurrencyMode.MANUAL
            yield PaletteCommand(
                f"Auto concurrency for {name}",
                f"Like {keys['auto']}: hand its limit back to the adaptive controller",
                partial(controls.auto_concurrency, name),
                discover and not auto,
            )
        yield PaletteCommand(
            f"Details of {name}",
            f"Like {keys['source-detail']}: partitions, positions, config, throughput, errors",
            partial(app.show_detail, name),
            discover,
        )

    async def discover(self) -> Hits:
        for command in self.commands():
            if command.discover:
                yield DiscoveryHit(command.title, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(command.title), command.callback, help=command.help
                )
