"""The SQLite checkpoint store (WAL) through aiosqlite, and the run lock beside it.

Each stream (source × partition) has one row: its pagination state as JSON, the position of
the next page (which names its lake file), counts and status. Checkpoints are group-committed:
the engine queues the newest state of a stream and a flusher writes all queued states in one
transaction, because one commit per page costs a thread round trip and an fsync each.
A queued checkpoint is always for a page whose file is already complete, so losing queued
checkpoints in a crash only means fetching those pages again, rewriting the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from tui_connector import failpoints
from tui_connector.state import Checkpoint, StateError, StateLockedError, StreamRow

# Forward migrations: index i upgrades a database at user_version i to i + 1.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        config_path TEXT NOT NULL,
        pid INTEGER NOT NULL
    );
    CREATE TABLE streams (
        source TEXT NOT NULL,
        partition TEXT NOT NULL,
        cursor TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        pages INTEGER NOT NULL DEFAULT 0,
        records INTEGER NOT NULL DEFAULT 0,
        out_dir TEXT NOT NULL,
        last_error TEXT,
        run_id INTEGER,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (source, partition)
    );
    """,
    # 2: what a stream's checkpoint was made for (request, pagination, lake directory), so a
    # resume under a changed config refuses instead of mixing two page layouts in one lake.
    """
    ALTER TABLE streams ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
    """,
    # 3: incremental runs. `base` is the first lake position of the stream's current run (an
    # incremental run appends pages after the earlier runs' pages); `mark` is the high-water
    # mark of the last completed run, `pending_mark` the one the current run has reached.
    """
    ALTER TABLE streams ADD COLUMN base INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streams ADD COLUMN mark TEXT;
    ALTER TABLE streams ADD COLUMN pending_mark TEXT;
    """,
    # 4: how many page files a stream's committed pages wrote (an empty page writes none), so
    # a run notices lake files deleted behind the state's back. NULL (unknown) for rows of an
    # older schema: they are not checked.
    """
    ALTER TABLE streams ADD COLUMN files INTEGER;
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

# How many queued checkpoints, or how long, before the flusher commits.
GROUP_COMMIT_SIZE = 200
GROUP_COMMIT_INTERVAL = 0.05


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def _database_errors(path: Path, doing: str) -> Iterator[None]:
    """Every SQLite or OS failure leaves the store as a StateError that says what failed."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StateError(f"{path}: cannot {doing}: {exc}") from exc


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class RunLock:
    """An exclusive `flock` on `<state>.lock`: released by the kernel when the process dies,
    so a killed run never leaves a stale lock behind."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot create {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            os.close(fd)
            raise StateLockedError(
                f"state database {self.path.with_suffix('')} is in use by another run "
                f"({_describe_holder(holder)}); wait for it to finish, stop it, "
                "or use another --state"
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": _now()}
        os.write(fd, json.dumps(info).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def run_in_progress(state_path: Path) -> bool:
    """Whether a process on this machine holds the state's run lock, told without taking it
    (a run starting meanwhile must not find the lock taken): its holder's pid is alive."""
    path = RunLock(state_path).path
    try:
        info = json.loads(path.read_text() or "null")
    except PermissionError:
        return True  # another user's run: cannot tell, so assume it runs
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return False  # released (emptied), or never taken
    if info.get("host") != socket.gethostname():
        return True  # another machine's: cannot tell, so assume it runs
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']}, started {info['started_at']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


class StateStore:
    """The `CheckpointStore` port on an SQLite file."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        self._db: aiosqlite.Connection | None = None
        self._pending: dict[tuple[str, str], Checkpoint] = {}
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._writing = False
        self.on_commit: Callable[[str, float], None] | None = None
        self.run_id: int | None = None
        self._run_lock = RunLock(path)

    def lock(self) -> None:
        self._run_lock.acquire()

    def unlock(self) -> None:
        self._run_lock.release()

    # -- opening -----------------------------------------------------------------------

    async def open(self) -> StateStore:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path)
            await self._db.execute("PRAGMA busy_timeout=5000")
            # Whose file it is comes first: WAL mode would rewrite a foreign file's header.
            version = await self._schema_version()
            await self._db.execute("PRAGMA journal_mode=WAL")
            synchronous = "FULL" if self.durable else "NORMAL"
            await self._db.execute(f"PRAGMA synchronous={synchronous}")
            await self._migrate(version)
        except sqlite3.DatabaseError as exc:
            await self._close_quietly()
            raise StateError(
                f"{self.path} is not a usable tui-connector state database ({exc}); "
                "move it aside, or point --state at another file"
            ) from exc
        except OSError as exc:
            await self._close_quietly()
            raise StateError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        except BaseException:
            await self._close_quietly()
            raise
        return self

    async def _close_quietly(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.close()
            self._db = None

    async def _schema_version(self) -> int:
        """The database's schema version; refuses a newer schema and somebody else's file."""
        db = self._require()
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} was written by a newer tui-connector (schema {version}, "
                f"this one knows {SCHEMA_VERSION}); upgrade tui-connector"
            )
        if version == 0:
            # A non-empty database at version 0 is somebody else's file.
            async with db.execute("SELECT count(*) FROM sqlite_master") as cursor:
                row = await cursor.fetchone()
            if row and row[0]:
                raise StateError(
                    f"{self.path} is an SQLite database but not a tui-connector state; "
                    "point --state at another file"
                )
        return version

    async def _migrate(self, version: int) -> None:
        db = self._require()
        for index in range(version, SCHEMA_VERSION):
            await db.executescript(
                f"BEGIN; {_MIGRATIONS[index]}; PRAGMA user_version={index + 1}; COMMIT;"
            )

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StateError("state database is not open")
        return self._db

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(StateError):  # already reported to the sources that failed
                await self.flush()
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self._close_quietly()

    # -- runs ----------------------------------------------------------------------------

    async def begin_run(self, config_path: str) -> int:
        db = self._require()
        with _database_errors(self.path, "record the run"):
            cursor = await db.execute(
                "INSERT INTO runs (started_at, status, config_path, pid)"
                " VALUES (?, 'running', ?, ?)",
                (_now(), config_path, os.getpid()),
            )
            await db.commit()
        self.run_id = cursor.lastrowid
        self._flusher = asyncio.create_task(self._flush_loop(), name="checkpoint-flusher")
        return int(cursor.lastrowid or 0)

    async def end_run(self, status: str) -> None:
        await self.flush()
        db = self._require()
        await db.execute(
            "UPDATE runs SET finished_at = ?, status = ? WHERE id = ?",
            (_now(), status, self.run_id),
        )
        await db.commit()

    # -- streams -------------------------------------------------------------------------

    async def streams(self, source: str | None = None) -> list[StreamRow]:
        db = self._require()
        query = (
            "SELECT source, partition, cursor, position, status, pages, records, out_dir, "
            "last_error, started_at, updated_at, finished_at, fingerprint, base, mark, "
            "pending_mark, files FROM streams"
        )
        args: tuple[str, ...] = ()
        if source is not None:
            query += " WHERE source = ?"
            args = (source,)
        with _database_errors(self.path, "read the streams"):
            async with db.execute(query + " ORDER BY source, partition", args) as cursor:
                rows = await cursor.fetchall()
        return [
            StreamRow(
                source=r[0],
                partition=r[1],
                cursor=json.loads(r[2]),
                position=r[3],
                status=r[4],
                pages=r[5],
                records=r[6],
                out_dir=r[7],
                last_error=r[8],
                started_at=r[9],
                updated_at=r[10],
                finished_at=r[11],
                fingerprint=r[12],
                base=r[13],
                mark=_loads_or_none(r[14]),
                pending_mark=_loads_or_none(r[15]),
                files=r[16],
            )
            for r in rows
        ]

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
    ) -> None:
        """Create (or reset) a stream's row at its starting position, committed at once.

        `base` is where this run's pages start in the lake, `mark` the high-water mark it
        starts from, `pages`, `records` and `files` what the lake already holds (all carried
        over by an incremental run; zero and none when starting over).
        """
        self._pending.pop((source, partition), None)  # an older state must not overwrite it
        db = self._require()
        now = _now()
        with _database_errors(self.path, "start the stream"):
            await db.execute(
                "INSERT OR REPLACE INTO streams (source, partition, cursor, position, status,"
                " pages, records, out_dir, run_id, started_at, updated_at, fingerprint, base,"
                " mark, pending_mark, files)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    source,
                    partition,
                    json.dumps(cursor),
                    base,
                    pages,
                    records,
                    out_dir,
                    self.run_id,
                    now,
                    now,
                    fingerprint,
                    base,
                    _json_or_none(mark),
                    files,
                ),
            )
            await db.commit()

    async def delete_streams(self, sources: list[str] | None = None) -> int:
        db = self._require()
        with _database_errors(self.path, "delete the streams"):
            if sources is None:
                cursor = await db.execute("DELETE FROM streams")
            else:
                marks = ",".join("?" * len(sources))
                cursor = await db.execute(f"DELETE FROM streams WHERE source IN ({marks})", sources)
            await db.commit()
        return cursor.rowcount

    async def set_files(self, source: str, partition: str, files: int) -> None:
        """Set how many page files a stream's checkpoint counts, committed at once: a
        compaction that merges files lowers it before any file goes (see sinks.compaction)."""
        db = self._require()
        with _database_errors(self.path, "count the stream's files"):
            await db.execute(
                "UPDATE streams SET files = ? WHERE source = ? AND partition = ?",
                (files, source, partition),
            )
            await db.commit()

    # -- checkpoints (group commit) --------------------------------------------------------

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Queue a stream's newest state. Call only after the page's file is complete."""
        if self._failure is not None:
            raise StateError(f"checkpoints cannot be written: {self._failure}")
        self._pending[(checkpoint.source, checkpoint.partition)] = checkpoint
        self._flushed.clear()
        if len(self._pending) >= GROUP_COMMIT_SIZE:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until every queued checkpoint is committed."""
        if self._failure is not None:
            raise StateError(f"checkpoints cannot be written: {self._failure}")
        if self._flusher is None or self._flusher.done():
            await self._write(self._take())
            return
        while (self._pending or self._writing) and self._failure is None:
            self._wake.set()
            self._flushed.clear()
            await self._flushed.wait()
        if self._failure is not None:
            raise StateError(f"checkpoints cannot be written: {self._failure}")

    def _take(self) -> list[Checkpoint]:
        batch = list(self._pending.values())
        self._pending.clear()
        return batch

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), GROUP_COMMIT_INTERVAL)
            self._wake.clear()
            batch = self._take()
            if batch:
                self._writing = True
                try:
                    await self._write(batch)
                except StateError as exc:
                    self._failure = exc
                    self._flushed.set()
                    return
                finally:
                    self._writing = False
            self._flushed.set()

    async def _write(self, batch: list[Checkpoint]) -> None:
        if not batch:
            return
        db = self._require()
        now = _now()
        with _database_errors(self.path, "commit checkpoints"):
            await self._write_batch(db, batch, now)
        if self.on_commit is not None:
            committed_at = time.monotonic()
            for source in {c.source for c in batch}:
                self.on_commit(source, committed_at)

    async def _write_batch(
        self, db: aiosqlite.Connection, batch: list[Checkpoint], now: str
    ) -> None:
        await db.executemany(
            "UPDATE streams SET cursor = ?, position = ?, status = ?, pages = ?, records = ?,"
            " files = ?, last_error = ?, mark = ?, pending_mark = ?, updated_at = ?, run_id = ?,"
            " finished_at = CASE WHEN ? IN ('done', 'failed', 'stopped') THEN ? ELSE NULL END"
            " WHERE source = ? AND partition = ?",
            [
                (
                    json.dumps(c.cursor),
                    c.position,
                    c.status,
                    c.pages,
                    c.records,
                    c.files,
                    c.last_error,
                    _json_or_none(c.mark),
                    _json_or_none(c.pending_mark),
                    now,
                    self.run_id,
                    c.status,
                    now,
                    c.source,
                    c.partition,
                )
                for c in batch
            ],
        )
        failpoints.reached("state.before_commit")
        await db.commit()
