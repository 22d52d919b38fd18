"""The dashboard attached to a run in another process: a headless run in a subprocess, the
dashboard driven by Pilot over the run's control socket. What the keys do is asserted where it
happens: in the demo server's request log and in the lake."""

from __future__ import annotations

import gc
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tui_connector.collector import YOUNG_GENERATION_THRESHOLD
from tui_connector.control import ControlAddress, RemoteRun, socket_path
from tui_connector.demo.server import DemoServer
from tui_connector.tui.app import Dashboard
from tui_connector.tui.screens import ConfirmScreen

from .dashboard import SIZE, cell, requests_for
from helpers import async_wait_for, expected_ids, lake_ids, start, wait_for

RECORDS = 3000
CURSOR = "pagination: {type: cursor, cursor: {header: X-Next-Cursor}, cursor_param: after}"


def cursor_sources(url: str, names: list[str]) -> str:
    return "commit_interval: 0\nsources:\n" + "".join(
        f"  {name}:\n    url: {url}/v1/header-cursor/{name}\n"
        f"    params: {{limit: 20, dataset_size: {RECORDS}}}\n    {CURSOR}\n"
        for name in names
    )


@pytest.fixture
def headless_run(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> Iterator[tuple[DemoServer, subprocess.Popen[str], Path]]:
    """A headless run of two slow sources in a subprocess, serving its control socket."""
    server = demo_server_factory(latency_ms=25, records=RECORDS, page_size=20)
    config = tmp_path / "sources.yaml"
    config.write_text(cursor_sources(server.url, ["alpha", "beta"]))
    state = tmp_path / "state.db"
    process = start(
        "run", str(config), "--headless", "--state", str(state), "--out", str(tmp_path / "lake")
    )
    try:
        wait_for(lambda: socket_path(state).exists(), what="the control socket")
        yield server, process, state
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)


async def attached(state: Path, *, read_only: bool = False) -> Dashboard:
    """A dashboard on the run of `state`, as `attach` makes it: the run's facts read first."""
    run = RemoteRun(ControlAddress(unix=socket_path(state)), read_only=read_only)
    await run.open()
    await run.close()
    return Dashboard(run)


async def test_keys_of_an_attached_dashboard_reach_the_run_and_q_leaves_it_going(
    headless_run: tuple[DemoServer, subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    server, process, state = headless_run
    app = await attached(state)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(lambda: app.facts.selected == ("alpha", "beta"), what="the facts")
        await async_wait_for(lambda: "running" in cell(app, "alpha", "status"), what="alpha")
        # Settled for a long session as a run's own process is: what is alive now is frozen.
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
        assert app.sources_table.selected_source == "alpha"
        await pilot.press("p")
        await async_wait_for(lambda: cell(app, "alpha", "status") == "paused", what="paused")
        paused_at = time.monotonic()
        await pilot.press("plus")
        await async_wait_for(lambda: "/5" in cell(app, "alpha", "concurrency"), what="limit 5")
        assert not [t for t in requests_for(server, "alpha") if t > paused_at]
        await pilot.press("p")
        await async_wait_for(
            lambda: [t for t in requests_for(server, "alpha") if t > paused_at], what="resumed"
        )
        await pilot.press("q")
        await async_wait_for(lambda: app.return_value is not None, what="leaving")
    assert app.return_value == 0 and app.left
    assert not gc.get_freeze_count()  # and restored on leaving
    assert process.poll() is None  # the run goes on without the dashboard
    assert process.wait(timeout=120) == 0
    for name in ("alpha", "beta"):
        assert lake_ids(tmp_path / "lake", name) == expected_ids(name, RECORDS)


async def test_two_dashboards_attach_and_q_upper_stops_the_run_after_asking(
    headless_run: tuple[DemoServer, subprocess.Popen[str], Path],
) -> None:
    _server, process, state = headless_run
    watcher, steerer = await attached(state, read_only=True), await attached(state)
    async with watcher.run_test(size=SIZE) as watching, steerer.run_test(size=SIZE) as pilot:
        await async_wait_for(lambda: "running" in cell(steerer, "beta", "status"))
        await async_wait_for(lambda: "running" in cell(watcher, "beta", "status"))
        await watching.press("Q", "p")  # read-only: nothing to confirm, nothing sent
        assert not isinstance(watcher.screen, ConfirmScreen)
        offered = {active.binding.action for active in watcher.screen.active_bindings.values()}
        assert {"quit", "detach"} <= offered
        assert not offered & {"toggle_pause", "retry", "stop_source", "stop_run"}
        await pilot.press("Q")
        await async_wait_for(lambda: isinstance(steerer.screen, ConfirmScreen), what="asked")
        await pilot.press("n")
        assert process.poll() is None
        await pilot.press("Q", "y")
        await async_wait_for(lambda: steerer.facade.ended is not None, what="the run's end")
        await async_wait_for(lambda: watcher.facade.ended is not None, what="the run's end")
        for app in (steerer, watcher):
            banner = app.quit_banner.content
            assert "the run has ended (interrupted: 0 done" in str(banner).lower(), banner
            await async_wait_for(
                lambda app=app: cell(app, "alpha", "status") == "stopped", what="last picture"
            )
    assert process.wait(timeout=60) == 130
