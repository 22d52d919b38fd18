"""The source detail screen, the help screen and the question asked before stopping a run."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.screen import ModalScreen, Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from tui_connector import figures
from tui_connector.facade import LakeWatch, RunView
from tui_connector.telemetry import LakeInfo, SourceStats
from tui_connector.tui import format as fmt
from tui_connector.tui.history import ThroughputHistory
from tui_connector.tui.keys import DETAIL_KEYS, HELP_KEYS, KEYS_BY_ID, KeyNames, bindings
from tui_connector.tui.partitions import PartitionTable, shown_streams
from tui_connector.tui.table import RowTable, text_strip
from tui_connector.tui.widgets import ErrorTable, SteadyFooter, ThemeStyles

# -- live figures ---------------------------------------------------------------------------------


Figure = tuple[str, str, str]  # label, value, Rich style of the value


def source_figures(stats: SourceStats | None, now: float) -> list[Figure]:
    lines: list[Figure] = []
    if stats is None:
        return [("status", "not started yet", "")]

    def line(label: str, value: str, style: str = "") -> None:
        lines.append((label, value, style))

    line("status", fmt.status_text(stats, now))
    records = fmt.count(stats.records)
    total = stats.total_records
    if total:
        records += f" of {fmt.count(total)} ({min(stats.records / total, 1.0):.0%})"
    eta = figures.eta_seconds(stats, now)
    if eta is not None:
        records += f", ETA {fmt.duration(eta)}"
    line("records", records)
    position = ""
    if stats.position and not stats.status.finished:
        position = f", at {figures.one_line(stats.position)}"
    line("pages", fmt.count(stats.pages) + position)
    window = "average" if stats.status.finished else "last 10 s"
    line(
        "throughput",
        f"{fmt.rate(figures.records_per_second(stats, now))} records/s, "
        f"{fmt.rate(figures.requests_per_second(stats, now))} requests/s ({window})",
    )
    line("transferred", f"{fmt.size(stats.bytes)} in {fmt.count(stats.requests)} requests")
    if stats.partitioned:
        parts = (
            f"{fmt.count(stats.streams_done)} of {fmt.count(stats.streams_total)} done, "
            f"{fmt.count(stats.streams_running)} running"
        )
        if stats.streams_failed:
            parts += f", {fmt.count(stats.streams_failed)} failed"
        line("partitions", parts, style="bold" if stats.streams_failed else "")
    if stats.high_water is not None:
        line("high-water", f"newer than {figures.one_line(stats.high_water)}")
    line(
        "in flight",
        f"{stats.in_flight} of {stats.concurrency} allowed, " + fmt.concurrency_mode_text(stats),
    )
    change = fmt.concurrency_change_text(stats, now)
    if change is not None:
        line("limit changed", change)
    line("retries, errors", f"{fmt.count(stats.retries)}, {fmt.count(stats.errors)}")
    if stats.tokens_obtained:
        line("OAuth2 tokens", fmt.tokens_text(stats, now))
    line("last checkpoint", fmt.checkpoint_text(stats, now))
    if stats.last_error:
        line("last error", figures.one_line(stats.last_error))
    for warning in stats.warnings:
        line("warning", warning)
    return lines


# -- the lake ---------------------------------------------------------------------------------

FORMAT_NAMES = {"jsonl": "JSON Lines files", "parquet": "Parquet files", "delta": "a Delta table"}


def lake_figures(lake: LakeInfo) -> list[Figure]:
    """Where the source's records go, what this run wrote there, and which fields are stored
    as JSON text and why."""
    lines: list[Figure] = [
        ("format", FORMAT_NAMES.get(lake.format, lake.format), ""),
        ("destination", figures.shown_location(lake.destination), ""),
    ]
    if lake.version is not None:
        lines.append(("version", fmt.count(lake.version), ""))
    written = fmt.size(lake.bytes_written) if lake.bytes_written else "nothing yet"
    lines.append(("written", f"{written} by this run", ""))
    if lake.json_columns:
        lines.append(("JSON text", ", ".join(lake.json_columns), "bold"))
        lines.extend(("", note, "") for note in lake.notes)
    return lines


def lake_table(lake: LakeInfo) -> Table:
    table = figures_table(lake_figures(lake))
    if lake.schema:  # one column a line, wrapped under itself
        table.add_row("columns", Text(lake.schema))
    return table


def figures_table(rows: Sequence[Figure]) -> Table:
    """Labels in a column of their own: a long value wraps under its value, not its label.
    Values are plain text (a config's brackets are not Rich markup)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value, style in rows:
        table.add_row(label, Text(value, style=style))
    return table


class SourceErrorTable(ErrorTable):
    """The error history of the source already shown: enter opens nothing more."""

    BINDINGS = bindings([KEYS_BY_ID["select-row"]])


class SourceDetailScreen(Screen[None]):
    """One source: its settings, live figures, throughput history, streams, errors and lake."""

    BINDINGS = bindings(DETAIL_KEYS)

    def __init__(
        self,
        view: RunView,
        source: str,
        throughput: ThroughputHistory,
        clock: Callable[[], float],
        lakes: LakeWatch,
    ) -> None:
        super().__init__()
        self.view = view
        self.lakes = lakes
        self.description = view.describe(source)
        self.source = source
        self.throughput = throughput
        self.clock = clock
        self._partitions_seen: tuple[object, ...] | None = None
        self._shown_figures: list[Figure] | None = None
        self._shown_samples = -1
        self._shown_concurrency: int | None = None
        self._shown_title: str | None = None
        self._shown_lake: LakeInfo | None = None
        self._mounted = False
        # Held directly: a query for it can run before the screen's children are mounted.
        self.history = SourceErrorTable(id="history", max_rows=500, source=source)

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        with Horizontal(id="detail-top"):
            with VerticalScroll(id="detail-config"):
                yield Static(id="config-summary")
            with Vertical(id="detail-live"):
                yield Static(id="detail-figures")
                yield Sparkline([], id="throughput")
        yield PartitionTable(id="streams")
        with Horizontal(id="detail-bottom"):
            yield self.history
            with VerticalScroll(id="detail-lake"):
                yield Static(id="lake-summary")
        yield SteadyFooter()

    def on_mount(self) -> None:
        self.query_one("#detail-config").border_title = "Config (secrets redacted)"
        self.query_one("#detail-figures").border_title = "Now"
        self.query_one("#detail-lake").border_title = "Lake"
        styles = ThemeStyles(self.app)
        self.history.restyle(styles)
        partitions = self.query_one("#streams", PartitionTable)
        partitions.restyle(styles)
        partitions.border_title = self._partitions_title(None)
        self._mounted = True
        self.refresh_live()
        self.refresh_partitions()
        # Listing the partitions walks them all: once a second is plenty, 10 Hz would be waste.
        self.set_interval(1.0, self.refresh_partitions)

    def _partitions_title(self, stats: SourceStats | None) -> str:
        if not self.description.partitioned:
            return "Stream (the source is not partitioned)"
        if stats is None:
            return "Partitions: not started yet"
        title = (
            f"Partitions: {fmt.count(stats.streams_done)} of {fmt.count(stats.streams_total)}"
            f" done, {fmt.count(stats.streams_running)} running"
        )
        if stats.streams_failed:
            title += f", {fmt.count(stats.streams_failed)} failed"
        return title

    def refresh_partitions(self) -> None:
        """The source's streams from telemetry, bounded; only when its counters moved."""
        stats = self.view.snapshot().sources.get(self.source)
        if stats is None:
            return
        seen = (
            stats.status,
            stats.pages,
            stats.streams_total,
            stats.streams_done,
            stats.streams_failed,
            stats.streams_running,
            len(stats.streams),
        )
        if seen == self._partitions_seen:
            return
        self._partitions_seen = seen
        try:
            table = self.query_one("#streams", PartitionTable)
        except NoMatches:  # the timer ticked while the screen was being dismantled
            return
        streams, hidden = shown_streams(stats)
        table.sync(streams, self.view.redact, stats.status)
        table.border_title = self._partitions_title(stats)
        not_started = max(0, stats.streams_total - len(stats.streams))
        if hidden:
            more = f"… and {fmt.count(hidden)} more"
            if not_started:
                more += f" ({fmt.count(not_started)} not started yet)"
            table.border_subtitle = more
        else:
            table.border_subtitle = None

    def refresh_live(self) -> None:
        """Called by the app's timer: the figures and the sparkline from telemetry."""
        if not self._mounted:  # the app's timer may tick between push and mount
            return
        try:
            self._refresh_live()
        except NoMatches:  # the timer ticked while the screen was being dismantled
            return

    def _refresh_live(self) -> None:
        now = self.clock()
        telemetry = self.view.snapshot()
        stats = telemetry.sources.get(self.source)
        title = f"{self.source} — {fmt.status_text(stats, now)}"
        if title != self._shown_title:
            self._shown_title = title
            self.query_one("#detail-title", Static).update(title, layout=False)  # one line
        shown = source_figures(stats, now)
        if shown != self._shown_figures:
            self._shown_figures = shown
            # Its height is set by the layout (1fr), not by its text: no layout each tick.
            figures_widget = self.query_one("#detail-figures", Static)
            figures_widget.update(figures_table(shown), layout=False)
        description = self.description
        concurrency = stats.concurrency if stats else description.concurrency
        if concurrency != self._shown_concurrency:
            self._shown_concurrency = concurrency
            settings = description.settings_at(concurrency)
            summary = figures_table([(label, text, "") for label, text in settings])
            self.query_one("#config-summary", Static).update(summary)
        lake = self.lakes.of(self.source, stats)
        if lake is not self._shown_lake:
            self._shown_lake = lake
            self.query_one("#lake-summary", Static).update(lake_table(lake))
        self._refresh_sparkline()
        history = self.history
        history.sync(telemetry.errors)
        title = f"Errors of {self.source} ({history.row_count})"
        if history.border_title != title:  # setting it repaints the whole table
            history.border_title = title

    def _refresh_sparkline(self) -> None:
        if self.throughput.samples_taken == self._shown_samples:
            return
        self._shown_samples = self.throughput.samples_taken
        data = list(self.throughput.of(self.source))
        sparkline = self.query_one("#throughput", Sparkline)
        sparkline.data = data
        minutes = self.throughput.seconds // 60
        sparkline.border_title = (
            f"Throughput: records/s, last {minutes} min (peak {fmt.rate(max(data))})"
            if data
            else "Throughput: no samples yet (one a second)"
        )

    def on_row_table_row_selected(self, event: RowTable.RowSelected) -> None:
        event.stop()  # selecting one of this screen's own rows opens nothing


# -- help ------------------------------------------------------------------------------------------


HelpSections = Sequence[tuple[str, Sequence[tuple[str, str]]]]


class KeyList(Widget):
    """Keys in a right-aligned column, each description wrapped beside its key (under it, in a
    terminal too narrow for both).

    Drawn line by line from lines wrapped once per width: laid out as a Rich table, the help
    took 16 ms to render, twice each time it opened (measured, then drawn), the largest part
    of `?`'s time to the screen while a run kept the CPU busy.
    """

    DEFAULT_CSS = "KeyList { height: auto; }"
    GAP = 2
    NARROWEST_TEXT = 12  # below this beside the keys, a description goes under its key

    def __init__(self, sections: HelpSections, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sections = sections
        entries = [entry for _, keys in sections for entry in keys]
        self._key_width = max((cell_len(key) for key, _ in entries), default=0)
        widest_text = max((cell_len(text) for _, text in entries), default=0)
        self._widest = self._key_width + self.GAP + widest_text
        self._wrapped: tuple[int, list[Text]] = (-1, [])
        self._strips: dict[int, Strip] = {}  # drawn lines of the current width and style
        self._strip_style: Style | None = None

    def lines(self, width: int) -> list[Text]:
        """The lines as shown at `width` cells."""
        if self._wrapped[0] == width:
            return self._wrapped[1]
        indent = self._key_width + self.GAP
        beside = width - indent >= self.NARROWEST_TEXT
        lines: list[Text] = []
        for index, (title, keys) in enumerate(self.sections):
            if index:
                lines.append(Text())
            lines.append(Text.assemble(" " * indent if beside else "", (title, "bold underline")))
            for key, description in keys:
                if beside:
                    for number, part in enumerate(_wrap(description, width - indent)):
                        shown_key = key if number == 0 else ""
                        pad = " " * (self._key_width - cell_len(shown_key))
                        lines.append(Text.assemble(pad, (shown_key, "bold"), " " * self.GAP, part))
                else:
                    if key:
                        lines.append(Text(key, style="bold"))
                    lines.extend(Text("  " + part) for part in _wrap(description, width - 2))
        self._wrapped = (width, lines)
        self._strips.clear()
        return lines

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self._widest

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        lines = self.lines(width)
        if y >= len(lines):
            return Strip.blank(width, base)
        if base != self._strip_style:
            self._strip_style = base
            self._strips.clear()
        strip = self._strips.get(y)
        if strip is None:  # the dashboard beneath still asks for the lines at every update
            strip = self._strips[y] = text_strip(lines[y], self.app.console, base, width)
        return strip


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, max(1, width)) or [""]


class HelpScreen(ModalScreen[None]):
    """Every key, by where it applies."""

    BINDINGS = bindings(HELP_KEYS)

    def __init__(self, sections: HelpSections, keys: KeyNames) -> None:
        super().__init__()
        self.sections = sections
        self.keys = keys

    def compose(self) -> ComposeResult:
        keys = self.keys
        closing = f"{keys['close-help']}, {keys['help']} or {keys['quit']}"
        with VerticalScroll(id="help-box"):
            yield KeyList(self.sections, id="help-keys")
            yield Static(f"{closing} closes this help", id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Keys"


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y answers yes, n or Escape no."""

    BINDINGS = [("y", "answer(True)", "Yes"), ("n,escape", "answer(False)", "No")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Static { width: 64; border: thick $warning; padding: 1 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(self.question, id="question")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
