"""Command palette (ctrl+p) commands: every dashboard action, for the selected source or for
any source by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui_connector.telemetry import ConcurrencyMode, SourceStatus

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
        yield PaletteCommand(
            "Pause all sources", "Like P: no new requests anywhere", app.pause_all, True
        )
        yield PaletteCommand("Resume all sources", "Like P again", app.resume_all, True)
        yield PaletteCommand(
            "Errors: all sources / selected source",
            "Like f: filter the errors pane",
            app.action_toggle_error_filter,
            True,
        )
        yield PaletteCommand("Focus errors", "Like e", app.action_focus_errors, True)
        yield PaletteCommand("Show keys", "Like ?: the help screen", app.action_help, True)
        yield PaletteCommand(
            "Quit gracefully",
            "Like q: let requests in flight finish and commit, then exit",
            app.action_quit,
            True,
        )
        yield PaletteCommand(
            "Quit now",
            "Like q twice: exit without waiting (committed pages are safe)",
            app.quit_now,
            False,
        )
        selected = app.selected_source()
        for name in app.engine.selected:
            yield from self._source_commands(app, name, discover=name == selected)

    def _source_commands(
        self, app: Dashboard, name: str, *, discover: bool
    ) -> Iterator[PaletteCommand]:
        stats = app.engine.telemetry.sources.get(name)
        paused = app.is_paused(name)
        yield PaletteCommand(
            f"{'Resume' if paused else 'Pause'} {name}",
            "Like p on its row",
            partial(app.toggle_pause, name),
            discover,
        )
        if stats is not None and stats.status in (SourceStatus.FAILED, SourceStatus.STOPPED):
            yield PaletteCommand(
                f"Retry {name}",
                "Like r: start again from its checkpoint",
                partial(app.retry_source, name),
                discover,
            )
        yield PaletteCommand(
            f"Stop {name}",
            "Like s: no new requests; it can be retried",
            partial(app.stop_source, name),
            discover,
        )
        adaptive = app.engine.config.sources[name].auto_concurrency is not None
        manual = " (it turns manual)" if adaptive else ""
        yield PaletteCommand(
            f"Raise concurrency of {name}",
            f"Like +: one more request in flight{manual}",
            partial(app.change_concurrency, name, 1),
            discover,
        )
        yield PaletteCommand(
            f"Lower concurrency of {name}",
            f"Like -: one request fewer in flight{manual}",
            partial(app.change_concurrency, name, -1),
            discover,
        )
        if adaptive:
            auto = stats is None or stats.concurrency_mode is not ConcurrencyMode.MANUAL
            yield PaletteCommand(
                f"Auto concurrency for {name}",
                "Like a: hand its limit back to the adaptive controller",
                partial(app.auto_concurrency, name),
                discover and not auto,
            )
        yield PaletteCommand(
            f"Details of {name}",
            "Like enter: partitions, positions, config, throughput, errors",
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
