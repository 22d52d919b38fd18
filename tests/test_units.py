"""Small pieces with subtle logic, tested on their own."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui_connector.engine import LoopPacer, ResizableLimit
from tui_connector.httpclient import decode_json, parse_retry_after
from tui_connector.redact import Redactor
from tui_connector.telemetry import RateWindow


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


def test_rate_window_counts_recent_events_only() -> None:
    window = RateWindow(seconds=5)
    window._started = 0.0
    for second in range(10):
        window.add(10, now=second + 0.5)
    # At t=10.0 the window holds seconds 6..9 (+ the empty current one): 40 events / 4 s.
    assert window.rate(now=10.0) == pytest.approx(10.0)
    assert window.rate(now=100.0) == 0.0


def test_retry_after_both_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.integers(min_value=-(2**70), max_value=-(2**62))
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_response_bodies_decode_exactly_as_the_stdlib_decodes_them(value: Any) -> None:
    body = json.dumps(value).encode()
    assert repr(decode_json(body)) == repr(json.loads(body))  # repr: 1 and 1.0 differ


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 123456789012345678901234567890}',  # orjson alone: 1.2345678901234568e+29
        b"-9223372036854775809",  # orjson alone: -9.223372036854776e+18
        b"18446744073709551616",
        b'{"n": NaN, "big": Infinity}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark
        '{"a": "Zoë"}'.encode("utf-16"),
        b"1e400",
    ],
)
def test_response_bodies_orjson_would_refuse_or_change_decode_as_the_stdlib_does(
    body: bytes,
) -> None:
    assert repr(decode_json(body)) == repr(json.loads(body))


def test_an_invalid_body_raises_the_stdlib_error_with_its_position() -> None:
    with pytest.raises(json.JSONDecodeError, match=r"^Expecting property name.*line 1 column 9"):
        decode_json(b'{"a": 1,,}')


def test_redactor_replaces_plain_and_url_encoded_values() -> None:
    redact = Redactor(["s3cr3t/+value"])
    assert redact("a s3cr3t/+value b") == "a *** b"
    assert redact("?k=s3cr3t%2F%2Bvalue") == "?k=***"
    assert Redactor(["ab"])("ab") == "ab"  # too short to be a real secret


def test_redactor_removes_the_first_part_of_a_secret_cut_short() -> None:
    redact = Redactor(["s3cr3t/+value"])
    assert redact('{"q":"s3cr3t/+va…') == '{"q":"***…'  # an excerpt cut mid-secret
    assert redact("Authorization: s3cr3t/") == "Authorization: ***"  # a text cut at its end
    assert redact("s3cr3t/ is not cut here") == "s3cr3t/ is not cut here"
    assert redact("ends in s3c") == "ends in s3c"  # too little of it to matter


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


def test_secret_names_are_recognised_broadly() -> None:
    from tui_connector.redact import looks_secret

    for name in ("key", "MAPS_KEY", "access_key", "X-Api-Key", "DB_PASS", "gh_pat", "token"):
        assert looks_secret(name), name
    for name in ("page", "per_page", "cursor", "DEMO_URL", "limit"):
        assert not looks_secret(name), name
