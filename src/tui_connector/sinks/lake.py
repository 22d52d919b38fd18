"""The lake a run writes: each source's sink, chosen by its format and where `out:` points.

Sources of one file format share one sink (files on local disk or under an object-store URL);
each Delta source has its own table. The engine sees one `Sink`: this router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tui_connector.config import LoadedConfig, SourceSpec
from tui_connector.config.lake import is_object_store, missing_extra
from tui_connector.sinks import LakeError, LakeInfo, Sink, StagedPage, StreamKey
from tui_connector.sinks.files import FileFormat
from tui_connector.sinks.jsonl import JSON_LINES, stage_lines
from tui_connector.sinks.local import LocalFileSink


def file_format(name: str) -> FileFormat:
    if name == "parquet":
        from tui_connector.sinks.parquet import ParquetFormat

        return ParquetFormat()
    return JSON_LINES


def open_lake(
    config: LoadedConfig,
    *,
    out: str | None = None,
    full_refresh: bool = False,
    owner: str = "",
) -> Sink:
    """The sink of a run: `out` overrides the config's location; `owner` names the run to
    another that finds its tables locked. Raises LakeError when a store cannot be opened (an
    option it refuses, or a library it needs is not installed)."""
    lake = out if out is not None else config.lake or str(config.out)
    fsync = config.model.fsync
    shared: dict[str, Sink] = {}
    routes: dict[str, Sink] = {}
    for name, spec in config.sources.items():
        missing = missing_extra(spec.format, lake)  # `out` may name a store the config did not
        if missing is not None:
            raise LakeError(f"{lake}: {missing}")
        if spec.format == "delta":
            from tui_connector.sinks.delta import MAX_COMMIT_GAP, DeltaTableSink

            routes[name] = DeltaTableSink(
                name,
                lake,
                config.storage,
                write=spec.write,
                primary_key=spec.primary_key or (),
                full_refresh=full_refresh,
                owner=owner,
                commit_gap=min(MAX_COMMIT_GAP, config.model.commit_interval / 2),
            )
            continue
        if spec.format not in shared:
            shared[spec.format] = _file_sink(lake, config.storage, spec, fsync)
        routes[name] = shared[spec.format]
    if (
        len(shared) == 1
        and len(routes) == len(config.sources)
        and len(set(map(id, routes.values()))) == 1
    ):
        return next(iter(shared.values()))  # one sink for every source: nothing to route
    return Lake(routes)


def _file_sink(lake: str, storage: Mapping[str, str], spec: SourceSpec, fsync: bool) -> Sink:
    format = file_format(spec.format)
    if is_object_store(lake):
        from tui_connector.sinks.objects import ObjectFileSink

        return ObjectFileSink(lake, storage, format)
    return LocalFileSink(Path(lake), format, fsync=fsync)


class Lake:
    """The `Sink` port over each source's own sink."""

    def __init__(self, routes: Mapping[str, Sink]) -> None:
        self._routes = dict(routes)

    def stage(self, records: Sequence[Any], stream: StreamKey | None = None) -> StagedPage:
        if stream is None:
            return stage_lines(records)
        return self.sink_of(stream.source).stage(records, stream)

    def sink_of(self, source: str) -> Sink:
        try:
            return self._routes[source]
        except KeyError:
            raise LakeError(f"source {source!r} is not part of this run's lake") from None

    async def write_batch(
        self,
        stream: StreamKey,
        position: int,
        pages: Sequence[StagedPage],
        abandoned: Callable[[], bool],
        *,
        last: bool = False,
    ) -> bool:
        sink = self.sink_of(stream.source)
        return await sink.write_batch(stream, position, pages, abandoned, last=last)

    async def count_batches(
        self, stream: StreamKey, below: int, also: frozenset[int] = frozenset()
    ) -> int:
        return await self.sink_of(stream.source).count_batches(stream, below, also)

    async def remove_uncovered(
        self,
        stream: StreamKey,
        keep_below: int,
        also_keep: frozenset[int] = frozenset(),
        batches: int = 0,
    ) -> int:
        sink = self.sink_of(stream.source)
        return await sink.remove_uncovered(stream, keep_below, also_keep, batches)

    async def replace_pending(self, source: str) -> bool:
        return await self.sink_of(source).replace_pending(source)

    async def finish_source(self, source: str) -> None:
        await self.sink_of(source).finish_source(source)

    def info(self, source: str) -> LakeInfo:
        return self.sink_of(source).info(source)

    def committed_records(self, source: str) -> AsyncIterator[list[Any]]:
        return self.sink_of(source).committed_records(source)

    def location(self, stream: StreamKey) -> str:
        return self.sink_of(stream.source).location(stream)

    def identity(self, source: str) -> str:
        return self.sink_of(source).identity(source)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for sink in self._routes.values():
            if id(sink) not in seen:
                seen.add(id(sink))
                await sink.aclose()
