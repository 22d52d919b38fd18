"""The run's live picture: rates over a sliding window."""

from __future__ import annotations

import pytest

from tui_connector.telemetry import RateWindow


def test_rate_window_counts_recent_events_only() -> None:
    window = RateWindow(seconds=5)
    window._started = 0.0
    for second in range(10):
        window.add(10, now=second + 0.5)
    # At t=10.0 the window holds seconds 6..9 (+ the empty current one): 40 events / 4 s.
    assert window.rate(now=10.0) == pytest.approx(10.0)
    assert window.rate(now=100.0) == 0.0
