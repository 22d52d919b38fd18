"""The dashboard's refresh cadence: fast while the event loop idles, slower while it is busy."""

from __future__ import annotations

import time
from collections.abc import Callable

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.tui.cadence import (
    BUSY_SECONDS,
    FASTEST_SECONDS,
    SLOWEST_SECONDS,
    TICK_BUDGET,
    RefreshCadence,
    busy_clock,
)

from .dashboard import SIZE, cell, dashboard_on, sources_yaml
from helpers import async_wait_for


class FakeClocks:
    """Wall time and the loop thread's busy time, moved by hand."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.busy = 10.0

    def spend(self, seconds: float, busy_share: float) -> None:
        self.wall += seconds
        self.busy += seconds * busy_share

    def cadence(self) -> RefreshCadence:
        return RefreshCadence(clock=lambda: self.wall, busy_seconds=lambda: self.busy)


def settle(clocks: FakeClocks, cadence: RefreshCadence, busy_share: float, cost: float) -> float:
    """Ticks at the cadence's pace with the loop this busy; the interval it settles on."""
    for _ in range(20):
        clocks.spend(cadence.interval, busy_share)
        assert cadence.due()
        cadence.ticked(cost)
    return cadence.interval


def test_an_idle_loop_refreshes_at_every_heartbeat() -> None:
    clocks = FakeClocks()
    cadence = clocks.cadence()
    assert settle(clocks, cadence, busy_share=0.03, cost=0.001) < FASTEST_SECONDS * 1.05


def test_a_saturated_loop_refreshes_at_the_busy_pace() -> None:
    clocks = FakeClocks()
    cadence = clocks.cadence()
    assert settle(clocks, cadence, busy_share=1.0, cost=0.001) == BUSY_SECONDS
    clocks.spend(BUSY_SECONDS / 2, 1.0)
    assert not cadence.due()  # the heartbeats in between do nothing
    # The loop goes idle (the run has finished): back to every heartbeat.
    assert settle(clocks, cadence, busy_share=0.0, cost=0.001) == FASTEST_SECONDS


def test_the_busier_the_loop_the_longer_the_interval() -> None:
    intervals = [
        RefreshCadence.next_interval(busy, tick_cost=0.001) for busy in (0.0, 0.3, 0.6, 0.9)
    ]
    assert intervals == sorted(intervals)
    assert intervals[0] == FASTEST_SECONDS and intervals[-1] == BUSY_SECONDS


def test_dear_ticks_on_a_busy_loop_keep_within_their_budget_up_to_the_slowest() -> None:
    assert RefreshCadence.next_interval(1.0, tick_cost=0.015) == 0.015 / TICK_BUDGET
    assert RefreshCadence.next_interval(1.0, tick_cost=0.5) == SLOWEST_SECONDS
    # On an idle loop a dear tick takes nothing from the run: it stays fast.
    assert RefreshCadence.next_interval(0.0, tick_cost=0.015) == FASTEST_SECONDS


def test_a_wake_makes_the_next_heartbeat_refresh() -> None:
    clocks = FakeClocks()
    cadence = clocks.cadence()
    settle(clocks, cadence, busy_share=1.0, cost=0.001)
    clocks.spend(FASTEST_SECONDS, 1.0)
    assert not cadence.due()
    cadence.wake()
    assert cadence.due()
    cadence.ticked(0.001)
    assert not cadence.due()


def test_the_busy_clock_counts_this_threads_work() -> None:
    # The kernel updates a thread's run time at scheduler ticks (up to 10 ms apart), so the
    # work must outlast several ticks; a fast CPU finishes a fixed small sum within one.
    clock = busy_clock()
    before = clock()
    worked_from = time.thread_time()
    while time.thread_time() - worked_from < 0.1:
        sum(range(10_000))
    assert clock() > before


async def test_a_control_refreshes_at_the_next_heartbeat_however_busy_the_loop(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=400, page_size=10, latency_ms=50)
    config = write_config(sources_yaml(server.url, ["a"]))
    app = dashboard_on(config)
    clocks = FakeClocks()  # frozen unless spent by hand: no refresh falls due by itself
    app.cadence = clocks.cadence()
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(lambda: "a" in app.telemetry.sources, what="the source starts")
        settle(clocks, app.cadence, busy_share=1.0, cost=0.001)
        clocks.spend(FASTEST_SECONDS, 1.0)
        ticks = len(app.tick_seconds)
        await pilot.press(app.keys["pause"])
        await async_wait_for(lambda: len(app.tick_seconds) > ticks, what="a tick after the key")
        assert cell(app, "a", "status").startswith("paus")


async def test_moving_the_selection_refreshes_at_the_next_heartbeat_however_busy_the_loop(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=400, page_size=10, latency_ms=50)
    config = write_config(sources_yaml(server.url, ["a", "b"]))
    app = dashboard_on(config)
    clocks = FakeClocks()  # frozen unless spent by hand: no refresh falls due by itself
    app.cadence = clocks.cadence()
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(lambda: "b" in app.telemetry.sources, what="the sources start")
        await pilot.press(app.keys["filter-errors"])  # the errors pane follows the selection
        settle(clocks, app.cadence, busy_share=1.0, cost=0.001)
        clocks.spend(FASTEST_SECONDS, 1.0)
        ticks = len(app.tick_seconds)
        await pilot.press("down")
        await async_wait_for(lambda: len(app.tick_seconds) > ticks, what="a tick after the key")
        assert app.errors_table.border_title.startswith("Errors of b")
