"""What the dashboard's keys and command palette do to a source: each control acts through the
run's facade and tells the operator what happened, or why nothing did. A control that reached
the run has the dashboard refresh at its next heartbeat, however busy the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_connector.telemetry import ConcurrencyMode, SourceStats, SourceStatus

if TYPE_CHECKING:
    from tui_connector.tui.app import Dashboard


class SourceControls:
    def __init__(self, dashboard: Dashboard) -> None:
        # The app, not its parts: its telemetry is read anew each tick, and it notifies.
        self.dashboard = dashboard

    def steerable(self) -> bool:
        """Whether controls reach the run; a read-only dashboard says why not."""
        if self.dashboard.facts.read_only:
            self.dashboard.notify(
                "attached read-only: this dashboard watches the run and steers nothing",
                severity="warning",
            )
            return False
        return True

    def _stats(self, name: str) -> SourceStats | None:
        if not self.steerable():
            return None
        stats = self.dashboard.telemetry.sources.get(name)
        if stats is None:
            self.dashboard.notify(f"{name} has not started yet", severity="warning")
        return stats

    def is_paused(self, name: str) -> bool:
        """False too for a source that has not started yet."""
        return self.dashboard.facade.is_paused(name)

    def toggle_pause(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        run = self.dashboard.facade
        if self.is_paused(name):
            run.resume(name)
        elif stats.status.finished:
            self.dashboard.notify(f"{name} is {stats.status}: nothing to pause", severity="warning")
            return
        else:
            run.pause(name)
        self.dashboard.refresh_soon()

    def pause_all(self) -> None:
        if self.steerable():
            self.dashboard.facade.pause_all()
            self.dashboard.refresh_soon()

    def resume_all(self) -> None:
        if self.steerable():
            self.dashboard.facade.resume_all()
            self.dashboard.refresh_soon()

    def toggle_pause_all(self) -> None:
        """Pause every source unless none is left to pause: then resume them all."""
        if not self.steerable():
            return
        if any(
            not self.is_paused(name) and not stats.status.finished
            for name, stats in self.dashboard.telemetry.sources.items()
        ):
            self.pause_all()
        else:
            self.resume_all()

    def retry(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        if not self.dashboard.facade.retry(name):
            self.dashboard.notify(
                f"{name} is {stats.status}: only a failed or stopped source can be retried",
                severity="warning",
            )
            return
        self.dashboard.refresh_soon()

    def change_concurrency(self, name: str, delta: int) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        app = self.dashboard
        if stats.status is SourceStatus.DONE:  # a failed or stopped one may yet be retried
            app.notify(f"{name} is done: no request is left to limit", severity="warning")
            return
        before = stats.concurrency
        was_auto = stats.concurrency_mode is ConcurrencyMode.AUTO
        # The run clamps the limit to 1..max_concurrency; a run in another process tells
        # its new limit only later, so the clamp is worked out here.
        target = min(max(before + delta, 1), app.facts.max_concurrency)
        app.facade.set_concurrency(name, before + delta)
        app.refresh_soon()
        if target == before:
            bound = "1" if delta < 0 else f"max_concurrency ({app.facts.max_concurrency})"
            app.notify(f"{name}: concurrency is already {bound}", severity="warning")
        if was_auto and (app.facts.attached or stats.concurrency_mode is ConcurrencyMode.MANUAL):
            auto = app.keys["auto"]
            app.notify(
                f"{name}: concurrency now manual at {target}; {auto} returns it to auto",
                title="Adaptive concurrency overridden",
            )

    def auto_concurrency(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        app = self.dashboard
        if stats.concurrency_mode is ConcurrencyMode.AUTO:
            app.notify(f"{name}: concurrency is already adaptive (auto)")
        elif app.facade.set_auto(name):
            app.refresh_soon()
            app.notify(
                f"{name}: concurrency adaptive again, from {stats.concurrency}",
                title="Auto concurrency",
            )
        else:
            more, less = app.keys["more"], app.keys["less"]
            app.notify(
                f"{name} has a fixed concurrency ({stats.concurrency}): {more} and {less} change "
                "it; `concurrency: auto` in sources.yaml makes it adaptive",
                severity="warning",
            )

    def stop(self, name: str) -> None:
        stats = self._stats(name)
        if stats is None:
            return
        if stats.status.finished:
            self.dashboard.notify(f"{name} is {stats.status}: nothing to stop", severity="warning")
            return
        self.dashboard.facade.stop(name)
        self.dashboard.refresh_soon()
