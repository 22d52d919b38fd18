"""The limits a run's requests share: resizable concurrency limits, their paced opening and the
loop pacer."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from tui_connector.engine.limits import LimitRamp, LoopPacer, ResizableLimit

from helpers import async_wait_for


async def test_resizable_limit_bounds_and_grows_live() -> None:
    limit = ResizableLimit(2)
    running = 0
    peak = 0
    release = asyncio.Event()

    async def worker() -> None:
        nonlocal running, peak
        async with limit.slot():
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(worker()) for _ in range(6)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert running == 2
    limit.set_limit(5)
    await asyncio.sleep(0)
    assert running == 5
    limit.set_limit(1)  # shrinking lets holders finish; no new slot until below the limit
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 5
    assert limit.in_use == 0


async def test_ramp_opens_a_limit_one_slot_at_a_time_over_the_span() -> None:
    loop = asyncio.get_running_loop()
    applied: list[tuple[int, float]] = []
    ramp = LimitRamp(lambda limit: applied.append((limit, loop.time())))
    started = loop.time()
    ramp.start(4, 12, 0.04)
    assert [limit for limit, _ in applied] == [5]  # the first slot at once
    await async_wait_for(lambda: applied[-1][0] == 12, what="the ramp's end")
    assert [limit for limit, _ in applied] == list(range(5, 13))
    # Evenly: seven more steps, 5 ms apart at the least (timers fire late, never early).
    assert applied[-1][1] - started >= 0.035 - 0.002


async def test_ramp_stops_when_the_limit_is_set_otherwise() -> None:
    applied: list[int] = []
    ramp = LimitRamp(applied.append)
    ramp.start(4, 64, 0.06)  # a slot a millisecond
    await async_wait_for(lambda: len(applied) >= 3, what="a few steps")
    ramp.start(applied[-1], 2, 0.06)  # a decrease: at once, and the ramp is over
    assert applied[-1] == 2
    ramp.start(2, 5, 0.006)
    await async_wait_for(lambda: applied[-1] == 5, what="the second ramp's end")
    # Meanwhile the first ramp would have gone on stepping: none of its steps came.
    assert applied[applied.index(2) :] == [2, 3, 4, 5]
    ramp.start(5, 6, 10.0)  # one step: at once, nothing paced
    ramp.start(6, 40, 0.0)  # no time to spread it over: at once
    assert applied[-2:] == [6, 40]
    ramp.cancel()


async def test_resizable_limit_cancelled_waiter_leaks_no_slot() -> None:
    limit = ResizableLimit(1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    assert limit.in_use == 0
    await asyncio.wait_for(limit.acquire(), 1)


async def test_the_pacer_spreads_page_work_over_short_loop_iterations() -> None:
    now = 0.0
    pacer = LoopPacer(budget=0.005, clock=lambda: now)
    iteration = 0
    done = asyncio.Event()

    def tick() -> None:  # runs once per loop iteration: it numbers them
        nonlocal iteration
        iteration += 1
        if not done.is_set():
            asyncio.get_running_loop().call_soon(tick)

    ran_in: list[int] = []
    order: list[int] = []

    async def page(number: int) -> None:
        nonlocal now
        await pacer.pace()
        ran_in.append(iteration)
        order.append(number)
        now += 0.001  # a page's work: 1 ms of the clock

    asyncio.get_running_loop().call_soon(tick)
    await asyncio.gather(*(page(number) for number in range(40)))
    done.set()
    per_iteration = Counter(ran_in)
    assert len(ran_in) == 40
    # 5 pages fill a 5 ms slice; the rest waited for later iterations, none was starved.
    assert max(per_iteration.values()) <= 5
    assert len(per_iteration) >= 8
    assert order == sorted(order)  # first come, first served


async def test_a_wait_for_the_network_does_not_cut_the_next_bursts_turns() -> None:
    now = 0.0
    millisecond = 2**-10  # about one, exact in binary: the arithmetic below has no rounding
    pacer = LoopPacer(budget=4 * millisecond, clock=lambda: now)
    iteration = 0
    ticking = True

    def tick() -> None:  # numbers the loop's iterations
        nonlocal iteration
        iteration += 1
        if ticking:
            asyncio.get_running_loop().call_soon(tick)

    async def burst(pages: int) -> Counter[int]:
        ran_in: list[int] = []

        async def page() -> None:
            nonlocal now
            await pacer.pace()
            ran_in.append(iteration)
            now += millisecond  # a page's work

        await asyncio.gather(*(page() for _ in range(pages)))
        return Counter(ran_in)

    asyncio.get_running_loop().call_soon(tick)
    now = 1.0  # the first slice is spent: every page waits for a turn
    await burst(16)  # the pacer learns that a turn costs 1 ms
    now += 5.0  # then the loop sleeps, waiting for the network, for 5 s
    per_iteration = await burst(16)
    ticking = False
    # The 5 s were no turn's cost: at once, as many turns as fit 4 ms, not one.
    assert list(per_iteration.values())[:3] == [4, 4, 4]


async def test_streams_cancelled_around_their_turn_do_not_stall_the_others() -> None:
    seconds = itertools.count()
    pacer = LoopPacer(budget=0.5, clock=lambda: next(seconds))  # a slice never has room
    queued = [asyncio.ensure_future(pacer.pace()) for _ in range(12)]
    loop = asyncio.get_running_loop()

    def cancel_one_each_iteration(index: int) -> None:
        # Every other stream, one per loop iteration: some while they wait, some just after
        # their turn came and before they resumed.
        if index < len(queued):
            queued[index].cancel()
            loop.call_soon(cancel_one_each_iteration, index + 2)

    loop.call_soon(cancel_one_each_iteration, 0)
    outcomes = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), timeout=5)
    for outcome, task in zip(outcomes, queued, strict=True):
        assert outcome is None or task.cancelled()
    assert [task.cancelled() for task in queued].count(True) >= 3  # some were cut off
