"""Which sources the sources table shows, and in what order: a filter by name and by status,
and a sort by any column. Pure functions of telemetry and a clock reading, so that a run of
120 sources can be narrowed to the failing, stalled or slow ones and tested without an app."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from tui_connector.figures import (
    checkpoint_seconds,
    eta_seconds,
    progress_fraction,
    records_per_second,
    requests_per_second,
)
from tui_connector.telemetry import LakeInfo, SourceStats, SourceStatus


class StatusFilter(Enum):
    """The quick filters by status, in the order a key cycles through them. Each is the label
    the table's title shows and the statuses it keeps ("running" and "paused" count as the
    totals line counts them)."""

    ALL = ("all", ())
    FAILED = ("failed", (SourceStatus.FAILED,))
    BACKING_OFF = ("backing off", (SourceStatus.BACKING_OFF,))
    PAUSED = ("paused", (SourceStatus.PAUSED, SourceStatus.PAUSING))
    RUNNING = ("running", (SourceStatus.RUNNING, SourceStatus.BACKING_OFF))

    def __init__(self, label: str, statuses: tuple[SourceStatus, ...]) -> None:
        self.label = label
        self.statuses = statuses

    def keeps(self, stats: SourceStats | None) -> bool:
        if self is StatusFilter.ALL:
            return True
        return stats is not None and stats.status in self.statuses

    def following(self) -> StatusFilter:
        members = list(StatusFilter)
        return members[(members.index(self) + 1) % len(members)]


# A status sorts by how much it needs the operator: failed first, done last.
STATUS_URGENCY = {
    status: rank
    for rank, status in enumerate(
        (
            SourceStatus.FAILED,
            SourceStatus.BACKING_OFF,
            SourceStatus.PAUSING,
            SourceStatus.PAUSED,
            SourceStatus.RUNNING,
            SourceStatus.PENDING,
            SourceStatus.STOPPED,
            SourceStatus.DONE,
        )
    )
}

SortValue = float | str
LakeOf = Callable[[str, SourceStats | None], LakeInfo]


def _progress(stats: SourceStats, now: float) -> float:
    if stats.partitioned:
        return stats.streams_done / stats.streams_total if stats.streams_total else 0.0
    fraction = progress_fraction(stats)
    return -1.0 if fraction is None else fraction


def _eta(stats: SourceStats, now: float) -> float:
    eta = eta_seconds(stats, now)
    return math.inf if eta is None else eta  # unknown: as far away as can be


def _checkpoint_age(stats: SourceStats, now: float) -> float:
    seconds = checkpoint_seconds(stats, now)
    return -1.0 if seconds is None else seconds


# What each column of the sources table sorts by, from a source's telemetry. The lake's
# columns (written, lake) read its lake instead.
STATS_SORT_VALUES: dict[str, Callable[[SourceStats, float], SortValue]] = {
    "status": lambda stats, _now: STATUS_URGENCY[stats.status],
    "progress": _progress,
    "eta": _eta,
    "pages": lambda stats, _now: stats.pages,
    "records": lambda stats, _now: stats.records,
    "bytes": lambda stats, _now: stats.bytes,
    "req_s": requests_per_second,
    "rec_s": records_per_second,
    "retries": lambda stats, _now: stats.retries,
    "errors": lambda stats, _now: stats.errors,
    "concurrency": lambda stats, _now: stats.in_flight + stats.concurrency / 10_000,
    "checkpoint": _checkpoint_age,
}
# Where a source without telemetry (not started yet) sorts.
NOT_STARTED: dict[str, SortValue] = {"status": STATUS_URGENCY[SourceStatus.PENDING]}
# Sorted biggest first at first: who fetched, failed or waited most is what a sort looks for.
# Names and the lake's kind sort from A, statuses from the most urgent, ETAs from the soonest.
ASCENDING_FIRST = frozenset({"source", "status", "eta", "lake"})


@dataclass
class SourceArrangement:
    """The sources table's filter and sort, as the operator set them."""

    name_filter: str = ""
    status_filter: StatusFilter = StatusFilter.ALL
    sort_column: str | None = None  # None: the config's order
    descending: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.name_filter) or self.status_filter is not StatusFilter.ALL

    def sort_by(self, column: str | None) -> None:
        """Sort by `column` (None: the config's order) in its first direction; by the column
        already sorted by: the other way round (a header clicked twice)."""
        if column is not None and column == self.sort_column:
            self.descending = not self.descending
            return
        self.sort_column = column
        self.descending = column is not None and column not in ASCENDING_FIRST

    def sort_by_next(self, columns: Sequence[str]) -> None:
        """The next column's sort, after the last column: the config's order again."""
        if self.sort_column is None:
            self.sort_by(columns[0])
            return
        index = columns.index(self.sort_column) + 1
        self.sort_by(columns[index] if index < len(columns) else None)

    def reverse(self) -> None:
        if self.sort_column is not None:
            self.descending = not self.descending

    def shows(self, name: str, stats: SourceStats | None) -> bool:
        if self.name_filter and self.name_filter.casefold() not in name.casefold():
            return False
        return self.status_filter.keeps(stats)

    def arrange(
        self,
        names: Sequence[str],
        sources: Mapping[str, SourceStats],
        now: float,
        lake_of: LakeOf,
    ) -> list[str]:
        """The names shown, in the order shown. Ties keep the config's order."""
        shown = [name for name in names if self.shows(name, sources.get(name))]
        column = self.sort_column
        if column is None:
            return shown

        def value(name: str) -> SortValue:
            stats = sources.get(name)
            if column == "source":
                return name.casefold()
            if column == "written":
                return lake_of(name, stats).bytes_written
            if column == "lake":
                lake = lake_of(name, stats)
                return f"{lake.format} {lake.version or 0:09d}"
            if stats is None:
                return NOT_STARTED.get(column, -1.0)
            return STATS_SORT_VALUES[column](stats, now)

        # sorted() keeps equal items in their order in either direction.
        return sorted(shown, key=value, reverse=self.descending)

    def describe(self, labels: Mapping[str, str]) -> str:
        """What is active, for the table's title: "failed · name ~ “ord” · by rec/s ↓"."""
        parts: list[str] = []
        if self.status_filter is not StatusFilter.ALL:
            parts.append(self.status_filter.label)
        if self.name_filter:
            parts.append(f"name ~ “{self.name_filter}”")
        if self.sort_column is not None:
            parts.append(f"by {labels[self.sort_column]} {sort_arrow(self.descending)}")
        return " · ".join(parts)


def sort_arrow(descending: bool) -> str:
    return "↓" if descending else "↑"


def sources_title(
    arrangement: SourceArrangement, shown: int, total: int, labels: Mapping[str, str]
) -> str:
    """The sources table's title: how many rows show of how many, and what chose them."""
    count = f"{shown} of {total}" if arrangement.filtered else f"{total}"
    active = arrangement.describe(labels)
    return f"Sources: {count}" + (f" · {active}" if active else "")
