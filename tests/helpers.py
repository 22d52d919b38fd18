"""What tests share besides fixtures: the demo data's ids, a lake reader, waiting on a
condition with a deadline, running the engine in-process (and reaching the one behind a
dashboard) and the command line as a process.
Tests import these from here (`from helpers import ...`); conftest.py holds only fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tui_connector.config import LoadedConfig
from tui_connector.control import ControlServer
from tui_connector.engine import Engine, RunResult
from tui_connector.facade import RunFacade
from tui_connector.in_process import InProcessRun
from tui_connector.services import RunService, ServedRun

if TYPE_CHECKING:
    from tui_connector.tui.app import Dashboard

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 237  # not a multiple of any page size, so last pages are short


def lake_ids(out: Path, source: str | None = None, partition: str = "*") -> Counter[str]:
    """Every record id in the lake (or one source, or one partition of it), with how often it
    occurs."""
    ids: Counter[str] = Counter()
    pattern = f"{source}/{partition}/page-*.jsonl" if source else "*/*/page-*.jsonl"
    for page in sorted(out.glob(pattern)):
        for line in page.read_text().splitlines():
            ids[json.loads(line)["id"]] += 1
    return ids


def bytes_on_disk(directory: Path) -> int:
    """The size of every file under `directory`."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


# A field `label` that is a string in a demo dataset's first record and a number after: the
# first page mixes the two, so it is JSON text from the start, which the lake says once.
LABEL_NOTE = "field 'label' holds mixed number and string"


def three_formats_yaml(url: str, drift_format: str = "parquet") -> str:
    """Three sources, one a format: `plain` (jsonl, one page), `drift` (`drift_format`, three
    pages, `label` stored as JSON text) and `table` (delta, four pages); a file per page."""
    return f"""\
commit_interval: 0
sources:
  plain:
    url: {url}/v1/all/plain
  drift:
    url: {url}/v1/pages/drift
    format: {drift_format}
    records: "data[*].merge(@, {{label: (n < `1` && name) || n}})"
    params: {{per_page: 10, dataset_size: 30}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  table:
    url: {url}/v1/pages/table
    format: delta
    records: data
    params: {{per_page: 50, dataset_size: 200}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


def expected_ids(dataset: str, count: int = RECORDS) -> Counter[str]:
    return Counter(f"{dataset}-{n:06d}" for n in range(count))


def soak_ids(records: int) -> dict[str, Counter[str]]:
    """Every id, per source, of the soak's backfill (`test_soak.SOAK`): five value partitions,
    30 parents with 25 children each, date windows and next links over `records` each."""
    issues: Counter[str] = Counter()
    for parent in range(30):
        issues += expected_ids(f"repos-{parent:06d}", 25)
    regions = ("north", "south", "east", "west", "centre")
    return {
        "regions": sum((expected_ids(region, records) for region in regions), Counter()),
        "repos": expected_ids("repos", 30),
        "issues": issues,
        "events": expected_ids("events", records),
        "feed": expected_ids("feed", records),
    }


class JsonApi:
    """A small JSON API on 127.0.0.1 that answers every GET with `respond(path, query)`:
    for data that changes between runs, or takes shapes the demo's never does."""

    def __init__(self, respond: Callable[[str, dict[str, str]], Any]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                body = json.dumps(respond(url.path, query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """An aiohttp app of a test's own on 127.0.0.1, on this event loop: its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (for a server to take, or a client to be refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition (in a sync test) until true or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def async_wait_for(
    condition: Callable[[], bool], within: float = 20.0, what: str = "condition"
) -> None:
    """Poll a condition (in an async test) until true or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


async def run_engine(config: LoadedConfig, **options: object) -> tuple[RunResult, Engine]:
    """Run a config in-process to the end (a minute at most)."""
    engine = Engine(config, **options)  # type: ignore[arg-type]
    async with engine:
        result = await asyncio.wait_for(engine.run(), timeout=60)
    return result, engine


def single_source(url: str, **settings: str) -> str:
    """A config of one source, `items`, at `url`, its other settings as YAML flow values."""
    lines = "".join(f"    {name}: {value}\n" for name, value in settings.items())
    return f"sources:\n  items:\n    url: {url}\n{lines}"


async def run_done(config: LoadedConfig, source: str = "items", **options: object) -> Engine:
    """Run a config whose `source` must finish; the engine, to look inside."""
    result, engine = await run_engine(config, **options)
    assert result.done == [source], engine.telemetry.sources[source].last_error
    return engine


async def run_failed(config: LoadedConfig, source: str = "items") -> str:
    """Run a config whose `source` must fail; the error it failed with."""
    result, engine = await run_engine(config)
    assert result.failed == [source], result
    return engine.telemetry.sources[source].last_error or ""


def engine_of(app: Dashboard) -> Engine:
    """The engine behind a dashboard's in-process run: the tests look inside it."""
    run = app.facade
    assert isinstance(run, InProcessRun)
    return run.engine


@contextlib.asynccontextmanager
async def served_run(
    config: LoadedConfig, *services: RunService
) -> AsyncIterator[tuple[ServedRun, asyncio.Task[RunResult]]]:
    """A run serving `services` (its control endpoint by default), running in a task until the
    block ends (then asked to stop, if it has not finished)."""
    run = ServedRun(InProcessRun(Engine(config)), services or [ControlServer()])
    await run.open()
    task = asyncio.create_task(run.run())
    try:
        yield run, task
    finally:
        if not task.done():
            run.request_stop()
        try:
            await asyncio.wait_for(task, 60)
        finally:
            await run.close()


# -- /metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One scrape of a run's `/metrics`: its text, and its samples parsed by prometheus_client."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` with exactly these labels; None when there is none."""
        return self.samples.get((name, frozenset(labels.items())))

    def sources(self, name: str) -> dict[str, float]:
        """The samples of a family labelled by source only: {source: value}."""
        return {
            dict(labels)["source"]: value
            for (sample, labels), value in self.samples.items()
            if sample == name and {label for label, _ in labels} == {"source"}
        }


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return Scrape.parse(response.text)


class LastScrape:
    """A run service listed after a `MetricsServer`: when the run closes, it scrapes the
    metrics once more (services stop in reverse order, so the server still serves): the
    figures once the run has ended, before the process would end; and once as OpenMetrics
    text."""

    def __init__(self, url: Callable[[], str]) -> None:
        self._url = url
        self.scraped: Scrape | None = None
        self.openmetrics = ""

    async def start(self, run: RunFacade) -> None:
        pass

    async def stop(self, result: RunResult | None) -> None:
        self.scraped = await scrape(self._url())
        async with httpx.AsyncClient() as client:
            response = await client.get(
                self._url(), headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        self.openmetrics = response.text


# -- the command line as a subprocess ---------------------------------------------------------

CLI = [sys.executable, "-m", "tui_connector"]


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line, to its end; `env` adds to this process's environment."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command line in the background; `env` adds to this process's environment."""
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )


def stream_pages(state: Path) -> int:
    """Pages committed in a state database (read-only; 0 while it does not exist)."""
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT coalesce(sum(pages), 0) FROM streams").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def crash_and_resume(config: Path, state: Path, seed: int, rounds: int = 6) -> int:
    """`run --headless`, SIGKILLed at random instants (most of them once pages are being
    committed), `rounds` times or until a run finishes; then a last run that must finish.
    Returns how many kills there were."""
    chooser = random.Random(seed)
    kills = 0
    for _ in range(rounds):
        process = start("run", "--headless", str(config), "--progress-interval", "60")
        pages_before = stream_pages(state)
        if chooser.random() < 0.7:
            wait_for(
                lambda p=pages_before, run=process: (
                    stream_pages(state) > p or run.poll() is not None
                ),
                timeout=60,
                what="progress",
            )
        time.sleep(chooser.uniform(0.0, 0.4))  # the random instant of the kill
        if process.poll() is not None:
            _, stderr = process.communicate()
            assert process.returncode == 0, stderr
            break
        process.send_signal(signal.SIGKILL)
        process.communicate()
        kills += 1
    final = cli("run", "--headless", str(config), "--progress-interval", "60")
    assert final.returncode == 0, final.stdout + final.stderr
    return kills


# -- the lake read back by readers other than ours ---------------------------------------------


def documented_ids() -> dict[str, Counter[str]]:
    """Every id, per source, that the documented sources.yaml fetches from the demo API."""
    ids = {
        source: expected_ids(source)
        for source in (
            *("customers", "orders", "invoices", "events", "products", "shipments", "ledger"),
            "tickets",
            *("regions", "activity", "changes"),
        )
    }
    ids["stores"] = sum((expected_ids(f"store-{s}") for s in ("north", "south", "east")), Counter())
    ids["repos"] = expected_ids("repos", 20)
    ids["issues"] = sum((expected_ids(f"repos-{n:06d}", 15) for n in range(20)), Counter())
    return ids


class StoredObjects(Protocol):
    """A bucket (or container) of a test's object store."""

    def object_keys(self, prefix: str = "") -> list[str]: ...

    def read(self, key: str) -> bytes: ...


class ObjectStore(Protocol):
    """A test's object-store endpoint (s3_server.S3Endpoint, azurite_server.AzuriteEndpoint)."""

    def storage_options(self) -> dict[str, str]: ...

    def filesystem(self) -> Any: ...

    def bucket(self, name: str) -> StoredObjects: ...


@dataclass(frozen=True)
class LakePlace:
    """Where a test's lake is: its `out:`, and on an object store the endpoint and the
    bucket (or container) that hold it."""

    url: str
    store: ObjectStore | None = None
    objects: StoredObjects | None = None


def lake_in(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> LakePlace:
    """A test's lake: on local disk ("local"), in a fresh bucket of the S3 endpoint ("s3") or
    in a fresh container of the Azure endpoint ("azure")."""
    if store == "local":
        return LakePlace(str(tmp_path / "lake"))
    fixture = {"s3": "bucket", "azure": "container"}[store]
    bucket = request.getfixturevalue(fixture)
    return LakePlace(bucket.url("lake"), bucket.endpoint, bucket)


def table_ids(
    lake: str, format: str, source: str, store: ObjectStore | None = None
) -> Counter[str]:
    """Every record id of a source's table or files, with how often it occurs, as an
    independent reader sees them: deltalake for Delta, DuckDB (local) or pyarrow.dataset (an
    object store) for Parquet, the files themselves for JSON Lines. `store`: the endpoint of
    a lake on an object store."""
    location = f"{lake.rstrip('/')}/{source}"
    if format == "delta":
        from deltalake import DeltaTable

        options = store.storage_options() if store else None
        table = DeltaTable(location, storage_options=options)
        return Counter(table.to_pyarrow_table(columns=["id"])["id"].to_pylist())
    if store is None:
        if format == "jsonl":
            return lake_ids(Path(lake), source)
        import duckdb

        pattern = f"{location}/*/page-*.parquet"
        rows = duckdb.sql(f"SELECT id FROM read_parquet('{pattern}', union_by_name = true)")
        return Counter(id for (id,) in rows.fetchall())
    parts = urlsplit(location)
    name, prefix = parts.netloc.partition("@")[0], parts.path.strip("/")
    bucket = store.bucket(name)
    keys = bucket.object_keys(f"{prefix}/")
    if format == "jsonl":
        return Counter(
            json.loads(line)["id"] for key in keys for line in bucket.read(key).splitlines()
        )
    import pyarrow.dataset as ds

    files = [f"{name}/{key}" for key in keys if key.endswith(".parquet")]
    table = ds.dataset(files, format="parquet", filesystem=store.filesystem())
    return Counter(table.to_table(columns=["id"])["id"].to_pylist())
