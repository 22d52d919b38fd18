"""The HTTP layer reports what happened through its `HttpReport` and owns no status: a report
that only records what it is told is enough to run it. Against the real demo API on 127.0.0.1."""

from __future__ import annotations

import http
import http.client
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.exchange import PageRequest
from tui_connector.http.errors import FetchError
from tui_connector.http.source import SourceHttp
from tui_connector.redact import Redactor

RETRY_AFTER = 0.05  # seconds, the demo server's Retry-After on a 429


class RecordedReport:
    """An `HttpReport` that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def request_started(self, method: str, url: str, attempt: int) -> int:
        self.events.append(("started", method, url, attempt))
        return len(self.events)

    def request_finished(
        self, request_id: int, size: int, status: int | None, timed_out: bool
    ) -> None:
        self.events.append(("finished", request_id, size, status, timed_out))

    def retry_scheduled(self, error: FetchError, wait: float) -> None:
        self.events.append(("retry", error, wait))

    def source_held(self, until: float) -> None:
        self.events.append(("held", until))

    def rate_limit_changed(self, per_second: float | None) -> None:
        self.events.append(("rate limit", per_second))

    def kinds(self) -> list[str]:
        """The kinds of events, a run of "held" (told again while attempts wait) as one."""
        kinds: list[str] = []
        for event in self.events:
            if not (event[0] == "held" and kinds and kinds[-1] == "held"):
                kinds.append(event[0])
        return kinds


def page_request(url: str) -> PageRequest:
    return PageRequest(method="GET", url=url, params={"per_page": "10"}, json=None)


async def test_a_page_is_reported_started_then_finished_with_its_size(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(f"sources:\n  items:\n    url: {demo.url}/v1/pages/items\n")
    report = RecordedReport()
    source_http = SourceHttp(config.sources["items"], report, Redactor(), pool_size=2)
    try:
        response = await source_http.fetch(page_request(f"{demo.url}/v1/pages/items"))
    finally:
        await source_http.aclose()
    assert len(response.body["data"]) == 10
    url = f"{demo.url}/v1/pages/items?per_page=10"
    assert report.events == [
        ("rate limit", None),
        ("started", "GET", url, 1),
        ("finished", 2, response.size, 200, False),
    ]


async def test_a_held_source_reports_the_hold_and_the_retry(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("429",), retry_after_s=RETRY_AFTER)
    config = write_config(
        "sources:\n"
        f"  items:\n    url: {server.url}/v1/pages/items\n"
        "    retry: {max_attempts: 2, retry_after: source}\n"
        "    rate_limit: 100\n"
    )
    report = RecordedReport()
    source_http = SourceHttp(config.sources["items"], report, Redactor(), pool_size=2)
    try:
        with pytest.raises(FetchError) as failure:
            await source_http.fetch(page_request(f"{server.url}/v1/pages/items"))
        assert source_http.held_until is not None  # the second 429 holds it again
    finally:
        await source_http.aclose()
    assert failure.value.attempts == 2
    assert failure.value.status == 429
    assert report.kinds() == [
        "rate limit",
        "started",
        "held",  # the first 429, read before its slot is given back
        "finished",
        "retry",
        "held",  # the retry waits out the hold in line
        "started",
        "held",  # the second 429
        "finished",
    ]
    (_, error, wait) = next(e for e in report.events if e[0] == "retry")
    assert (error.status, error.attempts) == (429, 1)
    assert error.message.startswith("HTTP 429") and error.url.startswith(server.url)
    assert 0 < wait <= RETRY_AFTER  # what was left of the hold when the retry was scheduled
    assert report.events[0] == ("rate limit", 100)
    assert [e[3] for e in report.events if e[0] == "finished"] == [429, 429]
    assert len([e for e in server.log() if e.status == 429]) == 2


def test_the_package_leaves_the_standard_librarys_http_alone() -> None:
    assert sys.modules["tui_connector.http"] is not http
    assert "tui_connector" not in (http.__file__ or "")
    assert http.client.HTTPConnection.__module__ == "http.client"
    assert http.HTTPStatus.OK == 200
