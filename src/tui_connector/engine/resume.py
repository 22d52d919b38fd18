"""Where a stream's run begins: from its checkpoint (after removing what the checkpoint does
not cover from the lake), or from scratch (after committing the reset checkpoint), or not at
all (it is complete). Refuses a checkpoint made for another request or a lake missing files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tui_connector.config import SourceSpec
from tui_connector.engine.failures import StreamFailed
from tui_connector.engine.stream import Start, StreamRun, StreamServices
from tui_connector.incremental import HighWater
from tui_connector.paginate import PaginationError, ParallelPages, paginator_for
from tui_connector.partitions import Partition, stream_spec
from tui_connector.sinks import Sink, StreamKey
from tui_connector.state import StreamRow
from tui_connector.telemetry import StreamStats


def source_fingerprint(spec: SourceSpec, sink: Sink) -> str:
    """What a checkpoint is valid for: the request, its pagination, and where pages go.
    Stored with every checkpoint: changing what goes in (or how it is hashed) makes every
    existing state database refuse to resume."""
    identity: dict[str, Any] = {
        "url": spec.url,
        "method": spec.method,
        "params": dict(spec.params),
        "body": spec.body,
        "records": spec.records,
        "pagination": spec.pagination.model_dump(mode="json"),
        "lake": sink.identity(spec.name),
    }
    if spec.incremental is not None:
        identity["incremental"] = spec.incremental.model_dump(mode="json", exclude={"initial"})
    encoded = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


@dataclass(frozen=True)
class Resumption:
    """How one stream of a source starts in this run."""

    partition: Partition
    row: StreamRow | None  # its checkpoint, if it has one
    fingerprint: str  # the source's, for this run's config
    full_refresh: bool  # start over, whatever the checkpoint says


async def open_stream(
    services: StreamServices, how: Resumption, stats: StreamStats
) -> StreamRun | None:
    """The stream's run, ready to go (its `fresh` says whether it starts over); None when
    its checkpoint says it is complete. Raises StreamFailed."""
    spec, partition, row = services.spec, how.partition, how.row
    if row is None or how.full_refresh:
        row = None
    else:
        saved_source, _, saved_partition = row.fingerprint.partition(":")
        if saved_source not in ("", how.fingerprint):
            raise services.failures.stream_failed(
                f"sources.{spec.name} changed since its checkpoint (url, params, body, "
                "records, pagination, incremental or the lake directory): resuming would "
                f"mix two page layouts. Run with --full-refresh, or `tui-connector reset "
                f"{spec.name}`, to start over",
                fatal=True,
            )
        # A date window whose end moved with the present asks for more: fetch it again.
        if saved_partition not in ("", partition.identity()):
            row = None
    if row is not None and row.status == "done" and not await _done_in_this_replace(services, row):
        row = None  # each run of a `replace` source fetches it all again, staged apart
    if row is not None:
        await _check_lake(services, row)
        if row.status == "done" and spec.incremental is None:
            services.stats.pages += row.pages
            services.stats.records += row.records
            stats.pages, stats.records = row.pages, row.records
            stats.position = "already complete"
            return None

    resume = row is not None and row.status != "done"
    mark: Any = None
    pending: Any = None
    base = pages = records = files = 0
    if row is not None:
        mark, base, pages, records = row.mark, row.base, row.pages, row.records
        files = row.files or 0
        if resume:
            pending = row.pending_mark
        else:  # a new incremental run: its pages go after the earlier runs' pages
            base = row.position
    incremental = spec.incremental
    high_water = HighWater(incremental, mark, pending) if incremental is not None else None
    since = high_water.since if high_water is not None else None
    if since is not None:
        services.stats.high_water = services.redact(str(since))
    try:
        paginator = paginator_for(stream_spec(spec, partition, since))
    except PaginationError as exc:  # the body template has no room for the value
        event = services.failures.exception(exc)
        raise StreamFailed(event.text, event, fatal=True) from None
    services.stats.pages += pages
    services.stats.records += records
    stats.pages, stats.records = pages, records

    key = StreamKey(spec.name, partition.key)
    if resume:
        assert row is not None
        start = Start(row.cursor, row.position, base, mark, high_water, pages, records, files)
        await services.sink.remove_uncovered(
            key, keep_below=row.position, also_keep=done_above(row), batches=files
        )
        return StreamRun(services, partition, stats, paginator, start, fresh=False)
    start = Start(paginator.start(), base, base, mark, high_water, pages, records, files)
    # The reset checkpoint is committed before any batch goes: a crash in between leaves a
    # stream that starts over, never a "done" stream with an emptied lake.
    await services.store.start_stream(
        key.source,
        key.partition,
        start.cursor,
        services.sink.location(key),
        f"{how.fingerprint}:{partition.identity()}",
        base=base,
        mark=mark,
        pages=pages,
        records=records,
        files=files,
    )
    await services.sink.remove_uncovered(key, keep_below=base, batches=files)
    return StreamRun(services, partition, stats, paginator, start, fresh=True)


async def _done_in_this_replace(services: StreamServices, row: StreamRow) -> bool:
    """Whether a complete stream stays complete. With no replace staged, a `replace` source
    starts over. With one staged (a `replace` or a full refresh that a kill interrupted),
    only the streams whose batches are in the staged table are complete: one that never
    started in that run still has the checkpoint of the run before, whose rows the swap
    would drop."""
    spec = services.spec
    if not await services.sink.replace_pending(spec.name):
        return spec.write != "replace"
    key = StreamKey(spec.name, row.partition)
    return await services.sink.count_batches(key, row.position, done_above(row)) >= (row.files or 0)


def done_above(row: StreamRow) -> frozenset[int]:
    """The lake positions of a parallel stream's pages committed above its checkpoint's
    position (the low-water mark)."""
    return frozenset(row.base + index for index in ParallelPages.done_in(row.cursor))


async def _check_lake(services: StreamServices, row: StreamRow) -> None:
    """Refuse to resume, or to call done, a stream whose committed page files are gone:
    files deleted or moved behind the state's back would otherwise be lost silently."""
    if not row.files:
        return
    key = StreamKey(services.spec.name, row.partition)
    found = await services.sink.count_batches(key, row.position, done_above(row))
    if found >= row.files:
        return
    if services.spec.format == "delta":  # a table counts the batches it committed
        missing = (
            f"holds {found} of the {row.files} batches its checkpoint committed: the table "
            "was removed or recreated behind the state's back. Put it back"
        )
    else:
        missing = (
            f"holds {found} of the {row.files} page files its checkpoint committed: lake files "
            "were deleted or moved behind the state's back. Put them back"
        )
    raise services.failures.stream_failed(
        f"{services.sink.location(key)} {missing}, or fetch the stream again with "
        f"`tui-connector reset {services.spec.name}` (or --full-refresh) and a new run",
        fatal=False,
    )
