"""Every key of the dashboard, in one table.

Each entry becomes a Textual `Binding` with an id, a footer label and a tooltip. The footer
shows the bindings, the help screen lists them by the ids of `HELP_LAYOUT`, the command
palette names their keys, and a user's keymap (`settings.py`) rebinds them by id through
Textual's own `App.set_keymap`. A help text may name another binding's key as `{its-id}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Key:
    id: str
    key: str
    action: str
    description: str  # the footer's label
    help: str  # what it does, for the help screen and the footer's tooltip
    key_display: str | None = None
    show: bool = True
    priority: bool = False

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            key_display=self.key_display,
            priority=self.priority,
            tooltip=self.help.format_map(DEFAULT_KEYS),
            id=self.id,
        )


def bindings(keys: Iterable[Key]) -> list[BindingType]:
    return [key.binding() for key in keys]


# The app's keys: wherever the focus is, they act on the selected source (on the detail screen,
# on the source shown).
DASHBOARD_KEYS = (
    Key(
        "pause",
        "p",
        "toggle_pause",
        "Pause",
        "Pause the selected source (“pausing” until requests in flight commit, then "
        "“paused”); {pause} resumes",
    ),
    Key(
        "pause-all",
        "P",
        "toggle_pause_all",
        "Pause all",
        "Pause every source; again to resume them all",
        key_display="P",
    ),
    Key(
        "retry",
        "r",
        "retry",
        "Retry",
        "Retry the selected failed or stopped source from its checkpoint",
    ),
    Key(
        "more",
        "plus",
        "concurrency(1)",
        "More",
        "More: one more request in flight for the selected source (an adaptive one turns manual)",
        key_display="+",
    ),
    Key(
        "less",
        "minus",
        "concurrency(-1)",
        "Less",
        "Less: one request fewer in flight for the selected source (an adaptive one turns manual)",
        key_display="-",
    ),
    Key(
        "auto",
        "a",
        "auto_concurrency",
        "Auto",
        "Auto: the selected source's limit back to adaptive (`concurrency: auto` sources)",
    ),
    Key(
        "stop",
        "s",
        "stop_source",
        "Stop",
        "Stop the selected source (it can be retried with {retry})",
    ),
    Key(
        "errors",
        "e",
        "focus_errors",
        "Errors",
        "Focus the errors pane (again: back to the sources)",
    ),
    Key(
        "filter-errors",
        "f",
        "toggle_error_filter",
        "Filter errors",
        "Errors pane: all sources, or only the selected source",
        show=False,  # the errors pane's title names it; the footer has no room left
    ),
    Key(
        "filter-sources",
        "slash",
        "filter_sources",
        "Find",
        "Show only the sources whose name holds what you type ({keep-filter} keeps it, "
        "{close-filter} clears it)",
        key_display="/",
    ),
    Key(
        "status-filter",
        "t",
        "next_status_filter",
        "Status",
        "Show only failed, then backing off, paused, running sources; then all again",
    ),
    Key(
        "sort",
        "o",
        "sort_next",
        "Sort",
        "Sort the sources by the next column, or click a header (again: the other way round)",
    ),
    Key(
        "reverse-sort",
        "O",
        "reverse_sort",
        "Reverse",
        "Reverse the sources' sort",
        key_display="O",
        show=False,  # the footer is full: the help lists it
    ),
    Key("help", "question_mark", "help", "Help", "This help", key_display="?"),
    Key(
        "quit",
        "q",
        "quit",
        "Quit",
        "Quit gracefully: requests in flight finish and commit; {quit} again quits at once. "
        "Attached to a run in another process: leave it, the run goes on",
    ),
    Key(
        "detach",
        "d",
        "detach",
        "Detach",
        "Leave the run going in the background, tied to no terminal (its requests in flight "
        "commit, then it goes on from its checkpoints); `tui-connector attach` shows it again",
    ),
    Key(
        "stop-run",
        "Q",
        "stop_run",
        "Stop run",
        "Stop the whole run gracefully (attached: after asking; again: at once)",
        key_display="Q",
        show=False,
    ),
    Key("focus-next", "tab", "app.focus_next", "Next pane", "Next pane", show=False),
    # Declared here, Textual adds no palette binding of its own (one without an id).
    Key(
        "command-palette",
        "ctrl+p",
        "command_palette",
        "palette",
        "Command palette: every action, for any source by name",
        show=False,
        priority=True,
    ),
)

# Every table of rows: the sources, the errors, a source's partitions and error history.
ROW_KEYS = (
    Key("select-row", "enter", "select_cursor", "Select", "Select the row", show=False),
    Key(
        "cursor-up",
        "up",
        "cursor_up",
        "Cursor up",
        "Select a source (or an error, in the errors pane)",
        key_display="↑",
        show=False,
    ),
    Key(
        "cursor-down",
        "down",
        "cursor_down",
        "Cursor down",
        "Select a source (or an error, in the errors pane)",
        key_display="↓",
        show=False,
    ),
    Key(
        "scroll-left",
        "left",
        "scroll_left",
        "Scroll left",
        "Scroll the errors pane sideways (url, body excerpt)",
        key_display="←",
        show=False,
    ),
    Key(
        "scroll-right",
        "right",
        "scroll_right",
        "Scroll right",
        "Scroll the errors pane sideways (url, body excerpt)",
        key_display="→",
        show=False,
    ),
    Key("page-up", "pageup", "page_up", "Page up", "A page up", show=False),
    Key("page-down", "pagedown", "page_down", "Page down", "A page down", show=False),
    Key("first-row", "ctrl+home", "first_row", "First row", "The first row", show=False),
    Key("last-row", "ctrl+end", "last_row", "Last row", "The last row", show=False),
    Key("scroll-home", "home", "scroll_home", "Leftmost", "Scroll to the left edge", show=False),
    Key("scroll-end", "end", "scroll_end", "Rightmost", "Scroll to the right edge", show=False),
)

SOURCES_KEYS = (
    Key(
        "source-detail",
        "enter",
        "select_cursor",
        "Detail",
        "Details of the selected source, or of the selected error's source",
    ),
)

ERRORS_KEYS = (
    Key(
        "error-source-detail",
        "enter",
        "select_cursor",
        "Source detail",
        "Details of the selected source, or of the selected error's source",
    ),
)

# The name filter's input (`/`), besides its keys for editing text.
FILTER_KEYS = (
    Key(
        "keep-filter",
        "enter",
        "keep_filter",
        "Keep filter",
        "In the name filter: {keep-filter} keeps it and goes back to the sources, "
        "{close-filter} clears it",
    ),
    Key("close-filter", "escape", "close_filter", "Clear filter", "Clear the name filter"),
)

DETAIL_KEYS = (Key("back", "escape", "app.pop_screen", "Back", "Back to the sources"),)

# The help closes with its own key, or again with the keys that open the help and quit (the
# same ids: a keymap that moves those moves these too).
HELP_KEYS = (
    Key("close-help", "escape", "dismiss", "Close", "Close this help"),
    Key("help", "question_mark", "dismiss", "Close", "Close this help", key_display="?"),
    Key("quit", "q", "dismiss", "Close", "Close this help"),
)

# Nodes whose keys are active at the same time: one key there must do one thing.
KEY_SCOPES = (
    DASHBOARD_KEYS + ROW_KEYS + SOURCES_KEYS + ERRORS_KEYS + FILTER_KEYS + DETAIL_KEYS,
    HELP_KEYS,
)

KEYS_BY_ID: dict[str, Key] = {}
for _key in (key for scope in KEY_SCOPES for key in scope):
    KEYS_BY_ID.setdefault(_key.id, _key)

DEFAULT_KEYS: dict[str, str] = {id: key.key_display or key.key for id, key in KEYS_BY_ID.items()}

# The help screen: per section, lines of (binding ids whose keys it shows, its text, or None
# for the first binding's own help). The "Dashboard" section is every key the footer shows.
HelpLine = tuple[tuple[str, ...], str | None]
HELP_LAYOUT: tuple[tuple[str, tuple[HelpLine, ...]], ...] = (
    # Every key of the app but the two listed under Navigation, the footer's hidden ones too.
    (
        "Dashboard",
        tuple(
            ((key.id,), None)
            for key in DASHBOARD_KEYS
            if key.id not in ("focus-next", "command-palette")
        ),
    ),
    (
        "Navigation",
        (
            (("cursor-up", "cursor-down"), None),
            (("source-detail", "error-source-detail"), None),
            (("scroll-left", "scroll-right"), None),
            (("keep-filter", "close-filter"), None),
            (("reverse-sort",), None),
            (("focus-next",), None),
            (("command-palette",), None),
        ),
    ),
    (
        "Source detail",
        (
            (("back",), None),
            (
                ("pause", "pause-all", "retry", "more", "less", "auto", "stop"),
                "Act on the source shown",
            ),
            (("errors",), "Focus its error history"),
        ),
    ),
)


class KeyNames:
    """The keys as the operator has them, by binding id: the defaults, or the user's keymap."""

    def __init__(self, keymap: Mapping[str, str] | None = None) -> None:
        self._names = dict(DEFAULT_KEYS)
        for id, keys in (keymap or {}).items():
            self._names[id] = ",".join(part.strip() for part in keys.split(","))

    def __getitem__(self, id: str) -> str:
        return self._names[id]

    def typed(self, keys: Iterable[Key]) -> frozenset[str]:
        """The actions of `keys` bound only to characters, which a text field takes as typing."""
        return frozenset(
            key.action
            for key in keys
            if all(len(part) == 1 for part in self._names[key.id].split(","))
        )

    def of(self, ids: Iterable[str]) -> str:
        """The keys of several bindings, each once: "p P r", "enter"."""
        return " ".join(dict.fromkeys(self._names[id] for id in ids))

    def help_text(self, key: Key) -> str:
        return key.help.format_map(self._names)

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """The help screen's key sections: (title, [(keys, text)])."""
        return [
            (
                title,
                [(self.of(ids), text or self.help_text(KEYS_BY_ID[ids[0]])) for ids, text in lines],
            )
            for title, lines in HELP_LAYOUT
        ]
