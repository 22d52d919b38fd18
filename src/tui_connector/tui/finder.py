"""Finding sources in a long table: the name filter's input (`/`), the status filters and the
sort, applied to the sources table at every tick and at once when the operator changes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from textual.widgets import Input

from tui_connector.telemetry import SourceStats
from tui_connector.tui.arrange import SourceArrangement, StatusFilter, sources_title
from tui_connector.tui.keys import FILTER_KEYS, bindings
from tui_connector.tui.widgets import SOURCE_COLUMNS

if TYPE_CHECKING:
    from tui_connector.tui.app import Dashboard

COLUMN_LABELS = {column.key: column.label for column in SOURCE_COLUMNS}
COLUMN_KEYS = tuple(column.key for column in SOURCE_COLUMNS)


class NameFilterInput(Input):
    """Where the operator types part of a source's name; hidden until `/`."""

    BINDINGS = bindings(FILTER_KEYS)

    def __init__(self, finder: SourceFinder, *, id: str | None = None) -> None:
        super().__init__(placeholder="part of a source's name", id=id)
        self.finder = finder

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.finder.filter_by_name(event.value)

    def action_keep_filter(self) -> None:
        self.finder.close_name_filter(keep=True)

    def action_close_filter(self) -> None:
        self.finder.close_name_filter(keep=False)


class SourceFinder:
    """The sources table's filter and sort for one dashboard."""

    def __init__(self, app: Dashboard) -> None:
        self.app = app
        self.arrangement = SourceArrangement()
        self.name_input = NameFilterInput(self, id="source-filter")
        self._shown_title: str | None = None

    def arrange(self, sources: Mapping[str, SourceStats], now: float) -> list[str]:
        """The sources to show, in order; the table's title and header say what chose them."""
        app = self.app
        names = self.arrangement.arrange(app.facts.selected, sources, now, app.lakes.of)
        title = sources_title(self.arrangement, len(names), len(app.facts.selected), COLUMN_LABELS)
        if title != self._shown_title:
            self._shown_title = title
            app.sources_table.border_title = title
        app.sources_table.show_sort(self.arrangement.sort_column, self.arrangement.descending)
        return names

    def _changed(self) -> None:
        self.app.refresh_sources()

    # -- the name filter ------------------------------------------------------------------------

    def open_name_filter(self) -> None:
        self.name_input.display = True
        self.name_input.focus()

    def filter_by_name(self, text: str) -> None:
        self.arrangement.name_filter = text.strip()
        self._changed()

    def close_name_filter(self, *, keep: bool) -> None:
        if not keep:
            self.name_input.value = ""  # its Changed message clears the filter too
            self.filter_by_name("")
        self.name_input.display = bool(self.arrangement.name_filter)
        self.app.sources_table.focus()

    # -- status and sort ------------------------------------------------------------------------

    def show_status(self, status_filter: StatusFilter) -> None:
        self.arrangement.status_filter = status_filter
        self._changed()

    def next_status_filter(self) -> None:
        self.show_status(self.arrangement.status_filter.following())

    def sort_by(self, column: str | None) -> None:
        self.arrangement.sort_by(column)
        self._changed()

    def sort_next(self) -> None:
        self.arrangement.sort_by_next(COLUMN_KEYS)
        self._changed()

    def reverse(self) -> None:
        self.arrangement.reverse()
        self._changed()
