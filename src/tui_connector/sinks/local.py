"""Lake files on local disk: `<out>/<source>/<partition>/page-<position><suffix>`.

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
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from tui_connector import failpoints
from tui_connector.sinks import LakeError, LakeInfo, StagedPage, StreamKey, lake_info
from tui_connector.sinks.compaction import LocalFiles, Settling
from tui_connector.sinks.files import (
    FileFormat,
    StagesByFormat,
    covered,
    fsync_directory,
    page_name,
    positions,
)
from tui_connector.sinks.jsonl import JSON_LINES, encode_lines

_TEMP_SUFFIX = ".tmp"


def stream_dir(out: Path, source: str, partition: str) -> Path:
    return out / source / partition


def page_path(directory: Path, position: int, suffix: str = JSON_LINES.suffix) -> Path:
    return directory / page_name(position, suffix)


def _create(temp: Path) -> BinaryIO:
    """The temporary file, and its directory when that is missing (once per stream, rather
    than a mkdir for every page)."""
    try:
        return open(temp, "wb")
    except FileNotFoundError:
        temp.parent.mkdir(parents=True, exist_ok=True)
        return open(temp, "wb")


def write_page_sync(directory: Path, position: int, records: Sequence[Any], fsync: bool) -> int:
    """Write one page of JSON lines atomically; returns the bytes written."""
    return write_file_sync(directory, position, [encode_lines(records)], fsync)


def write_file_sync(
    directory: Path,
    position: int,
    chunks: Sequence[bytes],
    fsync: bool,
    abandoned: Callable[[], bool] = lambda: False,
    suffix: str = JSON_LINES.suffix,
) -> int:
    """Write encoded pages to one file, atomically; returns the bytes written (0 when
    `abandoned` says, before the rename, that nobody will commit it). Runs in a worker
    thread."""
    target = page_path(directory, position, suffix)
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
            fsync_directory(directory)
        failpoints.reached("lake.after_rename")
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise LakeError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return sum(len(chunk) for chunk in chunks)


def _page_positions(directory: Path, suffix: str) -> Iterator[tuple[Path, int]]:
    for name, position in positions(os.listdir(directory), suffix):
        yield directory / name, position


def count_pages_sync(
    directory: Path,
    below: int,
    also: frozenset[int] = frozenset(),
    suffix: str = JSON_LINES.suffix,
) -> int:
    """How many page files hold positions below `below` (or in `also`): the pages a
    checkpoint at `below` committed, with the parallel pages done above it."""
    if not directory.is_dir():
        return 0
    return sum(
        1 for _, position in _page_positions(directory, suffix) if covered(position, below, also)
    )


def clear_stream_sync(
    directory: Path,
    keep_below: int = 0,
    also_keep: frozenset[int] = frozenset(),
    suffix: str = JSON_LINES.suffix,
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
    for path, position in list(_page_positions(directory, suffix)):
        if not covered(position, keep_below, also_keep):
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


def writer_threads() -> ThreadPoolExecutor:
    """The threads a lake writes with, at the writers' niceness."""
    return ThreadPoolExecutor(
        WRITER_THREADS, thread_name_prefix="lake-writer", initializer=_lower_thread_priority
    )


class LocalFileSink(StagesByFormat):
    """The `Sink` port as files on local disk, in one of the file formats: file work (and a
    format's encoding) goes to threads so the event loop never blocks."""

    def __init__(self, out: Path, format: FileFormat = JSON_LINES, fsync: bool = False) -> None:
        self.out = out
        self.format = format
        self.fsync = fsync
        self.bytes_written: dict[str, int] = {}
        self._writers: ThreadPoolExecutor | None = None  # made at the first write
        self._settling = Settling(LocalFiles(out))

    async def aclose(self) -> None:
        """Wait for the writer threads to end (each write ends soon: an abandoned one drops
        its file). A later write starts new ones: an engine may be entered again."""
        writers, self._writers = self._writers, None
        if writers is not None:
            await asyncio.to_thread(writers.shutdown)
        self._settling.forget()

    def directory(self, stream: StreamKey) -> Path:
        return stream_dir(self.out, stream.source, stream.partition)

    def location(self, stream: StreamKey) -> str:
        return str(self.directory(stream))

    def identity(self, source: str) -> str:
        return str(self.out.resolve() / source)

    def info(self, source: str) -> LakeInfo:
        written = self.bytes_written.get(source, 0)
        columns = self.format.columns(source)
        return lake_info(self.format.name, str(self.out / source), written, columns=columns)

    async def write_batch(
        self,
        stream: StreamKey,
        position: int,
        pages: Sequence[StagedPage],
        abandoned: Callable[[], bool] = lambda: False,
        *,
        last: bool = False,  # each batch is its own file: nothing waits for the others
    ) -> bool:
        if not any(page.records for page in pages):
            return False  # a batch of pages without records writes no file
        directory = self.directory(stream)
        if self._writers is None:
            self._writers = writer_threads()
        # Looked up at each call, so that tests can slow the disk down.
        write = sys.modules[__name__].write_file_sync
        fsync, suffix, encode = self.fsync, self.format.suffix, self.format.encode
        if self.format.encodes_in_thread:

            def encode_and_write() -> int:
                chunks = encode(stream, pages)
                return write(directory, position, chunks, fsync, abandoned, suffix)

            written = await asyncio.get_running_loop().run_in_executor(
                self._writers, encode_and_write
            )
        else:
            chunks = encode(stream, pages)
            written = await asyncio.get_running_loop().run_in_executor(
                self._writers, write, directory, position, chunks, fsync, abandoned, suffix
            )
        source = stream.source
        self.bytes_written[source] = self.bytes_written.get(source, 0) + (written or 0)
        return True

    async def count_batches(
        self, stream: StreamKey, below: int, also: frozenset[int] = frozenset()
    ) -> int:
        await self._settling.settle(stream.source)
        directory = self.directory(stream)
        return await _in_thread(
            "read", directory, count_pages_sync, below, also, self.format.suffix
        )

    async def remove_uncovered(
        self,
        stream: StreamKey,
        keep_below: int = 0,
        also_keep: frozenset[int] = frozenset(),
        batches: int = 0,
    ) -> int:
        await self._settling.settle(stream.source)
        directory = self.directory(stream)
        return await _in_thread(
            "clean", directory, clear_stream_sync, keep_below, also_keep, self.format.suffix
        )

    async def replace_pending(self, source: str) -> bool:
        return False  # files are replaced in place, stream by stream: nothing is staged apart

    async def finish_source(self, source: str) -> None:
        """Nothing is staged apart: every batch is in place as soon as it is written."""

    async def committed_records(self, source: str) -> AsyncIterator[list[Any]]:
        await self._settling.settle(source)
        paths = await asyncio.to_thread(source_pages_sync, self.out, source, self.format.suffix)
        for start in range(0, len(paths), _READ_BATCH):
            chunk = paths[start : start + _READ_BATCH]
            for records in await asyncio.to_thread(self._read_pages, chunk):
                yield records

    def _read_pages(self, paths: list[Path]) -> list[list[Any]]:
        return [read_page_sync(path, self.format) for path in paths]


class JsonLinesSink(LocalFileSink):
    """JSON Lines files on local disk: the lake's default."""

    def __init__(self, out: Path, fsync: bool = False) -> None:
        super().__init__(out, JSON_LINES, fsync=fsync)


# Page files read per trip to a worker thread when a source's lake is read back.
_READ_BATCH = 50


async def _in_thread(doing: str, directory: Path, work: Callable[..., int], *args: Any) -> int:
    """Directory work off the event loop; an OS failure becomes a LakeError that says what."""
    try:
        return await asyncio.to_thread(work, directory, *args)
    except OSError as exc:
        raise LakeError(f"cannot {doing} {directory}: {exc.strerror or exc}") from exc


def read_page_sync(path: Path, format: FileFormat = JSON_LINES) -> list[Any]:
    """The records of one page file (a file removed meanwhile reads as empty)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return format.decode(data)


def source_pages_sync(out: Path, source: str, suffix: str = JSON_LINES.suffix) -> list[Path]:
    """Every page file of a source, in partition and position order."""
    return sorted((out / source).glob(f"*/page-*{suffix}"))
