"""The JSON Lines sink and the batches it writes: atomic files, clean-up of what a checkpoint
does not cover, batches committed in order, and a disk that falls behind or fails."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tui_connector.sinks import LakeError, StreamKey, local
from tui_connector.sinks.batching import MAX_UNWRITTEN, Batch, BatchWriter
from tui_connector.sinks.local import (
    JsonLinesSink,
    clear_stream_sync,
    page_path,
    read_page_sync,
    write_page_sync,
)

STREAM = StreamKey("src", "all")


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


async def test_page_batches_land_in_order_named_by_their_lowest_position(tmp_path: Path) -> None:
    committed: list[tuple[list[str], bool]] = []

    def commit(batch: Batch[str], wrote: bool) -> None:
        # Each batch's file is in place before its commit, and every earlier one too.
        assert page_path(tmp_path / "src" / "all", batch.position).exists() == wrote
        committed.append((batch.notes, wrote))

    sink = JsonLinesSink(tmp_path)
    batcher = BatchWriter(sink, STREAM, max_seconds=60, commit=commit, max_bytes=40)
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
    sink = JsonLinesSink(tmp_path)
    batcher = BatchWriter(sink, STREAM, max_seconds=0.01, commit=lambda batch, wrote: landed.set())
    await batcher.add(0, [{"id": 0}], None)
    await asyncio.wait_for(landed.wait(), timeout=10)  # no drain: the interval closed it
    assert read_page_sync(page_path(tmp_path / "src" / "all", 0)) == [{"id": 0}]


async def test_a_stream_waits_while_its_batches_wait_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_free = threading.Event()
    real = local.write_file_sync

    def slow_disk(*args: Any) -> int:
        disk_free.wait(timeout=30)
        return real(*args)

    monkeypatch.setattr(local, "write_file_sync", slow_disk)
    sink = JsonLinesSink(tmp_path)
    batcher = BatchWriter(sink, STREAM, max_seconds=60, commit=lambda b, w: None, max_bytes=1)
    for position in range(MAX_UNWRITTEN):  # one writing, the others waiting
        await asyncio.wait_for(batcher.add(position, [{"id": position}], None), timeout=10)
    blocked = asyncio.ensure_future(batcher.add(9, [{"id": 9}], None))
    for _ in range(5):  # an add that is not held back completes in its first step
        await asyncio.sleep(0)
    assert not blocked.done()  # memory stays bounded: the fetching waits for the disk
    disk_free.set()
    await asyncio.wait_for(blocked, timeout=10)
    await batcher.drain()
    assert len(list((tmp_path / "src" / "all").glob("page-*.jsonl"))) == MAX_UNWRITTEN + 1


@pytest.mark.skipif(
    not hasattr(os, "setpriority") or os.getpriority(os.PRIO_PROCESS, 0) >= local.WRITER_NICENESS,
    reason="per-thread niceness (Linux), in a process not already that nice",
)
async def test_lake_writers_give_the_event_loop_the_cpu_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = local.write_file_sync
    writers: list[tuple[str, int]] = []
    threads: list[threading.Thread] = []

    def noting_who_writes(*args: Any) -> int:
        thread = threading.current_thread()
        threads.append(thread)
        writers.append((thread.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return real(*args)

    monkeypatch.setattr(local, "write_file_sync", noting_who_writes)
    sink = JsonLinesSink(tmp_path)
    assert await sink.write_batch(STREAM, 0, [sink.stage([{"id": 1}])], lambda: False)
    await sink.aclose()
    [(name, niceness)] = writers
    assert name.startswith("lake-writer") and niceness == local.WRITER_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < niceness  # the loop's
    assert not [thread for thread in threads if thread.is_alive()]  # this sink's, not others'
    # Closed, it writes again (an engine entered a second time), and closes again.
    assert await sink.write_batch(STREAM, 1, [sink.stage([{"id": 2}])], lambda: False)
    await sink.aclose()
    assert len(writers) == 2


async def test_a_write_abandoned_in_its_thread_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, disk_free, finished = threading.Event(), threading.Event(), threading.Event()
    real = local.write_file_sync

    def slow_disk(*args: Any) -> int:
        started.set()
        disk_free.wait(timeout=30)
        try:
            return real(*args)
        finally:
            finished.set()

    monkeypatch.setattr(local, "write_file_sync", slow_disk)
    committed: list[int] = []
    sink = JsonLinesSink(tmp_path)
    batcher = BatchWriter(
        sink, STREAM, max_seconds=60, commit=lambda b, w: committed.append(b.position)
    )
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
    sink = JsonLinesSink(tmp_path)
    batcher = BatchWriter(
        sink, STREAM, max_seconds=60, commit=lambda b, w: committed.append(b.position), max_bytes=1
    )
    real = local.write_file_sync

    def full_disk_at_two(directory: Path, position: int, *args: Any) -> int:
        if position == 2:
            raise LakeError("cannot write: No space left on device")
        return real(directory, position, *args)

    monkeypatch.setattr(local, "write_file_sync", full_disk_at_two)
    for position in range(4):  # each page its own batch (max_bytes=1), all written behind
        await batcher.add(position, [{"id": position}], None)
    with pytest.raises(LakeError, match="No space left"):
        await batcher.drain()
    assert committed == [0, 1]
    with pytest.raises(LakeError):  # the stream learns of it at its next page, too
        await batcher.add(9, [{"id": 9}], None)
