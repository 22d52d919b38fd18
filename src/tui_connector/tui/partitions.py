"""The detail screen's table of a source's streams (its partitions): the ones worth a row, each
saying what it is doing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text

from tui_connector.figures import PLACEHOLDER, one_line
from tui_connector.telemetry import SourceStats, SourceStatus, StreamStats, StreamStatus
from tui_connector.tui import format as fmt
from tui_connector.tui.table import Cells, Column, RowTable
from tui_connector.tui.widgets import ThemeStyles

MAX_PARTITIONS_SHOWN = 200

PARTITION_COLUMNS: tuple[Column, ...] = (
    Column("partition", "partition", 20),
    Column("status", "status", 8),
    Column("pages", "pages", 9, numeric=True),
    Column("records", "records", 9, numeric=True),
    Column("position", "position", 28),
    Column("error", "last error", 46),
)


def shown_streams(
    stats: SourceStats, limit: int = MAX_PARTITIONS_SHOWN
) -> tuple[list[StreamStats], int]:
    """The streams worth a row, at most `limit`: running ones first, then failed ones, then
    the rest in the order they started; and how many others there are (not started yet
    included). O(streams): for the detail screen, at most once a second."""
    running: list[StreamStats] = []
    failed: list[StreamStats] = []
    rest: list[StreamStats] = []
    for stream in stats.streams.values():
        if stream.status is StreamStatus.RUNNING:
            running.append(stream)
        elif stream.status is StreamStatus.FAILED:
            failed.append(stream)
        elif len(rest) < limit:
            rest.append(stream)
    chosen = (running + failed + rest)[:limit]
    return chosen, max(stats.streams_total, len(stats.streams)) - len(chosen)


# While its source is paused (or pausing), a running stream is paused too: it says so.
SOURCE_STATUS_OVER_RUNNING_STREAMS = frozenset({SourceStatus.PAUSING, SourceStatus.PAUSED})


def partition_cells(
    stream: StreamStats,
    redact: Callable[[str], str],
    source_status: SourceStatus | None = None,
) -> Cells:
    """The text of a stream's row, in the order of PARTITION_COLUMNS."""
    status = stream.status.value
    if (
        stream.status is StreamStatus.RUNNING
        and source_status in SOURCE_STATUS_OVER_RUNNING_STREAMS
    ):
        status = source_status.value
    pages = fmt.count(stream.pages)
    if stream.pages_total is not None and stream.pages <= stream.pages_total:
        pages += f"/{fmt.count(stream.pages_total)}"
    return (
        stream.key,
        status,
        pages,
        fmt.count(stream.records),
        redact(one_line(stream.position)) or PLACEHOLDER,
        redact(one_line(stream.error)) if stream.error else PLACEHOLDER,
    )


class PartitionTable(RowTable):
    """At most MAX_PARTITIONS_SHOWN streams of one source, keyed by partition, in the order
    given; a row is drawn again only when its text changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(PARTITION_COLUMNS, show_cursor=False, id=id)
        self._styles: ThemeStyles | None = None

    def restyle(self, styles: ThemeStyles) -> None:
        self._styles = styles
        self.redraw()

    def sync(
        self,
        streams: Sequence[StreamStats],
        redact: Callable[[str], str],
        source_status: SourceStatus | None = None,
    ) -> None:
        self.set_rows(
            [(stream.key, partition_cells(stream, redact, source_status)) for stream in streams]
        )

    def cell_text(self, index: int, cells: Cells) -> Text:
        return self._cell(PARTITION_COLUMNS[index], cells[index])

    def _cell(self, column: Column, value: str) -> Text:
        if column.numeric:
            return Text(value, justify="right", no_wrap=True)
        text = Text(value, no_wrap=True, overflow="ellipsis")
        styles = self._styles
        if styles is not None and column.key == "status":
            text.stylize(styles.for_status(value))
        elif styles is not None and column.key == "error" and value != PLACEHOLDER:
            text.stylize(styles.error)
        return text
