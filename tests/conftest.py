"""Shared fixtures: the real demo API on an ephemeral 127.0.0.1 port, configs in tmp_path,
and a reader that counts every record id in a lake."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tui_connector.config import LoadedConfig, load_config
from tui_connector.demo.server import DemoKnobs, DemoServer

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 237  # not a multiple of any page size, so last pages are short


@pytest.fixture(scope="session")
def demo() -> Iterator[DemoServer]:
    """One quiet demo server for the session: no latency, no faults."""
    with DemoServer(DemoKnobs(records=RECORDS, page_size=50, token="test-token-5f3a9")) as server:
        yield server


@pytest.fixture
def demo_server_factory() -> Iterator[Callable[..., DemoServer]]:
    """A fresh demo server with its own knobs (faults, latency), stopped after the test."""
    started: list[DemoServer] = []

    def start(**knobs: object) -> DemoServer:
        server = DemoServer(DemoKnobs(**knobs)).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., LoadedConfig]:
    """Write a sources.yaml into tmp_path (out and state inside it) and load it."""

    def write(
        text: str, env: dict[str, str] | None = None, name: str = "sources.yaml"
    ) -> LoadedConfig:
        path = tmp_path / name
        path.write_text(text)
        return load_config(path, env=env or {})

    return write


def lake_ids(out: Path, source: str | None = None) -> Counter[str]:
    """Every record id in the lake (or one source of it), with how often it occurs."""
    ids: Counter[str] = Counter()
    pattern = f"{source}/*/page-*.jsonl" if source else "*/*/page-*.jsonl"
    for page in sorted(out.glob(pattern)):
        for line in page.read_text().splitlines():
            ids[json.loads(line)["id"]] += 1
    return ids


def expected_ids(dataset: str, count: int = RECORDS) -> Counter[str]:
    return Counter(f"{dataset}-{n:06d}" for n in range(count))


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
    import asyncio

    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)
