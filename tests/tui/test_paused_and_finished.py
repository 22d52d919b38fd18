"""What a paused source shows (no time of arrival; its streams paused, on its detail screen) and
a finished one (its checkpoint's time against its end, which no longer grows)."""

from __future__ import annotations

from collections.abc import Callable

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.telemetry import SourceStatus
from tui_connector.tui.partitions import PartitionTable
from tui_connector.tui.screens import SourceDetailScreen

from .dashboard import SIZE, cell, dashboard_on, shown
from helpers import async_wait_for, engine_of


def stream_status(streams: PartitionTable) -> str:
    return streams.get_row_at(0)[1].plain


SLOW = """\
sources:
  slow:
    url: {url}/v1/pages/slow
    records: data
    concurrency: 1
    pagination:
      type: page_number
      size_param: per_page
      size: 10
      stop: {{total_records: total}}
"""


async def test_a_paused_source_has_no_eta_and_its_stream_says_paused(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=2000, page_size=10, latency_ms=20)
    config = write_config(SLOW.format(url=server.url))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        stats = engine_of(app).telemetry.sources
        await async_wait_for(lambda: cell(app, "slow", "eta") != "—", what="an ETA")
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        streams = app.screen.query_one("#streams", PartitionTable)
        await async_wait_for(lambda: streams.row_count == 1, what="its stream")
        await async_wait_for(lambda: stream_status(streams) == "running", what="it runs")
        await pilot.press("p")
        await async_wait_for(lambda: stats["slow"].status is SourceStatus.PAUSED, what="paused")
        await async_wait_for(lambda: stream_status(streams) == "paused", what="the stream paused")
        # The figures follow at the screen's next refresh, which may come after the stream's.
        await async_wait_for(
            lambda: (
                "ETA" not in shown(app.screen.query_one("#detail-figures"))
                and "paused" in app.screen.query_one("#detail-title").content
            ),
            what="the ETA gone and the title saying paused",
        )
        await pilot.press("escape")
        app.refresh_view()
        assert cell(app, "slow", "status") == "paused" and cell(app, "slow", "eta") == "—"
        await pilot.press("p")
        await async_wait_for(lambda: stats["slow"].status is SourceStatus.DONE, what="done")
        app.refresh_view()
        checkpoint = cell(app, "slow", "checkpoint")  # against its end, not an age
        assert checkpoint == "at end" or checkpoint.endswith("s before"), checkpoint
        await pilot.press("q")
