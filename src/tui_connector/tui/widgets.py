"""The dashboard's panes. Each one is refreshed by the app's timer from telemetry and changes
only what changed: the sources table row by row, the errors table by appending new events."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import count as counter
from itertools import islice
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color
from textual.geometry import Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer

from tui_connector.exchange import shorten
from tui_connector.figures import (
    PLACEHOLDER,
    backoff_seconds,
    lake_kind,
    one_line,
    records_per_second,
    requests_per_second,
)
from tui_connector.telemetry import (
    ErrorEvent,
    InFlightRequest,
    LakeInfo,
    SourceStats,
    SourceStatus,
)
from tui_connector.tui import format as fmt
from tui_connector.tui.arrange import sort_arrow
from tui_connector.tui.keys import ERRORS_KEYS, SOURCES_KEYS, bindings
from tui_connector.tui.table import Cells, Column, RowTable, text_strip

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

SOURCE_COLUMNS: tuple[Column, ...] = (
    Column("source", "source", 10),
    Column("status", "status", 16),
    Column("progress", "progress", 16),
    Column("eta", "ETA", 10),
    Column("pages", "pages", 6, numeric=True),
    Column("records", "records", 8, numeric=True),
    Column("bytes", "fetched", 8, numeric=True),
    Column("req_s", "req/s", 5, numeric=True),
    Column("rec_s", "rec/s", 6, numeric=True),
    Column("retries", "retry", 5, numeric=True),
    Column("errors", "err", 3, numeric=True),
    Column("concurrency", "conc", 7, numeric=True),
    Column("checkpoint", "checkpoint", 10, numeric=True),
    Column("written", "written", 8, numeric=True),
    Column("lake", "lake", 10),
)

LakeCells = tuple[str, str]  # the "written" and "lake" cells, made once per reading of the lake


def lake_cells(lake: LakeInfo) -> LakeCells:
    return fmt.size(lake.bytes_written), lake_kind(lake.format, lake.version)


def source_cells(
    name: str, stats: SourceStats | None, now: float, lake: LakeCells
) -> dict[str, str]:
    """The text of every cell of one source's row."""
    written, kind = lake
    if stats is None:
        empty = {column.key: PLACEHOLDER for column in SOURCE_COLUMNS}
        return empty | {"source": name, "status": fmt.status_text(None, now), "lake": kind}
    return {
        "source": name,
        "status": fmt.status_text(stats, now),
        "progress": fmt.progress_text(stats),
        "eta": fmt.eta_text(stats, now),
        "pages": fmt.count(stats.pages),
        "records": fmt.count(stats.records),
        "bytes": fmt.size(stats.bytes),
        "req_s": fmt.rate(requests_per_second(stats, now)),
        "rec_s": fmt.rate(records_per_second(stats, now)),
        "retries": fmt.count(stats.retries),
        "errors": fmt.count(stats.errors),
        "concurrency": fmt.concurrency_text(stats),
        "checkpoint": fmt.checkpoint_text(stats, now, compact=True),
        "written": written,
        "lake": kind,
    }


class SourcesTable(RowTable):
    """One row per source, keyed by its name, in the order given; each tick repaints only
    the rows whose text changed."""

    BINDINGS = bindings(SOURCES_KEYS)

    def __init__(self, names: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(SOURCE_COLUMNS, zebra_stripes=True, id=id)
        self.names = list(names)
        self._styles: ThemeStyles | None = None
        self.rows_updated = 0  # how many rows changed so far (measured in tests)
        self._sort: tuple[str | None, bool] = (None, False)  # the column sorted by, descending
        blank = tuple("" for _ in SOURCE_COLUMNS)
        for name in self.names:
            self.add_row(name, blank)

    def restyle(self, styles: ThemeStyles) -> None:
        self._styles = styles
        self.redraw()

    @property
    def selected_source(self) -> str | None:
        return self.cursor_key

    def select_source(self, name: str) -> None:
        """Move the cursor to the source's row (if it is shown: a filter may hide it)."""
        if name in self.row_keys:
            self.move_cursor(self.row_keys.index(name))

    def sync(self, rows: Iterable[tuple[str, dict[str, str]]]) -> None:
        """These rows in this order: a filter or a sort may show fewer, or move them (the
        cursor stays on its source)."""
        ordered = [
            (name, tuple(cells[column.key] for column in SOURCE_COLUMNS)) for name, cells in rows
        ]
        if [name for name, _ in ordered] != self.row_keys:
            self.set_rows(ordered)
            self.rows_updated += len(ordered)
            return
        for name, cells in ordered:
            if self.update_row(name, cells):
                self.rows_updated += 1

    def show_sort(self, column: str | None, descending: bool) -> None:
        """Mark the sorted column's header with the direction of its sort."""
        if (column, descending) != self._sort:
            self._sort = (column, descending)
            self.redraw_header()

    def header_label(self, column: Column) -> str:
        sorted_by, descending = self._sort
        if column.key != sorted_by:
            return column.label
        arrow = sort_arrow(descending)
        return f"{arrow}{column.label}" if column.numeric else f"{column.label}{arrow}"

    def cell_text(self, index: int, cells: Cells) -> Text:
        return self._cell(SOURCE_COLUMNS[index], cells[index], self._styles)

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


# -- requests in flight --------------------------------------------------------------------------

MAX_IN_FLIGHT_SHOWN = 50
# The in-flight pane grows at once but shrinks only when its lines have stayed fewer this long
# (or nothing is left in flight). A height that follows each tick's count makes the panes
# below jump ten times a second, and each change re-lays the whole screen out: about 5 ms at
# 160x48, and with requests finishing in bursts it was a third of the dashboard's cost.
IN_FLIGHT_SHRINK_AFTER_SECONDS = 2.0


def idle_reason(stats: SourceStats, now: float, pause_key: str) -> str | None:
    """Why a source with nothing in flight is idle, when it is waiting rather than done.
    `pause_key`: the key that pauses and resumes a source, as the operator has it."""
    if stats.in_flight:
        return None
    backoff = backoff_seconds(stats, now)
    if stats.status is SourceStatus.BACKING_OFF and backoff is not None:
        last = f": {shorten(stats.last_error, 60)}" if stats.last_error else ""
        return f"{stats.name}: backing off, next attempt in {fmt.countdown(backoff)}{last}"
    if stats.status is SourceStatus.PAUSED:
        return f"{stats.name}: paused ({pause_key} resumes)"
    if stats.status is SourceStatus.PAUSING:
        return f"{stats.name}: pausing, committing its last page"
    return None


class InFlightPane(ScrollView, can_focus=True):
    """At most MAX_IN_FLIGHT_SHOWN requests (oldest first), then why idle sources are idle.

    The elapsed times tick, so whatever is on screen changes every tick: a line is built only
    when it is drawn, so a tick costs the lines on screen, not the list."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._requests: list[InFlightRequest] = []
        self._total = 0
        self._idle: list[str] = []
        self._now = 0.0
        self._styles: ThemeStyles | None = None
        self._background: Style | None = None  # the widget's own style, below the text
        self.lines_drawn = 0  # how many lines were built so far (measured in tests)
        self.virtual_size = Size(0, 1)
        self._tallest_at = 0.0  # when the lines last reached the pane's (virtual) height

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._background = None

    def show(
        self,
        requests: Iterable[InFlightRequest],
        total: int,
        idle_reasons: Iterable[str],
        now: float,
        styles: ThemeStyles | None,
    ) -> None:
        shown = list(islice(requests, MAX_IN_FLIGHT_SHOWN))
        idle = list(idle_reasons)
        if (
            not shown
            and not self._requests
            and (total, idle, styles) == (self._total, self._idle, self._styles)
        ):
            return  # no elapsed time on screen, and nothing else changed
        self._requests, self._total, self._idle = shown, total, idle
        self._now, self._styles = now, styles
        self._fit_height(now)
        self.refresh()

    def _fit_height(self, now: float) -> None:
        lines, height = self.line_count, self.virtual_size.height
        if (
            lines < height
            and self._requests
            and now - self._tallest_at < IN_FLIGHT_SHRINK_AFTER_SECONDS
            and self._lines_in_view(lines)
        ):
            return  # blank lines below, until the count has stayed lower for a while
        self._tallest_at = now
        if lines != height:
            self._resize(lines)

    def _resize(self, lines: int) -> None:
        size = Size(0, lines)
        visible = self.scrollable_content_region.height
        if 0 < visible < min(lines, self.virtual_size.height):
            # Taller than the pane before and after: the pane stays at its max height and only
            # its scrollbar changes. A change of virtual size lays the whole screen out again
            # (5-10 ms at 160x48), and with 50 requests in flight the count changed at most
            # refreshes.
            self.set_reactive(InFlightPane.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size

    def _lines_in_view(self, lines: int) -> bool:
        """Whether the rows in view start at the top or lie within the first `lines`: scrolled
        down, a held height could leave nothing but blank lines in view."""
        top = round(self.scroll_y)
        return top == 0 or top + self.scrollable_content_region.height <= lines

    @property
    def line_count(self) -> int:
        more = 1 if self._total > len(self._requests) else 0
        return max(1, len(self._requests) + more + len(self._idle))

    def line_text(self, index: int) -> Text:
        styles = self._styles
        muted = styles.muted if styles else ""
        requests = self._requests
        if index < len(requests):
            request = requests[index]
            line = Text(f"{max(0.0, self._now - request.started_at):5.1f}s ", style=muted)
            line.append(f"{shorten(request.source, 12):<12} ", style="bold")
            line.append(f"{request.method:<4} {request.url}")
            if request.attempt > 1:
                line.append(f"  try {request.attempt}", style=styles.warning if styles else "")
            return line
        index -= len(requests)
        if self._total > len(requests):
            if index == 0:
                return Text(f"… and {self._total - len(requests)} more", style=muted)
            index -= 1
        if index < len(self._idle):
            return Text(self._idle[index], style=styles.warning if styles else "")
        return Text("nothing in flight", style=muted)

    def lines(self) -> list[str]:
        """Every line's text, on screen or not."""
        return [self.line_text(index).plain for index in range(self.line_count)]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._background is None:  # held: `rich_style` walks every ancestor
            self._background = self.rich_style
        base = self._background
        index = y + round(self.scroll_y)
        if index >= self.line_count:
            return Strip.blank(width, base)
        self.lines_drawn += 1
        line = self.line_text(index)
        line.truncate(width, overflow="ellipsis")
        return text_strip(line, self.app.console, base, width)


class SteadyFooter(Footer):
    """Textual's footer, rebuilt only when the keys it shows change.

    Textual rebuilds the footer (a widget per key, then a layout of the whole screen) at every
    change of screen or focus, though the keys shown seldom change: opening and closing the
    help rebuilt the footer underneath twice."""

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[object, ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        shown = tuple(
            (binding, enabled, tooltip)
            for _node, binding, enabled, tooltip in screen.active_bindings.values()
            if binding.show
        )
        if shown == self._shown:
            return
        super().bindings_changed(screen)
        if screen.app.app_focus:  # otherwise Textual did not rebuild it
            self._shown = shown


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


ERROR_NEXT_STEP = next(i for i, column in enumerate(ERROR_COLUMNS) if column.key == "next")


class ErrorTable(RowTable):
    """Recent errors, newest at the bottom. New events are appended; the table is rebuilt only
    when its filter changes or the ring of errors overtook it."""

    BINDINGS = bindings(ERRORS_KEYS)

    def __init__(
        self,
        *,
        max_rows: int,
        source: str | None = None,
        time_format: Callable[[float], str] = fmt.clock_time,
        id: str | None = None,
    ) -> None:
        super().__init__(ERROR_COLUMNS, id=id)
        self.max_rows = max_rows
        self.source = source
        self.time_format = time_format
        self._last_seen: ErrorEvent | None = None
        self._needs_rebuild = True
        self._row_ids = counter()
        self.row_sources: dict[str, str] = {}
        self._styles: ThemeStyles | None = None

    def restyle(self, styles: ThemeStyles) -> None:
        self._styles = styles
        self.redraw()

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
            self.add_row(key, self._cells(event))
            added = True
        overflow = self.row_count - self.max_rows
        if overflow > 0:
            for key in self.row_keys[:overflow]:
                del self.row_sources[key]
            self.remove_first(overflow)
        if added and not self.has_focus:
            # forced: the scrollbar that allows it comes only with the next layout
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _cells(self, event: ErrorEvent) -> Cells:
        return (
            self.time_format(event.at),
            event.source,
            one_line(event.error),
            event.next_step,
            str(event.attempt),
            event.url or PLACEHOLDER,
            one_line(event.body_excerpt) or PLACEHOLDER,
        )

    def cell_text(self, index: int, cells: Cells) -> Text:
        value = cells[index]
        styles = self._styles
        column = ERROR_COLUMNS[index].key
        if column == "time":
            return Text(value, no_wrap=True)
        if column == "source":
            return Text(value, no_wrap=True, overflow="ellipsis", style="bold")
        if column == "error":
            style = (styles.error if self._final(cells) else styles.warning) if styles else ""
            return Text(value, no_wrap=True, overflow="ellipsis", style=style)
        if column == "attempt":
            return Text(value, justify="right")
        if column == "body":
            muted = styles.muted if styles else ""
            return Text(value, no_wrap=True, overflow="ellipsis", style=muted)
        return Text(value, no_wrap=True, overflow="ellipsis")

    def cell_key(self, index: int, cells: Cells) -> Hashable:
        if ERROR_COLUMNS[index].key == "error":  # its colour says whether the source failed
            return (cells[index], self._final(cells))
        return cells[index]

    @staticmethod
    def _final(cells: Cells) -> bool:
        return cells[ERROR_NEXT_STEP] == "source failed"

    def source_at_cursor(self) -> str | None:
        key = self.cursor_key
        return None if key is None else self.row_sources.get(key)
