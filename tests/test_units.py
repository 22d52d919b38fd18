"""Small pieces with subtle logic, tested on their own."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui_connector import lake
from tui_connector.engine import LoopPacer, ResizableLimit
from tui_connector.http.body import decode_json
from tui_connector.http.retry import parse_retry_after
from tui_connector.lake import (
    Batch,
    LakeError,
    LakeWriter,
    PageBatcher,
    clear_stream_sync,
    page_path,
    read_page_sync,
    write_page_sync,
)
from tui_connector.redact import Redactor
from tui_connector.state import SCHEMA_VERSION, Checkpoint, StateError, StateStore
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


def test_lake_pages_round_trip_every_json_value(tmp_path: Path) -> None:
    records = [
        {"id": 1, "name": "Zoë ✓", "nested": {"list": [1.5, None, True, "a\nb"]}},
        {"id": 2**70, "note": "past 64 bits: written by the stdlib"},
        [1, "bare", {"x": -0.0}],
    ]
    write_page_sync(tmp_path, 0, records, fsync=False)
    assert read_page_sync(page_path(tmp_path, 0)) == records


def test_lake_write_is_atomic_and_cleanup_removes_stale_pages(tmp_path: Path) -> None:
    directory = tmp_path / "src" / "all"
    for position in range(4):
        write_page_sync(directory, position, [{"id": position}], fsync=True)
    (directory / "page-000000009.jsonl.tmp").write_text("partial")
    assert page_path(directory, 2).read_text() == '{"id":2}\n'
    assert clear_stream_sync(directory, keep_below=2) == 2
    assert sorted(p.name for p in directory.iterdir()) == [
        "page-000000000.jsonl",
        "page-000000001.jsonl",
    ]


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


async def test_page_batches_land_in_order_named_by_their_lowest_position(tmp_path: Path) -> None:
    committed: list[tuple[list[str], bool]] = []

    def commit(batch: Batch[str], wrote: bool) -> None:
        # Each batch's file is in place before its commit, and every earlier one too.
        assert page_path(tmp_path / "src" / "all", batch.position).exists() == wrote
        committed.append((batch.notes, wrote))

    writer = LakeWriter(tmp_path, commit_interval=60)  # only size and drain close batches
    batcher = PageBatcher(writer, "src", "all", commit, max_bytes=40)
    await batcher.add(5, [{"id": 5}], "p5")  # parallel pages land out of order
    await batcher.add(3, [{"id": 3}], "p3")
    await batcher.add(4, [{"id": 4, "pad": "x" * 30}], "p4")  # past max_bytes: written behind
    await batcher.add(6, [], "p6")  # a page without records writes no file of its own
    await batcher.drain()
    assert committed == [(["p5", "p3", "p4"], True), (["p6"], False)]
    assert read_page_sync(page_path(tmp_path / "src" / "all", 3)) == [
        {"id": 5},
        {"id": 3},
        {"id": 4, "pad": "x" * 30},
    ]


async def test_page_batches_close_on_their_interval(tmp_path: Path) -> None:
    landed = asyncio.Event()
    writer = LakeWriter(tmp_path, commit_interval=0.01)
    batcher = PageBatcher(writer, "src", "all", lambda batch, wrote: landed.set())
    await batcher.add(0, [{"id": 0}], None)
    await asyncio.wait_for(landed.wait(), timeout=10)  # no drain: the interval closed it
    assert read_page_sync(page_path(tmp_path / "src" / "all", 0)) == [{"id": 0}]


async def test_a_stream_waits_while_its_batches_wait_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_free = threading.Event()
    real = lake.write_file_sync

    def slow_disk(*args: Any) -> int:
        disk_free.wait(timeout=30)
        return real(*args)

    monkeypatch.setattr(lake, "write_file_sync", slow_disk)
    writer = LakeWriter(tmp_path, commit_interval=60)
    batcher = PageBatcher(writer, "src", "all", lambda b, w: None, max_bytes=1)
    for position in range(lake.MAX_UNWRITTEN):  # one writing, the others waiting
        await asyncio.wait_for(batcher.add(position, [{"id": position}], None), timeout=10)
    blocked = asyncio.ensure_future(batcher.add(9, [{"id": 9}], None))
    for _ in range(5):  # an add that is not held back completes in its first step
        await asyncio.sleep(0)
    assert not blocked.done()  # memory stays bounded: the fetching waits for the disk
    disk_free.set()
    await asyncio.wait_for(blocked, timeout=10)
    await batcher.drain()
    assert len(list((tmp_path / "src" / "all").glob("page-*.jsonl"))) == lake.MAX_UNWRITTEN + 1


@pytest.mark.skipif(
    not hasattr(os, "setpriority") or os.getpriority(os.PRIO_PROCESS, 0) >= lake.WRITER_NICENESS,
    reason="per-thread niceness (Linux), in a process not already that nice",
)
async def test_lake_writers_give_the_event_loop_the_cpu_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = lake.write_file_sync
    writers: list[tuple[str, int]] = []

    def noting_who_writes(*args: Any) -> int:
        thread = threading.current_thread()
        writers.append((thread.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return real(*args)

    monkeypatch.setattr(lake, "write_file_sync", noting_who_writes)
    writer = LakeWriter(tmp_path)
    assert await writer.write_file("src", "all", 0, [b'{"id":1}\n']) > 0
    await writer.aclose()
    [(name, niceness)] = writers
    assert name.startswith("lake-writer") and niceness == lake.WRITER_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < niceness  # the loop's
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("lake-")]
    # Closed, it writes again (an engine entered a second time), and closes again.
    assert await writer.write_file("src", "all", 1, [b'{"id":2}\n']) > 0
    await writer.aclose()
    assert len(writers) == 2


async def test_a_write_abandoned_in_its_thread_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, disk_free, finished = threading.Event(), threading.Event(), threading.Event()
    real = lake.write_file_sync

    def slow_disk(*args: Any) -> int:
        started.set()
        disk_free.wait(timeout=30)
        try:
            return real(*args)
        finally:
            finished.set()

    monkeypatch.setattr(lake, "write_file_sync", slow_disk)
    committed: list[int] = []
    writer = LakeWriter(tmp_path, commit_interval=60)
    batcher = PageBatcher(writer, "src", "all", lambda b, w: committed.append(b.position))
    await batcher.add(0, [{"id": 0}], None)
    batcher.close()
    await asyncio.to_thread(started.wait, 10)  # the write is in its thread
    batcher.cancel()  # the stream ends: its next run cleans the directory, maybe before...
    disk_free.set()  # ...this write finishes in its thread
    await asyncio.to_thread(finished.wait, 10)
    assert committed == []
    assert list((tmp_path / "src" / "all").iterdir()) == []  # no page file, no temp file


async def test_a_failed_batch_write_commits_nothing_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed: list[int] = []
    writer = LakeWriter(tmp_path, commit_interval=60)
    batcher = PageBatcher(
        writer, "src", "all", lambda b, w: committed.append(b.position), max_bytes=1
    )
    real = lake.write_file_sync

    def full_disk_at_two(directory: Path, position: int, *args: Any) -> int:
        if position == 2:
            raise LakeError("cannot write: No space left on device")
        return real(directory, position, *args)

    monkeypatch.setattr(lake, "write_file_sync", full_disk_at_two)
    for position in range(4):  # each page its own batch (max_bytes=1), all written behind
        await batcher.add(position, [{"id": position}], None)
    with pytest.raises(LakeError, match="No space left"):
        await batcher.drain()
    assert committed == [0, 1]
    with pytest.raises(LakeError):  # the stream learns of it at its next page, too
        await batcher.add(9, [{"id": 9}], None)


async def test_state_checkpoints_group_commit_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await StateStore(path).open()
    await store.begin_run("sources.yaml")
    await store.start_stream("s", "all", {"page": 1}, str(tmp_path), "fp")
    for page in range(2, 50):
        store.checkpoint(Checkpoint("s", "all", {"page": page}, page - 1, "running", page - 1, 0))
    await store.flush()
    await store.close()
    store = await StateStore(path).open()
    [row] = await store.streams()
    await store.close()
    assert row.cursor == {"page": 49} and row.position == 48


async def test_state_refuses_foreign_corrupt_and_newer_databases(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE something (x)")
    with pytest.raises(StateError, match="not a tui-connector state"):
        await StateStore(foreign).open()

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StateError, match="not a usable tui-connector state database"):
        await StateStore(corrupt).open()

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateError, match="newer tui-connector"):
        await StateStore(newer).open()


async def test_state_from_an_older_schema_is_migrated(tmp_path: Path) -> None:
    from tui_connector.state import _MIGRATIONS

    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as db:
        db.executescript(_MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        db.execute(
            "INSERT INTO streams (source, partition, cursor, position, status, out_dir,"
            " started_at, updated_at) VALUES ('s', 'all', '{\"page\": 3}', 2, 'running', 'x',"
            " 'then', 'then')"
        )
    store = await StateStore(path).open()
    [row] = await store.streams()
    await store.close()
    assert row.cursor == {"page": 3} and row.fingerprint == "" and row.files is None
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_secret_names_are_recognised_broadly() -> None:
    from tui_connector.redact import looks_secret

    for name in ("key", "MAPS_KEY", "access_key", "X-Api-Key", "DB_PASS", "gh_pat", "token"):
        assert looks_secret(name), name
    for name in ("page", "per_page", "cursor", "DEMO_URL", "limit"):
        assert not looks_secret(name), name
