"""The source detail screen and the help screen."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from tui_connector.config import ApiKeyAuth, BasicAuth, BearerAuth, SourceSpec
from tui_connector.engine import Engine
from tui_connector.redact import REDACTED, looks_secret
from tui_connector.state import StateError, StreamRow
from tui_connector.telemetry import SourceStats
from tui_connector.tui import format as fmt
from tui_connector.tui.history import ThroughputHistory
from tui_connector.tui.widgets import ErrorTable, ThemeStyles

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


def config_summary(spec: SourceSpec, redact: Callable[[str], str], live_concurrency: int) -> Table:
    """The source's settings; every string passes through the redactor, auth values never
    appear at all."""
    retry = spec.retry
    timeout = spec.timeout
    concurrency = f"{spec.concurrency}"
    if live_concurrency != spec.concurrency:
        concurrency += f" (now {live_concurrency})"
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
        ("auth", _describe_auth(spec)),
        ("concurrency", concurrency),
        ("rate limit", f"{spec.rate_limit:g} req/s" if spec.rate_limit else "none"),
        (
            "retry",
            f"{retry.max_attempts} attempts, backoff {retry.backoff_base:g}-{retry.backoff_max:g}"
            f" s, Retry-After up to {retry.max_wait:g} s, on "
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


def source_figures(stats: SourceStats | None, last_commit_at: float | None, now: float) -> Text:
    text = Text()
    if stats is None:
        return Text("not started yet")

    def line(label: str, value: str, style: str = "") -> None:
        text.append(f"{label:<16}", style="bold")
        text.append(value + "\n", style=style)

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
    line("in flight", f"{stats.in_flight} of {stats.concurrency} allowed")
    line("retries, errors", f"{fmt.count(stats.retries)}, {fmt.count(stats.errors)}")
    age = fmt.checkpoint_age(last_commit_at, now)
    line("last checkpoint", f"{age} ago" if last_commit_at is not None else age)
    if stats.last_error:
        line("last error", fmt.one_line(stats.last_error))
    for warning in stats.warnings:
        line("warning", warning)
    text.rstrip()
    return text


STREAM_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("partition", "partition", 12),
    ("status", "status", 9),
    ("position", "position", 9),
    ("pages", "pages", 7),
    ("records", "records", 9),
    ("cursor", "cursor", 48),
    ("error", "last error", 28),
)


def stream_cells(row: StreamRow, redact: Callable[[str], str]) -> dict[str, str]:
    cursor = json.dumps(row.cursor, separators=(",", ":"), sort_keys=True)
    return {
        "partition": row.partition,
        "status": row.status,
        "position": fmt.count(row.position),
        "pages": fmt.count(row.pages),
        "records": fmt.count(row.records),
        "cursor": redact(cursor),
        "error": redact(fmt.one_line(row.last_error)) if row.last_error else fmt.PLACEHOLDER,
    }


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
        self._stream_cells: dict[str, dict[str, str]] = {}
        self._shown_figures: str | None = None
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
        yield DataTable(id="streams", cursor_type="row", show_cursor=False)
        yield self.history
        yield Footer()

    async def on_mount(self) -> None:
        streams = self.query_one("#streams", DataTable)
        for key, label, width in STREAM_COLUMNS:
            streams.add_column(label, key=key, width=width)
        self.query_one("#detail-config").border_title = "Config (secrets redacted)"
        self.query_one("#detail-figures").border_title = "Now"
        streams.border_title = "Streams (from the state database, every second)"
        self.history.restyle(ThemeStyles(self.app))
        self._mounted = True
        self.refresh_live()
        await self.load_streams()
        # A state read is a thread round trip: once a second is plenty, 10 Hz would be waste.
        self.set_interval(1.0, self.load_streams)

    async def load_streams(self) -> None:
        try:
            rows = await self.engine.state.streams(self.source)
        except (StateError, sqlite3.Error, ValueError):
            # Not open yet, or closed under this read while quitting (aiosqlite raises
            # ValueError then): keep what is shown.
            return
        table = self.query_one("#streams", DataTable)
        for row in rows:
            cells = stream_cells(row, self.engine.redactor)
            shown = self._stream_cells.get(row.partition)
            if shown is None:
                table.add_row(*cells.values(), key=row.partition)
            else:
                for key, value in cells.items():
                    if shown.get(key) != value:
                        table.update_cell(row.partition, key, value)
            self._stream_cells[row.partition] = cells

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
            self.query_one("#detail-title", Static).update(title)
        figures = source_figures(stats, engine.state.last_commit_at.get(self.source), now)
        if figures.plain != self._shown_figures:
            self._shown_figures = figures.plain
            self.query_one("#detail-figures", Static).update(figures)
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

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # selecting one of this screen's own rows opens nothing


# -- help ------------------------------------------------------------------------------------------


class HelpScreen(ModalScreen[None]):
    """Every key, by where it applies."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
        Binding("q", "dismiss", "Close"),
    ]

    def __init__(self, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self._render_keys(), id="help-keys")
            yield Static("escape, ? or q closes this help", id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Keys"

    def _render_keys(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column()
        for index, (title, keys) in enumerate(self.sections):
            if index:
                table.add_row("", "")
            table.add_row("", Text(title, style="bold underline"))
            for key, description in keys:
                table.add_row(key, description)
        return table
