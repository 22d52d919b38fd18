"""The dashboard's panes. Each one is refreshed by the app's timer from telemetry and changes
only what changed: the sources table cell by cell, the errors table by appending new events."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import count as counter
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.color import Color
from textual.widgets import DataTable, Static

from tui_connector.telemetry import (
    ErrorEvent,
    InFlightRequest,
    SourceStats,
    SourceStatus,
    StreamStats,
    StreamStatus,
)
from tui_connector.tui import format as fmt

# Theme variables (not literal colours) behind each status; resolved when the theme changes.
STATUS_THEME_VARIABLE: dict[str, str] = {
    SourceStatus.PENDING.value: "foreground-muted",
    SourceStatus.RUNNING.value: "text-success",
    SourceStatus.PAUSING.value: "text-warning",
    SourceStatus.PAUSED.value: "text-warning",
    SourceStatus.BACKING_OFF.value: "text-warning",
    SourceStatus.DONE.value: "text-primary",
    SourceStatus.FAILED.value: "text-error",
    SourceStatus.STOPPED.value: "text-accent",
}
_BOLD_STATUSES = {SourceStatus.FAILED.value, SourceStatus.BACKING_OFF.value}


class ThemeStyles:
    """Rich styles made from the app's theme variables, for text inside table cells (where
    CSS does not reach)."""

    def __init__(self, app: App[Any]) -> None:
        variables = app.get_css_variables()
        background = Color.parse(variables.get("background", "black"))

        def style(name: str, *, bold: bool = False) -> Style:
            value = variables.get(name)
            if value is None:
                return Style(bold=bold)
            colour = Color.parse(value)
            if colour.a < 1:  # e.g. "foreground-muted": blend it as the screen would
                colour = background + colour
            return Style(color=colour.rich_color, bold=bold)

        self.status = {
            status: style(variable, bold=status in _BOLD_STATUSES)
            for status, variable in STATUS_THEME_VARIABLE.items()
        }
        self.bar = style("primary")
        self.muted = style("foreground-muted")
        self.error = style("text-error")
        self.warning = style("text-warning")
        self.accent = style("text-accent", bold=True)

    def for_status(self, status_text: str) -> Style:
        base = "backing off" if status_text.startswith("backing off") else status_text
        return self.status.get(base, Style())


# -- the sources table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    numeric: bool = False


def add_columns(table: DataTable[Any], columns: Sequence[Column]) -> None:
    """A table's columns: numbers right-aligned, widths fixed so cells never reflow."""
    for column in columns:
        label = Text(column.label, justify="right" if column.numeric else "left")
        table.add_column(label, key=column.key, width=column.width)


SOURCE_COLUMNS: tuple[Column, ...] = (
    Column("source", "source", 10),
    Column("status", "status", 16),
    Column("progress", "progress", 16),
    Column("eta", "ETA", 10),
    Column("pages", "pages", 6, numeric=True),
    Column("records", "records", 8, numeric=True),
    Column("bytes", "bytes", 8, numeric=True),
    Column("req_s", "req/s", 5, numeric=True),
    Column("rec_s", "rec/s", 6, numeric=True),
    Column("retries", "retry", 5, numeric=True),
    Column("errors", "err", 3, numeric=True),
    Column("concurrency", "conc", 7, numeric=True),
    Column("checkpoint", "checkpoint", 10, numeric=True),
)


def source_cells(
    name: str, stats: SourceStats | None, last_commit_at: float | None, now: float
) -> dict[str, str]:
    """The text of every cell of one source's row."""
    if stats is None:
        empty = {column.key: fmt.PLACEHOLDER for column in SOURCE_COLUMNS}
        return empty | {"source": name, "status": fmt.status_text(None, now)}
    return {
        "source": name,
        "status": fmt.status_text(stats, now),
        "progress": fmt.progress_text(stats),
        "eta": fmt.eta_text(stats, now),
        "pages": fmt.count(stats.pages),
        "records": fmt.count(stats.records),
        "bytes": fmt.size(stats.bytes),
        "req_s": fmt.rate(fmt.requests_per_second(stats, now)),
        "rec_s": fmt.rate(fmt.records_per_second(stats, now)),
        "retries": fmt.count(stats.retries),
        "errors": fmt.count(stats.errors),
        "concurrency": fmt.concurrency_text(stats),
        "checkpoint": fmt.checkpoint_age(last_commit_at, now),
    }


class SourcesTable(DataTable[Text]):
    """One row per source, keyed by its name. Rows are added once and never cleared (clearing
    resets the cursor and the scroll); each tick updates only the cells whose text changed."""

    BINDINGS = [Binding("enter", "select_cursor", "Detail")]

    def __init__(self, names: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.names = list(names)
        self._shown: dict[tuple[str, str], str] = {}
        self._styles: ThemeStyles | None = None
        self.cells_updated = 0  # how many update_cell calls so far (measured in tests)

    def on_mount(self) -> None:
        add_columns(self, SOURCE_COLUMNS)
        for name in self.names:
            self.add_row(*(Text("") for _ in SOURCE_COLUMNS), key=name)

    def restyle(self, styles: ThemeStyles) -> None:
        self._styles = styles
        self._shown.clear()  # repaint every cell in the new colours at the next tick

    @property
    def selected_source(self) -> str | None:
        if not self.names or not 0 <= self.cursor_row < len(self.names):
            return None
        return self.names[self.cursor_row]

    def select_source(self, name: str) -> None:
        self.move_cursor(row=self.names.index(name))

    def sync(self, rows: Iterable[tuple[str, dict[str, str]]]) -> None:
        styles = self._styles
        for name, cells in rows:
            for column in SOURCE_COLUMNS:
                value = cells[column.key]
                key = (name, column.key)
                if self._shown.get(key) == value:
                    continue
                self._shown[key] = value
                self.update_cell(name, column.key, self._cell(column, value, styles))
                self.cells_updated += 1

    @staticmethod
    def _cell(column: Column, value: str, styles: ThemeStyles | None) -> Text:
        if column.numeric:
            text = Text(value, justify="right", no_wrap=True)
            if styles is not None and column.key == "concurrency" and value[-1:].isalpha():
                text.stylize(styles.accent, len(value) - 1)  # the A(uto) / M(anual) mark
            return text
        text = Text(value, no_wrap=True, overflow="ellipsis")
        if styles is None:
            return text
        if column.key == "status":
            text.stylize(styles.for_status(value))
        elif column.key == "progress" and value[:1] in (fmt.BAR_FILLED, fmt.BAR_EMPTY):
            filled = len(value) - len(value.lstrip(fmt.BAR_FILLED))
            text.stylize(styles.bar, 0, filled)
            text.stylize(styles.muted, filled, fmt.BAR_WIDTH)
        elif column.key == "progress" and value.endswith(fmt.FAILED_MARK):
            text.stylize(styles.error, value.rindex(" ") + 1)  # "12/40 parts 3✗"
        elif column.key == "source":
            text.stylize(Style(bold=True))
        return text


# -- the partitions of one source ----------------------------------------------------------------

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


def partition_cells(stream: StreamStats, redact: Callable[[str], str]) -> dict[str, str]:
    pages = fmt.count(stream.pages)
    if stream.pages_total is not None and stream.pages <= stream.pages_total:
        pages += f"/{fmt.count(stream.pages_total)}"
    return {
        "partition": stream.key,
        "status": stream.status.value,
        "pages": pages,
        "records": fmt.count(stream.records),
        "position": redact(fmt.one_line(stream.position)) or fmt.PLACEHOLDER,
        "error": redact(fmt.one_line(stream.error)) if stream.error else fmt.PLACEHOLDER,
    }


class PartitionTable(DataTable[Text]):
    """At most MAX_PARTITIONS_SHOWN streams of one source, keyed by partition. Rows come and
    go and are re-sorted in place (never cleared: that would reset the scroll); cells are
    updated only when their text changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", show_cursor=False, id=id)
        self._shown: dict[str, dict[str, str]] = {}
        self._order: list[str] = []
        self._styles: ThemeStyles | None = None
        self._repaint = False

    def on_mount(self) -> None:
        add_columns(self, PARTITION_COLUMNS)

    def restyle(self, styles: ThemeStyles) -> None:
        self._styles = styles
        self._repaint = True

    def sync(self, streams: Sequence[StreamStats], redact: Callable[[str], str]) -> None:
        wanted = [stream.key for stream in streams]
        keep = set(wanted)
        for key in [key for key in self._shown if key not in keep]:
            self.remove_row(key)
            del self._shown[key]
        for stream in streams:
            cells = partition_cells(stream, redact)
            shown = self._shown.get(stream.key)
            if shown is None:
                row = (self._cell(column, cells[column.key]) for column in PARTITION_COLUMNS)
                self.add_row(*row, key=stream.key)
            else:
                for column in PARTITION_COLUMNS:
                    value = cells[column.key]
                    if self._repaint or shown[column.key] != value:
                        self.update_cell(stream.key, column.key, self._cell(column, value))
            self._shown[stream.key] = cells
        self._repaint = False
        if wanted != self._order:
            self._order = wanted
            rank = {key: index for index, key in enumerate(wanted)}
            self.sort("partition", key=lambda cell: rank[cell.plain])

    def _cell(self, column: Column, value: str) -> Text:
        if column.numeric:
            return Text(value, justify="right", no_wrap=True)
        text = Text(value, no_wrap=True, overflow="ellipsis")
        styles = self._styles
        if styles is not None and column.key == "status":
            text.stylize(styles.for_status(value))
        elif styles is not None and column.key == "error" and value != fmt.PLACEHOLDER:
            text.stylize(styles.error)
        return text


# -- requests in flight --------------------------------------------------------------------------

MAX_IN_FLIGHT_SHOWN = 50


def in_flight_text(
    requests: Iterable[InFlightRequest],
    total: int,
    idle_reasons: Iterable[str],
    now: float,
    styles: ThemeStyles | None,
) -> Text:
    """At most MAX_IN_FLIGHT_SHOWN requests (oldest first), then why idle sources are idle."""
    lines = Text(no_wrap=True, overflow="ellipsis")
    shown = 0
    for request in requests:
        if shown == MAX_IN_FLIGHT_SHOWN:
            break
        elapsed = f"{max(0.0, now - request.started_at):5.1f}s"
        lines.append(f"{elapsed} ", style=styles.muted if styles else "")
        lines.append(f"{fmt.shorten(request.source, 12):<12} ", style="bold")
        lines.append(f"{request.method:<4} {request.url}")
        if request.attempt > 1:
            lines.append(f"  try {request.attempt}", style=styles.warning if styles else "")
        lines.append("\n")
        shown += 1
    if total > shown:
        lines.append(f"… and {total - shown} more\n", style=styles.muted if styles else "")
    for reason in idle_reasons:
        lines.append(reason + "\n", style=styles.warning if styles else "")
    if not lines.plain:
        lines.append("nothing in flight", style=styles.muted if styles else "")
    lines.rstrip()
    return lines


def idle_reason(stats: SourceStats, now: float) -> str | None:
    """Why a source with nothing in flight is idle, when it is waiting rather than done."""
    if stats.in_flight:
        return None
    if stats.status is SourceStatus.BACKING_OFF and stats.backoff_until is not None:
        last = f": {fmt.shorten(stats.last_error, 60)}" if stats.last_error else ""
        return (
            f"{stats.name}: backing off, next attempt in "
            f"{fmt.countdown(stats.backoff_until - now)}{last}"
        )
    if stats.status is SourceStatus.PAUSED:
        return f"{stats.name}: paused (p resumes)"
    if stats.status is SourceStatus.PAUSING:
        return f"{stats.name}: pausing, committing its last page"
    return None


class InFlightPane(Static):
    """Re-rendered each tick (the elapsed times tick), bounded to a few dozen lines."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._shown_plain: str | None = None

    def show(self, text: Text) -> None:
        if text.plain == self._shown_plain:
            return
        self._shown_plain = text.plain
        self.update(text)


# -- errors ----------------------------------------------------------------------------------------

ERROR_COLUMNS: tuple[Column, ...] = (
    Column("time", "time", 8),
    Column("source", "source", 10),
    Column("error", "error", 34),
    Column("next", "next step", 19),
    Column("attempt", "try", 3, numeric=True),
    Column("url", "url", 60),
    Column("body", "body excerpt", 80),
)


class ErrorTable(DataTable[Text]):
    """Recent errors, newest at the bottom. New events are appended; the table is rebuilt only
    when its filter changes or the ring of errors overtook it."""

    BINDINGS = [Binding("enter", "select_cursor", "Source detail")]

    def __init__(
        self,
        *,
        max_rows: int,
        source: str | None = None,
        time_format: Callable[[float], str] = fmt.clock_time,
        id: str | None = None,
    ) -> None:
        super().__init__(cursor_type="row", id=id)
        self.max_rows = max_rows
        self.source = source
        self.time_format = time_format
        self._last_seen: ErrorEvent | None = None
        self._needs_rebuild = True
        self._row_ids = counter()
        self.row_sources: dict[str, str] = {}
        self._styles: ThemeStyles | None = None

    def on_mount(self) -> None:
        add_columns(self, ERROR_COLUMNS)

    def restyle(self, styles: ThemeStyles) -> None:
        self._styles = styles
        self._needs_rebuild = True

    def filter_source(self, source: str | None) -> None:
        if source != self.source:
            self.source = source
            self._needs_rebuild = True

    def sync(self, errors: deque[ErrorEvent]) -> None:
        if self._needs_rebuild:
            self._rebuild(errors)
            return
        new: list[ErrorEvent] = []
        found = self._last_seen is None
        for event in reversed(errors):
            if event is self._last_seen:
                found = True
                break
            new.append(event)
        if not found:  # more new errors than the ring holds: start over from the ring
            self._rebuild(errors)
            return
        if new:
            self._last_seen = errors[-1]
            self._append(reversed(new))

    def _rebuild(self, errors: deque[ErrorEvent]) -> None:
        self._needs_rebuild = False
        self.clear()
        self.row_sources.clear()
        self._last_seen = errors[-1] if errors else None
        matching = [event for event in errors if self._matches(event)]
        self._append(matching[-self.max_rows :])

    def _matches(self, event: ErrorEvent) -> bool:
        return self.source is None or event.source == self.source

    def _append(self, events: Iterable[ErrorEvent]) -> None:
        previous: ErrorEvent | None = None
        added = False
        for event in events:
            # The engine records a source's final failure twice: show it once.
            if event == previous or not self._matches(event):
                continue
            previous = event
            key = str(next(self._row_ids))
            self.row_sources[key] = event.source
            self.add_row(*self._cells(event), key=key)
            added = True
        overflow = self.row_count - self.max_rows
        if overflow > 0:
            for row_key in list(self.rows)[:overflow]:
                self.row_sources.pop(str(row_key.value), None)
                self.remove_row(row_key)
        if added and not self.has_focus:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _cells(self, event: ErrorEvent) -> list[Text]:
        styles = self._styles
        final = event.next_step == "source failed"
        error_style = styles.error if styles and final else (styles.warning if styles else "")
        return [
            Text(self.time_format(event.at), no_wrap=True),
            Text(event.source, no_wrap=True, overflow="ellipsis", style="bold"),
            Text(fmt.one_line(event.error), no_wrap=True, overflow="ellipsis", style=error_style),
            Text(event.next_step, no_wrap=True, overflow="ellipsis"),
            Text(str(event.attempt), justify="right"),
            Text(event.url or fmt.PLACEHOLDER, no_wrap=True, overflow="ellipsis"),
            Text(
                fmt.one_line(event.body_excerpt) or fmt.PLACEHOLDER,
                no_wrap=True,
                overflow="ellipsis",
                style=styles.muted if styles else "",
            ),
        ]

    def source_at_cursor(self) -> str | None:
        if self.row_count == 0:
            return None
        row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return self.row_sources.get(str(row_key.value))
