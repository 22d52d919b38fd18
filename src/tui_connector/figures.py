"""The figures both front ends show of a source, worked out from its telemetry: rates, ETA,
progress, and the few plain-text helpers their texts share. Pure functions of a `SourceStats`
and a clock reading; no Textual, no I/O, no formatting library."""

from __future__ import annotations

from pathlib import Path

from tui_connector.telemetry import RunTelemetry, SourceStats, SourceStatus

PLACEHOLDER = "—"  # where there is no value to show


def one_line(text: str) -> str:
    return " ".join(text.split())


def counted(amount: int, noun: str, plural: str | None = None) -> str:
    """ "1 page", "1,200 pages", "2 retries": `noun` is singular (an s makes the plural,
    unless `plural` says otherwise)."""
    return f"{amount:,} {noun if amount == 1 else plural or noun + 's'}"


def shown_path(path: Path) -> str:
    """A path relative to the working directory when it lies beneath it, else absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def shown_location(location: str) -> str:
    """A lake's location: a URL as it is, a directory as `shown_path` shows it."""
    return location if "://" in location else shown_path(Path(location))


def lake_kind(format: str, version: int | None) -> str:
    """A source's format and, for a table, its version: "jsonl", "delta v12"."""
    return format if version is None else f"{format} v{version}"


def active_seconds(stats: SourceStats, now: float) -> float:
    """How long the source has been running in this run (up to its end once finished)."""
    if stats.started_at is None:
        return 0.0
    end = stats.finished_at if stats.finished_at is not None else now
    return max(end - stats.started_at, 0.0)


def _average(amount: int, stats: SourceStats, now: float) -> float:
    seconds = active_seconds(stats, now)
    return amount / seconds if seconds > 0 else 0.0


def records_per_second(stats: SourceStats, now: float) -> float:
    # A finished source's sliding window only decays towards zero: show its average instead.
    if stats.status.finished:
        return _average(stats.records_this_run, stats, now)
    return stats.records_rate.rate(now)


def requests_per_second(stats: SourceStats, now: float) -> float:
    if stats.status.finished:
        return _average(stats.requests, stats, now)
    return stats.requests_rate.rate(now)


def backoff_seconds(stats: SourceStats, now: float) -> float | None:
    """How long until a source backing off tries again; None when it is not waiting."""
    if stats.backoff_until is None:
        return None
    return max(0.0, stats.backoff_until - now)


# A source that fetches nothing now has no time of arrival: its rate only decays.
_NO_ETA = frozenset({SourceStatus.PAUSING, SourceStatus.PAUSED})


def eta_seconds(stats: SourceStats, now: float) -> float | None:
    if stats.total_records is None or stats.status.finished or stats.status in _NO_ETA:
        return None
    remaining = stats.total_records - stats.records
    per_second = stats.records_rate.rate(now)
    if remaining <= 0 or per_second <= 0:
        return None
    return remaining / per_second


def checkpoint_seconds(stats: SourceStats, now: float) -> float | None:
    """How long before `now` the source last checkpointed; once it has finished, how long
    before its finish (a figure that stops growing); None if it never did."""
    at = stats.last_checkpoint_at
    if at is None:
        return None
    end = stats.finished_at if stats.status.finished and stats.finished_at is not None else now
    return max(0.0, end - at)


def progress_fraction(stats: SourceStats) -> float | None:
    """How far along the source is, 0 to 1: whole when done; None without a total."""
    if stats.status is SourceStatus.DONE:
        return 1.0
    total = stats.total_records
    if total is None or total <= 0:
        return None
    return min(stats.records / total, 1.0)


# -- the whole run ----------------------------------------------------------------------------


def run_seconds(telemetry: RunTelemetry, finished: bool, now: float) -> float:
    """How long the run has been going: once every source has `finished`, until the last did;
    once the run has ended (stopped), until then; not until whoever asks is done looking."""
    end = now if telemetry.finished_at is None else telemetry.finished_at
    if finished:
        ends = [s.finished_at for s in telemetry.sources.values() if s.finished_at]
        end = max(ends, default=end)
    return max(0.0, end - telemetry.started_at)


def run_records_per_second(
    telemetry: RunTelemetry, finished: bool, seconds: float, now: float
) -> float:
    """Every source's rate now; once every source has `finished`, the run's average over its
    `seconds` (the sliding windows only decay)."""
    sources = telemetry.sources.values()
    if finished:
        fetched = sum(source.records_this_run for source in sources)
        return fetched / seconds if seconds > 0 else 0.0
    return sum(source.records_rate.rate(now) for source in sources)
