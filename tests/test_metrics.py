"""`/metrics` (`run --metrics HOST:PORT`, `metrics:` in sources.yaml): a real run against the
demo API, scraped while it runs and once more after, parsed by prometheus_client; the figures
are the run's own (its summary's records and pages, every counter of its final progress); a
port in use or a bad address is an error that says so."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from tui_connector.config import load_config
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.headless import HeadlessReporter
from tui_connector.in_process import InProcessRun
from tui_connector.metrics import MetricsServer, RunCollector
from tui_connector.services import ServedRun
from tui_connector.telemetry import LakeInfo, RunTelemetry

from helpers import (
    LastScrape,
    Scrape,
    cli,
    free_port,
    scrape,
    start,
    three_formats_yaml,
    wait_for,
)

deltalake = pytest.importorskip("deltalake")

P = "tui_connector_"
# Counters of the final scrape, and the field of a source's final progress each equals.
COUNTED = {
    "records_total": "records",
    "pages_total": "pages",
    "fetched_bytes_total": "bytes",
    "written_bytes_total": "bytes_written",
    "retries_total": "retries",
    "errors_total": "errors",
}


def sources_yaml(url: str, extra: str = "") -> str:
    """`three_formats_yaml`'s sources (jsonl, parquet, a Delta table) retried hard so that
    faults never fail them, a slower one (a cursor: its pages one after another) and one that
    fails at once."""
    retry = "{max_attempts: 30, backoff_base: 0.01, backoff_max: 0.05}"
    return f"{extra}defaults:\n  retry: {retry}\n{three_formats_yaml(url)}" + (
        f"  cursor:\n    url: {url}/v1/cursor/cursor\n    records: items\n"
        "    pagination: {type: cursor, cursor: next_cursor, cursor_param: cursor}\n"
        f"  missing:\n    url: {url}/v1/bad/echo-error/missing\n    params: {{status: 404}}\n"
    )


FINISHING = ("plain", "drift", "table", "cursor")


@pytest.fixture
def faulty_demo(demo_server_factory: Callable[..., DemoServer]) -> DemoServer:
    """Slow enough pages that a scrape lands mid-run; faults that answer with an error status
    (retried), so every attempt's outcome is told by its answer."""
    return demo_server_factory(
        records=200,
        page_size=20,
        latency_ms=20,
        fault_rate=0.15,
        faults=("429", "500", "503"),
        retry_after_s=0.01,
        seed=3,
    )


async def test_a_run_scraped_during_and_after_matches_its_summary(
    faulty_demo: DemoServer, tmp_path: Path
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(sources_yaml(faulty_demo.url))
    metrics = MetricsServer("127.0.0.1", 0)
    last = LastScrape(lambda: metrics.url)
    run = ServedRun(InProcessRun(Engine(load_config(path, env={}))), [metrics, last])
    out = io.StringIO()
    reporter = HeadlessReporter(run, mode="json", out=out)

    during: list[Scrape] = []

    async def scrape_while_running() -> None:
        while True:
            scraped = await scrape(metrics.url)
            during.append(scraped)
            running = scraped.value(P + "source_status", source="cursor", status="running")
            if running == 1 and scraped.sources(P + "records_total")["cursor"] > 0:
                return
            await asyncio.sleep(0.01)

    await run.open()
    try:
        scraping = asyncio.create_task(scrape_while_running())
        result = await run.run()
        await asyncio.wait_for(scraping, 5)
    finally:
        await run.close()
    reporter.summary(result)
    assert result.done == list(FINISHING) and result.failed == ["missing"]

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    final = {event["source"]: event for event in events if event["event"] == "final"}
    [summary] = [event for event in events if event["event"] == "summary"]
    after = last.scraped
    assert after is not None
    for metric, field in COUNTED.items():
        assert after.sources(P + metric) == {name: e[field] for name, e in final.items()}, metric
    assert sum(after.sources(P + "records_total").values()) == summary["records"] > 0
    assert after.sources(P + "source_records") == after.sources(P + "records_total")
    assert after.sources(P + "requests_in_flight") == dict.fromkeys(final, 0)
    assert after.sources(P + "backoff_remaining_seconds") == dict.fromkeys(final, 0)
    assert after.sources(P + "concurrency_limit") == dict.fromkeys(final, 4)
    assert set(after.sources(P + "checkpoint_age_seconds")) >= set(FINISHING)
    assert after.sources(P + "table_version") == {"table": final["table"]["table_version"]}
    assert (
        final["table"]["table_version"]
        == deltalake.DeltaTable(str(tmp_path / "lake" / "table")).version()
    )
    assert after.sources(P + "rate_limit_requests_per_second") == {}  # no limit
    for name, event in final.items():
        status = {
            state: after.value(P + "source_status", source=name, status=state)
            for state in ("done", "failed", "running", "backing_off", "paused")
        }
        assert status == {**dict.fromkeys(status, 0), event["status"]: 1}, name
        assert after.value(P + "concurrency_mode", source=name, mode="fixed") == 1
        outcome = {
            kind: after.value(P + "requests_total", source=name, outcome=kind)
            for kind in ("ok", "retried", "failed")
        }
        answers = {
            kind: after.value(P + "responses_total", source=name, status_class=kind)
            for kind in ("1xx", "2xx", "3xx", "4xx", "5xx")
        }
        # Every attempt answered, each with one outcome; a retry follows each retried one.
        assert sum(outcome.values()) == sum(answers.values()) == event["requests"], name
        assert outcome["ok"] == answers["2xx"] and outcome["retried"] == event["retries"]
        if name == "missing":
            assert outcome["failed"] == answers["4xx"] == 1
        else:
            assert outcome["failed"] == 0
    # The faults were met and retried, and told by status class.
    assert sum(after.sources(P + "retries_total").values()) > 0
    assert any(after.value(P + "responses_total", source=s, status_class="5xx") for s in final)
    assert after.value(P + "build_info", version=__import__("tui_connector").__version__) == 1
    assert (after.value(P + "uptime_seconds") or 0) > 0
    assert (after.value("process_cpu_seconds_total") or 0) > 0

    # A scraper that asks for OpenMetrics gets it.
    assert last.openmetrics.startswith("# HELP") and last.openmetrics.endswith("# EOF\n")
    families = {family.name for family in openmetrics_families(last.openmetrics)}
    assert {P + "records", P + "requests", P + "source_status"} <= families

    # Mid-run: a source running, records coming in, and no counter ahead of where it ended.
    assert during
    for scraped in during:
        for metric in COUNTED:
            for name, value in scraped.sources(P + metric).items():
                assert value <= after.sources(P + metric)[name], (metric, name)


def test_the_command_serves_the_config_s_metrics_while_it_runs(
    faulty_demo: DemoServer, tmp_path: Path
) -> None:
    port = free_port()
    path = tmp_path / "sources.yaml"
    path.write_text(sources_yaml(faulty_demo.url, extra=f"metrics: 127.0.0.1:{port}\n"))
    process = start("run", "--headless", str(path), "--progress", "json")
    seen: list[Scrape] = []

    def scraped_records() -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except httpx.TransportError:  # not listening yet
            return process.poll() is not None
        seen.append(Scrape.parse(response.text))
        return sum(seen[-1].sources(P + "records_total").values()) > 0

    wait_for(scraped_records, timeout=60, what="records in a scrape")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr  # `missing` fails
    assert seen, "the run ended before any scrape"
    events = [json.loads(line) for line in stdout.splitlines()]
    [summary] = [event for event in events if event["event"] == "summary"]
    final = {event["source"]: event for event in events if event["event"] == "final"}
    records = seen[-1].sources(P + "records_total")
    assert 0 < sum(records.values()) <= summary["records"]
    assert all(records[name] <= final[name]["records"] for name in records)
    # Once the run has ended, nothing listens any more.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port of 127.0.0.1 another process's socket listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_port_in_use_is_a_clear_error_and_nothing_runs(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path, taken_port: int
) -> None:
    server = demo_server_factory()
    path = tmp_path / "sources.yaml"
    # The config names a free port; the command line's, in use, wins.
    path.write_text(sources_yaml(server.url, extra=f"metrics: 127.0.0.1:{free_port()}\n"))
    result = cli("run", "--headless", str(path), "--metrics", f"127.0.0.1:{taken_port}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tui-connector: metrics: cannot listen on 127.0.0.1:{taken_port}: the port is in use "
        "(another process listens there); choose another"
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert server.log() == []  # not a request was sent


def test_the_config_s_port_in_use_and_a_bad_address(
    demo: DemoServer, tmp_path: Path, taken_port: int
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(sources_yaml(demo.url, extra=f"metrics: 127.0.0.1:{taken_port}\n"))
    result = cli("run", "--headless", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"metrics: cannot listen on 127.0.0.1:{taken_port}: the port is in use" in result.stderr

    path.write_text(sources_yaml(demo.url, extra="metrics: localhost\n"))
    result = cli("run", "--headless", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:1:10: metrics: " in result.stderr, result.stderr
    assert "'localhost' is not HOST:PORT" in result.stderr

    result = cli("run", "--headless", str(path), "--metrics", "[::1]:99999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the port must be a number from 1 to 65535" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("metrics.internal:65535", ("metrics.internal", 65535)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    from tui_connector.config.fields import listen_address

    assert listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("9464", "is not HOST:PORT"),
        (":9464", "is not HOST:PORT"),
        ("::1:9464", "in brackets"),
        ("host:0", "from 1 to 65535"),
        ("host:http", "from 1 to 65535"),
        ("host:٩٤", "from 1 to 65535"),  # digits, but not ASCII ones
        ("a host:1", "is not HOST:PORT"),
    ],
)
def test_bad_listen_addresses(text: str, why: str) -> None:
    from tui_connector.config.fields import listen_address

    with pytest.raises(ValueError, match=why):
        listen_address(text)


def test_a_scrape_grows_with_the_sources_not_the_requests() -> None:
    """What a scrape computes depends on the sources, not on what they have done: a source
    that sent 5000 requests has as many samples as one that sent one."""

    class View:
        def __init__(self, telemetry: RunTelemetry) -> None:
            self.telemetry = telemetry

        def snapshot(self) -> RunTelemetry:
            return self.telemetry

        def lake(self, source: str) -> LakeInfo:
            return LakeInfo("jsonl", "lake")

    def families(requests: int) -> list[Any]:
        telemetry = RunTelemetry()
        reporter = telemetry.reporter("s")
        for _ in range(requests):
            reporter.request_finished(reporter.request_started("GET", "u", 1), 10, 200, False)
        return list(RunCollector(View(telemetry)).collect())  # type: ignore[arg-type]

    few, many = families(1), families(5000)
    assert [len(f.samples) for f in few] == [len(f.samples) for f in many]
    [requests] = [f for f in many if f.name == P + "requests"]
    assert {s.labels["outcome"]: s.value for s in requests.samples} == {
        "ok": 5000,
        "retried": 0,
        "failed": 0,
    }
