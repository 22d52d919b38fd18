"""Writing records to the lake: `<out>/<source>/<partition>/page-<position>.jsonl`.

Each file is written whole to a temporary name, closed (and fsynced when asked), then
renamed into place: a reader, or a process killed at any instant, sees the complete file or
none. A page fetched again after a crash has the same position, hence the same name, and
replaces its own file: the lake never holds a record twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from tui_connector import failpoints

PAGE_GLOB = "page-*.jsonl"
_TEMP_SUFFIX = ".tmp"


class LakeError(Exception):
    """The lake directory cannot be written (permissions, disk full, ...)."""


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
    try:
        return b"".join(
            orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in records
        )
    except TypeError:
        lines = [_ENCODER.encode(record) for record in records]
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
    """Write one page atomically; returns the bytes written. Runs in a worker thread."""
    target = page_path(directory, position)
    temp = target.with_name(target.name + _TEMP_SUFFIX)
    data = _encode(records)
    try:
        with _create(temp) as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        failpoints.reached("lake.before_rename")
        os.replace(temp, target)
        if fsync:
            _fsync_dir(directory)
        failpoints.reached("lake.after_rename")
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise LakeError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return len(data)


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


class LakeWriter:
    """Async front of the writer: file work goes to a thread so the event loop never blocks."""

    def __init__(self, out: Path, fsync: bool = False) -> None:
        self.out = out
        self.fsync = fsync

    def directory(self, source: str, partition: str) -> Path:
        return stream_dir(self.out, source, partition)

    async def write_page(
        self, source: str, partition: str, position: int, records: Sequence[Any]
    ) -> int:
        directory = self.directory(source, partition)
        return await asyncio.to_thread(write_page_sync, directory, position, records, self.fsync)

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
