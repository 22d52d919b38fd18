"""Batches: one stream's pages gathered into units its sink writes behind the fetching, and
committed in the order they were closed, so a stream's checkpoints never run ahead of its data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tui_connector.sinks import Sink, StagedPage, StreamKey

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

    position: int  # the lowest lake position among its pages: the batch's name
    pages: list[StagedPage] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # one per page, in the order added
    size: int = 0
    records: int = 0


class BatchWriter(Generic[Note]):
    """Gathers one stream's pages into batches that its sink writes behind the fetching.

    A full or old batch is handed to the sink while the stream fetches on (`add` waits only
    when the sink falls behind). Batches land and are committed (`commit(batch, wrote)`,
    called on the loop right after the sink made the batch durable) in the order they were
    closed, one at a time, so a stream's checkpoints never run ahead of its data. After a
    failed write nothing later is committed, and the failure is raised by the next `add` or
    `drain`. `max_seconds` is how long a page may wait for its batch (0: a batch per page).
    """

    def __init__(
        self,
        sink: Sink,
        stream: StreamKey,
        commit: Callable[[Batch[Note], bool], None],
        *,
        max_seconds: float = 0.0,
        max_bytes: int = BATCH_BYTES,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_written` is called whenever a batch's write ended (room for more, maybe)."""
        self._sink = sink
        self._on_written = on_written
        self._stream = stream
        self._commit = commit
        self._max_bytes = max_bytes
        self._max_seconds = max_seconds
        self._open: Batch[Note] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self._order = asyncio.Lock()  # FIFO: batches commit in the order they were closed
        # Draining: nothing follows the batches not yet written (the stream ends, or its
        # source pauses); the sink is told with each (`write_batch(last=True)`).
        self._draining = False
        self._failure: Exception | None = None
        self._abandoned = False

    async def add(self, position: int, records: Sequence[Any], note: Note) -> None:
        """Stage a page; waits only while the lake falls behind (see `MAX_UNWRITTEN`)."""
        self.put(position, records, note)
        await self.room()

    def put(self, position: int, records: Sequence[Any], note: Note) -> None:
        """Stage a page now (its records are encoded: the caller may drop them, and should
        before it waits for `room`)."""
        if self._failure is not None:
            raise self._failure
        # First: a page that cannot be encoded leaves no trace.
        staged = self._sink.stage(records, self._stream)
        staged.position = position
        batch = self._open
        if batch is None:
            batch = self._open = Batch(position)
            if self._max_seconds > 0:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._max_seconds, self.close)
        elif position < batch.position:
            batch.position = position  # parallel pages land out of order
        if staged.records:
            batch.pages.append(staged)
            batch.size += staged.size
            batch.records += staged.records
        batch.notes.append(note)
        if batch.size >= self._max_bytes or self._max_seconds <= 0:
            self.close()

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        self._on_written()

    @property
    def backlogged(self) -> bool:
        """The lake falls behind: a page staged now would wait in `room`."""
        return len(self._writing) > MAX_UNWRITTEN

    async def room(self) -> None:
        """Wait while the lake falls behind (more than `MAX_UNWRITTEN` batches unwritten)."""
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
            task.add_done_callback(self._written)

    async def drain(self) -> None:
        """Write the open batch and wait until every batch is committed (or one failed). Nothing
        follows for now (the stream ends, or its source pauses): the sink is told at once, as a
        batch of the stream it already holds may be waiting to be joined by others."""
        self._draining = True
        try:
            self.close()
            if self._failure is None and not self._abandoned:
                await self._sink.write_batch(self._stream, 0, (), lambda: True, last=True)
            while self._writing:
                await asyncio.wait(set(self._writing))
        finally:
            self._draining = False
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
                wrote = bool(batch.pages) and await self._sink.write_batch(
                    self._stream,
                    batch.position,
                    batch.pages,
                    lambda: self._abandoned,
                    last=self._draining,
                )
                self._commit(batch, wrote)
            except Exception as exc:  # raised to the stream by its next add or drain
                self._failure = exc
