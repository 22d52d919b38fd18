"""A source's records as one Delta Lake table at `<out>/<source>`, written with delta-rs.

Every row carries `_tc_partition` (its stream) and `_tc_page` (its page's lake position), so
a stream's rows can be found, replaced or removed. Exactly once, through a crash anywhere:

- Every batch is one Delta commit carrying a transaction action (app id = the stream, version
  = the batch's sequence number: the count of batches the stream has written). Delta's log
  makes the commit atomic; the SQLite checkpoint that covers the batch is committed after it.
- A crash between the two leaves the table a batch ahead of the checkpoint. A resumed stream
  reads its version back from the table: ahead of the checkpoint's count, it deletes the rows
  the checkpoint does not cover in one commit that sets the version back; equal, there is
  nothing to do. Fetched again, those pages land once.
- The streams of a source share the table: batches that wait for the table while a commit is
  under way go in the next commit together (a transaction action each), instead of racing.
- `write: replace` (and `--full-refresh`) writes the run into a staging table beside the lake
  (`<out>/_tc_staging/<source>`) and swaps it in with one overwrite commit when every stream is
  complete: readers see the old rows or the complete new set, never a mix.
- `write: merge` upserts every batch by the primary key (a MERGE commit); a batch applied twice
  changes nothing, so a resume only has to set the stream's version back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import TableNotFoundError

from tui_connector import failpoints
from tui_connector.sinks import LakeError, LakeInfo, StagedPage, StreamKey, lake_info
from tui_connector.sinks.arrow_schema import TableSchema, to_records
from tui_connector.sinks.dictionaries import distinct_columns
from tui_connector.sinks.jsonl import stage_lines
from tui_connector.sinks.local import writer_threads
from tui_connector.sinks.locks import TableLock
from tui_connector.sinks.storage import delta_options, open_store, store_reason

# A commit costs delta-rs about 10 ms of CPU whatever it holds (measured: 900 rows 10.4 ms,
# 9,000 rows 12.2 ms). A source's streams close their batches at their own instants, so
# without a gap a fast run made a commit of one or two batches every few milliseconds: 388
# commits for 564 batches, twice the CPU of JSON Lines. With commits 0.5 s apart (or once
# COMMIT_ROWS wait, which keeps a fast run's queue from holding too much memory): 50-70.
MAX_COMMIT_GAP = 0.5
COMMIT_ROWS = 50_000

PARTITION_COLUMN = "_tc_partition"
PAGE_COLUMN = "_tc_page"
STAGING = "_tc_staging"


def app_id(stream: StreamKey) -> str:
    """The transaction app id of a stream's batches in its source's table."""
    return f"tui-connector/{stream.partition}"


def writer_properties(rows: pa.Table) -> WriterProperties:
    """delta-rs's writer settings for a batch: its own (Snappy, dictionaries everywhere) but no
    dictionary for columns of distinct values (see `dictionaries`)."""
    plain = ColumnProperties(dictionary_enabled=False)
    # Given properties, delta-rs writes uncompressed unless told: its default is named here.
    return WriterProperties(
        compression="SNAPPY",
        column_properties=dict.fromkeys(distinct_columns(rows), plain) or None,
    )


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def uncovered_predicate(partition: str, keep_below: int, also_keep: frozenset[int]) -> str:
    """The rows of a stream that a checkpoint at `keep_below` (with the parallel pages
    `also_keep` done above it) does not cover."""
    predicate = f"{PARTITION_COLUMN} = {_quoted(partition)} AND {PAGE_COLUMN} >= {keep_below}"
    if also_keep:
        kept = ", ".join(str(position) for position in sorted(also_keep))
        predicate += f" AND {PAGE_COLUMN} NOT IN ({kept})"
    return predicate


@dataclass
class _Pending:
    """A converted batch waiting for the table's next commit."""

    stream: StreamKey
    version: int
    rows: pa.Table
    abandoned: Callable[[], bool]
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class DeltaTableSink:
    """The `Sink` port for one source: its Delta table, and its staging table when it
    replaces."""

    def __init__(
        self,
        source: str,
        lake: str,
        options: Mapping[str, str],
        *,
        write: str = "append",
        primary_key: Sequence[str] = (),
        full_refresh: bool = False,
        owner: str = "",
        commit_gap: float = MAX_COMMIT_GAP,
    ) -> None:
        """`commit_gap`: the least time between two commits' starts, unless many rows wait
        (about half the config's commit interval: batches closing meanwhile join the next)."""
        self.source = source
        self.uri = f"{lake.rstrip('/')}/{source}"
        self.staging_uri = f"{lake.rstrip('/')}/{STAGING}/{source}"
        self.local = "://" not in lake
        self.options = delta_options(options) if not self.local else None
        self._log_store_of: tuple[str, Any] | None = None  # (table URI, its obstore store)
        self.write = write
        self.primary_key = tuple(primary_key)
        self.full_refresh = full_refresh
        self.bytes_written = 0
        self.version: int | None = None
        self._target: str | None = None  # the table this run writes, once decided
        self._pending_replace = False  # a staged replace from an earlier run awaits its swap
        self._opening = asyncio.Lock()
        self._table: DeltaTable | None = None
        self._schema: TableSchema | None = None
        self._versions: dict[str, int] = {}  # the batches each stream has in the table
        self._queue: list[_Pending] = []
        # Streams whose next batch may come soon: their last one for now has not (`last`).
        self._writing: set[str] = set()
        self._committer: asyncio.Task[None] | None = None
        self._commit_gap = commit_gap
        self._last_commit = -math.inf  # when the last commit began (the loop's clock)
        self._queued = asyncio.Event()
        # One commit to the table at a time: two streams' deletes (a resume's clean-up), or a
        # delete and a batch's commit, rewrite the same files and fail as concurrent.
        self._committing = asyncio.Lock()
        self._converters = writer_threads()
        self._lock = TableLock(lake, source, options, owner or f"pid {os.getpid()}")

    # -- where this run writes ---------------------------------------------------------------

    @property
    def staged(self) -> bool:
        return self.write == "replace" or self.full_refresh or self._pending_replace

    async def _open(self) -> DeltaTable | None:
        """Decide once per run where batches go (staging when replacing), check the table is
        one, and read its schema; the table (None while it does not exist yet)."""
        async with self._opening:
            if self._target is None:
                await asyncio.to_thread(self._lock.acquire)
                self._pending_replace = await asyncio.to_thread(self._exists, self.staging_uri)
                if self.staged and not self._pending_replace:
                    await asyncio.to_thread(self._drop, self.staging_uri)
                self._target = self.staging_uri if self.staged else self.uri
                if self._target != self.uri:
                    await asyncio.to_thread(self._check_is_delta, self.uri)
                self._table = await asyncio.to_thread(self._load, self._target)
                known = None
                if self._table is not None:
                    known = pa.schema(self._table.schema().to_arrow())
                    self.version = self._table.version()
                self._schema = TableSchema(known)
            return self._table

    def _exists(self, uri: str) -> bool:
        # Not DeltaTable.is_deltatable: it holds the GIL through its requests to the store,
        # stalling the event loop (and every other thread) until the store answers.
        try:
            DeltaTable(uri, storage_options=self.options)
        except TableNotFoundError:
            return False
        except Exception as exc:
            raise LakeError(f"cannot read {uri}: {store_reason(exc)}") from None
        return True

    def _check_is_delta(self, uri: str) -> None:
        """A place that holds files but no Delta log is someone else's: refuse it. Unless
        a run of this state was killed in the table's first commit (its lock is ours to take
        over) and left only that commit's data files, which no version names: remove them."""
        if not self._holds_files(uri) or self._exists(uri):
            return
        if self._lock.taken_over and all(map(_uncommitted_data, self._paths(uri))):
            self._remove_all(uri)
            return
        raise LakeError(
            f"{uri} holds files but is not a Delta table (no _delta_log): format: "
            "delta writes a table there; move those files, or set another `out:`"
        )

    def _holds_files(self, uri: str) -> bool:
        if self.local:
            return Path(uri).is_dir() and any(Path(uri).iterdir())
        import obstore

        try:
            listing = obstore.list(open_store(uri, self.options or {}), chunk_size=1)
            return any(chunk for chunk in listing)
        except Exception as exc:
            raise LakeError(f"cannot read {uri}: {store_reason(exc)}") from None

    def _paths(self, uri: str) -> list[str]:
        """Every file under `uri`, relative to it."""
        if self.local:
            root = Path(uri)
            return [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()]
        import obstore

        try:
            store = open_store(uri, self.options or {})
            return [meta["path"] for chunk in obstore.list(store) for meta in chunk]
        except Exception as exc:
            raise LakeError(f"cannot read {uri}: {store_reason(exc)}") from None

    def _remove_all(self, uri: str) -> None:
        """Remove every file under `uri`. The log goes first: a removal cut short leaves files
        that are no table, never a table missing its files."""
        if self.local:
            shutil.rmtree(Path(uri) / "_delta_log", ignore_errors=True)
            shutil.rmtree(uri, ignore_errors=True)
            return
        import obstore

        paths = self._paths(uri)
        store = open_store(uri, self.options or {})
        log = [path for path in paths if path.startswith("_delta_log/")]
        rest = [path for path in paths if not path.startswith("_delta_log/")]
        for doomed in (log, rest):
            if doomed:
                obstore.delete(store, doomed)

    def _load(self, uri: str) -> DeltaTable | None:
        self._check_is_delta(uri)
        if not self._exists(uri):
            return None
        try:
            return DeltaTable(uri, storage_options=self.options)
        except Exception as exc:
            raise LakeError(f"cannot open the Delta table {uri}: {store_reason(exc)}") from None

    def _drop(self, uri: str) -> None:
        """Remove a staging table (a replace that starts over)."""
        self._remove_all(uri)
        if self.local:
            with contextlib.suppress(OSError):  # the staging folder, once no table is in it
                Path(uri).parent.rmdir()

    # -- the port -----------------------------------------------------------------------------

    def location(self, stream: StreamKey) -> str:
        return f"{self.uri} ({PARTITION_COLUMN} = {stream.partition!r})"

    def identity(self, source: str) -> str:
        return self.uri

    def info(self, source: str) -> LakeInfo:
        return lake_info(
            "delta", self.uri, self.bytes_written, version=self.version, columns=self._schema
        )

    def stage(self, records: Sequence[Any], stream: StreamKey | None = None) -> StagedPage:
        schema = self._schema  # None until the table is open: its first pages go as JSON lines
        return stage_lines(records) if schema is None else schema.stage(records)

    async def write_batch(
        self,
        stream: StreamKey,
        position: int,
        pages: Sequence[StagedPage],
        abandoned: Callable[[], bool] = lambda: False,
        *,
        last: bool = False,
    ) -> bool:
        if not last:
            self._writing.add(stream.partition)
        if not any(page.records for page in pages):
            if last:
                self._writing.discard(stream.partition)
                self._queued.set()  # the committer may not have to wait for this stream
            return False
        await self._open()
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._converters, self._convert, stream, pages)
        version = self._versions.get(stream.partition, 0) + 1
        pending = _Pending(stream, version, rows, abandoned)
        self._queue.append(pending)
        if last:  # only now: a commit that went before would have gone without this batch
            self._writing.discard(stream.partition)
        self._queued.set()
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_queued())
        if not await asyncio.shield(pending.done):
            return False
        self._versions[stream.partition] = version
        return True

    def _convert(self, stream: StreamKey, pages: Sequence[StagedPage]) -> pa.Table:
        assert self._schema is not None
        table = self._schema.convert([page.payload for page in pages])
        pages_of_rows = [
            pa.repeat(pa.scalar(page.position, pa.int64()), page.records) for page in pages
        ]
        table = table.append_column(
            PARTITION_COLUMN, pa.repeat(pa.scalar(stream.partition), table.num_rows)
        )
        return table.append_column(PAGE_COLUMN, pa.concat_arrays(pages_of_rows))

    async def _commit_queued(self) -> None:
        """Commit what waits, together, until nothing does; a commit starts no sooner than
        the gap after the one before, unless `COMMIT_ROWS` rows wait or no stream may add a
        batch soon (at the end of a run, its streams' last batches wait for no gap)."""
        loop = asyncio.get_running_loop()
        while self._queue:
            while (wait := self._last_commit + self._commit_gap - loop.time()) > 0:
                if not self._writing:
                    break
                if sum(pending.rows.num_rows for pending in self._queue) >= COMMIT_ROWS:
                    break
                self._queued.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), wait)
            self._last_commit = loop.time()
            batch, self._queue = self._queue, []
            live = [pending for pending in batch if not pending.abandoned()]
            for pending in batch:
                if pending not in live:
                    pending.done.set_result(False)
            if not live:
                continue
            try:
                async with self._committing:
                    await asyncio.to_thread(self._commit, live)
            except BaseException as exc:  # a Rust panic is a BaseException too
                error = exc if isinstance(exc, LakeError) else self._error("write", exc)
                for pending in live:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                    raise
                continue
            for pending in live:
                pending.done.set_result(True)

    def _commit(self, batch: list[_Pending]) -> None:
        assert self._target is not None
        rows = pa.concat_tables([pending.rows for pending in batch], promote_options="default")
        if self.primary_key:
            rows = _last_per_key(rows, self.primary_key)
        properties = CommitProperties(
            app_transactions=[Transaction(app_id(p.stream), p.version) for p in batch]
        )
        failpoints.reached("lake.before_rename")
        table = self._table
        if self.write == "merge" and table is not None:
            on = " AND ".join(f"t.`{key}` = s.`{key}`" for key in self.primary_key)
            (
                table.merge(
                    rows,
                    on,
                    source_alias="s",
                    target_alias="t",
                    merge_schema=True,
                    writer_properties=writer_properties(rows),
                    commit_properties=properties,
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        else:
            write_deltalake(
                table if table is not None else self._target,
                rows,
                mode="append",
                schema_mode="merge",
                storage_options=self.options if table is None else None,
                writer_properties=writer_properties(rows),
                commit_properties=properties,
            )
            if table is None:
                self._table = table = DeltaTable(self._target, storage_options=self.options)
        self.version = table.version()
        failpoints.reached("lake.after_rename")
        self.bytes_written += self._added_bytes(self.version)

    def _added_bytes(self, version: int) -> int:
        """What the commit `version` of this run's table stored: the sizes its log entry gives
        the files it added (one small read; the table's whole file list would cost a listing
        of every file at every commit)."""
        assert self._target is not None
        entry = f"_delta_log/{version:020d}.json"
        try:
            if self.local:
                log = (Path(self._target) / entry).read_bytes()
            else:
                import obstore

                log = bytes(obstore.get(self._log_store(), entry).bytes())
            actions = [json.loads(line) for line in log.splitlines() if line.strip()]
            return sum(int(action["add"].get("size", 0)) for action in actions if "add" in action)
        except Exception:  # the commit stands: only the count of bytes shown goes without it
            return 0

    def _log_store(self) -> Any:
        assert self._target is not None
        if self._log_store_of is None or self._log_store_of[0] != self._target:
            self._log_store_of = (self._target, open_store(self._target, self.options or {}))
        return self._log_store_of[1]

    async def count_batches(
        self, stream: StreamKey, below: int, also: frozenset[int] = frozenset()
    ) -> int:
        """The batches the table says the stream committed (its transaction version)."""
        table = await self._open()
        if table is None:
            return 0
        return await asyncio.to_thread(lambda: table.transaction_version(app_id(stream)) or 0)

    async def remove_uncovered(
        self,
        stream: StreamKey,
        keep_below: int = 0,
        also_keep: frozenset[int] = frozenset(),
        batches: int = 0,
    ) -> int:
        while self._committer is not None and not self._committer.done():
            await asyncio.wait({self._committer})
        table = await self._open()
        self._versions[stream.partition] = batches
        if table is None:
            return 0
        ahead = await asyncio.to_thread(lambda: table.transaction_version(app_id(stream)))
        if ahead is None:
            return 0  # every batch commits a version: the table never held this stream
        if ahead <= batches and (keep_below > 0 or ahead == 0):
            return 0  # the table holds exactly what the checkpoint covers
        if self.write == "merge" and keep_below > 0:
            # Upserting a batch again changes nothing: keep counting from the table's count.
            self._versions[stream.partition] = max(ahead, batches)
            return 0
        predicate = uncovered_predicate(stream.partition, keep_below, also_keep)
        properties = CommitProperties(app_transactions=[Transaction(app_id(stream), batches)])
        try:
            async with self._committing:
                metrics = await asyncio.to_thread(
                    table.delete, predicate, commit_properties=properties
                )
                deleted = int(metrics.get("num_deleted_rows", 0))
                if not deleted:  # a delete of nothing commits nothing: set the version back
                    await asyncio.to_thread(self._set_version, table, properties)
        except Exception as exc:
            raise self._error("clean", exc) from None
        self.version = table.version()
        return deleted

    def _set_version(self, table: DeltaTable, properties: CommitProperties) -> None:
        """A commit of no rows that carries the stream's transaction version."""
        nothing = pa.schema(table.schema().to_arrow()).empty_table()
        write_deltalake(table, nothing, mode="append", commit_properties=properties)

    async def replace_pending(self, source: str) -> bool:
        await self._open()
        return self._pending_replace

    async def finish_source(self, source: str) -> None:
        """Swap a staged replace in: one overwrite commit of the table with the staging
        table's rows, carrying every stream's batch count; then drop the staging table."""
        await self._open()
        if not self.staged:
            return
        staging = self._table
        if staging is None:
            staging = await asyncio.to_thread(self._load, self.staging_uri)
        if staging is None:  # the run wrote nothing: the source now has no records
            await asyncio.to_thread(self._replace_with_nothing)
        else:
            await asyncio.to_thread(self._swap, staging)
        await asyncio.to_thread(self._drop, self.staging_uri)
        self._pending_replace = False
        self._target = self.uri
        self._table = await asyncio.to_thread(self._load, self.uri)

    def _swap(self, staging: DeltaTable) -> None:
        partitions = pc.unique(
            staging.to_pyarrow_table(columns=[PARTITION_COLUMN])[PARTITION_COLUMN]
        ).to_pylist()
        transactions = []
        for partition in partitions:
            version = staging.transaction_version(app_id(StreamKey(self.source, partition)))
            if version:
                transactions.append(Transaction(app_id(StreamKey(self.source, partition)), version))
        reader = staging.to_pyarrow_dataset().scanner().to_reader()
        failpoints.reached("lake.before_swap")
        try:
            write_deltalake(
                self.uri,
                reader,
                mode="overwrite",
                schema_mode="overwrite",
                storage_options=self.options,
                commit_properties=CommitProperties(app_transactions=transactions),
            )
        except Exception as exc:
            raise self._error("replace", exc) from None
        table = DeltaTable(self.uri, storage_options=self.options)
        self.version = table.version()

    def _replace_with_nothing(self) -> None:
        table = self._load(self.uri)
        if table is not None:
            table.delete()
            self.version = table.version()

    async def committed_records(self, source: str) -> AsyncIterator[list[Any]]:
        table = await self._open()
        if table is None:
            return
        reader = await asyncio.to_thread(lambda: table.to_pyarrow_dataset().scanner().to_reader())
        while (batch := await asyncio.to_thread(_next_batch, reader)) is not None:
            yield to_records(pa.Table.from_batches([batch]))

    async def aclose(self) -> None:
        while self._committer is not None and not self._committer.done():
            await asyncio.wait({self._committer})
        async with self._opening:  # a next run decides again where it writes
            self._target = self._table = None
            await asyncio.to_thread(self._lock.release)
        with contextlib.suppress(RuntimeError):
            await asyncio.to_thread(self._converters.shutdown)
        self._converters = writer_threads()

    def _error(self, doing: str, exc: BaseException) -> LakeError:
        return LakeError(
            f"cannot {doing} the Delta table {self._target or self.uri}: {store_reason(exc)}"
        )


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _last_per_key(rows: pa.Table, key: Sequence[str]) -> pa.Table:
    """One row per key, the last one (a MERGE refuses a key twice in its source)."""
    if rows.num_rows < 2:
        return rows
    indexed = rows.append_column("__row", pa.array(range(rows.num_rows), pa.int64()))
    last = indexed.group_by(list(key), use_threads=False).aggregate([("__row", "max")])
    keep = pc.sort_indices(last["__row_max"])
    return rows.take(pc.take(last["__row_max"], keep))


# A data file delta-rs writes (part-00000-<uuid>-c000.snappy.parquet, maybe under a partition
# folder), or what is left of an uncommitted log (a temporary commit file, nothing else).
_DELTA_DATA_FILE = re.compile(r"part-\d+-[0-9a-f-]+-c\d+(\.[a-z0-9]+)*\.parquet")


def _uncommitted_data(path: str) -> bool:
    if path.startswith("_delta_log/"):
        return not path.endswith(".json") or "tmp" in path  # no commit: that was checked
    return _DELTA_DATA_FILE.fullmatch(path.rsplit("/", 1)[-1]) is not None
