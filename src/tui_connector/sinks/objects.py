"""Lake files on an object store (S3 and compatible stores, GCS, Azure), through obstore.

An object PUT is atomic: a page file's key appears complete or not at all, so no temporary
names are needed. As on local disk, the checkpoint that covers a batch is committed only after
its PUT returned, and a resumed stream lists its prefix and deletes the files its checkpoint
does not cover before it fetches anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tui_connector import failpoints
from tui_connector.sinks import LakeError, LakeInfo, StagedPage, StreamKey, lake_info
from tui_connector.sinks.compaction import ObjectFiles, Settling
from tui_connector.sinks.files import FileFormat, StagesByFormat, covered, page_name, positions
from tui_connector.sinks.local import writer_threads
from tui_connector.sinks.storage import open_store, store_reason


class ObjectFileSink(StagesByFormat):
    """The `Sink` port as files in one of the file formats under an object-store URL."""

    def __init__(self, url: str, options: Mapping[str, str], format: FileFormat) -> None:
        self.url = url.rstrip("/")
        self.format = format
        try:
            self.store = open_store(self.url, options)
        except ValueError as exc:
            raise LakeError(f"cannot open {self.url}: {exc}") from None
        self.bytes_written: dict[str, int] = {}
        self._encoders: ThreadPoolExecutor | None = None
        # The PUTs under way, by stream: a resume of the stream waits for them before it
        # lists what is there, so that none lands after its clean-up.
        self._puts: dict[StreamKey, set[asyncio.Task[None]]] = {}
        self._settling = Settling(ObjectFiles(self.url, self.store))

    def location(self, stream: StreamKey) -> str:
        return f"{self.url}/{stream.source}/{stream.partition}"

    def identity(self, source: str) -> str:
        return f"{self.url}/{source}"

    def info(self, source: str) -> LakeInfo:
        written = self.bytes_written.get(source, 0)
        columns = self.format.columns(source)
        return lake_info(self.format.name, self.identity(source), written, columns=columns)

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
            return False
        if self.format.encodes_in_thread:
            if self._encoders is None:
                self._encoders = writer_threads()
            loop = asyncio.get_running_loop()
            chunks = await loop.run_in_executor(self._encoders, self.format.encode, stream, pages)
        else:
            chunks = self.format.encode(stream, pages)
        data = b"".join(chunks)
        failpoints.reached("lake.before_rename")
        if abandoned():
            return False
        key = self._key(stream, position)
        put = asyncio.ensure_future(self._put(key, data))
        running = self._puts.setdefault(stream, set())
        running.add(put)
        put.add_done_callback(running.discard)
        await asyncio.shield(put)
        failpoints.reached("lake.after_rename")
        self.bytes_written[stream.source] = self.bytes_written.get(stream.source, 0) + len(data)
        return True

    async def _put(self, key: str, data: bytes) -> None:
        import obstore

        try:
            await obstore.put_async(self.store, key, data)
        except Exception as exc:
            raise LakeError(f"cannot write {self.url}/{key}: {store_reason(exc)}") from None

    async def count_batches(
        self, stream: StreamKey, below: int, also: frozenset[int] = frozenset()
    ) -> int:
        await self._settling.settle(stream.source)
        names = await self._names(stream)
        return sum(1 for _, position in names if covered(position, below, also))

    async def remove_uncovered(
        self,
        stream: StreamKey,
        keep_below: int = 0,
        also_keep: frozenset[int] = frozenset(),
        batches: int = 0,
    ) -> int:
        import obstore

        puts = self._puts.get(stream)
        if puts:
            await asyncio.wait(set(puts))
        await self._settling.settle(stream.source)
        prefix = self._prefix(stream)
        doomed = [
            prefix + name
            for name, position in await self._names(stream)
            if not covered(position, keep_below, also_keep)
        ]
        if doomed:
            try:
                await obstore.delete_async(self.store, doomed)
            except Exception as exc:
                raise LakeError(
                    f"cannot clean {self.location(stream)}: {store_reason(exc)}"
                ) from None
        return len(doomed)

    async def replace_pending(self, source: str) -> bool:
        return False  # files are replaced in place, stream by stream: nothing is staged apart

    async def finish_source(self, source: str) -> None:
        """Nothing is staged apart: every batch is in place as soon as it is written."""

    async def committed_records(self, source: str) -> AsyncIterator[list[Any]]:
        import obstore

        await self._settling.settle(source)
        keys = sorted(await self._keys(f"{source}/"))
        for key in keys:
            name = key.rsplit("/", 1)[-1]
            if not positions([name], self.format.suffix):
                continue
            try:
                data = await (await obstore.get_async(self.store, key)).bytes_async()
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise LakeError(f"cannot read {self.url}/{key}: {store_reason(exc)}") from None
            yield self.format.decode(bytes(data))

    async def aclose(self) -> None:
        encoders, self._encoders = self._encoders, None
        if encoders is not None:
            await asyncio.to_thread(encoders.shutdown)
        self._settling.forget()

    def _prefix(self, stream: StreamKey) -> str:
        return f"{stream.source}/{stream.partition}/"

    def _key(self, stream: StreamKey, position: int) -> str:
        return self._prefix(stream) + page_name(position, self.format.suffix)

    async def _names(self, stream: StreamKey) -> list[tuple[str, int]]:
        prefix = self._prefix(stream)
        keys = await self._keys(prefix)
        return positions((key[len(prefix) :] for key in keys), self.format.suffix)

    async def _keys(self, prefix: str) -> list[str]:
        import obstore

        try:
            return [
                meta["path"] async for chunk in obstore.list(self.store, prefix) for meta in chunk
            ]
        except Exception as exc:
            raise LakeError(f"cannot list {self.url}/{prefix}: {store_reason(exc)}") from None
