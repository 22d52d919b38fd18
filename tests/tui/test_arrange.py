"""Which sources the table shows and in what order (`tui.arrange`), and the texts that stop
moving once a source has finished or while it is paused."""

from __future__ import annotations

import pytest

from tui_connector.telemetry import LakeInfo, SourceStats, SourceStatus, StreamStats, StreamStatus
from tui_connector.tui import format as fmt
from tui_connector.tui.arrange import SourceArrangement, StatusFilter, sources_title
from tui_connector.tui.finder import COLUMN_KEYS, COLUMN_LABELS
from tui_connector.tui.partitions import partition_cells

NOW = 1_000.0
NAMES = ("orders", "customers", "invoices", "order_lines", "events", "refunds")
STATUSES = {
    "orders": SourceStatus.RUNNING,
    "customers": SourceStatus.FAILED,
    "invoices": SourceStatus.BACKING_OFF,
    "order_lines": SourceStatus.PAUSED,
    "events": SourceStatus.DONE,
    # "refunds" has not started: no telemetry yet
}
ERRORS = {"orders": 2, "customers": 9, "invoices": 5, "order_lines": 0, "events": 2}


def telemetry() -> dict[str, SourceStats]:
    return {
        name: SourceStats(name, status=status, errors=ERRORS[name], records=10 * ERRORS[name])
        for name, status in STATUSES.items()
    }


def lake_of(name: str, _stats: SourceStats | None) -> LakeInfo:
    return LakeInfo("jsonl", name, bytes_written=len(name))


def shown(arrangement: SourceArrangement) -> list[str]:
    return arrangement.arrange(NAMES, telemetry(), NOW, lake_of)


@pytest.mark.parametrize(
    ("status_filter", "names"),
    [
        (StatusFilter.ALL, list(NAMES)),
        (StatusFilter.FAILED, ["customers"]),
        (StatusFilter.BACKING_OFF, ["invoices"]),
        (StatusFilter.PAUSED, ["order_lines"]),
        (StatusFilter.RUNNING, ["orders", "invoices"]),  # as the totals line counts them
    ],
)
def test_a_status_filter_keeps_its_statuses(status_filter: StatusFilter, names: list[str]) -> None:
    assert shown(SourceArrangement(status_filter=status_filter)) == names


def test_the_status_filter_key_cycles_through_them_all_and_back() -> None:
    seen = [StatusFilter.ALL]
    while (following := seen[-1].following()) is not StatusFilter.ALL:
        seen.append(following)
    assert seen == list(StatusFilter)


def test_the_name_filter_keeps_names_holding_the_text_whatever_its_case() -> None:
    arrangement = SourceArrangement(name_filter="ORDER")
    assert shown(arrangement) == ["orders", "order_lines"]
    arrangement.status_filter = StatusFilter.PAUSED
    assert shown(arrangement) == ["order_lines"]
    title = sources_title(arrangement, 1, len(NAMES), COLUMN_LABELS)
    assert title == "Sources: 1 of 6 · paused · name ~ “ORDER”"


def test_numbers_sort_biggest_first_names_and_statuses_from_the_top() -> None:
    arrangement = SourceArrangement()
    arrangement.sort_by("errors")
    # Equal counts keep the config's order; a source not started yet sorts last.
    assert shown(arrangement) == [
        "customers",
        "invoices",
        "orders",
        "events",
        "order_lines",
        "refunds",
    ]
    assert sources_title(arrangement, 6, 6, COLUMN_LABELS) == "Sources: 6 · by err ↓"
    arrangement.sort_by("errors")  # the same column again: the other way round
    assert shown(arrangement)[:2] == ["refunds", "order_lines"]
    arrangement.sort_by("status")
    assert shown(arrangement) == [
        "customers",
        "invoices",
        "order_lines",
        "orders",
        "refunds",
        "events",
    ]
    arrangement.reverse()
    assert shown(arrangement)[0] == "events"
    arrangement.sort_by("source")
    assert shown(arrangement) == sorted(NAMES)
    arrangement.sort_by("written")  # the lake's own figures
    assert shown(arrangement)[0] == "order_lines"


def test_the_sort_key_goes_through_every_column_then_back_to_the_configs_order() -> None:
    arrangement = SourceArrangement()
    sorted_by = []
    for _ in COLUMN_KEYS:
        arrangement.sort_by_next(COLUMN_KEYS)
        sorted_by.append(arrangement.sort_column)
        shown(arrangement)  # every column sorts
    assert sorted_by == list(COLUMN_KEYS)
    arrangement.sort_by_next(COLUMN_KEYS)
    assert arrangement.sort_column is None and shown(arrangement) == list(NAMES)
    assert sources_title(arrangement, 6, 6, COLUMN_LABELS) == "Sources: 6"


def test_a_finished_sources_checkpoint_says_how_long_before_its_end() -> None:
    stats = SourceStats("s", status=SourceStatus.RUNNING, last_checkpoint_at=NOW - 30)
    assert fmt.checkpoint_text(stats, NOW, compact=True) == "30 seconds"
    assert fmt.checkpoint_text(stats, NOW) == "30 seconds ago"
    stats.status, stats.finished_at = SourceStatus.FAILED, NOW - 10
    later = NOW + 3_600
    assert fmt.checkpoint_text(stats, later, compact=True) == "20s before"
    assert fmt.checkpoint_text(stats, later) == "20 seconds before its end"
    stats.status, stats.finished_at = SourceStatus.DONE, NOW - 29.5
    assert fmt.checkpoint_text(stats, later, compact=True) == "at end"
    assert fmt.checkpoint_text(stats, later) == "at its end"
    assert [fmt.short_duration(s) for s in (59, 61, 7_200, 200_000)] == ["59s", "1m", "2h", "2d"]


def test_a_paused_sources_running_streams_say_paused() -> None:
    running = StreamStats("2024-01-01", status=StreamStatus.RUNNING)
    done = StreamStats("2023-12-31", status=StreamStatus.DONE)
    for source_status, shown_status in (
        (SourceStatus.RUNNING, "running"),
        (SourceStatus.PAUSING, "pausing"),
        (SourceStatus.PAUSED, "paused"),
    ):
        assert partition_cells(running, str, source_status)[1] == shown_status
        assert partition_cells(done, str, source_status)[1] == "done"
