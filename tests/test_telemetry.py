"""The run's live picture: rates over a sliding window, and `SourceReporter`, the one owner of
a source's status, told what its HTTP layer and its runner did."""

from __future__ import annotations

import pytest

from tui_connector.http.errors import FetchError
from tui_connector.telemetry import (
    AttemptOutcome,
    ErrorEvent,
    RateWindow,
    RunTelemetry,
    SourceReporter,
    SourceStatus,
    error_text,
    server_reason,
)


def test_rate_window_counts_recent_events_only() -> None:
    window = RateWindow(seconds=5)
    window._started = 0.0
    for second in range(10):
        window.add(10, now=second + 0.5)
    # At t=10.0 the window holds seconds 6..9 (+ the empty current one): 40 events / 4 s.
    assert window.rate(now=10.0) == pytest.approx(10.0)
    assert window.rate(now=100.0) == 0.0


def reporter_in(status: SourceStatus, telemetry: RunTelemetry | None = None) -> SourceReporter:
    """The reporter of a source "items" in `status`."""
    reporter = (telemetry or RunTelemetry()).reporter("items")
    reporter.stats.status = status
    return reporter


def test_each_source_has_one_reporter() -> None:
    telemetry = RunTelemetry()
    assert telemetry.reporter("items") is telemetry.reporter("items")
    assert telemetry.reporter("items").stats is telemetry.sources["items"]


def test_only_a_running_source_shows_backing_off() -> None:
    reporter = reporter_in(SourceStatus.RUNNING)
    stats = reporter.stats
    reporter.source_held(100.0)
    assert (stats.status, stats.backoff_until) == (SourceStatus.BACKING_OFF, 100.0)
    stats.status = SourceStatus.PAUSING
    reporter.source_held(200.0)
    assert (stats.status, stats.backoff_until) == (SourceStatus.PAUSING, 200.0)


def test_an_attempt_sent_ends_the_backing_off() -> None:
    reporter = reporter_in(SourceStatus.BACKING_OFF)
    stats = reporter.stats
    stats.backoff_until = 100.0
    request_id = reporter.request_started("GET", "http://x/1", 2)
    assert (stats.status, stats.backoff_until) == (SourceStatus.RUNNING, None)
    assert (stats.in_flight, stats.requests, stats.retries) == (1, 1, 1)
    reporter.request_finished(request_id, 512, 200, False)
    assert (stats.in_flight, stats.bytes) == (0, 512)
    # A paused source stays paused: its attempt was let through by a stop.
    stats.status, stats.backoff_until = SourceStatus.PAUSED, 100.0
    reporter.request_started("GET", "http://x/2", 1)
    assert (stats.status, stats.backoff_until) == (SourceStatus.PAUSED, None)


def test_a_scheduled_retry_is_an_error_event_and_a_backoff() -> None:
    telemetry = RunTelemetry()
    reporter = reporter_in(SourceStatus.RUNNING, telemetry)
    failure = FetchError("HTTP 503", url="http://x/1", status=503, body_excerpt="busy")
    reporter.retry_scheduled(failure, 2.0)
    (event,) = telemetry.errors
    assert (event.source, event.status, event.attempt) == ("items", 503, 1)
    assert event.next_step == "retrying in 2.0 s"
    assert reporter.stats.errors == 1 and reporter.stats.last_error == "HTTP 503: busy"
    assert reporter.stats.status is SourceStatus.BACKING_OFF
    assert reporter.stats.backoff_until is not None


def test_the_attempt_listener_hears_each_outcome() -> None:
    reporter = reporter_in(SourceStatus.RUNNING)
    heard: list[AttemptOutcome] = []
    reporter.attempt_listener = heard.append
    first = reporter.request_started("GET", "http://x/1", 1)
    second = reporter.request_started("GET", "http://x/2", 1)
    reporter.request_finished(second, 0, None, True)
    reporter.request_finished(first, 10, 429, False)
    assert [(o.in_flight, o.status, o.timed_out) for o in heard] == [
        (2, None, True),
        (1, 429, False),
    ]
    assert all(o.ended >= o.started for o in heard)


def test_pause_and_resume() -> None:
    reporter = reporter_in(SourceStatus.PENDING)
    stats = reporter.stats
    reporter.resumed(started=False, held=False)
    assert stats.status is SourceStatus.PENDING
    reporter.start(paused=False)
    assert stats.status is SourceStatus.RUNNING
    reporter.paused()  # not pausing: nothing to settle
    assert stats.status is SourceStatus.RUNNING
    reporter.pausing()
    reporter.paused()
    assert stats.status is SourceStatus.PAUSED
    reporter.resumed(started=True, held=True)
    assert stats.status is SourceStatus.BACKING_OFF
    reporter.pausing()
    reporter.resumed(started=True, held=False)
    assert stats.status is SourceStatus.RUNNING
    reporter.start(paused=True)
    assert stats.status is SourceStatus.PAUSED


def test_a_finished_source_stays_finished() -> None:
    reporter = reporter_in(SourceStatus.RUNNING)
    stats = reporter.stats
    reporter.source_held(100.0)
    reporter.finish(SourceStatus.STOPPED)
    assert (stats.status, stats.backoff_until) == (SourceStatus.STOPPED, None)
    reporter.pausing()
    reporter.resumed(started=True, held=False)
    reporter.source_held(100.0)
    assert stats.status is SourceStatus.STOPPED
    with pytest.raises(ValueError, match="not how a run of a source ends"):
        reporter.finish(SourceStatus.RUNNING)


def test_the_rate_limit_shown_is_the_one_set() -> None:
    reporter = reporter_in(SourceStatus.PENDING)
    reporter.rate_limit_changed(2.5)
    assert reporter.stats.rate_limit == 2.5


def test_what_a_server_said_is_shown_on_one_line_bounded_and_without_controls() -> None:
    body = '{"error":\n  "bad \x1b[31mred\x1b[0m\tvalue\u202e"}\r\n' + "x" * 400
    reason = server_reason(body)
    assert reason.startswith('{"error": "bad \\x1b[31mred\\x1b[0m value\\u202e"} xxx')
    assert len(reason) == 200 and reason.endswith("x…")
    assert reason.isprintable()
    assert server_reason("") == "" and server_reason(" \n") == ""


def test_an_error_reads_what_happened_then_what_the_server_said_then_what_to_do() -> None:
    assert error_text("HTTP 404 after 1 attempt") == "HTTP 404 after 1 attempt"
    assert error_text("HTTP 404", "gone\n") == "HTTP 404: gone"
    assert error_text("HTTP 404", "gone", "check the url") == "HTTP 404: gone; check the url"
    assert error_text("HTTP 404", "", "check the url") == "HTTP 404; check the url"
    event = ErrorEvent(0.0, "items", 404, "HTTP 404", "http://x/1", "gone", 1, "source failed")
    assert event.text == "HTTP 404: gone"
