"""The `Sink` port: where a stream's batches of records become durable, and what a resume
must remove. The stream loop and its commit order talk only to this port. Its implementations:
files in a format (`jsonl`, `parquet`) on local disk (`local`) or an object store (`objects`),
Delta tables (`delta`), and the `lake` that routes each source to its own.

The contract, for every implementation:
- `stage` turns one page's records into what a batch holds (encoding them now, so a page that
  cannot be written fails at that page, leaving no trace), in the form its stream's format
  converts fastest (JSON lines, or Arrow columns for a typed table whose columns fit the page);
- `write_batch` makes a batch of staged pages durable as one unit named by its lowest lake
  position, all or nothing, and returns only then. A checkpoint pointing past the batch is
  committed after that, never before: data first, then the cursor;
- `remove_uncovered` removes what a stream's checkpoint does not cover (batches at or past its
  position, but those listed as already committed above it), so pages fetched again never sit
  beside an earlier copy; `batches` is how many batches the checkpoint says were written (a
  table that records its own count compares the two);
- `finish_source` is told when every stream of a source is complete: what was staged apart
  (a `replace`) is published then;
- `count_batches` says how many batches a checkpoint committed are still there, so files
  removed behind the state's back are noticed;
- `committed_records` reads back what a source wrote (a child source takes its partitions from
  its parent's records).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from tui_connector.telemetry import LakeInfo

# pyarrow's default allocator (mimalloc) keeps what the writer threads freed: converting and
# encoding 1 MiB batches in four threads left 120-150 MB more resident than jemalloc did (a
# million records into Parquet peaked at ~370 MB against ~190 MB), for the same CPU. Arrow reads
# this when pyarrow is imported, which only the format sinks do, after this package.
# (Windows wheels have no jemalloc.)
if sys.platform != "win32":
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


class LakeError(Exception):
    """The lake cannot be written (permissions, disk full, a record too deep to encode...)."""


class StreamKey(NamedTuple):
    source: str
    partition: str


def lake_info(
    format: str,
    destination: str,
    bytes_written: int,
    *,
    version: int | None = None,
    columns: Any = None,
) -> LakeInfo:
    """A source's LakeInfo; `columns`: its `arrow_schema.TableSchema`, when it has one."""
    if columns is None:
        return LakeInfo(format, destination, bytes_written, version)
    schema = "\n".join(f"{field.name}: {field.type}" for field in columns.schema)
    return LakeInfo(
        format,
        destination,
        bytes_written,
        version,
        schema=schema or None,
        json_columns=tuple(sorted(columns.json_columns)),
        notes=columns.notes,
    )


@dataclass(slots=True)
class StagedPage:
    """One page's records as a batch holds them (JSON lines, or `column_pages.ColumnPage`). Made
    for every page, so not frozen: a frozen dataclass takes three times as long to make."""

    payload: Any
    size: int  # bytes, for closing a batch at its size limit
    records: int
    position: int = 0  # the page's lake position, set as it joins a batch


class Sink(Protocol):
    def stage(self, records: Sequence[Any], stream: StreamKey | None = None) -> StagedPage:
        """One page's records of `stream` (None: of any), encoded for a batch. Raises LakeError
        if they cannot be."""
        ...

    async def write_batch(
        self,
        stream: StreamKey,
        position: int,
        pages: Sequence[StagedPage],
        abandoned: Callable[[], bool],
        *,
        last: bool = False,
    ) -> bool:
        """Make the pages durable as one batch at `position`; True if anything was written.
        `abandoned` says, before the batch becomes visible, that nobody will commit it: then
        nothing may be left behind. `last`: the stream writes nothing more for now (it ended,
        or its source is pausing), so a sink that gathers several streams' batches into one
        commit need not wait for more of its; called with no pages, it only says that. Raises
        LakeError."""
        ...

    async def count_batches(
        self, stream: StreamKey, below: int, also: frozenset[int] = frozenset()
    ) -> int:
        """How many batches hold positions below `below` (or in `also`)."""
        ...

    async def remove_uncovered(
        self,
        stream: StreamKey,
        keep_below: int,
        also_keep: frozenset[int] = frozenset(),
        batches: int = 0,
    ) -> int:
        """Remove the batches at positions >= keep_below (but those in `also_keep`) and any
        half-written leftovers; returns how many batches went. `batches`: how many the
        checkpoint counts as written."""
        ...

    async def replace_pending(self, source: str) -> bool:
        """Whether a replace of the source, staged by an earlier run, is still to be
        completed (its complete streams stay complete); otherwise a `replace` starts over."""
        ...

    async def finish_source(self, source: str) -> None:
        """Every stream of the source is complete: publish what was staged apart."""
        ...

    def info(self, source: str) -> LakeInfo:
        """The source's format, destination and what this run wrote there; for a typed
        format its columns, the fields stored as JSON text and every fallback so far. Cheap:
        front ends ask again whenever a checkpoint committed."""
        ...

    def committed_records(self, source: str) -> AsyncIterator[list[Any]]:
        """Every written page's records of a source, page by page."""
        ...

    def location(self, stream: StreamKey) -> str:
        """Where a stream's batches go, as messages show it."""
        ...

    def identity(self, source: str) -> str:
        """Where a source's batches go, absolutely: part of what a checkpoint is valid for."""
        ...

    async def aclose(self) -> None:
        """Wait for writes under way to end; a later write may start again."""
        ...


__all__ = ["LakeError", "LakeInfo", "Sink", "StagedPage", "StreamKey", "lake_info"]
