"""Records per second per source, sampled once a second by the app for the detail screen's
sparkline (telemetry keeps only a 10-second window)."""

from __future__ import annotations

from collections import deque

from tui_connector.telemetry import RunTelemetry

HISTORY_SECONDS = 300


class ThroughputHistory:
    def __init__(self, seconds: int = HISTORY_SECONDS) -> None:
        self.seconds = seconds
        self.per_source: dict[str, deque[float]] = {}
        self.samples_taken = 0
        self._previous_at: float | None = None
        self._previous_records: dict[str, int] = {}

    def of(self, source: str) -> deque[float]:
        history = self.per_source.get(source)
        if history is None:
            history = self.per_source[source] = deque(maxlen=self.seconds)
        return history

    def sample(self, telemetry: RunTelemetry, now: float) -> None:
        # records_this_run only grows (`records` is reset when a source is retried).
        records = {name: stats.records_this_run for name, stats in telemetry.sources.items()}
        previous_at = self._previous_at
        if previous_at is not None and now <= previous_at:
            return  # the clock did not move (a frozen test clock): nothing to measure
        self._previous_at = now
        if previous_at is not None:
            seconds = now - previous_at
            for name, total in records.items():
                fetched = total - self._previous_records.get(name, 0)
                self.of(name).append(max(fetched, 0) / seconds)
            self.samples_taken += 1
        self._previous_records = records
