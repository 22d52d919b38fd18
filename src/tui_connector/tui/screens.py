"""The source detail screen and the help screen."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from rich.cells import cell_len
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.screen import ModalScreen, Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from tui_connector.config import (
    ApiKeyAuth,
    AutoConcurrency,
    BasicAuth,
    BearerAuth,
    DatePartitions,
    Placement,
    SourceSpec,
    ValuePartitions,
)
from tui_connector.engine import Engine
from tui_connector.redact import REDACTED, looks_secret
from tui_connector.telemetry import SourceStats
from tui_connector.tui import format as fmt
from tui_connector.tui.history import ThroughputHistory
from tui_connector.tui.table import RowTable, text_strip
from tui_connector.tui.widgets import (
    ErrorTable,
    PartitionTable,
    SteadyFooter,
    ThemeStyles,
    shown_streams,
)

# -- the config summary ---------------------------------------------------------------------------


def _flatten(prefix: str, value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), item)
    elif isinstance(value, list | tuple):
        yield f"{prefix}={','.join(str(item) for item in value)}"
    else:
        yield f"{prefix}={value}"


def _describe_model(model: BaseModel) -> str:
    values = model.model_dump(exclude_none=True)
    kind = values.pop("type", None)
    described = " ".join(_flatten("", values))
    return f"{kind} {described}".strip() if kind else described


def _describe_auth(spec: SourceSpec) -> str:
    # Only where a credential goes, never any part of it (a username is a credential too).
    auth = spec.auth
    if auth is None:
        return "none"
    if isinstance(auth, BearerAuth):
        return "bearer token (hidden)"
    if isinstance(auth, BasicAuth):
        return "HTTP basic (username and password hidden)"
    if isinstance(auth, ApiKeyAuth):
        where = f"header {auth.header}" if auth.header else f"query parameter {auth.param}"
        return f"API key in {where} (hidden)"
    return type(auth).__name__


def _pairs(mapping: Mapping[str, Any], separator: str) -> str:
    if not mapping:
        return fmt.PLACEHOLDER
    return "  ".join(
        f"{name}{separator}{REDACTED if looks_secret(name) else value}"
        for name, value in mapping.items()
    )


def _describe_step(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _describe_instant(moment: datetime) -> str:
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _placement(placement: Placement) -> str:
    if placement.path:
        return f"url {{{placement.path}}}"
    if placement.param:
        return f"param {placement.param}"
    return f"body {placement.body_field}"


MAX_VALUES_SHOWN = 5


def describe_partitions(spec: SourceSpec) -> str | None:
    """The partition kind and its shape in one line, e.g. "values (3): a, b, c → url {ds}"."""
    partitions = spec.partitions
    if partitions is None:
        return None
    if isinstance(partitions, DatePartitions):
        end = _describe_instant(partitions.end) if partitions.end else "now"
        where = partitions.start_param or f"body {partitions.start_body_field}"
        if partitions.end_param or partitions.end_body_field:
            where += f", {partitions.end_param or 'body ' + str(partitions.end_body_field)}"
        return (
            f"dates {_describe_instant(partitions.start)} → {end} every "
            f"{_describe_step(partitions.step)} ({partitions.format}) → {where}"
        )
    if isinstance(partitions, ValuePartitions):
        values = [str(value) for value in partitions.values or ()]
        shown = ", ".join(values[:MAX_VALUES_SHOWN])
        if len(values) > MAX_VALUES_SHOWN:
            shown += f", … ({len(values) - MAX_VALUES_SHOWN} more)"
        origin = f" from {partitions.values_file}" if partitions.values_file else ""
        return f"values ({len(values)}{origin}): {shown} → {_placement(partitions)}"
    return (
        f"parent of {partitions.source}: one per record's {partitions.value} → "
        f"{_placement(partitions)}"
    )


def _describe_concurrency(spec: SourceSpec, live_concurrency: int) -> str:
    auto: AutoConcurrency | None = spec.auto_concurrency
    if auto is None:
        text = f"{spec.concurrency}"
    else:
        text = f"auto {auto.min}-{auto.max}, starting at {spec.concurrency}"
    if live_concurrency != spec.concurrency:
        text += f" (now {live_concurrency})"
    return text


def config_summary(spec: SourceSpec, redact: Callable[[str], str], live_concurrency: int) -> Table:
    """The source's settings; every string passes through the redactor, auth values never
    appear at all."""
    retry = spec.retry
    timeout = spec.timeout
    rows: list[tuple[str, str]] = [
        ("request", f"{spec.method} {spec.url}"),
        ("params", _pairs(spec.params, "=")),
        ("headers", _pairs(spec.headers, ": ")),
    ]
    if spec.body is not None:
        rows.append(("body", fmt.shorten(json.dumps(spec.body, separators=(",", ":")), 200)))
    rows += [
        ("records", spec.records or "the body (a bare array)"),
        ("errors", spec.errors or fmt.PLACEHOLDER),
        ("pagination", _describe_model(spec.pagination)),
    ]
    partitions = describe_partitions(spec)
    if partitions is not None:
        rows.append(("partitions", partitions))
    if spec.incremental is not None:
        incremental = spec.incremental
        where = f"param {incremental.param}" if incremental.param else incremental.body_field
        rows.append(("incremental", f"newer than the last {incremental.cursor_field} → {where}"))
    rows += [
        ("auth", _describe_auth(spec)),
        ("concurrency", _describe_concurrency(spec, live_concurrency)),
        ("rate limit", f"{spec.rate_limit:g} req/s" if spec.rate_limit else "none"),
        (
            "retry",
            f"{retry.max_attempts} attempts, backoff {retry.backoff_base:g}-{retry.backoff_max:g}"
            f" s, Retry-After up to {retry.max_wait:g} s"
            + (" (holds the source)" if retry.retry_after == "source" else "")
            + ", on "
            + " ".join(str(status) for status in retry.statuses),
        ),
        (
            "timeouts",
            f"connect {timeout.connect:g} s, read {timeout.read:g} s, total {timeout.total:g} s",
        ),
        ("transport", spec.transport),
    ]
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in rows:
        table.add_row(label, redact(fmt.one_line(value)))
    return table


# -- live figures ---------------------------------------------------------------------------------


Figure = tuple[str, str, str]  # label, value, Rich style of the value


def source_figures(
    stats: SourceStats | None, last_commit_at: float | None, now: float
) -> list[Figure]:
    figures: list[Figure] = []
    if stats is None:
        return [("status", "not started yet", "")]

    def line(label: str, value: str, style: str = "") -> None:
        figures.append((label, value, style))

    line("status", fmt.status_text(stats, now))
    records = fmt.count(stats.records)
    if stats.total_records:
        fraction = stats.records / stats.total_records
        records += f" of {fmt.count(stats.total_records)} ({min(fraction, 1.0):.0%})"
    eta = fmt.eta_seconds(stats, now)
    if eta is not None:
        records += f", ETA {fmt.duration(eta)}"
    line("records", records)
    position = ""
    if stats.position and not stats.status.finished:
        position = f", at {fmt.one_line(stats.position)}"
    line("pages", fmt.count(stats.pages) + position)
    window = "average" if stats.status.finished else "last 10 s"
    line(
        "throughput",
        f"{fmt.rate(fmt.records_per_second(stats, now))} records/s, "
        f"{fmt.rate(fmt.requests_per_second(stats, now))} requests/s ({window})",
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
        line("high-water", f"newer than {fmt.one_line(stats.high_water)}")
    line(
        "in flight",
        f"{stats.in_flight} of {stats.concurrency} allowed, " + fmt.concurrency_mode_text(stats),
    )
    change = fmt.concurrency_change_text(stats, now)
    if change is not None:
        line("limit changed", change)
    line("retries, errors", f"{fmt.count(stats.retries)}, {fmt.count(stats.errors)}")
    age = fmt.checkpoint_age(last_commit_at, now)
    line("last checkpoint", f"{age} ago" if last_commit_at is not None else age)
    if stats.last_error:
        line("last error", fmt.one_line(stats.last_error))
    for warning in stats.warnings:
        line("warning", warning)
    return figures


def figures_table(figures: Sequence[Figure]) -> Table:
    """Labels in a column of their own: a long value wraps under its value, not its label."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value, style in figures:
        table.add_row(label, Text(value, style=style))
    return table


class SourceErrorTable(ErrorTable):
    """The error history of the source already shown: enter opens nothing more."""

    BINDINGS = [Binding("enter", "select_cursor", "Select", show=False)]


class SourceDetailScreen(Screen[None]):
    """One source: its settings, live figures, throughput history, streams and errors."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(
        self,
        engine: Engine,
        source: str,
        throughput: ThroughputHistory,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self.engine = engine
        self.source = source
        self.throughput = throughput
        self.clock = clock
        self._partitions_seen: tuple[object, ...] | None = None
        self._shown_figures: list[Figure] | None = None
        self._shown_samples = -1
        self._shown_concurrency: int | None = None
        self._shown_title: str | None = None
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
        yield self.history
        yield SteadyFooter()

    def on_mount(self) -> None:
        self.query_one("#detail-config").border_title = "Config (secrets redacted)"
        self.query_one("#detail-figures").border_title = "Now"
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
        if self.engine.config.sources[self.source].partitions is None:
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
        stats = self.engine.telemetry.sources.get(self.source)
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
        table.sync(streams, self.engine.redactor)
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
        engine = self.engine
        stats = engine.telemetry.sources.get(self.source)
        title = f"{self.source} — {fmt.status_text(stats, now)}"
        if title != self._shown_title:
            self._shown_title = title
            self.query_one("#detail-title", Static).update(title, layout=False)  # one line
        figures = source_figures(stats, engine.state.last_commit_at.get(self.source), now)
        if figures != self._shown_figures:
            self._shown_figures = figures
            # Its height is set by the layout (1fr), not by its text: no layout each tick.
            figures_widget = self.query_one("#detail-figures", Static)
            figures_widget.update(figures_table(figures), layout=False)
        spec = engine.config.sources[self.source]
        concurrency = stats.concurrency if stats else spec.concurrency
        if concurrency != self._shown_concurrency:
            self._shown_concurrency = concurrency
            summary = config_summary(spec, engine.redactor, concurrency)
            self.query_one("#config-summary", Static).update(summary)
        self._refresh_sparkline()
        history = self.history
        history.sync(engine.telemetry.errors)
        history.border_title = f"Errors of {self.source} ({history.row_count})"

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

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
        Binding("q", "dismiss", "Close"),
    ]

    def __init__(self, sections: HelpSections) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield KeyList(self.sections, id="help-keys")
            yield Static("escape, ? or q closes this help", id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Keys"
