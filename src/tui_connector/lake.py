"""Writing records to the lake: `<out>/<source>/<partition>/page-<position>.jsonl`.

A file holds a batch of a stream's pages and is named by the lowest position among them.
Each file is written whole to a temporary name, closed (and fsynced when asked), then
renamed into place: a reader, or a process killed at any instant, sees the complete file or
none. The checkpoint that covers a batch is committed only after its file is in place, so a
checkpoint never runs ahead of the files. Files written after the last committed checkpoint
may exist after a crash; a resumed stream first removes every file its checkpoint does not
cover (`clear_stream_sync`), so pages fetched again never sit beside an earlier copy. The lake
never holds a record twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import orjson

from tui_connector import failpoints

PAGE_GLOB = "page-*.jsonl"
_TEMP_SUFFIX = ".tmp"


class LakeError(Exception):
    """The lake cannot be written (permissions, disk full, a record too deep to encode...)."""


def stream_dir(out: Path, source: str, partition: str) -> Path:
    return out / source / partition


def page_path(directory: Path, position: int) -> Path:
    return directory / f"page-{position:09d}.jsonl"


# The stdlib's encoder, for what orjson refuses: integers past 64 bits, keys that are not text.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _encode(records: Sequence[Any]) -> bytes:
    """JSON lines. orjson writes them in a fifth of the stdlib's time, and encoding was the
    largest cost of a page after the request itself. (Both write compact UTF-8 JSON; orjson
    writes NaN and infinities, which are not JSON, as null.)"""
    if not records:
        return b""
    try:
        return b"\n".join(map(orjson.dumps, records)) + b"\n"  # map: no generator frames
    except TypeError:  # also a record nested more than 254 deep, which orjson refuses
        try:
            lines = [_ENCODER.encode(record) for record in records]
        except RecursionError:
            raise LakeError(
                "a record nests arrays and objects too deeply to be written as JSON (about "
                "1000 levels or more)"
            ) from None
        lines.append("")
        return "\n".join(lines).encode("utf-8")


def _create(temp: Path) -> BinaryIO:
    """The temporary file, and its directory when that is missing (once per stream, rather
    than a mkdir for every page)."""
    try:
        return open(temp, "wb")
    except FileNotFoundError:
        temp.parent.mkdir(parents=True, exist_ok=True)
        return open(temp, "wb")


def write_page_sync(directory: Path, position: int, records: Sequence[Any], fsync: bool) -> int:
    """Write one page atomically; returns the bytes written."""
    return write_file_sync(directory, position, [_encode(records)], fsync)


def write_file_sync(
    directory: Path,
    position: int,
    chunks: Sequence[bytes],
    fsync: bool,
    abandoned: Callable[[], bool] = lambda: False,
) -> int:
    """Write encoded pages to one file, atomically; returns the bytes written (0 when
    `abandoned` says, before the rename, that nobody will commit it). Runs in a worker
    thread."""
    target = page_path(directory, position)
    temp = target.with_name(target.name + _TEMP_SUFFIX)
    try:
        with _create(temp) as handle:
            handle.writelines(chunks)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        failpoints.reached("lake.before_rename")
        if abandoned():
            # Its stream ended meanwhile: a file landing now could outlive the next run's
            # clean-up of the stream (a retry in the same process) and duplicate records.
            temp.unlink(missing_ok=True)
            return 0
        os.replace(temp, target)
        if fsync:
            _fsync_dir(directory)
        failpoints.reached("lake.after_rename")
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise LakeError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return sum(len(chunk) for chunk in chunks)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _page_positions(directory: Path) -> Iterator[tuple[Path, int]]:
    for path in directory.iterdir():
        name = path.name
        if name.startswith("page-") and name.endswith(".jsonl"):
            with contextlib.suppress(ValueError):
                yield path, int(name[5:-6])


def count_pages_sync(directory: Path, below: int, also: frozenset[int] = frozenset()) -> int:
    """How many page files hold positions below `below` (or in `also`): the pages a
    checkpoint at `below` committed, with the parallel pages done above it."""
    if not directory.is_dir():
        return 0
    return sum(
        1 for _, position in _page_positions(directory) if position < below or position in also
    )


def clear_stream_sync(
    directory: Path, keep_below: int = 0, also_keep: frozenset[int] = frozenset()
) -> int:
    """Remove page files at positions >= keep_below (but those in `also_keep`: pages above
    the low-water mark that parallel fetching already committed) and stale temporary files.

    A stream that starts over, or resumes at position N, owns nothing at or past N: such files
    come from an earlier run whose checkpoint was reset, and keeping them would duplicate
    records once the new run writes fewer pages.
    """
    if not directory.is_dir():
        return 0
    for temp in directory.glob(f"*{_TEMP_SUFFIX}"):
        temp.unlink(missing_ok=True)
    removed = 0
    for path, position in list(_page_positions(directory)):
        if position >= keep_below and position not in also_keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# Threads that write batch files. Writing is kernel time (creating a file, copying its bytes
# into the page cache), so more threads than this only share the same cores; fsync waits
# overlap across them.
WRITER_THREADS = 4
# The writers' niceness: what they do can wait a few milliseconds, the event loop cannot.
WRITER_NICENESS = 10


def _lower_thread_priority() -> None:
    """Give the writer threads less CPU than the loop when both want it. At equal priority,
    a second's batches of 50 streams closing together gave each writer as much of a busy core
    as the loop, whose iterations then took 20-35 ms of waiting for the CPU (keys and frames
    waited with them). Linux only (per-thread niceness); elsewhere it stays as it was."""
    if sys.platform.startswith("linux"):  # elsewhere the call would take the id for a pid
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)


class LakeWriter:
    """Async front of the writer: file work goes to threads so the event loop never blocks."""

    def __init__(self, out: Path, fsync: bool = False, commit_interval: float = 0.0) -> None:
        self.out = out
        self.fsync = fsync
        self.commit_interval = commit_interval  # seconds a page may wait for its batch
        self._writers: ThreadPoolExecutor | None = None  # made at the first write

    async def aclose(self) -> None:
        """Wait for the writer threads to end (each write ends soon: an abandoned one drops
        its file). A later write starts new ones: an engine may be entered again."""
        writers, self._writers = self._writers, None
        if writers is not None:
            await asyncio.to_thread(writers.shutdown)

    def directory(self, source: str, partition: str) -> Path:
        return stream_dir(self.out, source, partition)

    async def write_file(
        self,
        source: str,
        partition: str,
        position: int,
        chunks: Sequence[bytes],
        abandoned: Callable[[], bool] = lambda: False,
    ) -> int:
        directory = self.directory(source, partition)
        if self._writers is None:
            self._writers = ThreadPoolExecutor(
                WRITER_THREADS, thread_name_prefix="lake-writer", initializer=_lower_thread_priority
            )
        return await asyncio.get_running_loop().run_in_executor(
            self._writers, write_file_sync, directory, position, chunks, self.fsync, abandoned
        )

    async def count_pages(
        self, source: str, partition: str, below: int, also: frozenset[int] = frozenset()
    ) -> int:
        directory = self.directory(source, partition)
        return await _in_thread("read", directory, count_pages_sync, below, also)

    async def clear_stream(
        self,
        source: str,
        partition: str,
        keep_below: int = 0,
        also_keep: frozenset[int] = frozenset(),
    ) -> int:
        directory = self.directory(source, partition)
        return await _in_thread("clean", directory, clear_stream_sync, keep_below, also_keep)


# A stream's pages are gathered into one file until it holds BATCH_BYTES or its first page has
# waited the config's `commit_interval`. Creating a file costs far more than writing a page's
# bytes (measured on a cloud VM's ext4: 0.4-0.7 ms of kernel time per file against 8 µs per
# 12 KB appended), so a file per page made the lake most of a fast run's CPU. The price: a
# crash fetches again the pages of at most the last interval.
BATCH_BYTES = 1 << 20
# Closed batches a stream may have waiting for the disk before its fetching waits for them:
# without a bound, a lake slower than the API held every page fetched meanwhile in memory.
MAX_UNWRITTEN = 2

Note = TypeVar("Note")


@dataclass
class Batch(Generic[Note]):
    """Pages bound for one file, with what the caller commits once the file is in place."""

    position: int  # the lowest lake position among its pages: the file's name
    chunks: list[bytes] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # one per page, in the order added
    size: int = 0
    records: int = 0


class PageBatcher(Generic[Note]):
    """Gathers one stream's pages into batch files, written behind the fetching.

    A full or old batch goes to a worker thread while the stream fetches on (`add` waits only
    when the disk falls behind). Batches land and are committed (`commit(batch, wrote_file)`,
    called on the loop right after the rename) in the order they were closed, one at a time,
    so a stream's checkpoints never run ahead of its files. After a failed write nothing later
    is committed, and the failure is raised by the next `add` or `drain`.
    """

    def __init__(
        self,
        writer: LakeWriter,
        source: str,
        partition: str,
        commit: Callable[[Batch[Note], bool], None],
        *,
        max_bytes: int = BATCH_BYTES,
    ) -> None:
        self._writer = writer
        self._source = source
        self._partition = partition
        self._commit = commit
        self._max_bytes = max_bytes
        self._max_seconds = writer.commit_interval
        self._open: Batch[Note] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self._order = asyncio.Lock()  # FIFO: batches commit in the order they were closed
        self._failure: Exception | None = None
        self._abandoned = False

    async def add(self, position: int, records: Sequence[Any], note: Note) -> None:
        """Stage a page; waits only while the lake falls behind (see `MAX_UNWRITTEN`)."""
        if self._failure is not None:
            raise self._failure
        data = _encode(records)  # first: a page that cannot be encoded leaves no trace
        batch = self._open
        if batch is None:
            batch = self._open = Batch(position)
            if self._max_seconds > 0:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._max_seconds, self.close)
        elif position < batch.position:
            batch.position = position  # parallel pages land out of order
        if data:
            batch.chunks.append(data)
            batch.size += len(data)
            batch.records += len(records)
        batch.notes.append(note)
        if batch.size >= self._max_bytes or self._max_seconds <= 0:
            self.close()
        while len(self._writing) > MAX_UNWRITTEN:
            await asyncio.wait(set(self._writing), return_when=asyncio.FIRST_COMPLETED)

    def close(self) -> None:
        """Send the open batch to be written now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._open = self._open, None
        if batch is not None:
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def drain(self) -> None:
        """Write the open batch and wait until every batch is committed (or one failed)."""
        self.close()
        while self._writing:
            await asyncio.wait(set(self._writing))
        if self._failure is not None:
            raise self._failure

    @property
    def idle(self) -> bool:
        """Nothing staged and nothing being written."""
        return self._open is None and not self._writing

    def cancel(self) -> None:
        """Give up what is not committed (the stream is cancelled: a resume fetches it)."""
        if self._timer is not None:
            self._timer.cancel()
        self._open = None
        self._abandoned = True  # a write already in its thread leaves no file behind
        for task in self._writing:
            task.cancel()

    async def _write(self, batch: Batch[Note]) -> None:
        async with self._order:
            if self._failure is not None:
                return
            try:
                if batch.chunks:
                    await self._writer.write_file(
                        self._source,
                        self._partition,
                        batch.position,
                        batch.chunks,
                        lambda: self._abandoned,
                    )
                self._commit(batch, bool(batch.chunks))
            except Exception as exc:  # raised to the stream by its next add or drain
                self._failure = exc


async def _in_thread(
    doing: str, directory: Path, work: Callable[[Path, int, frozenset[int]], int], *args: Any
) -> int:
    """Directory work off the event loop; an OS failure becomes a LakeError that says what."""
    try:
        return await asyncio.to_thread(work, directory, *args)
    except OSError as exc:
        raise LakeError(f"cannot {doing} {directory}: {exc.strerror or exc}") from exc


def read_page_sync(path: Path) -> list[Any]:
    """The records of one page file (a file removed meanwhile reads as empty)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line]


def source_pages_sync(out: Path, source: str) -> list[Path]:
    """Every page file of a source, in partition and position order."""
    return sorted((out / source).glob(f"*/{PAGE_GLOB}"))
