"""Shared fixtures: the real demo API on an ephemeral 127.0.0.1 port, a real S3 endpoint
(moto's server) and a real Azure Blob endpoint (Azurite) on others, and configs in tmp_path.
Importable helpers live in helpers.py (and s3_server.py, azurite_server.py for the stores)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tui_connector.config import LoadedConfig, load_config
from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.server import DemoServer

from azurite_server import AzuriteEndpoint, Container
from helpers import RECORDS
from node_server import NodeServerMissing
from s3_server import Bucket, S3Endpoint


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


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Endpoint]:
    """One S3 endpoint for the session, with authentication on (s3_server.py)."""
    with S3Endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh bucket, and the AWS_* variables that point S3 clients at the endpoint with the
    lake's key, set for the test and every process it starts."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):  # a developer's own would be sent too
        monkeypatch.delenv(name, raising=False)
    return s3.create_bucket()


@pytest.fixture(scope="session")
def azure() -> Iterator[AzuriteEndpoint]:
    """One Azure Blob endpoint for the session (azurite_server.py)."""
    try:
        endpoint = AzuriteEndpoint().start()
    except NodeServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def container(azure: AzuriteEndpoint, monkeypatch: pytest.MonkeyPatch) -> Container:
    """A fresh container, and the AZURE_* variables that point Azure clients at the endpoint
    with the development account's key, set for the test and every process it starts."""
    for name in os.environ:  # a developer's own (a SAS, a token, a client secret) would win
        if name.startswith(("AZURE_", "AZURITE_")):
            monkeypatch.delenv(name)
    for name, value in azure.env().items():
        monkeypatch.setenv(name, value)
    return azure.create_container()
