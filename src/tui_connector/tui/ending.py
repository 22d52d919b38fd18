"""How the dashboard's run ends, one concept apart from what the dashboard shows: driving the
run and closing it, `q` (stop gracefully, then at once), `Q`, leaving a run of another process,
`d` (handing the run to the background), the stop banner, and a terminal that went away.

`RunEnding` is the base of `app.Dashboard`, which gives it the run, the keys and the screen's
parts declared below."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from textual.app import App
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import Worker

from tui_connector.facade import (
    ExitCode,
    RunError,
    RunFacade,
    RunFacts,
    RunResult,
    TwoStageStop,
    grace_left,
)
from tui_connector.telemetry import RunTelemetry
from tui_connector.tui import format as fmt
from tui_connector.tui.controls import SourceControls
from tui_connector.tui.keys import KeyNames
from tui_connector.tui.screens import ConfirmScreen

# After a second `q`, or when the app exits for any reason, how long to wait for the run to
# close its state database before giving up on it (its committed pages are safe either way).
CLOSE_TIMEOUT = 5.0
# Why `d` cannot hand a run to the background, unless its caller says otherwise.
NO_CONTROL_ENDPOINT = "it serves no control endpoint to attach to (started with --no-control)"


class RunEnding(App[int]):
    """The run's lifecycle in the dashboard (see the module's docstring)."""

    # Given by the dashboard.
    facade: RunFacade
    facts: RunFacts
    telemetry: RunTelemetry
    keys: KeyNames
    controls: SourceControls
    clock: Callable[[], float]
    refresh_timer: Timer
    quit_banner: Static

    def refresh_view(self) -> None:
        raise NotImplementedError

    def _init_ending(
        self, *, handle_signals: bool, can_detach: bool, cannot_detach_why: str
    ) -> None:
        self.handle_signals = handle_signals
        self.can_detach = can_detach
        self.cannot_detach_why = cannot_detach_why
        self.detaching = False  # `d`: the run stops here to go on in the background
        self.hung_up = False  # the terminal went away (SIGHUP)
        self.left = False  # attached, the operator left the run going
        self.startup_error: str | None = None
        self.result: RunResult | None = None
        self._run_worker: Worker[None] | None = None
        self._run_live = False  # not `_running`: Textual's App uses that name for itself
        self._run_closed = asyncio.Event()
        self._stop = TwoStageStop(graceful=self._stop_gracefully, immediate=self.quit_now)
        self._quit_now_requested = False
        self._shown_banner: str | None = None

    def _start_run(self) -> None:
        if self._run_worker is not None or self._stop.requested:
            return  # `q` before the first frame: nothing was started, nothing to stop
        # exclusive=False: an exclusive worker would cancel the others of its group.
        self._run_worker = self.run_worker(self._drive(), name="run", group="run", exclusive=False)

    async def _drive(self) -> None:
        run = self.facade
        try:
            try:
                await run.open()
            except RunError as exc:
                self.startup_error = str(exc)
                self.exit(ExitCode.USAGE)
                return
            try:
                if self._stop.requested:  # `q` while the state was opening: start nothing
                    run.request_stop()
                self._run_live = True
                try:
                    # until_done=False: finished sources stay retryable until `q`.
                    result = await run.run(until_done=False)
                finally:
                    self._run_live = False
            finally:
                await run.close()
            self.result = result
            if self.facts.attached and not self._quit_now_requested and not self.hung_up:
                self._show_ended()  # the last picture stays until `q`
            else:
                self.exit(ExitCode.OK if self.facts.attached else result.exit_code)
        finally:
            self._run_closed.set()
            if self.hung_up:
                self._end_hung_up()
            if self._quit_now_requested and not self.facts.attached:
                self.exit(ExitCode.INTERRUPTED)

    async def on_unmount(self) -> None:
        # However the app ends, let the run close its state database and release its lock.
        worker = self._run_worker
        if worker is not None and not self._run_closed.is_set():
            if not worker.is_cancelled and not self._quit_now_requested:
                worker.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run_closed.wait(), CLOSE_TIMEOUT)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    def _on_signal(self) -> None:
        self.call_next(self.action_quit)

    def terminal_lost(self) -> None:
        """Textual could not write to the terminal (it went away without a SIGHUP, or the
        output was a pipe that closed): as after a hang-up."""
        self._on_hangup()

    def _on_hangup(self) -> None:
        """The terminal is gone (SIGHUP): nobody sees the screen or types. Stop the run
        gracefully (attached: just leave it), then end the process without Textual's teardown,
        which would block on writing to a terminal that no longer exists; until then every
        write goes nowhere instead of failing."""
        if self.hung_up:
            return
        self.hung_up = True
        nowhere = os.open(os.devnull, os.O_WRONLY)
        for stream in (1, 2):
            os.dup2(nowhere, stream)
        os.close(nowhere)
        self.refresh_timer.stop()
        if self._run_closed.is_set():
            self._end_hung_up()
        elif self.facts.attached:
            self._leave()
        elif not self._stop.requested:
            self._stop.request()

    def _end_hung_up(self) -> None:
        """After a hang-up, once the run has closed (everything committed): exit at once."""
        code: int = ExitCode.OK
        if not self.facts.attached:
            code = self.result.exit_code if self.result else ExitCode.INTERRUPTED
        os._exit(code)

    def _show_ended(self) -> None:
        """Attached: the run can no longer be watched; its last picture stays."""
        self.refresh_view()
        self.refresh_timer.stop()
        ended = self.facade.ended or "the run has ended"
        text = f"{ended[0].upper()}{ended[1:]}. The screen shows its last picture; "
        text += f"{self.keys['quit']} leaves."
        self._shown_banner = text
        self.quit_banner.update(text)
        self.quit_banner.display = True
        self.refresh_bindings()  # nothing is left to steer

    def _refresh_banner(self, now: float) -> None:
        in_flight = len(self.telemetry.in_flight)
        left = grace_left(self.facade, now)
        if self.facts.attached:
            if left is None:
                return
            text = (
                f"The run is stopping: {in_flight} request{'s' if in_flight != 1 else ''} in "
                f"flight finishing and committing, within {fmt.countdown(left)}. "
                f"{self.keys['stop-run']} again stops it at once; {self.keys['quit']} leaves "
                "it to stop on its own."
            )
        elif self._quit_now_requested:
            text = "Quitting now: closing the state database…"
        elif left is None:
            text = "Quitting…"
        else:
            text = (
                f"Stopping: {in_flight} request{'s' if in_flight != 1 else ''} in flight "
                f"finishing and committing; exiting within {fmt.countdown(left)}. "
                f"Press {self.keys['quit']} again to quit at once (committed pages are safe)."
            )
        if text != self._shown_banner:
            self._shown_banner = text
            self.quit_banner.update(text)
            self.quit_banner.display = True

    async def action_quit(self) -> None:
        """First `q`: stop gracefully and exit when the run has returned. Second: at once.
        Attached to a run in another process: leave it going."""
        if self.facts.attached:
            self._leave()
            return
        self._stop.request()

    def _leave(self) -> None:
        """Attached: stop watching; the run goes on."""
        if self._run_closed.is_set():
            self.exit(ExitCode.OK)
            return
        self.left = True
        self._quit_now_requested = True
        self.facade.quit_now()  # `_drive` then returns and the app exits

    def action_detach(self) -> None:
        """Leave the run going without this terminal: attached, just leave; owning the run,
        stop it here (requests in flight commit) and have it go on in the background."""
        if self.facts.attached:
            self._leave()
            return
        if not self.can_detach:
            self.notify(
                f"this run cannot go on in the background: {self.cannot_detach_why}",
                severity="warning",
            )
            return
        if self._stop.requested:
            return
        self.detaching = True
        self.notify("handing the run over to the background…", title="Detaching")
        self._stop.request()

    def action_stop_run(self) -> None:
        """`Q`: stop the whole run — attached, after asking, and leave the dashboard open to
        watch it stop; in its own process, as `q` does."""
        if not self.facts.attached:
            self._stop.request()
            return
        if not self.controls.steerable():
            return
        if self.facade.stop_requested_at is not None:
            self.facade.request_stop()  # the second request stops it at once
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self.facade.request_stop()

        self.push_screen(
            ConfirmScreen(
                "Stop the run? Requests in flight finish and commit; running it again resumes "
                "it. (y: stop it, n: keep it going)"
            ),
            answered,
        )

    def _stop_gracefully(self) -> None:
        while len(self.screen_stack) > 1:  # the countdown is on the main screen
            self.pop_screen()
        if self._run_live:
            self.facade.request_stop()
        elif self._run_closed.is_set() or self._run_worker is None:
            self.exit(self.result.exit_code if self.result else ExitCode.INTERRUPTED)
            return
        # else the state is still opening: `_drive` stops the run once it is open.
        self._refresh_banner(self.clock())

    def quit_now(self) -> None:
        self._quit_now_requested = True
        worker = self._run_worker
        if worker is None or self._run_closed.is_set():
            self.exit(ExitCode.INTERRUPTED)
            return
        self._refresh_banner(self.clock())
        # Ending the run closes the state database (committing queued checkpoints, each for a
        # page already in the lake); `_drive` then exits with 130.
        self.facade.quit_now()
        self.set_timer(CLOSE_TIMEOUT, lambda: self.exit(ExitCode.INTERRUPTED))
