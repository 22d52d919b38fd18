"""What the dashboard's tests share: a config of demo sources, and reading what the screen shows."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.tui.app import Dashboard
from tui_connector.tui.widgets import (
    InFlightPane,
)

from helpers import async_wait_for

SIZE = (140, 40)
TOKEN = "test-token-5f3a9"  # the session demo server's token (see conftest)
PAGES = "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 10\n"


def sources_yaml(base_url: str, names: list[str], options: str = PAGES) -> str:
    """Page-number sources, one per name, each on its own dataset of the demo server."""
    body = "".join(f"    {line}\n" for line in options.splitlines())
    return "sources:\n" + "".join(
        f"  {name}:\n    url: {base_url}/v1/pages/{name}\n{body}" for name in names
    )


def cell(app: Dashboard, source: str, column: str) -> str:
    value = app.sources_table.get_cell(source, column)
    return value.plain if isinstance(value, Text) else str(value)


def shown(static: Widget) -> str:
    """The text a Static shows, whatever it was given (a string, Text or a Rich table)."""
    assert isinstance(static, Static)
    content = static.content
    if isinstance(content, str):
        return content
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(content)
    return console.export_text()


def in_flight(app: Dashboard) -> str:
    return "\n".join(app.query_one(InFlightPane).lines())


def good_and_broken(demo: DemoServer, write_config: Callable[..., LoadedConfig]) -> LoadedConfig:
    """Two sources: one that finishes, one whose every request fails (404)."""
    return write_config(
        f"sources:\n  good:\n    url: {demo.url}/v1/all/good\n"
        f"  broken:\n    url: {demo.url}/v1/nowhere/broken\n"
    )


async def finished_with_its_error(app: Dashboard) -> None:
    """Once the run of `good_and_broken` is over and the errors pane lists its one error."""
    await async_wait_for(app.all_finished, what="the run")
    await async_wait_for(lambda: app.errors_table.row_count == 1, what="the error")


def requests_for(server: DemoServer, source: str) -> list[float]:
    return [entry.started for entry in server.log() if entry.path.endswith(f"/{source}")]


def record_notifications(app: Dashboard) -> list[tuple[str, str]]:
    """Every notification the app raises from now on, as (message, severity)."""
    notes: list[tuple[str, str]] = []
    notify = app.notify

    def recording(message: str, **options: object) -> None:
        notes.append((message, str(options.get("severity", "information"))))
        notify(message, **options)  # type: ignore[arg-type]

    app.notify = recording  # type: ignore[method-assign]
    return notes


def dashboard_on(config: LoadedConfig, **options: Any) -> Dashboard:
    """The dashboard over an in-process run of `config` (options: the Dashboard's)."""
    return Dashboard(InProcessRun(Engine(config)), **options)
