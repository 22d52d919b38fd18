"""Fixtures of the demo API's tests: a client of the session's demo server, fresh servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tui_connector.demo.server import DemoServer

from .helpers import Factory


@pytest.fixture
def client(demo: DemoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        yield http


@pytest.fixture
def factory(demo_server_factory: Factory) -> Factory:
    return demo_server_factory
