"""What the screen says of a run: countdowns, the errors pane, the detail screen, partitions."""

from __future__ import annotations

import re
from collections.abc import Callable

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.telemetry import (
    ConcurrencyMode,
    ErrorEvent,
    SourceStats,
    StreamStats,
    StreamStatus,
)
from tui_connector.tui import format as fmt
from tui_connector.tui.app import Dashboard
from tui_connector.tui.keys import DEFAULT_KEYS
from tui_connector.tui.partitions import (
    MAX_PARTITIONS_SHOWN,
    PartitionTable,
    shown_streams,
)
from tui_connector.tui.screens import SourceDetailScreen

from .dashboard import (
    SIZE,
    TOKEN,
    cell,
    dashboard_on,
    finished_with_its_error,
    good_and_broken,
    in_flight,
    record_notifications,
    shown,
    sources_yaml,
)
from helpers import RECORDS, async_wait_for, engine_of, expected_ids, lake_ids

# -- what the screen says ---------------------------------------------------------------------


async def test_a_backing_off_source_shows_a_live_countdown(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("429",), retry_after_s=30)
    config = write_config(sources_yaml(server.url, ["throttled"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(
            lambda: cell(app, "throttled", "status").startswith("backing off"), what="backoff"
        )

        def countdown() -> int:
            status = cell(app, "throttled", "status")
            assert status.startswith("backing off"), status
            return int(status.removeprefix("backing off ").rstrip("s"))

        seconds = countdown()
        assert 25 <= seconds <= 30
        pane = in_flight(app)
        assert "throttled: backing off, next attempt in" in pane
        assert "HTTP 429" in pane
        await async_wait_for(lambda: countdown() < seconds, what="the countdown to tick")
        await pilot.press("q")
    assert app.return_value == 130


async def test_errors_pane_filters_to_the_selected_source_with_f(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    app = Dashboard(InProcessRun(Engine(good_and_broken(demo, write_config))))
    async with app.run_test(size=SIZE) as pilot:
        errors = app.errors_table
        await finished_with_its_error(app)
        assert errors.row_sources == {next(iter(errors.row_sources)): "broken"}
        await pilot.press("f")  # the selected source is "good": it has no errors
        assert errors.row_count == 0
        assert "Errors of good" in str(errors.border_title)
        await pilot.press("down")
        await async_wait_for(lambda: errors.row_count == 1, what="broken's error")
        await pilot.press("f")
        assert errors.row_count == 1
        assert "all sources" in str(errors.border_title)
        await pilot.press("e", "enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        assert isinstance(app.screen, SourceDetailScreen) and app.screen.source == "broken"


async def test_the_errors_pane_follows_new_errors_unless_focused(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["noisy"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        app.refresh_timer.pause()  # ticks by hand only
        telemetry = engine_of(app).telemetry
        errors = app.errors_table

        def add_errors(count: int) -> None:
            for _ in range(count):
                number = len(telemetry.errors)
                event = ErrorEvent(0.0, "noisy", 503, f"HTTP 503 #{number}", "", "", 1, "retry")
                telemetry.error(event)
            app.refresh_view()

        add_errors(60)
        await pilot.pause()
        assert errors.max_scroll_y > 0
        assert errors.scroll_y == errors.max_scroll_y
        add_errors(1)
        await pilot.pause()
        assert errors.scroll_y == errors.max_scroll_y
        await pilot.press("e", "ctrl+home")  # focused: new errors leave the view alone
        add_errors(1)
        await pilot.pause()
        assert errors.cursor_row == 0 and errors.scroll_y == 0


async def test_enter_opens_the_detail_screen_with_streams_and_no_secret(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(
        f"sources:\n  invoices:\n    url: {demo.url}/secure/cursor/invoices\n"
        "    records: items\n    params: {limit: 50}\n"
        "    auth: {type: bearer, token: '${API_TOKEN}'}\n"
        "    pagination: {type: cursor, cursor: next_cursor, cursor_param: cursor}\n",
        env={"API_TOKEN": TOKEN},
    )
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        screen = app.screen
        assert isinstance(screen, SourceDetailScreen)
        streams = screen.query_one("#streams")
        await async_wait_for(lambda: streams.row_count == 1, what="the stream row")  # type: ignore[attr-defined]
        await pilot.pause()
        assert "bearer token (hidden)" in shown(screen.query_one("#config-summary"))
        assert shown(screen.query_one("#detail-title")) == "invoices — done"
        assert TOKEN not in app.export_screenshot()
        await pilot.press("escape")
        await async_wait_for(lambda: not isinstance(app.screen, SourceDetailScreen))


async def test_a_refused_source_shows_what_the_server_said(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    # The demo API answers a page size that is not a number with a 400 and its reason.
    reason = "per_page must be an integer, not 'fifty'"
    config = write_config(
        sources_yaml(demo.url, ["sized"], "records: data\nparams: {per_page: fifty}\n")
    )
    app = dashboard_on(config)
    notes = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        await async_wait_for(lambda: bool(notes), what="the failure's notification")
        assert any(reason in message and severity == "error" for message, severity in notes), notes
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        await pilot.pause()
        detail = " ".join(shown(app.screen.query_one("#detail-figures")).split())
        assert f'last error HTTP 400 Bad Request after 1 attempt: {{"error":"{reason}"}}' in (
            detail
        )


async def test_the_detail_screen_shows_oauth2_tokens_renewed_live(
    demo_server_factory: Callable[..., DemoServer], write_config: Callable[..., LoadedConfig]
) -> None:
    server = demo_server_factory(records=300, latency_ms=20, oauth_token_ttl_s=0.6)
    config = write_config(
        f"sources:\n  ledger:\n    url: {server.url}/oauth/cursor/ledger\n"
        "    records: items\n    params: {limit: 5}\n"
        "    pagination: {type: cursor, cursor: next_cursor, cursor_param: cursor}\n"
        f"    auth: {{type: oauth2, token_url: '{server.url}/oauth/token', "
        "client_id: demo-client, client_secret: '${CLIENT_SECRET}'}\n",
        env={"CLIENT_SECRET": "demo-client-secret"},
    )
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(lambda: cell(app, "ledger", "status") == "running", what="a start")
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        await pilot.pause()
        figures = app.screen.query_one("#detail-figures")

        def tokens_shown() -> int:
            found = re.search(
                r"OAuth2 tokens +(\d+) obtained, the current one expires in \d+s", shown(figures)
            )
            return int(found.group(1)) if found else 0

        await async_wait_for(lambda: tokens_shown() >= 2, what="a renewed token on the screen")
        assert "OAuth2 bearer token (client credentials grant) from" in shown(
            app.screen.query_one("#config-summary")
        )
        assert "demo-client-secret" not in app.export_screenshot()
        await pilot.press("escape", "q")


async def test_a_click_on_a_source_selects_it_and_opens_its_detail(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(sources_yaml(demo.url, ["first", "second", "third"]))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        # The table's top border, its header, then one line per source.
        await pilot.click("#sources", offset=(4, 3))
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        assert isinstance(app.screen, SourceDetailScreen) and app.screen.source == "second"
        await pilot.press("escape")
        assert app.sources_table.selected_source == "second"


SHARDS = """\
sources:
  shards:
    url: {url}/v1/pages/{{ds}}
    records: data
    params: {{per_page: 20}}
    partitions: {{type: values, values: [{values}], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


async def test_a_partitioned_source_rolls_up_its_partitions_and_the_detail_lists_them(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(SHARDS.format(url=demo.url, values="alpha, beta, gamma"))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        stats = engine_of(app).telemetry.sources["shards"]
        assert (stats.streams_total, stats.streams_done, stats.streams_failed) == (3, 3, 0)
        await async_wait_for(lambda: cell(app, "shards", "progress") == "3/3 parts")
        assert cell(app, "shards", "records") == f"{3 * RECORDS:,}"
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        screen = app.screen
        assert isinstance(screen, SourceDetailScreen)
        table = screen.query_one("#streams", PartitionTable)
        await async_wait_for(lambda: table.row_count == 3, what="the partitions")
        pages = -(-RECORDS // 20)
        rows = {key: [value.plain for value in table.get_row(key)] for key in table.row_keys}
        assert set(rows) == {"alpha", "beta", "gamma"}
        for key, (partition, status, shown_pages, records, _, error) in rows.items():
            assert (partition, status, shown_pages) == (key, "done", f"{pages}/{pages}")
            assert (records, error) == (str(RECORDS), "—")
        assert table.border_title == "Partitions: 3 of 3 done, 0 running"
        assert table.border_subtitle is None
        summary = shown(screen.query_one("#config-summary"))
        assert "values (3): alpha, beta, gamma → url {ds}" in summary
        assert "3 of 3 done, 0 running" in shown(screen.query_one("#detail-figures"))
    expected = expected_ids("alpha") + expected_ids("beta") + expected_ids("gamma")
    assert lake_ids(config.out, "shards") == expected


async def test_the_partitions_list_is_bounded(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    names = [f"p{number:03d}" for number in range(MAX_PARTITIONS_SHOWN + 30)]
    shards = SHARDS.format(url=demo.url, values=", ".join(names))
    config = write_config(shards.replace("per_page: 20", "per_page: 500"))
    app = dashboard_on(config)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, within=60, what="the run")
        total = len(names)
        await async_wait_for(lambda: cell(app, "shards", "progress") == f"{total}/{total} parts")
        await pilot.press("enter")
        await async_wait_for(lambda: isinstance(app.screen, SourceDetailScreen), what="detail")
        table = app.screen.query_one("#streams", PartitionTable)
        await async_wait_for(lambda: table.row_count == MAX_PARTITIONS_SHOWN, what="the rows")
        assert table.border_subtitle == "… and 30 more"


def test_partition_rollup_and_concurrency_texts() -> None:
    stats = SourceStats("s", partitioned=True, streams_total=40, streams_done=12)
    assert fmt.progress_text(stats) == "12/40 parts"
    stats.streams_failed = 3
    assert fmt.progress_text(stats) == "12/40 parts 3✗"
    stats.partitioned = False
    assert fmt.progress_text(stats) == "0 so far"
    stats.in_flight, stats.concurrency = 12, 20
    assert fmt.concurrency_text(stats) == "12/20"
    stats.concurrency_mode = ConcurrencyMode.AUTO
    assert fmt.concurrency_text(stats) == "12/20 A"
    stats.concurrency_mode = ConcurrencyMode.MANUAL
    assert fmt.concurrency_text(stats) == "12/20 M"
    stats.concurrency_reason, stats.concurrency_changed_at = "raised: throughput rising", 100.0
    assert fmt.concurrency_note(stats, 103.0, DEFAULT_KEYS["auto"]) == (
        "s: limit 20, manual (a: auto) — raised: throughput rising, 3 seconds ago"
    )


def test_the_partitions_shown_put_running_then_failed_first() -> None:
    stats = SourceStats("s", partitioned=True, streams_total=10)
    for number in range(6):
        stats.streams[f"k{number}"] = StreamStats(f"k{number}", status=StreamStatus.DONE)
    stats.streams["k2"].status = StreamStatus.RUNNING
    stats.streams["k4"].status = StreamStatus.FAILED
    stats.streams["k5"].status = StreamStatus.RUNNING
    shown_keys, hidden = shown_streams(stats, limit=4)
    assert [stream.key for stream in shown_keys] == ["k2", "k5", "k4", "k0"]
    assert hidden == 6  # two done ones cut, four not started yet
