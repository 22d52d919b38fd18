"""The figures every front end shows of a source and of the run, as an operator reads them: no
time of arrival for a source that fetches nothing, ages and durations that stop once the thing
they measure has ended."""

from __future__ import annotations

from tui_connector.figures import checkpoint_seconds, eta_seconds, run_seconds
from tui_connector.telemetry import RunTelemetry, SourceStats, SourceStatus


def fetching(status: SourceStatus) -> SourceStats:
    """A source half-way through 1,000 records at 10 records/s (its last ten seconds)."""
    stats = SourceStats("s", status=status, total_records=1000, records=500)
    stats.records_rate._started = 0.0
    for second in range(90, 100):
        stats.records_rate.add(10, now=second + 0.5)
    return stats


def test_a_paused_source_has_no_time_of_arrival() -> None:
    assert eta_seconds(fetching(SourceStatus.RUNNING), 100.0) == 50.0
    for status in (SourceStatus.PAUSING, SourceStatus.PAUSED, SourceStatus.DONE):
        assert eta_seconds(fetching(status), 100.0) is None, status


def test_a_finished_sources_checkpoint_no_longer_ages() -> None:
    stats = SourceStats("s", status=SourceStatus.RUNNING, last_checkpoint_at=90.0)
    assert checkpoint_seconds(stats, 100.0) == 10.0
    stats.status, stats.finished_at = SourceStatus.FAILED, 95.0
    assert checkpoint_seconds(stats, 100.0) == checkpoint_seconds(stats, 5000.0) == 5.0
    assert checkpoint_seconds(SourceStats("never"), 100.0) is None


def test_the_run_lasts_until_its_last_source_finished_or_it_stopped() -> None:
    telemetry = RunTelemetry()
    telemetry.started_at = 100.0
    first, last = telemetry.source("first"), telemetry.source("last")
    first.finished_at, last.finished_at = 110.0, 130.0
    assert run_seconds(telemetry, False, 200.0) == 100.0  # still going: until now
    assert run_seconds(telemetry, True, 200.0) == 30.0  # finished: until the last source did
    telemetry.finished_at = 140.0  # stopped (a source never started): until the stop
    assert run_seconds(telemetry, False, 500.0) == 40.0
    assert run_seconds(telemetry, True, 500.0) == 30.0
