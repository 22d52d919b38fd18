"""Lakes of files: a stream's batches as files `<source>/<partition>/page-<position><suffix>`,
each named by the lowest page position it holds, whatever the store (`local`, `objects`) and
whatever the encoding (JSON Lines, Parquet). What the stores share is here: the names, which
files a checkpoint covers, and the encodings' interface."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tui_connector.sinks import StagedPage, StreamKey


class FileFormat(Protocol):
    """How a batch's staged pages become a file's bytes, and back."""

    suffix: str  # ".jsonl"
    name: str  # as `format:` names it
    encodes_in_thread: bool  # encoding takes CPU enough to keep it off the event loop

    def stage(self, records: Sequence[Any], source: str | None = None) -> StagedPage:
        """One page's records of `source` (None: of any) for a batch (`Sink.stage`)."""
        ...

    def encode(self, stream: StreamKey, pages: Sequence[StagedPage]) -> Sequence[bytes]:
        """The file's content, in chunks. Raises LakeError."""
        ...

    def decode(self, data: bytes) -> list[Any]:
        """A file's records."""
        ...

    def columns(self, source: str) -> Any:
        """The source's inferred columns (an `arrow_schema.TableSchema`), or None for a
        format without a schema."""
        ...


class StagesByFormat:
    """A file sink's `stage`: as its format stages a page of the stream's source."""

    format: FileFormat

    def stage(self, records: Sequence[Any], stream: StreamKey | None = None) -> StagedPage:
        return self.format.stage(records, None if stream is None else stream.source)


def page_name(position: int, suffix: str) -> str:
    return f"page-{position:09d}{suffix}"


def page_position(name: str, suffix: str) -> int | None:
    """The position a page file's name holds, or None for a name that is not a page file."""
    if name.startswith("page-") and name.endswith(suffix):
        try:
            return int(name[5 : len(name) - len(suffix)])
        except ValueError:
            return None
    return None


def covered(position: int, below: int, also: frozenset[int]) -> bool:
    """Whether a checkpoint at `below` (with the parallel pages `also` done above it)
    committed the batch named `position`."""
    return position < below or position in also


def positions(names: Iterable[str], suffix: str) -> list[tuple[str, int]]:
    """The page files among `names`, with their positions."""
    found = []
    for name in names:
        position = page_position(name, suffix)
        if position is not None:
            found.append((name, position))
    return found


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries durable (a file renamed into it, or removed from it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
