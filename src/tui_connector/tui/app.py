"""The live dashboard: watch a run, steer it with the keyboard, trust what the screen says.

The app sees the run only through the front-end facade (`facade.RunFacade`). In-process, the
app and the retrieval share one event loop: the run is driven by a worker of this app. The
screen pulls: a refresh reads the run's telemetry and changes only the cells that changed, ten
times a second while the loop has time to spare and less often while the run keeps it busy
(`cadence.RefreshCadence`); the only messages are rare events (a source done or failed, the
run finished).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widget import Widget
from textual.widgets import Input, Static

from tui_connector.facade import (
    ExitCode,
    LakeWatch,
    RunFacade,
    all_finished,
)
from tui_connector.figures import one_line, run_seconds
from tui_connector.telemetry import ConcurrencyMode, LakeInfo, SourceStats, SourceStatus
from tui_connector.tui import format as fmt
from tui_connector.tui.cadence import FASTEST_SECONDS, RefreshCadence
from tui_connector.tui.commands import DashboardCommands
from tui_connector.tui.controls import SourceControls
from tui_connector.tui.ending import NO_CONTROL_ENDPOINT, RunEnding
from tui_connector.tui.finder import SourceFinder
from tui_connector.tui.history import ThroughputHistory
from tui_connector.tui.keys import DASHBOARD_KEYS, KeyNames, bindings
from tui_connector.tui.screens import HelpScreen, SourceDetailScreen
from tui_connector.tui.settings import SettingsError, load_settings
from tui_connector.tui.table import RowTable
from tui_connector.tui.terminal import guarded_driver
from tui_connector.tui.widgets import (
    ErrorTable,
    InFlightPane,
    LakeCells,
    SourcesTable,
    SteadyFooter,
    ThemeStyles,
    idle_reason,
    lake_cells,
    source_cells,
)

REFRESH_SECONDS = FASTEST_SECONDS  # the heartbeat; the cadence says which beats refresh
HELP_SCREEN = "help"  # the help screen's name once installed
# The keys that change what the run does (a read-only dashboard offers none of them).
STEERING_ACTIONS = frozenset(
    {
        "toggle_pause",
        "toggle_pause_all",
        "retry",
        "concurrency",
        "auto_concurrency",
        "stop_source",
        "stop_run",
    }
)
# More sources than this finishing in one tick get one notification, not one each.
NOTIFY_EACH_SOURCE_UP_TO = 3
FINDER_ACTIONS = frozenset({"filter_sources", "next_status_filter", "sort_next", "reverse_sort"})


class Dashboard(RunEnding):
    """The dashboard of one run. Give it a run that has not been opened: the app opens it on
    its own event loop. Returns the exit code (`facade.ExitCode`: 0 done, 1 a source failed,
    2 the run could not start, 130 interrupted)."""

    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    TITLE = "tui-connector"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS = bindings(DASHBOARD_KEYS)

    def __init__(
        self,
        run: RunFacade,
        *,
        exit_when_done: bool = False,
        clock: Callable[[], float] = time.monotonic,
        handle_signals: bool = False,
        keymap: Mapping[str, str] | None = None,
        can_detach: bool = False,
        cannot_detach_why: str = NO_CONTROL_ENDPOINT,
    ) -> None:
        """`clock` must read the same time as `time.monotonic` (the run stamps telemetry
        with it); tests pass a frozen one to make screenshots repeatable. `handle_signals`
        makes SIGINT/SIGTERM act like `q` (only where the app owns the process). `keymap`
        rebinds keys by binding id (see `keys.py`), as the user's settings file does.
        `can_detach`: `d` may hand a run of this process over to the background (the caller
        starts it there once the app has returned with `detaching` set)."""
        super().__init__(driver_class=guarded_driver(on_lost="terminal_lost"))
        self.facade = run
        run.make_interactive()
        self.facts = run.facts
        self.telemetry = run.snapshot()  # read anew at every tick
        self.keys = KeyNames(keymap)
        # Not offered while the name filter takes the keys as text.
        self._typed_actions = self.keys.typed(DASHBOARD_KEYS)
        if keymap:
            self.set_keymap(dict(keymap))
        self.controls = SourceControls(self)
        self.finder = SourceFinder(self)
        self.exit_when_done = exit_when_done
        self.clock = clock
        self._init_ending(
            handle_signals=handle_signals,
            can_detach=can_detach,
            cannot_detach_why=cannot_detach_why,
        )
        self.history = ThroughputHistory()
        self.lakes = LakeWatch(run)
        self._shown_lakes: dict[str, tuple[LakeInfo, LakeCells]] = {}
        self.errors_follow_selection = False
        self.tick_seconds: deque[float] = deque(maxlen=1000)
        self.cadence = RefreshCadence()
        self._styles: ThemeStyles | None = None
        self._statuses: dict[str, SourceStatus] = {}
        self._run_finished = False
        self._shown_totals: str | None = None
        self._shown_note: str | None = None

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="totals")
        yield Static(id="quit-banner")
        yield self.finder.name_input
        yield SourcesTable(self.facts.selected, id="sources")
        yield InFlightPane(id="in-flight")
        yield ErrorTable(id="errors", max_rows=200)
        yield SteadyFooter()

    def on_mount(self) -> None:
        # Held, not queried each tick: a query looks only at the screen on top, and the main
        # screen keeps being refreshed under the detail screen.
        self.sources_table = self.query_one("#sources", SourcesTable)
        self.errors_table = self.query_one("#errors", ErrorTable)
        self.in_flight_pane = self.query_one("#in-flight", InFlightPane)
        self.totals_line = self.query_one("#totals", Static)
        self.quit_banner = self.query_one("#quit-banner", Static)
        # The panes that follow the selection follow it at once, not at the next tick. A watch
        # runs within the keypress's own handler; a message would wait its turn in the table's,
        # the screen's and then the app's queue, each a loop iteration when the loop is busy.
        self.watch(self.sources_table, "cursor_row", self._selection_moved, init=False)
        self._restyle()
        self.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())
        self.sources_table.focus()
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal)
            loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        self.refresh_view()
        self.refresh_timer = self.set_interval(REFRESH_SECONDS, self._heartbeat)
        self.set_interval(1.0, self._sample_throughput)
        # The run starts once the first frame is on screen: composing, styling and laying the
        # screen out take 20-40 ms of the loop, which the run would otherwise wait for in its
        # first pages (and the operator sees the screen before the work starts).
        self.call_after_refresh(self._start_run)

    def _restyle(self) -> None:
        self._styles = ThemeStyles(self)
        self.sources_table.restyle(self._styles)
        self.errors_table.restyle(self._styles)

    # -- the run (its driving and its end: `ending.RunEnding`) --------------------------------

    def all_finished(self) -> bool:
        return all_finished(self.telemetry, self.facts.selected)

    # -- the view -------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        if self.cadence.due():
            self.refresh_view()

    def refresh_soon(self) -> None:
        """Refresh at the next heartbeat, however busy the loop: the operator acted."""
        self.cadence.wake()

    def refresh_view(self) -> None:
        """One tick: read telemetry, change what changed. Runs up to 10 times a second."""
        if not self.screen_stack:
            return  # the app is closing: a tick can come after its screens are gone
        started = time.perf_counter()
        now = self.clock()
        telemetry = self.telemetry = self.facade.snapshot()
        sources = telemetry.sources
        self._refresh_sources(now)
        in_flight = telemetry.in_flight
        pause_key = self.keys["pause"]
        idle = (idle_reason(stats, now, pause_key) for stats in sources.values())
        self.in_flight_pane.show(
            in_flight.values(),
            len(in_flight),
            (reason for reason in idle if reason),
            now,
            self._styles,
        )
        self._set_title(self.in_flight_pane, f"In flight: {len(in_flight)}")
        self._refresh_concurrency_note(now)
        self._refresh_errors()
        self._refresh_totals(now)
        self._notice_transitions(now)
        if self._stop.requested or (self.facts.attached and self.facade.stop_requested_at):
            self._refresh_banner(now)
        screen = self.screen
        if isinstance(screen, SourceDetailScreen):
            screen.refresh_live()
        cost = time.perf_counter() - started
        self.tick_seconds.append(cost)
        self.cadence.ticked(cost)

    def _refresh_sources(self, now: float) -> None:
        sources = self.telemetry.sources
        shown = self.finder.arrange(sources, now)
        if len(shown) < len(self.facts.selected):  # what a hidden source's lake says is told
            for name in self.facts.selected:
                self._lake_cells(name, sources.get(name))
        self.sources_table.sync(
            (name, source_cells(name, stats, now, self._lake_cells(name, stats)))
            for name, stats in ((name, sources.get(name)) for name in shown)
        )

    def refresh_sources(self) -> None:
        """The sources table at once (its filter or sort changed), not at the next tick."""
        self._refresh_sources(self.clock())
        self._selection_moved()

    def _lake_cells(self, name: str, stats: SourceStats | None) -> LakeCells:
        """The source's lake cells, made again only when its lake was read anew; what the
        lake has to say (a column fell back to JSON text) is told then, once."""
        lake = self.lakes.of(name, stats)
        shown = self._shown_lakes.get(name)
        if shown is None or shown[0] is not lake:
            shown = self._shown_lakes[name] = (lake, lake_cells(lake))
            self._tell_lake_notes(name, self.lakes.untold(name, lake))
        return shown[1]

    def _tell_lake_notes(self, name: str, notes: Sequence[str]) -> None:
        title = f"{name}: stored as JSON text"
        if len(notes) > NOTIFY_EACH_SOURCE_UP_TO:
            keys = self.keys
            self.notify(
                f"{len(notes)} fields changed type; their values are stored as JSON text from "
                f"now on ({keys['source-detail']} on the source shows which and why)",
                title=title,
                severity="warning",
                timeout=10,
            )
            return
        for note in notes:
            self.notify(note, title=title, severity="warning", timeout=10)

    def _selection_moved(self) -> None:
        self._refresh_concurrency_note(self.clock())
        self._refresh_errors()

    def _set_title(self, widget: Widget, title: str) -> None:
        if widget.border_title != title:
            widget.border_title = title

    def _refresh_concurrency_note(self, now: float) -> None:
        """Under the sources: the selected source's limit and why it last changed (adaptive
        sources only). One source, whatever their number."""
        selected = self.sources_table.selected_source
        stats = self.telemetry.sources.get(selected) if selected else None
        note = fmt.concurrency_note(stats, now, self.keys["auto"])
        if note != self._shown_note:
            self._shown_note = note
            self.sources_table.border_subtitle = note or None

    def _refresh_errors(self) -> None:
        errors = self.errors_table
        selected = self.sources_table.selected_source
        key = self.keys["filter-errors"]
        if self.errors_follow_selection and selected is not None:
            errors.filter_source(selected)
            title = f"Errors of {selected} ({key}: all sources)"
        else:
            errors.filter_source(None)
            title = f"Errors of all sources ({key}: selected source only)"
        errors.sync(self.telemetry.errors)
        self._set_title(errors, title)

    def _refresh_totals(self, now: float) -> None:
        totals = fmt.totals_text(self.telemetry, self.facts, self.all_finished(), now)
        if totals != self._shown_totals:
            self._shown_totals = totals
            self.totals_line.update(totals, layout=False)  # one line, docked: nothing moves

    def run_elapsed(self, now: float) -> float:
        return run_seconds(self.telemetry, self.all_finished(), now)

    def _notice_transitions(self, now: float) -> None:
        """Notifications for rare events only, found by comparing statuses between ticks."""
        done: list[SourceStats] = []
        failed: list[SourceStats] = []
        for name, stats in self.telemetry.sources.items():
            previous = self._statuses.get(name)
            if stats.status is previous:
                continue
            self._statuses[name] = stats.status
            if stats.status is SourceStatus.DONE:
                done.append(stats)
            elif stats.status is SourceStatus.FAILED:
                failed.append(stats)
        for stats in failed:
            self.notify(
                one_line(stats.last_error or "no error recorded"),
                title=f"{stats.name} failed",
                severity="error",
                timeout=10,
            )
        if len(done) > NOTIFY_EACH_SOURCE_UP_TO:
            self.notify(", ".join(stats.name for stats in done), title=f"{len(done)} sources done")
        else:
            for stats in done:
                self.notify(f"{fmt.count(stats.records)} records", title=f"{stats.name} done")
        finished = self.all_finished()
        if finished and not self._run_finished:
            self._run_finished = True
            self._announce_finish(now)
            if self.exit_when_done and not self._stop.requested:
                self._stop.request()
        elif not finished:
            self._run_finished = False  # a source was retried

    def _announce_finish(self, now: float) -> None:
        sources = self.telemetry.sources.values()
        failed = sum(1 for s in sources if s.status is SourceStatus.FAILED)
        done = sum(1 for s in sources if s.status is SourceStatus.DONE)
        stopped = sum(1 for s in sources if s.status is SourceStatus.STOPPED)
        records = sum(s.records for s in sources)
        message = (
            f"{done} done, {failed} failed, {stopped} stopped; {fmt.count(records)} records "
            f"in {fmt.elapsed(self.run_elapsed(now))}."
        )
        if not self.exit_when_done:
            keys = self.keys
            message += f" {keys['retry']} retries a failed or stopped source; {keys['quit']} quits."
        self.notify(
            message,
            title="Run finished",
            severity="error" if failed else "information",
            timeout=15,
        )

    def _sample_throughput(self) -> None:
        self.history.sample(self.telemetry, self.clock())

    # -- the selected source ------------------------------------------------------------------

    def selected_source(self) -> str | None:
        screen = self.screen
        if isinstance(screen, SourceDetailScreen):
            return screen.source
        return self.sources_table.selected_source

    def _with_selected(self, action: Callable[[str], object]) -> None:
        name = self.selected_source()
        if name is None:
            self.notify("no source selected", severity="warning")
            return
        action(name)

    def show_detail(self, name: str) -> None:
        if isinstance(self.screen, SourceDetailScreen):
            if self.screen.source == name:
                return
            self.pop_screen()
        self.push_screen(
            SourceDetailScreen(self.facade, name, self.history, self.clock, self.lakes)
        )

    def action_toggle_pause(self) -> None:
        self._with_selected(self.controls.toggle_pause)

    def action_toggle_pause_all(self) -> None:
        self.controls.toggle_pause_all()

    def action_retry(self) -> None:
        self._with_selected(self.controls.retry)

    def action_concurrency(self, delta: int) -> None:
        self._with_selected(lambda name: self.controls.change_concurrency(name, delta))

    def action_auto_concurrency(self) -> None:
        self._with_selected(self.controls.auto_concurrency)

    def action_stop_source(self) -> None:
        self._with_selected(self.controls.stop)

    def action_detail(self) -> None:
        self._with_selected(self.show_detail)

    def action_focus_errors(self) -> None:
        screen = self.screen
        if isinstance(screen, SourceDetailScreen):
            screen.history.focus()
        elif self.errors_table.has_focus:
            self.sources_table.focus()
        else:
            self.errors_table.focus()

    def action_toggle_error_filter(self) -> None:
        self.errors_follow_selection = not self.errors_follow_selection
        self._refresh_errors()

    def action_filter_sources(self) -> None:
        self.finder.open_name_filter()

    def action_next_status_filter(self) -> None:
        self.finder.next_status_filter()

    def action_sort_next(self) -> None:
        self.finder.sort_next()

    def action_reverse_sort(self) -> None:
        self.finder.reverse()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._typed_actions and isinstance(self.focused, Input):
            return False
        if action in FINDER_ACTIONS:  # they act on the sources table, not on a source's detail
            return not isinstance(self.screen, SourceDetailScreen)
        if action in STEERING_ACTIONS:  # attached read-only, or to a run that ended: none
            return not self.facts.read_only and self.facade.ended is None
        return True

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            # Installed, the help is built once: a new one each time was composed, styled and
            # laid out on every `?` (20 ms of CPU where showing it again takes 4-5 ms), and
            # removed again on closing (10 ms where closing it now takes 4-5).
            if not self.is_screen_installed(HELP_SCREEN):
                sections = self.help_sections()
                self.install_screen(HelpScreen(sections, self.keys), HELP_SCREEN)
            self.push_screen(HELP_SCREEN)

    def help_sections(self) -> list[tuple[str, Sequence[tuple[str, str]]]]:
        """The keys, from the binding table as the keymap left them, then what columns mean."""
        mark = fmt.CONCURRENCY_MARK
        columns = [
            (
                "conc",
                f"In flight/limit. {mark[ConcurrencyMode.AUTO]}: adaptive (auto); "
                f"{mark[ConcurrencyMode.MANUAL]}: adaptive, set by hand (manual); "
                "no mark: fixed",
            ),
            ("", "The selected source's adaptive limit and why it last changed: under the table"),
            (
                "progress",
                f"Partitioned: partitions done/total, “3{fmt.FAILED_MARK}” if 3 failed; "
                "else a bar (total known) or records so far",
            ),
            (
                "checkpoint",
                "How long ago the source last checkpointed; once it has finished, how long "
                "before its end",
            ),
            ("written", "Bytes this run wrote to the lake; lake: the format, a table's version"),
        ]
        return [*self.keys.help_sections(), ("Columns", columns)]

    def on_row_table_header_selected(self, event: RowTable.HeaderSelected) -> None:
        if event.table is self.sources_table:
            self.finder.sort_by(event.column_key)

    def on_row_table_row_highlighted(self, event: RowTable.RowHighlighted) -> None:
        if event.table is self.sources_table:
            # The panes that follow the selected source (the errors pane filtered to it) are
            # the operator's to see at the next heartbeat, not at the busy loop's cadence.
            self.refresh_soon()

    def on_row_table_row_selected(self, event: RowTable.RowSelected) -> None:
        if event.table is self.sources_table:
            self.show_detail(event.key)
        elif event.table is self.errors_table:
            source = self.errors_table.source_at_cursor()
            if source is not None:
                self.show_detail(source)


def run_dashboard(
    run: RunFacade,
    *,
    exit_when_done: bool = False,
    detach: Callable[[], int] | None = None,
    cannot_detach_why: str | None = None,
    attach_again: str | None = None,
) -> int:
    """Run the dashboard in this terminal until the operator quits (or, with `exit_when_done`,
    until every source has finished), with the keymap of the user's settings file. Returns the
    exit code: 0 done, 1 a source failed, 2 the run could not start or the settings are wrong
    (the reason is printed to stderr), 130 interrupted. A summary of the run is printed after
    the dashboard closes.

    `detach` starts the run again in the background once `d` stopped it here (its exit code
    is then this one's). Attached to a run in another process, `attach_again` is what to
    type to attach again after leaving it; leaving returns 0."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return ExitCode.USAGE
    app = Dashboard(
        run,
        exit_when_done=exit_when_done,
        handle_signals=True,
        keymap=settings.keymap,
        can_detach=detach is not None,
        cannot_detach_why=cannot_detach_why or NO_CONTROL_ENDPOINT,
    )
    code = app.run()
    if app.startup_error is not None:
        print(f"tui-connector: {app.startup_error}", file=sys.stderr)
        return ExitCode.USAGE
    if app.detaching and detach is not None and app.result is not None:
        return detach()
    if app.facts.attached and not app.left and run.ended is not None:
        print(f"{run.ended}; tui-connector status shows its checkpoints")
        return ExitCode.OK
    if app.left:
        print(f"detached; the run goes on. Attach again: {attach_again or 'tui-connector attach'}")
        return ExitCode.OK
    if app.result is not None:
        from tui_connector.headless import HeadlessReporter

        HeadlessReporter(run).summary(app.result)
    if code is None:  # the app failed; Textual has printed why
        return app.return_code or ExitCode.FAILED
    return code
