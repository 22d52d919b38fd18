"""What several of the demo API's test files use: the session server's token, reading records,
links and streamed bodies, and checking that nothing was logged."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tui_connector.demo.server import DemoServer

TOKEN = "test-token-5f3a9"  # the session `demo` server's token (conftest)
Factory = Callable[..., DemoServer]
MIB = 1 << 20


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]


LINK = re.compile(r'<([^>]*)>\s*;\s*rel="([^"]*)"')


def parse_link(header: str) -> dict[str, str]:
    return {rel: target for target, rel in LINK.findall(header)}


def read_at_least(response: httpx.Response, count: int) -> bytes:
    got = bytearray()
    for chunk in response.iter_raw():
        got += chunk
        if len(got) >= count:
            break
    return bytes(got)


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing (the server's aiohttp, asyncio) logged a warning or worse: no tracebacks."""
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []
