"""The live dashboard: watch a run, steer it with the keyboard, trust what the screen says.

The app and the retrieval share one event loop: the engine runs in a worker of this app. The
screen pulls: a 10 Hz timer reads telemetry and changes only the cells that changed; the only
messages are rare events (a source done or failed, the run finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import Worker

from tui_connector.engine import Engine, RunResult
from tui_connector.state import StateError
from tui_connector.telemetry import ConcurrencyMode, SourceStats, SourceStatus
from tui_connector.tui import format as fmt
from tui_connector.tui.commands import DashboardCommands
from tui_connector.tui.history import ThroughputHistory
from tui_connector.tui.screens import HelpScreen, SourceDetailScreen
from tui_connector.tui.table import RowTable
from tui_connector.tui.widgets import (
    ErrorTable,
    InFlightPane,
    SourcesTable,
    SteadyFooter,
    ThemeStyles,
    idle_reason,
    source_cells,
)

EXIT_FAILED, EXIT_STARTUP_FAILED, EXIT_INTERRUPTED = 1, 2, 130
REFRESH_SECONDS = 0.1
HELP_SCREEN = "help"  # the help screen's name once installed
# After a second `q`, or when the app exits for any reason, how long to wait for the engine to
# close its state database before giving up on it (its committed pages are safe either way).
ENGINE_CLOSE_TIMEOUT = 5.0
# More sources than this finishing in one tick get one notification, not one each.
NOTIFY_EACH_SOURCE_UP_TO = 3


class Dashboard(App[int]):
    """The dashboard of one run. Give it an Engine that has not been entered: the app enters it
    on its own event loop. Returns the exit code (0 done, 1 a source failed, 2 the run could
    not start, 130 interrupted)."""

    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    TITLE = "tui-connector"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause"),
        Binding("P", "toggle_pause_all", "Pause all", key_display="P"),
        Binding("r", "retry", "Retry"),
        Binding("plus", "concurrency(1)", "More", key_display="+"),
        Binding("minus", "concurrency(-1)", "Less", key_display="-"),
        Binding("a", "auto_concurrency", "Auto"),
        Binding("s", "stop_source", "Stop"),
        Binding("e", "focus_errors", "Errors"),
        Binding("f", "toggle_error_filter", "Filter errors"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        exit_when_done: bool = False,
        clock: Callable[[], float] = time.monotonic,
        handle_signals: bool = False,
    ) -> None:
        """`clock` must read the same time as `time.monotonic` (the engine stamps telemetry
        with it); tests pass a frozen one to make screenshots repeatable. `handle_signals`
        makes SIGINT/SIGTERM act like `q` (only where the app owns the process)."""
        super().__init__()
        self.engine = engine
        engine.pacer.interactive = True  # keys and frames share the loop with the retrieval
        self.exit_when_done = exit_when_done
        self.clock = clock
        self.handle_signals = handle_signals
        self.startup_error: str | None = None
        self.result: RunResult | None = None
        self.history = ThroughputHistory()
        self.errors_follow_selection = False
        self.tick_seconds: deque[float] = deque(maxlen=1000)
        self._styles: ThemeStyles | None = None
        self._statuses: dict[str, SourceStatus] = {}
        self._run_finished = False
        self._engine_worker: Worker[None] | None = None
        self._engine_running = False
        self._engine_closed = asyncio.Event()
        self._quit_requested = False
        self._quit_now_requested = False
        self._finished_before_stop = False
        self._shown_totals: str | None = None
        self._shown_banner: str | None = None
        self._shown_note: str | None = None

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="totals")
        yield Static(id="quit-banner")
        yield SourcesTable(self.engine.selected, id="sources")
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
        self.sources_table.border_title = "Sources"
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
        self.refresh_view()
        self.refresh_timer = self.set_interval(REFRESH_SECONDS, self.refresh_view)
        self.set_interval(1.0, self._sample_throughput)
        # exclusive=False: an exclusive worker would cancel the others of its group.
        self._engine_worker = self.run_worker(
            self._drive(), name="engine", group="engine", exclusive=False
        )

    def _restyle(self) -> None:
        self._styles = ThemeStyles(self)
        self.sources_table.restyle(self._styles)
        self.errors_table.restyle(self._styles)

    # -- the run --------------------------------------------------------------------------------

    async def _drive(self) -> None:
        engine = self.engine
        entered = False
        try:
            async with engine:
                entered = True
                if self._quit_requested:  # `q` while the state was opening: run nothing
                    result = RunResult(stopped=list(engine.selected), interrupted=True)
                else:
                    self._engine_running = True
                    try:
                        # until_done=False: finished sources stay retryable until `q`.
                        result = await engine.run(until_done=False)
                    finally:
                        self._engine_running = False
            if self._finished_before_stop:
                # The engine calls any run it was asked to stop "interrupted", even one whose
                # sources had all finished before the operator pressed `q`.
                result = dataclasses.replace(result, interrupted=False)
            self.result = result
            self.exit(result.exit_code)
        except StateError as exc:
            if entered:
                raise
            self.startup_error = str(exc)
            self.exit(EXIT_STARTUP_FAILED)
        finally:
            self._engine_closed.set()
            if self._quit_now_requested:
                self.exit(EXIT_INTERRUPTED)

    def all_finished(self) -> bool:
        sources = self.engine.telemetry.sources
        return len(sources) >= len(self.engine.selected) and all(
            stats.status.finished for stats in sources.values()
        )

    async def on_unmount(self) -> None:
        # However the app ends, let the engine close its state database and release its lock.
        worker = self._engine_worker
        if worker is not None and not self._engine_closed.is_set():
            if not worker.is_cancelled:
                worker.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._engine_closed.wait(), ENGINE_CLOSE_TIMEOUT)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _on_signal(self) -> None:
        self.call_next(self.action_quit)

    # -- the view -------------------------------------------------------------------------------

    def refresh_view(self) -> None:
        """One tick: read telemetry, change what changed. Runs 10 times a second."""
        if not self.screen_stack:
            return  # the app is closing: a tick can come after its screens are gone
        started = time.perf_counter()
        now = self.clock()
        engine = self.engine
        telemetry = engine.telemetry
        sources = telemetry.sources
        commits = engine.state.last_commit_at
        self.sources_table.sync(
            (name, source_cells(name, sources.get(name), commits.get(name), now))
            for name in engine.selected
        )
        in_flight = telemetry.in_flight
        idle = (idle_reason(stats, now) for stats in sources.values())
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
        if self._quit_requested:
            self._refresh_banner(now)
        screen = self.screen
        if isinstance(screen, SourceDetailScreen):
            screen.refresh_live()
        self.tick_seconds.append(time.perf_counter() - started)

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
        stats = self.engine.telemetry.sources.get(selected) if selected else None
        note = fmt.concurrency_note(stats, now)
        if note != self._shown_note:
            self._shown_note = note
            self.sources_table.border_subtitle = note or None

    def _refresh_errors(self) -> None:
        errors = self.errors_table
        selected = self.sources_table.selected_source
        if self.errors_follow_selection and selected is not None:
            errors.filter_source(selected)
            title = f"Errors of {selected} (f: all sources)"
        else:
            errors.filter_source(None)
            title = "Errors of all sources (f: selected source only)"
        errors.sync(self.engine.telemetry.errors)
        self._set_title(errors, title)

    def _refresh_totals(self, now: float) -> None:
        engine = self.engine
        stats = list(engine.telemetry.sources.values())
        counts = {status: 0 for status in SourceStatus}
        for source in stats:
            counts[source.status] += 1
        waiting = len(engine.selected) - len(stats)
        running = counts[SourceStatus.RUNNING] + counts[SourceStatus.BACKING_OFF]
        paused = counts[SourceStatus.PAUSED] + counts[SourceStatus.PAUSING]
        records = sum(source.records for source in stats)
        elapsed = self.run_elapsed(now)
        if self.all_finished():
            fetched = sum(source.records_this_run for source in stats)
            overall = fetched / elapsed if elapsed > 0 else 0.0
        else:
            overall = sum(source.records_rate.rate(now) for source in stats)
        parts = [
            f"{counts[SourceStatus.DONE]}/{len(engine.selected)} done",
            f"{running} running",
            f"{counts[SourceStatus.FAILED]} failed",
        ]
        if paused:
            parts.append(f"{paused} paused")
        if counts[SourceStatus.STOPPED]:
            parts.append(f"{counts[SourceStatus.STOPPED]} stopped")
        if waiting + counts[SourceStatus.PENDING]:
            parts.append(f"{waiting + counts[SourceStatus.PENDING]} pending")
        totals = " · ".join(parts) + (
            f" │ {fmt.count(records)} records │ {fmt.rate(overall)} records/s"
            f" │ elapsed {fmt.elapsed(elapsed)}"
            f" │ state {fmt.shown_path(engine.state_path)}"
            f" │ lake {fmt.shown_path(engine.out)}"
        )
        if totals != self._shown_totals:
            self._shown_totals = totals
            self.totals_line.update(totals, layout=False)  # one line, docked: nothing moves

    def run_elapsed(self, now: float) -> float:
        telemetry = self.engine.telemetry
        end = now
        if self.all_finished():
            finished = [s.finished_at for s in telemetry.sources.values() if s.finished_at]
            end = max(finished, default=now)
        return max(0.0, end - telemetry.started_at)

    def _refresh_banner(self, now: float) -> None:
        engine = self.engine
        in_flight = len(engine.telemetry.in_flight)
        if self._quit_now_requested:
            text = "Quitting now: closing the state database…"
        elif engine.stop_requested_at is None:
            text = "Quitting…"
        else:
            left = engine.stop_grace - (now - engine.stop_requested_at)
            text = (
                f"Stopping: {in_flight} request{'s' if in_flight != 1 else ''} in flight "
                f"finishing and committing; exiting within {fmt.countdown(left)}. "
                "Press q again to quit at once (committed pages are safe)."
            )
        if text != self._shown_banner:
            self._shown_banner = text
            self.quit_banner.update(text)
            self.quit_banner.display = True

    def _notice_transitions(self, now: float) -> None:
        """Notifications for rare events only, found by comparing statuses between ticks."""
        done: list[SourceStats] = []
        failed: list[SourceStats] = []
        for name, stats in self.engine.telemetry.sources.items():
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
                fmt.one_line(stats.last_error or "no error recorded"),
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
            if self.exit_when_done and not self._quit_requested:
                self._quit_requested = True
                self._finished_before_stop = True
                self.engine.request_stop()
        elif not finished:
            self._run_finished = False  # a source was retried

    def _announce_finish(self, now: float) -> None:
        sources = self.engine.telemetry.sources.values()
        failed = sum(1 for s in sources if s.status is SourceStatus.FAILED)
        done = sum(1 for s in sources if s.status is SourceStatus.DONE)
        stopped = sum(1 for s in sources if s.status is SourceStatus.STOPPED)
        records = sum(s.records for s in sources)
        message = (
            f"{done} done, {failed} failed, {stopped} stopped; {fmt.count(records)} records "
            f"in {fmt.elapsed(self.run_elapsed(now))}."
        )
        if not self.exit_when_done:
            message += " r retries a failed or stopped source; q quits."
        self.notify(
            message,
            title="Run finished",
            severity="error" if failed else "information",
            timeout=15,
        )

    def _sample_throughput(self) -> None:
        self.history.sample(self.engine.telemetry, self.clock())

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

    def _stats(self, name: str) -> SourceStats | None:
        stats = self.engine.telemetry.sources.get(name)
        if stats is None:
            self.notify(f"{name} has not started yet", severity="warning")
        return stats

    # -- controls (keys and command palette) ------------------------------------------------------

    def is_paused(self, name: str) -> bool:
        """False too for a source the engine has not set up yet."""
        try:
            return self.engine.is_paused(name)
        except ValueError:
            return False

    def toggle_pause(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        if self.is_paused(name):
            self.engine.resume(name)
        elif stats.status.finished:
            self.notify(f"{name} is {stats.status}: nothing to pause", severity="warning")
        else:
            self.engine.pause(name)

    def pause_all(self) -> None:
        self.engine.pause_all()

    def resume_all(self) -> None:
        self.engine.resume_all()

    def retry_source(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        if not self.engine.retry(name):
            self.notify(
                f"{name} is {stats.status}: only a failed or stopped source can be retried",
                severity="warning",
            )

    def change_concurrency(self, name: str, delta: int) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        before = stats.concurrency
        was_auto = stats.concurrency_mode is ConcurrencyMode.AUTO
        self.engine.set_concurrency(name, before + delta)
        if stats.concurrency == before:
            bound = "1" if delta < 0 else f"max_concurrency ({self.engine.max_concurrency})"
            self.notify(f"{name}: concurrency is already {bound}", severity="warning")
        if was_auto and stats.concurrency_mode is ConcurrencyMode.MANUAL:
            self.notify(
                f"{name}: concurrency now manual at {stats.concurrency}; a returns it to auto",
                title="Adaptive concurrency overridden",
            )

    def auto_concurrency(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        if stats.concurrency_mode is ConcurrencyMode.AUTO:
            self.notify(f"{name}: concurrency is already adaptive (auto)")
        elif self.engine.set_auto(name):
            self.notify(
                f"{name}: concurrency adaptive again, from {stats.concurrency}",
                title="Auto concurrency",
            )
        else:
            self.notify(
                f"{name} has a fixed concurrency ({stats.concurrency}): + and - change it; "
                "`concurrency: auto` in sources.yaml makes it adaptive",
                severity="warning",
            )

    def stop_source(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        if stats.status.finished:
            self.notify(f"{name} is {stats.status}: nothing to stop", severity="warning")
            return
        self.engine.stop(name)

    def show_detail(self, name: str) -> None:
        if isinstance(self.screen, SourceDetailScreen):
            if self.screen.source == name:
                return
            self.pop_screen()
        self.push_screen(SourceDetailScreen(self.engine, name, self.history, self.clock))

    def action_toggle_pause(self) -> None:
        self._with_selected(self.toggle_pause)

    def action_toggle_pause_all(self) -> None:
        sources = self.engine.telemetry.sources
        if any(
            not self.is_paused(name) and not sources[name].status.finished
            for name in self.engine.runners
            if name in sources
        ):
            self.pause_all()
        else:
            self.resume_all()

    def action_retry(self) -> None:
        self._with_selected(self.retry_source)

    def action_concurrency(self, delta: int) -> None:
        self._with_selected(lambda name: self.change_concurrency(name, delta))

    def action_auto_concurrency(self) -> None:
        self._with_selected(self.auto_concurrency)

    def action_stop_source(self) -> None:
        self._with_selected(self.stop_source)

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

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            # Installed, the help is built once: a new one each time was composed, styled and
            # laid out on every `?` (20 ms of CPU where showing it again takes 4-5 ms), and
            # removed again on closing (10 ms where closing it now takes 4-5).
            if not self.is_screen_installed(HELP_SCREEN):
                self.install_screen(HelpScreen(self.help_sections()), HELP_SCREEN)
            self.push_screen(HELP_SCREEN)

    def help_sections(self) -> list[tuple[str, Sequence[tuple[str, str]]]]:
        dashboard = [
            (binding.key_display or binding.key, binding.description)
            for binding in self.BINDINGS
            if isinstance(binding, Binding)
        ]
        extra = {
            "p": "Pause the selected source (“pausing” until requests in flight commit, then "
            "“paused”); p resumes",
            "P": "Pause every source; again to resume them all",
            "r": "Retry the selected failed or stopped source from its checkpoint",
            "+": "More: one more request in flight for the selected source (an adaptive one "
            "turns manual)",
            "-": "Less: one request fewer in flight for the selected source (an adaptive one "
            "turns manual)",
            "a": "Auto: the selected source's limit back to adaptive (`concurrency: auto` sources)",
            "s": "Stop the selected source (it can be retried with r)",
            "e": "Focus the errors pane (again: back to the sources)",
            "f": "Errors pane: all sources, or only the selected source",
            "?": "This help",
            "q": "Quit gracefully: requests in flight finish and commit; q again quits at once",
        }
        dashboard = [(key, extra.get(key, description)) for key, description in dashboard]
        navigation = [
            ("↑ ↓", "Select a source (or an error, in the errors pane)"),
            ("enter", "Details of the selected source, or of the selected error's source"),
            ("← →", "Scroll the errors pane sideways (url, body excerpt)"),
            ("tab", "Next pane"),
            ("ctrl+p", "Command palette: every action, for any source by name"),
        ]
        detail = [
            ("escape", "Back to the sources"),
            ("p P r + - a s", "Act on the source shown"),
            ("e", "Focus its error history"),
        ]
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
        ]
        return [
            ("Dashboard", dashboard),
            ("Navigation", navigation),
            ("Source detail", detail),
            ("Columns", columns),
        ]

    def on_row_table_row_selected(self, event: RowTable.RowSelected) -> None:
        if event.table is self.sources_table:
            self.show_detail(event.key)
        elif event.table is self.errors_table:
            source = self.errors_table.source_at_cursor()
            if source is not None:
                self.show_detail(source)

    # -- quitting ---------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """First `q`: stop gracefully and exit when the run has returned. Second: at once."""
        if self._quit_requested:
            self.quit_now()
            return
        self._quit_requested = True
        while len(self.screen_stack) > 1:  # the countdown is on the main screen
            self.pop_screen()
        if self._engine_running:
            self._finished_before_stop = self.all_finished()
            self.engine.request_stop()
        elif self._engine_closed.is_set() or self._engine_worker is None:
            self.exit(self.result.exit_code if self.result else EXIT_INTERRUPTED)
            return
        # else the state is still opening: `_drive` sees the request and runs nothing.
        self._refresh_banner(self.clock())

    def quit_now(self) -> None:
        self._quit_now_requested = True
        worker = self._engine_worker
        if worker is None or self._engine_closed.is_set():
            self.exit(EXIT_INTERRUPTED)
            return
        self._refresh_banner(self.clock())
        # Cancelling the run closes the state database (committing queued checkpoints, each
        # for a page already in the lake); `_drive` then exits with 130.
        if not worker.is_cancelled:
            worker.cancel()
        self.set_timer(ENGINE_CLOSE_TIMEOUT, lambda: self.exit(EXIT_INTERRUPTED))


def run_dashboard(engine: Engine, *, exit_when_done: bool = False) -> int:
    """Run the dashboard in this terminal until the operator quits (or, with `exit_when_done`,
    until every source has finished). Returns the exit code: 0 done, 1 a source failed,
    2 the run could not start (the reason is printed to stderr), 130 interrupted. A summary
    of the run is printed after the dashboard closes."""
    app = Dashboard(engine, exit_when_done=exit_when_done, handle_signals=True)
    code = app.run()
    if app.startup_error is not None:
        print(f"tui-connector: {app.startup_error}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    if app.result is not None:
        from tui_connector.headless import HeadlessReporter

        HeadlessReporter(engine.telemetry).summary(app.result)
    if code is None:  # the app failed; Textual has printed why
        return app.return_code or EXIT_FAILED
    return code
