"""`tui-connector compact`: each source's lake put in shape while no run writes it.

It holds the state database's run lock throughout (a run holding it is refused with who holds
it), so no run of that state writes meanwhile; a Delta table is also locked against runs of
other states (sinks.locks). Delta tables are optimized and vacuumed (sinks.maintenance). Files
are merged stream by stream (sinks.compaction); each stream's checkpoint counts its files
truly after the merge, lowered before any file goes, so a resume never finds fewer files than
its checkpoint counts."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from tui_connector.config import ConfigError, LakeSettings, lake_settings_of
from tui_connector.config.lake import is_object_store, missing_extra
from tui_connector.engine.resume import done_above
from tui_connector.sinks import LakeError
from tui_connector.sinks.compaction import (
    DEFAULT_TARGET_SIZE,
    LakeFiles,
    finish_interrupted,
    open_files,
    prepare,
    publish,
)
from tui_connector.sinks.maintenance import (
    RetentionRefused,
    lake_status,
    parse_retention,
    parse_size,
)
from tui_connector.sinks.storage import store_reason
from tui_connector.state import StreamRow
from tui_connector.state.sqlite import RunLock, StateStore


@dataclass(frozen=True)
class CompactOptions:
    retention_hours: int | None = None  # Delta vacuum; None: the table's own
    force: bool = False  # a retention shorter than the table's
    target_size: int | None = None  # bytes; None: Delta's own, DEFAULT_TARGET_SIZE for files


def compact_request(
    config: str, sources: list[str], *, retention: str | None, force: bool, size: str | None
) -> tuple[LakeSettings, list[str], CompactOptions]:
    """What `compact` is asked: the config's lake, the sources (all when none are named) and
    the options. Raises ValueError saying what is wrong."""
    if not Path(config).exists():
        raise ValueError(f"{config} not found; pass the config of the sources with --config")
    try:
        settings = lake_settings_of(config)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    names = sources or list(settings.formats)
    unknown = [name for name in names if name not in settings.formats]
    if unknown:
        known = ", ".join(settings.formats)
        raise ValueError(f"unknown source {', '.join(unknown)}; the config defines: {known}")
    options = CompactOptions(
        retention_hours=parse_retention(retention) if retention is not None else None,
        force=force,
        target_size=parse_size(size) if size is not None else None,
    )
    return settings, names, options


def lakes_of(config: str, sources: list[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The lake of each source, as `status` shows it: read from the config's lake settings
    alone (no source secrets needed), a Delta table's version read, never written. Why not,
    when the config's lake settings are wrong."""
    try:
        settings = lake_settings_of(config)
    except ConfigError as exc:
        return {}, str(exc)
    formats = {source: settings.formats[source] for source in sources if source in settings.formats}
    found = lake_status(settings.lake, settings.storage, formats)
    return {source: dataclasses.asdict(lake) for source, lake in found.items()}, None


@dataclass(frozen=True)
class Compacted:
    """What compacting a source did, in a line."""

    source: str
    text: str
    failed: bool = False


async def compact_lake(
    settings: LakeSettings,
    state_path: Path,
    sources: Sequence[str],
    options: CompactOptions,
    *,
    out: str | None = None,
) -> list[Compacted]:
    """Compact the sources' lakes (`out` overrides the config's). Raises StateLockedError
    while a run holds the state, StateError, and RetentionRefused before anything changes."""
    lake = settings.lake if out is None else _absolute(out)
    lock = RunLock(state_path)
    lock.acquire()
    try:
        store = StateStore(state_path)
        await store.open()
        try:
            rows = await store.streams()
            work = _Compaction(settings, lake, state_path, store, options)
            await work.check_retentions([s for s in sources if settings.formats[s] == "delta"])
            return [await work.source(source, rows) for source in sources]
        finally:
            await store.close()
    finally:
        lock.release()


def _absolute(lake: str) -> str:
    """A lake given on the command line: a URL as it is, a directory made absolute."""
    return lake if is_object_store(lake) else str(Path(lake).resolve())


class _Compaction:
    def __init__(
        self,
        settings: LakeSettings,
        lake: str,
        state_path: Path,
        store: StateStore,
        options: CompactOptions,
    ) -> None:
        self.lake = lake
        self.storage: Mapping[str, str] = settings.storage
        self.formats = settings.formats
        self.state_path = state_path
        self.store = store
        self.options = options
        self._files: LakeFiles | None = None
        self._retentions: dict[str, int] = {}

    async def source(self, source: str, rows: list[StreamRow]) -> Compacted:
        format = self.formats[source]
        missing = missing_extra(format, self.lake)
        if missing is not None:
            return Compacted(source, f"{source}: {missing}", failed=True)
        try:
            if format == "delta":
                text = await asyncio.to_thread(self._delta, source)
            else:
                text = await self._files_of(source, format, [r for r in rows if r.source == source])
        except LakeError as exc:
            return Compacted(source, f"{source}: {exc}", failed=True)
        except OSError as exc:
            return Compacted(source, f"{source}: cannot compact: {exc}", failed=True)
        return Compacted(source, f"{source}: {format}: {text}")

    # -- Delta -------------------------------------------------------------------------------

    async def check_retentions(self, sources: list[str]) -> None:
        """Every table's retention, before any table changes: one refused refuses them all.
        (A table that cannot be read fails its own source later.)"""
        if sources and missing_extra("delta", self.lake) is None:
            for source in sources:
                try:
                    self._retentions[source] = await asyncio.to_thread(self._retention, source)
                except RetentionRefused:
                    raise
                except LakeError:
                    continue

    def _retention(self, source: str) -> int:
        from tui_connector.sinks import maintenance

        uri = maintenance.table_uri(self.lake, source)
        table = maintenance.open_table(uri, maintenance.table_options(self.lake, self.storage))
        hours, force = self.options.retention_hours, self.options.force
        if table is None:
            return hours or maintenance.DEFAULT_RETENTION_HOURS
        return maintenance.vacuum_retention(table, uri, hours, force)

    def _delta(self, source: str) -> str:
        from tui_connector.sinks import maintenance
        from tui_connector.sinks.locks import TableLock, run_owner

        uri = maintenance.table_uri(self.lake, source)
        options = maintenance.table_options(self.lake, self.storage)
        lock = TableLock(self.lake, source, options, run_owner(self.state_path))
        lock.acquire()
        try:
            table = maintenance.open_table(uri, options)
            if table is None:
                return f"no table at {uri} yet: nothing to compact"
            if source not in self._retentions:
                self._retentions[source] = self._retention(source)
            done = maintenance.compact_table(
                table,
                uri,
                retention_hours=self._retentions[source],
                force=self.options.force,
                target_size=self.options.target_size,
            )
        finally:
            lock.release()
        return done.describe()

    # -- files -------------------------------------------------------------------------------

    async def _files_of(self, source: str, format: str, rows: list[StreamRow]) -> str:
        if not rows:
            return "nothing has run yet: nothing to compact"
        files = await self._open_files()
        where = f"{self.lake}/{source}"
        await _in_thread(where, finish_interrupted, files, source)
        suffix = f".{format}"
        target = self.options.target_size or DEFAULT_TARGET_SIZE
        before = after = 0
        notes = []
        for row in rows:
            directory = f"{source}/{row.partition}"
            if not self._is_where(row.out_dir, directory):
                notes.append(
                    f"{row.partition}: its checkpoint is for {row.out_dir}: skipped (pass the "
                    "lake it ran with as --out)"
                )
                continue
            below, also = row.position, done_above(row)
            compaction = await _in_thread(
                where, prepare, files, directory, suffix, below, also, target, row.files
            )
            if row.files is not None and compaction.found < row.files:
                notes.append(
                    f"{row.partition}: holds {compaction.found} of the {row.files} page files "
                    "its checkpoint committed: skipped (see `tui-connector run`'s message)"
                )
                continue
            before += compaction.found
            after += compaction.files_after
            if not compaction.merges:
                continue
            if row.files is not None:
                await self.store.set_files(source, row.partition, compaction.files_after)
            await _in_thread(where, publish, files, source, compaction)
        text = f"{before} files → {after}" if after < before else f"{before} files, none to merge"
        return "; ".join([text, *notes])

    async def _open_files(self) -> LakeFiles:
        if self._files is None:
            try:
                self._files = open_files(self.lake, self.storage)
            except ValueError as exc:
                raise LakeError(f"cannot open {self.lake}: {exc}") from None
        return self._files

    def _is_where(self, out_dir: str, directory: str) -> bool:
        """Whether a checkpoint's lake location is the stream's directory in this lake."""
        if is_object_store(self.lake):
            return out_dir.rstrip("/") == f"{self.lake}/{directory}"
        return Path(out_dir).resolve() == (Path(self.lake) / directory).resolve()


_T = TypeVar("_T")
_P = ParamSpec("_P")


async def _in_thread(where: str, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """File work off the event loop; a failure of the disk or the store becomes a LakeError
    that says what failed."""
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except LakeError:
        raise
    except OSError as exc:
        raise LakeError(f"cannot compact {where}: {exc.strerror or exc}") from None
    except Exception as exc:  # the store's own errors, a file pyarrow cannot read
        raise LakeError(f"cannot compact {where}: {store_reason(exc)}") from None
