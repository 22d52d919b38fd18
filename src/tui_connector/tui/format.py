"""How the dashboard turns telemetry into short strings: pure functions of a `SourceStats` and
a clock reading, so that they can be tested and reused without an app. The figures behind the
strings (rates, ETA, progress) are the headless reporter's too: `figures`."""

from __future__ import annotations

import functools
import math
import time

import humanize

from tui_connector.facade import RunFacts
from tui_connector.figures import (
    PLACEHOLDER,
    backoff_seconds,
    checkpoint_seconds,
    eta_seconds,
    one_line,
    progress_fraction,
    run_records_per_second,
    run_seconds,
    shown_location,
    shown_path,
)
from tui_connector.telemetry import ConcurrencyMode, RunTelemetry, SourceStats, SourceStatus

BAR_WIDTH = 10
BAR_FILLED = "━"
BAR_EMPTY = "─"
# After a partitioned source's "done/total parts": how many partitions failed.
FAILED_MARK = "✗"
# After a source's "in flight/limit": who sets the limit (nothing: the config, fixed).
CONCURRENCY_MARK: dict[ConcurrencyMode, str] = {
    ConcurrencyMode.AUTO: "A",  # the adaptive controller
    ConcurrencyMode.MANUAL: "M",  # the operator, overriding an adaptive source (`a`: back)
}


def count(value: int) -> str:
    return humanize.intcomma(value)


def size(value: int) -> str:
    return humanize.naturalsize(value) if value else PLACEHOLDER


def rate(per_second: float) -> str:
    if per_second <= 0:
        return "0"
    if per_second < 10:
        return f"{per_second:.1f}"
    return humanize.intcomma(round(per_second))


def duration(seconds: float) -> str:
    """A rough duration for ETAs and ages: "3 seconds", "a minute", "2 hours"."""
    return humanize.naturaldelta(max(0.0, seconds))


def elapsed(seconds: float) -> str:
    """A precise duration for the run's elapsed time: "1 minute and 2 seconds"."""
    return humanize.precisedelta(max(0.0, seconds), minimum_unit="seconds", format="%0.0f")


def countdown(seconds: float) -> str:
    """Whole seconds left, rounded up, so that a countdown never shows 0 while waiting."""
    return f"{math.ceil(max(0.0, seconds))}s"


def clock_time(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


# -- per-source texts -------------------------------------------------------------------------


def status_text(stats: SourceStats | None, now: float) -> str:
    if stats is None:
        return SourceStatus.PENDING.value
    backoff = backoff_seconds(stats, now)
    if stats.status is SourceStatus.BACKING_OFF and backoff is not None:
        return f"backing off {countdown(backoff)}"
    return stats.status.value


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return BAR_FILLED * filled + BAR_EMPTY * (width - filled)


def partitions_text(stats: SourceStats) -> str:
    """A partitioned source's rollup: "12/40 parts", then "3✗" when partitions failed."""
    text = f"{count(stats.streams_done)}/{count(stats.streams_total)} parts"
    if stats.streams_failed:
        text += f" {count(stats.streams_failed)}{FAILED_MARK}"
    return text


def progress_text(stats: SourceStats | None) -> str:
    """Partitions done of a partitioned source; else a bar and a percentage when the total
    is known; else where the source is."""
    if stats is None:
        return PLACEHOLDER
    if stats.partitioned:
        return partitions_text(stats)
    fraction = progress_fraction(stats)
    if fraction is not None:
        return f"{bar(fraction)} {fraction:4.0%}"
    return f"{count(stats.records)} so far"


def eta_text(stats: SourceStats | None, now: float) -> str:
    if stats is None:
        return PLACEHOLDER
    eta = eta_seconds(stats, now)
    return duration(eta) if eta is not None else PLACEHOLDER


def concurrency_text(stats: SourceStats | None) -> str:
    if stats is None:
        return PLACEHOLDER
    text = f"{stats.in_flight}/{stats.concurrency}"
    mark = CONCURRENCY_MARK.get(stats.concurrency_mode)
    return f"{text} {mark}" if mark else text


def concurrency_mode_text(stats: SourceStats) -> str:
    if stats.concurrency_mode is ConcurrencyMode.AUTO:
        return "auto (adaptive)"
    if stats.concurrency_mode is ConcurrencyMode.MANUAL:
        return "manual (set by hand; a: back to auto)"
    return "fixed (as configured)"


def concurrency_change_text(stats: SourceStats, now: float) -> str | None:
    """Why the limit last changed, and how long ago; None if it never changed."""
    if not stats.concurrency_reason:
        return None
    text = one_line(stats.concurrency_reason)
    if stats.concurrency_changed_at is not None:
        text += f", {duration(now - stats.concurrency_changed_at)} ago"
    return text


def tokens_text(stats: SourceStats, now: float) -> str:
    """How many OAuth2 access tokens the source obtained, and when the current one expires."""
    text = f"{count(stats.tokens_obtained)} obtained"
    expires_at = stats.token_expires_at
    if expires_at is None:
        return f"{text}, the current one with no expiry given"
    if expires_at <= now:
        return f"{text}, the current one expired {duration(now - expires_at)} ago"
    return f"{text}, the current one expires in {countdown(expires_at - now)}"


def short_duration(seconds: float) -> str:
    """A duration in a few cells: "12s", "3m", "5h", "2d"."""
    whole = int(max(0.0, seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def checkpoint_text(stats: SourceStats, now: float, *, compact: bool = False) -> str:
    """When the source last checkpointed: how long ago while it runs; once it has finished,
    how long before its end (a figure that no longer grows). `compact`: for a table's cell."""
    seconds = checkpoint_seconds(stats, now)
    if seconds is None:
        return PLACEHOLDER
    if not stats.status.finished:
        return duration(seconds) if compact else f"{duration(seconds)} ago"
    if seconds < 1:
        return "at end" if compact else "at its end"
    if compact:
        return f"{short_duration(seconds)} before"
    return f"{duration(seconds)} before its end"


def concurrency_note(stats: SourceStats | None, now: float, auto_key: str) -> str:
    """One line on an adaptive source's limit: who sets it, and why it last changed.
    `auto_key`: the key that hands it back to the controller, as the operator has it."""
    if stats is None or stats.concurrency_mode is ConcurrencyMode.FIXED:
        return ""
    manual = f"manual ({auto_key}: auto)"
    mode = "auto" if stats.concurrency_mode is ConcurrencyMode.AUTO else manual
    text = f"{stats.name}: limit {stats.concurrency}, {mode}"
    change = concurrency_change_text(stats, now)
    return f"{text} — {change}" if change else text


# -- the whole run ----------------------------------------------------------------------------


def totals_text(telemetry: RunTelemetry, facts: RunFacts, finished: bool, now: float) -> str:
    """The line over the sources: how many are in each state, records, rate, elapsed time and
    where the state and the lake are."""
    stats = list(telemetry.sources.values())
    counts = {status: 0 for status in SourceStatus}
    for source in stats:
        counts[source.status] += 1
    waiting = len(facts.selected) - len(stats)
    running = counts[SourceStatus.RUNNING] + counts[SourceStatus.BACKING_OFF]
    paused = counts[SourceStatus.PAUSED] + counts[SourceStatus.PAUSING]
    records = sum(source.records for source in stats)
    seconds = run_seconds(telemetry, finished, now)
    overall = run_records_per_second(telemetry, finished, seconds, now)
    parts = [
        f"{counts[SourceStatus.DONE]}/{len(facts.selected)} done",
        f"{running} running",
        f"{counts[SourceStatus.FAILED]} failed",
    ]
    if paused:
        parts.append(f"{paused} paused")
    if counts[SourceStatus.STOPPED]:
        parts.append(f"{counts[SourceStatus.STOPPED]} stopped")
    if waiting + counts[SourceStatus.PENDING]:
        parts.append(f"{waiting + counts[SourceStatus.PENDING]} pending")
    return " · ".join(parts) + (
        f" │ {count(records)} records │ {rate(overall)} records/s"
        f" │ elapsed {elapsed(seconds)}"
        f"{_places(facts)}"
    )


@functools.cache
def _places(facts: RunFacts) -> str:
    """Where the run keeps its state and lake: the same for the whole run, so made once."""
    return f" │ state {shown_path(facts.state_path)} │ lake {shown_location(facts.lake)}"
