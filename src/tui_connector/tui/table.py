"""A table that repaints only the rows whose cells changed.

Textual's DataTable keys its cell, row and line caches on a counter that every `update_cell`
increments, so one changed cell re-renders every visible cell of the table, ten times a
second (15 % of a benchmark run's CPU). Here each row's line (a Strip) is kept with the cells
and the look it was drawn from, a changed row repaints only its own line on screen, and in it
only the cells that changed are drawn again. The look is DataTable's (same component styles,
padding, zebra stripes, cursor and hover), so the dashboard looks as it did.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui_connector.tui.keys import ROW_KEYS, bindings

CELL_PADDING = 1  # blank columns either side of every cell, as DataTable draws them
HEADER_HEIGHT = 1


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    numeric: bool = False


Cells = tuple[str, ...]


def fit_cell(text: Text, width: int) -> Text:
    """One line of `text` in `width` cells, cut and aligned as Rich renders a one-line cell:
    cut (with "…" when its overflow says so), right-justified if it asks to be. A text without
    a justification (or another one) stays short: the caller pads it with unstyled blanks."""
    line = text.copy()
    overflow = text.overflow or "fold"
    if text.justify == "right":
        line.rstrip()
        line.truncate(width, overflow=overflow)
        line.pad_left(width - line.cell_len)
    else:
        line.truncate(width, overflow=overflow, pad=text.justify == "left")
    return line


def text_segments(text: Text, console: Console) -> Iterable[Segment]:
    if not text.spans:  # Text.render leaves a text without spans unstyled, even with a style
        return [Segment(text.plain, console.get_style(text.style) if text.style else None)]
    return text.render(console)


def text_strip(text: Text, console: Console, base: Style, width: int) -> Strip:
    """One line of a line-drawn widget: `text`'s styles over the widget's, `width` cells."""
    segments = [
        Segment(segment.text, base + segment.style)
        for segment in text_segments(text, console)
        if segment.text
    ]
    return Strip(segments).adjust_cell_length(width, base)


def cell_segments(
    text: Text, width: int, style: Style, post_style: Style, console: Console
) -> list[Segment]:
    """A padded cell: its text's own styles between the row's style and the cursor's colour."""
    fitted = fit_cell(text, width)
    pad = Segment(" " * CELL_PADDING, style + post_style)
    segments = [pad]
    for segment in text_segments(fitted, console):
        if segment.text:
            segments.append(Segment(segment.text, style + segment.style + post_style))
    gap = width - fitted.cell_len
    if gap > 0:
        segments.append(Segment(" " * gap, style + post_style))
    segments.append(pad)
    return list(Segment.simplify(segments))


@dataclass(frozen=True)
class RowLook:
    """The styles of one kind of row (header, even, odd, under the cursor, under the mouse)."""

    cell: Style  # under every cell: the row's background plus the cursor's or the hover's
    post: Style  # over every cell: the cursor's (or hover's) foreground beats the text's own
    fill: Style  # right of the last column, to the widget's edge


DrawnCell = tuple[Hashable, RowLook, list[Segment]]  # cell key, look, what was drawn


class DrawnRow:
    """A row's cells and what was last drawn of them: its line, and each cell's segments (a
    row whose counters moved draws only the cells that changed)."""

    __slots__ = ("cells", "drawn_cells", "drawn_from", "strip")

    def __init__(self, cells: Cells, columns: int) -> None:
        self.cells = cells
        self.drawn_cells: list[DrawnCell | None] = [None] * columns
        self.drawn_from: tuple[Cells, RowLook, int] | None = None
        self.strip: Strip | None = None

    def forget(self) -> None:
        self.drawn_cells = [None] * len(self.drawn_cells)
        self.strip = None


class RowTable(ScrollView, can_focus=True):
    """Rows of text cells under a fixed header, keyed by strings, with a row cursor.

    Rows are set as tuples of plain strings; `cell_text` styles a cell when (and only when)
    it has to be drawn. Messages: `RowHighlighted` when the cursor moves, `RowSelected` on
    enter or a click.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--even-row",
        "row-table--odd-row",
        "row-table--cursor",
        "row-table--hover",
    }

    # DataTable's look, which these tables replaced.
    DEFAULT_CSS = """
    RowTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;

        &:focus {
            background-tint: $foreground 5%;
            & > .row-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .row-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .row-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .row-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .row-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .row-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .row-table--hover {
            background: $block-hover-background;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = bindings(ROW_KEYS)

    class RowMessage(Message):
        """About one row of a table."""

        def __init__(self, table: RowTable, index: int, key: str) -> None:
            super().__init__()
            self.table = table
            self.index = index
            self.key = key

        @property
        def control(self) -> RowTable:
            return self.table

    class RowHighlighted(RowMessage):
        """The cursor moved to another row."""

    class RowSelected(RowMessage):
        """Enter (or a click) on a row."""

    class HeaderSelected(Message):
        """A click on a column's header."""

        def __init__(self, table: RowTable, column_key: str) -> None:
            super().__init__()
            self.table = table
            self.column_key = column_key

        @property
        def control(self) -> RowTable:
            return self.table

    cursor_row: Reactive[int] = Reactive(0, repaint=False, init=False)
    """The selected row's index. Watch it (`watch`) to follow the selection with no message
    in between."""

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        show_cursor: bool = True,
        zebra_stripes: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self.show_cursor = show_cursor
        self.zebra_stripes = zebra_stripes
        self.table_width = sum(column.width + 2 * CELL_PADDING for column in self.columns)
        self._row_keys: list[str] = []
        self._row_index: dict[str, int] = {}
        self._rows: dict[str, DrawnRow] = {}
        self._hover: int | None = None  # the row under the mouse, once the mouse has moved
        self._header: tuple[int, Strip] | None = None
        self._looks: dict[tuple[str, bool, bool], RowLook] = {}
        self._background: Style | None = None  # the widget's own style, below the rows
        self.rows_drawn = 0  # how many row lines were drawn so far (measured in tests)
        self.cells_drawn = 0  # and how many cells in them were drawn anew
        self.virtual_size = Size(self.table_width, HEADER_HEIGHT)

    # -- reading ------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._row_keys)

    @property
    def row_keys(self) -> list[str]:
        return list(self._row_keys)

    @property
    def cursor_key(self) -> str | None:
        return self._row_keys[self.cursor_row] if self._row_keys else None

    def get_row(self, key: str) -> list[Text]:
        """The row's cells as they are drawn (styled, not yet cut to the column width)."""
        cells = self._rows[key].cells
        return [self.cell_text(index, cells) for index in range(len(self.columns))]

    def get_row_at(self, index: int) -> list[Text]:
        return self.get_row(self._row_keys[index])

    def get_cell(self, key: str, column_key: str) -> Text:
        index = next(i for i, column in enumerate(self.columns) if column.key == column_key)
        return self.get_row(key)[index]

    def cell_text(self, index: int, cells: Cells) -> Text:
        """How cell `index` of a row is drawn; subclasses style it. Called only to draw it."""
        column = self.columns[index]
        return Text(cells[index], justify="right" if column.numeric else None, no_wrap=True)

    def header_label(self, column: Column) -> str:
        """A column's header as drawn; subclasses may mark it (`redraw_header` when it changes)."""
        return column.label

    def cell_key(self, index: int, cells: Cells) -> Hashable:
        """Everything `cell_text` reads: a cell is drawn again only when this changed. A
        subclass whose cells look at other cells of their row says so here."""
        return cells[index]

    # -- changing -------------------------------------------------------------------------------

    def add_row(self, key: str, cells: Cells) -> None:
        self._row_index[key] = len(self._row_keys)
        self._row_keys.append(key)
        self._rows[key] = DrawnRow(cells, len(self.columns))
        self._rows_changed()
        self._refresh_row(len(self._row_keys) - 1)

    def update_row(self, key: str, cells: Cells) -> bool:
        """Repaints the row if its cells changed; says whether they had."""
        row = self._rows[key]
        if row.cells == cells:
            return False
        row.cells = cells
        self._refresh_row(self._row_index[key])
        return True

    def set_rows(self, rows: Sequence[tuple[str, Cells]]) -> None:
        """Exactly these rows in this order. Rows already shown keep what was drawn of them
        (and the cursor stays on its row) unless their cells changed."""
        keys = [key for key, _ in rows]
        if keys == self._row_keys:
            for key, cells in rows:
                self.update_row(key, cells)
            return
        cursor_key = self.cursor_key
        shown = self._rows
        self._rows = {}
        for key, cells in rows:
            row = shown.get(key) or DrawnRow(cells, len(self.columns))
            row.cells = cells
            self._rows[key] = row
        self._row_keys = keys
        self._row_index = {key: index for index, key in enumerate(keys)}
        self._place_cursor(self._row_index.get(cursor_key, 0) if cursor_key is not None else 0)
        self._rows_changed()
        self.refresh()

    def remove_first(self, count: int) -> None:
        """Drop the oldest rows; the cursor stays on the row it was on while it remains."""
        removed, self._row_keys = self._row_keys[:count], self._row_keys[count:]
        for key in removed:
            del self._rows[key]
        self._row_index = {key: index for index, key in enumerate(self._row_keys)}
        self._place_cursor(self.cursor_row - len(removed))
        self._rows_changed()
        self.refresh()

    def clear(self) -> None:
        """No rows; the cursor back on the first and the view scrolled to the top."""
        self._row_keys.clear()
        self._row_index.clear()
        self._rows.clear()
        self._place_cursor(0)
        self._hover = None
        self._rows_changed()
        self.scroll_to(y=0, animate=False, force=True)
        self.refresh()

    def _rows_changed(self) -> None:
        size = Size(self.table_width, HEADER_HEIGHT + len(self._row_keys))
        if size != self.virtual_size:
            self.virtual_size = size
        self._place_cursor(self.cursor_row)

    def redraw(self) -> None:
        """Draw every row again (the styles behind `cell_text` changed)."""
        for row in self._rows.values():
            row.forget()
        self.refresh()

    def redraw_header(self) -> None:
        self._header = None
        self.refresh(Region(0, 0, self.size.width, HEADER_HEIGHT))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._looks.clear()
        self._background = None
        self._header = None
        self.redraw()

    # -- the cursor -----------------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Select another row (clamped to the rows there are) and bring it into view."""
        self.cursor_row = row
        self.scroll_to_row(self.cursor_row)

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._row_keys) - 1))

    def watch_cursor_row(self, previous: int, row: int) -> None:
        self._refresh_row(previous)
        self._refresh_row(row)
        if self._row_keys:
            self.post_message(self.RowHighlighted(self, row, self._row_keys[row]))

    def _place_cursor(self, row: int) -> None:
        """Where the cursor's row went when rows came or went: not a move by the operator."""
        self.set_reactive(RowTable.cursor_row, self.validate_cursor_row(row))

    def scroll_to_row(self, row: int) -> None:
        if not self.size:  # not laid out yet: once it is
            self.call_after_refresh(self.scroll_to_row, row)
            return
        rows_visible = max(1, self.scrollable_content_region.height - HEADER_HEIGHT)
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + rows_visible:
            self.scroll_to(y=row - rows_visible + 1, animate=False, force=True)

    def _set_hover(self, row: int | None) -> None:
        if row == self._hover:
            return
        previous, self._hover = self._hover, row
        for index in (previous, row):
            if index is not None:
                self._refresh_row(index)

    def _go(self, row: int, scroll_y: float) -> None:
        """A key's move: the cursor to `row`, or, in a table without one, the view to
        `scroll_y`."""
        self._set_hover(None)
        if self.show_cursor:
            self.move_cursor(row)
        else:
            self.scroll_to(y=scroll_y, animate=False)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - HEADER_HEIGHT)

    def action_cursor_up(self) -> None:
        self._go(self.cursor_row - 1, self.scroll_y - 1)

    def action_cursor_down(self) -> None:
        self._go(self.cursor_row + 1, self.scroll_y + 1)

    def action_page_up(self) -> None:
        self._go(self.cursor_row - self._page(), self.scroll_y - self._page())

    def action_page_down(self) -> None:
        self._go(self.cursor_row + self._page(), self.scroll_y + self._page())

    def action_first_row(self) -> None:
        self._go(0, 0)

    def action_last_row(self) -> None:
        self._go(len(self._row_keys) - 1, self.max_scroll_y)

    def action_scroll_home(self) -> None:
        self.scroll_to(x=0, animate=False)

    def action_scroll_end(self) -> None:
        self.scroll_to(x=self.max_scroll_x, animate=False)

    def action_select_cursor(self) -> None:
        if self.show_cursor and self._row_keys:
            row = self.cursor_row
            self.post_message(self.RowSelected(self, row, self._row_keys[row]))

    # -- the mouse -------------------------------------------------------------------------------

    def _row_under(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER_HEIGHT:
            return None
        row = offset.y - HEADER_HEIGHT + round(self.scroll_y)
        return row if row < len(self._row_keys) else None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        self._set_hover(self._row_under(event) if self.show_cursor else None)

    def on_leave(self, _event: events.Leave) -> None:
        self._set_hover(None)

    def _column_at(self, x: int) -> Column | None:
        """The column under content column `x` of the table (scrolled sideways or not)."""
        left = -round(self.scroll_x)
        for column in self.columns:
            left += column.width + 2 * CELL_PADDING
            if x < left:
                return column
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y < HEADER_HEIGHT:
            column = self._column_at(offset.x)
            if column is not None:
                event.stop()
                self.post_message(self.HeaderSelected(self, column.key))
            return
        row = self._row_under(event)
        if row is None or not self.show_cursor:
            return
        event.stop()
        self.move_cursor(row)
        self.action_select_cursor()

    # -- drawing --------------------------------------------------------------------------------

    def _refresh_row(self, index: int) -> None:
        """Repaint one row's line, if it is on screen."""
        y = HEADER_HEIGHT + index - round(self.scroll_y)
        if HEADER_HEIGHT <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def _look(self, kind: str, cursor: bool, hover: bool) -> RowLook:
        key = (kind, cursor, hover)
        look = self._looks.get(key)
        if look is None:
            look = self._looks[key] = self._make_look(kind, cursor, hover)
        return look

    def _make_look(self, kind: str, cursor: bool, hover: bool) -> RowLook:
        component = self.get_component_rich_style
        if kind == "header":
            row = self.get_component_styles("row-table--header").rich_style
        elif kind in ("even", "odd"):
            row = self.get_component_styles(f"row-table--{kind}-row").rich_style
        else:
            row = self._widget_style()
        over = Style()
        if hover:
            over += component("row-table--hover")
        if cursor:
            over += component("row-table--cursor")
        post = Style.from_color(color=over.color)
        return RowLook(cell=row + over, post=post, fill=row + over)

    def _row_look(self, index: int) -> RowLook:
        kind = ("odd" if index % 2 else "even") if self.zebra_stripes else "plain"
        cursor = self.show_cursor and index == self.cursor_row
        hover = self.show_cursor and index == self._hover
        return self._look(kind, cursor, hover)

    def _widget_style(self) -> Style:
        # Held: `rich_style` walks every ancestor, and every line drawn needs it.
        if self._background is None:
            self._background = self.rich_style
        return self._background

    def _line_width(self) -> int:
        return max(self.table_width, self.size.width)

    def _header_strip(self) -> Strip:
        width = self._line_width()
        if self._header is None or self._header[0] != width:
            look = self._look("header", False, False)
            console = self.app.console
            segments: list[Segment] = []
            for column in self.columns:
                label = Text(
                    self.header_label(column), justify="right" if column.numeric else "left"
                )
                segments += cell_segments(label, column.width, look.cell, look.post, console)
            self._header = (width, self._finish(segments, look))
        return self._header[1]

    def _finish(self, segments: list[Segment], look: RowLook) -> Strip:
        """A row's cells, then its look to the widget's right edge."""
        width = self._line_width()
        if width > self.table_width:
            segments.append(Segment(" " * (width - self.table_width), look.fill))
        return Strip(segments, width)

    def _row_strip(self, index: int) -> Strip:
        row = self._rows[self._row_keys[index]]
        look = self._row_look(index)
        width = self._line_width()
        if row.strip is not None and row.drawn_from == (row.cells, look, width):
            return row.strip
        console = self.app.console
        cells = row.cells
        segments: list[Segment] = []
        for column_index, column in enumerate(self.columns):
            key = self.cell_key(column_index, cells)
            drawn = row.drawn_cells[column_index]
            if drawn is None or drawn[0] != key or drawn[1] != look:
                text = self.cell_text(column_index, cells)
                segments_of_cell = cell_segments(text, column.width, look.cell, look.post, console)
                drawn = (key, look, segments_of_cell)
                row.drawn_cells[column_index] = drawn
                self.cells_drawn += 1
            segments += drawn[2]
        row.strip = self._finish(segments, look)
        row.drawn_from = (cells, look, width)
        self.rows_drawn += 1
        return row.strip

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x = round(self.scroll_x)
        if y < HEADER_HEIGHT:
            strip = self._header_strip()
        else:
            index = y - HEADER_HEIGHT + round(self.scroll_y)
            if index >= len(self._row_keys):
                return Strip.blank(width, self._widget_style())
            strip = self._row_strip(index)
        return strip.crop_extend(scroll_x, scroll_x + width, self._widget_style())
