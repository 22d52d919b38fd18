"""The benchmark's workloads as `sources.yaml` files: sources split into value partitions, each
partition its own dataset on the demo API, so that every stream is independent."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml

Pagination = Literal["cursor", "pages"]


@dataclass(frozen=True)
class StreamSet:
    """`sources` sources of `partitions` streams each; every stream a dataset of
    `pages_per_stream * page_size` records.

    `cursor` pagination is sequential (one request in flight per stream: the next cursor is in
    the response), so a stream is a unit of concurrency. `pages` (page numbers with a total)
    lets tui-connector fetch a stream's pages concurrently once the first page tells the total.
    """

    prefix: str
    sources: int
    partitions: int
    pages_per_stream: int
    page_size: int
    concurrency: int | str | None  # per source: a number, "auto", or None for the default
    pagination: Pagination = "cursor"
    transport: str = "aiohttp"
    max_attempts: int | None = None  # retry.max_attempts; None: the default (5)
    format: str = "jsonl"  # the lake's `format:`
    out: str = "lake"  # the lake's `out:`: beside the config, or an object-store URL
    parallel: bool = True  # `pages`: fetch the pages at once once the total is known
    total_header: str | None = None  # `pages`: the total from this header, not the body

    @property
    def streams(self) -> int:
        return self.sources * self.partitions

    @property
    def records_per_stream(self) -> int:
        return self.pages_per_stream * self.page_size

    @property
    def records(self) -> int:
        return self.streams * self.records_per_stream

    @property
    def requests(self) -> int:
        return self.streams * self.pages_per_stream

    def with_(self, **changes: Any) -> StreamSet:
        return replace(self, **changes)

    def source_names(self) -> list[str]:
        return [f"{self.prefix}{index:02d}" for index in range(self.sources)]

    def datasets(self, source: str) -> list[str]:
        if self.partitions == 1:
            return [source]
        return [f"{source}-p{index:03d}" for index in range(self.partitions)]

    # -- tui-connector ----------------------------------------------------------------------

    def sources_yaml(self, base_url: str) -> str:
        """A config as a user would write it: `out` and `state` beside the file."""
        sources = {name: self._source(base_url, name) for name in self.source_names()}
        config: dict[str, Any] = {"version": 1, "out": self.out, "state": "state.db"}
        if self.format != "jsonl":  # the default
            config["format"] = self.format
        config["sources"] = sources
        return yaml.safe_dump(config, sort_keys=False)

    def write_config(self, directory: Path, base_url: str) -> Path:
        path = directory / "sources.yaml"
        path.write_text(self.sources_yaml(base_url), encoding="utf-8")
        return path

    def _source(self, base_url: str, name: str) -> dict[str, Any]:
        datasets = self.datasets(name)
        route = "cursor" if self.pagination == "cursor" else "pages"
        dataset = "{ds}" if len(datasets) > 1 else datasets[0]
        source: dict[str, Any] = {"url": f"{base_url}/v1/{route}/{dataset}"}
        if self.concurrency is not None:
            source["concurrency"] = self.concurrency
        if self.transport != "aiohttp":  # the default
            source["transport"] = self.transport
        if self.max_attempts is not None:
            source["retry"] = {"max_attempts": self.max_attempts}
        if self.pagination == "cursor":
            source["records"] = "items"
            source["params"] = {"limit": self.page_size, "dataset_size": self.records_per_stream}
            source["pagination"] = {
                "type": "cursor",
                "cursor": "next_cursor",
                "cursor_param": "cursor",
            }
        else:
            source["records"] = "data"
            source["params"] = {"dataset_size": self.records_per_stream}
            total: str | dict[str, str] = "total"
            if self.total_header is not None:
                total = {"header": self.total_header}
            source["pagination"] = {
                "type": "page_number",
                "size_param": "per_page",
                "size": self.page_size,
                "stop": {"total_records": total},
            }
            if not self.parallel:
                source["pagination"]["parallel"] = False
        if len(datasets) > 1:
            source["partitions"] = {"type": "values", "values": datasets, "path": "ds"}
        return source

    # -- the bare loop ------------------------------------------------------------------------

    def bare_streams(self, base_url: str) -> list[dict[str, Any]]:
        """What the bare httpx loop fetches: the same requests as tui-connector makes."""
        if self.pagination != "cursor":
            raise ValueError("the bare loop follows cursors only")
        return [
            {
                "source": name,
                "url": f"{base_url}/v1/cursor/{dataset}",
                "params": {"limit": self.page_size, "dataset_size": self.records_per_stream},
            }
            for name in self.source_names()
            for dataset in self.datasets(name)
        ]


@dataclass(frozen=True)
class Sizes:
    """How big each workload is: the full run, or `--quick` for a smoke check."""

    latency_pages: int  # pages per stream, latency-bound (100 streams x 50 ms)
    httpx_pages: int  # the same with httpx's own pool, which is much slower
    cpu_pages: int  # pages per stream, CPU-bound (50 streams, no latency)
    memory_records: int
    adaptive_pages: int
    peer_records: int  # per dataset, against dlt
    repeats: int  # interleaved repetitions of the noisy, short comparisons
    # Workload 12's runs last a few round trips each, so the machine's noise is a large part
    # of any one of them: more repeats, and medians.
    short_repeats: int
    # The same for workload 2, whose runs swing most with the shared machine's load: the
    # same run took 2.2 to 2.9 s within minutes. Its best of 5 still moved its ratios by 0.1
    # from one full run to the next; more runs let the best of each side come nearer to what
    # an undisturbed run does. (CPU time instead of wall time swings as much.)
    cpu_repeats: int


FULL = Sizes(
    latency_pages=150,
    httpx_pages=20,
    cpu_pages=100,
    memory_records=1_000_000,
    adaptive_pages=2_000,
    peer_records=5_000,
    repeats=3,
    short_repeats=7,
    cpu_repeats=8,
)
QUICK = Sizes(
    latency_pages=10,
    httpx_pages=3,
    cpu_pages=10,
    memory_records=50_000,
    adaptive_pages=200,
    peer_records=500,
    repeats=1,
    short_repeats=1,
    cpu_repeats=1,
)

LATENCY_MS = 50.0


def latency_bound(sizes: Sizes) -> StreamSet:
    """100 streams, one request in flight each, against 50 ms: at most 2000 requests/s."""
    return StreamSet(
        prefix="lat",
        sources=10,
        partitions=10,
        pages_per_stream=sizes.latency_pages,
        page_size=20,
        concurrency=10,
    )


def cpu_bound(sizes: Sizes) -> StreamSet:
    """50 streams with no server latency: the client's own cost per page decides."""
    return StreamSet(
        prefix="cpu",
        sources=5,
        partitions=10,
        pages_per_stream=sizes.cpu_pages,
        page_size=100,
        concurrency=10,
    )


def memory(sizes: Sizes) -> StreamSet:
    """A 1,000,000-record backfill: 10 partitions fetched with parallel pages."""
    partitions = 10
    page_size = 1000
    return StreamSet(
        prefix="mem",
        sources=1,
        partitions=partitions,
        pages_per_stream=sizes.memory_records // (partitions * page_size),
        page_size=page_size,
        concurrency=20,
        pagination="pages",
    )


ADAPTIVE_CAPACITY = 24
ADAPTIVE_SWEEP = (8, 16, 24, 32, 40, 48)


def adaptive(sizes: Sizes, concurrency: int | str) -> StreamSet:
    """One stream of many pages fetched in parallel, against a server that serves
    `ADAPTIVE_CAPACITY` at once, queues half as many more and answers the rest 429."""
    return StreamSet(
        prefix="knee",
        sources=1,
        partitions=1,
        pages_per_stream=sizes.adaptive_pages,
        page_size=20,
        concurrency=concurrency,
        pagination="pages",
        # Far past the knee a page may meet many 429s in a row: a sweep point must finish
        # (slowly) rather than fail, as an operator pushing concurrency would configure it.
        max_attempts=30,
    )


PEER_DATASETS = 10
PEER_PAGE_SIZE = 100


def peer(sizes: Sizes, concurrency: int | None) -> StreamSet:
    """The dataset dlt pulls too: 10 endpoints with page numbers and a total, 50 ms each.
    `concurrency=None` leaves tui-connector's default (as a user who sets nothing)."""
    return StreamSet(
        prefix="peer",
        sources=PEER_DATASETS,
        partitions=1,
        pages_per_stream=sizes.peer_records // PEER_PAGE_SIZE,
        page_size=PEER_PAGE_SIZE,
        concurrency=concurrency,
        pagination="pages",
    )


SHORT_JOB_PAGES = 100
SHORT_JOB_SWEEP = (8, 16, 32, 64, 128)


def short_job(concurrency: int | str | None, *, parallel: bool = True) -> StreamSet:
    """One stream of 100 pages of 100 records behind 50 ms, the total known from
    `X-Total-Count` after the first page: a job of a few round trips at the I/O bound, where
    the time a concurrency limit takes to open up is most of the run. `parallel=False` walks
    the pages one at a time (for context)."""
    return StreamSet(
        prefix="short",
        sources=1,
        partitions=1,
        pages_per_stream=SHORT_JOB_PAGES,
        page_size=100,
        concurrency=concurrency,
        pagination="pages",
        parallel=parallel,
        total_header="X-Total-Count",
    )
