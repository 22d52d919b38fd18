"""The `CheckpointStore` port: where each stream's checkpoint (cursor, lake position, counts,
status, incremental marks) is kept between runs. The stream loop and the commit order talk
only to this port; SQLite (`state.sqlite`) is its first implementation.

The contract, for every implementation:
- one run at a time: `lock` refuses (StateLockedError, saying who holds it) while another run
  uses the store, and the lock must not outlive a killed process;
- `open` creates or migrates the schema, and refuses a store of a newer or foreign kind;
- `checkpoint` only queues a stream's newest state; queued states are group-committed in one
  transaction, and `flush` waits until everything queued is committed. A queued checkpoint
  is always for data already durable in the sink, so losing queued ones in a crash only
  means fetching those pages again;
- `start_stream` commits a stream's reset row at once, before any of its old data goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class StateError(Exception):
    """The state database cannot be used; the message says why and what to do."""


class StateLockedError(StateError):
    pass


@dataclass(frozen=True)
class Checkpoint:
    source: str
    partition: str
    cursor: dict[str, Any]
    position: int
    status: str
    pages: int
    records: int
    last_error: str | None = None
    mark: Any = None
    """The high-water mark of the last completed incremental run (JSON)."""
    pending_mark: Any = None
    """The high-water mark this run's committed pages reached (JSON)."""
    files: int = 0
    """The page files the committed pages wrote."""


@dataclass(frozen=True)
class StreamRow:
    source: str
    partition: str
    cursor: dict[str, Any]
    position: int
    status: str
    pages: int
    records: int
    out_dir: str
    last_error: str | None
    started_at: str
    updated_at: str
    finished_at: str | None
    fingerprint: str
    base: int = 0
    mark: Any = None
    pending_mark: Any = None
    files: int | None = None


class CheckpointStore(Protocol):
    on_commit: Callable[[str, float], None] | None
    """Told, for each source whose checkpoints a transaction committed, when (monotonic)."""

    def lock(self) -> None: ...

    def unlock(self) -> None: ...

    async def open(self) -> CheckpointStore: ...

    async def close(self) -> None:
        """Commit what is queued, then close."""
        ...

    async def begin_run(self, config_path: str) -> int: ...

    async def end_run(self, status: str) -> None: ...

    async def streams(self, source: str | None = None) -> list[StreamRow]: ...

    async def start_stream(
        self,
        source: str,
        partition: str,
        cursor: dict[str, Any],
        out_dir: str,
        fingerprint: str,
        *,
        base: int = 0,
        mark: Any = None,
        pages: int = 0,
        records: int = 0,
        files: int = 0,
    ) -> None: ...

    async def delete_streams(self, sources: list[str] | None = None) -> int: ...

    async def set_files(self, source: str, partition: str, files: int) -> None: ...

    def checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def flush(self) -> None: ...
