"""The adaptive concurrency limit, driven by simulated servers on a simulated clock."""

from __future__ import annotations

import math
import random

import pytest

from tui_connector.adaptive import AdaptiveLimit, LimitChange

from adaptive_sim import BASE, QueueServer, SlowingServer, simulate

# ---------------------------------------------------------------------------------------------
# Against simulated servers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_finds_capacity_of_a_queueing_server(seed: int) -> None:
    rng = random.Random(seed)
    server = QueueServer(rng, queue=10)
    limiter = AdaptiveLimit()
    run = simulate(limiter, server, seconds=30.0)

    low, high = run.limit_band(after=5.0)
    assert 12 <= low <= high <= 32, (low, high)
    assert run.rejected_share() < 0.02
    assert run.throughput(10.0, 30.0) >= 0.85 * server.max_throughput
    # Both kinds of signal were at work: 429s above 30 in the system, latency past the knee.
    reasons = {c.reason.split(" (")[0] for c in run.changes}
    assert "lowered: HTTP 429 from the server" in reasons
    assert "raised: throughput rising, latency steady" in reasons


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_finds_capacity_of_a_server_without_a_queue(seed: int) -> None:
    server = QueueServer(random.Random(seed), queue=0)
    limiter = AdaptiveLimit()
    run = simulate(limiter, server, seconds=30.0)

    low, high = run.limit_band(after=5.0)
    assert 10 <= low <= high <= 28, (low, high)
    assert run.rejected_share() < 0.05
    assert run.throughput(10.0, 30.0) >= 0.75 * server.max_throughput


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_latency_guard_alone_finds_the_knee(seed: int) -> None:
    server = SlowingServer(random.Random(seed))
    limiter = AdaptiveLimit()
    run = simulate(limiter, server, seconds=30.0)

    low, high = run.limit_band(after=5.0)
    assert 14 <= low <= high <= 32, (low, high)
    assert not any("429" in c.reason for c in run.changes)
    assert any(c.reason.startswith("lowered: latency rising") for c in run.changes)
    # The baseline is still the idle latency, not a queue-inflated one.
    assert limiter.baseline is not None
    assert limiter.baseline == pytest.approx(BASE, rel=0.1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_relearns_a_permanently_slower_server(seed: int) -> None:
    server = SlowingServer(random.Random(seed))
    limiter = AdaptiveLimit()

    def slow_down(now: float) -> None:
        server.base = 2.5 * BASE  # same capacity, every request 2.5 times slower

    run = simulate(limiter, server, seconds=40.0, at=10.0, then=slow_down)

    # The guard reacted, saw latency hold while the load fell, and took the new latency as
    # the baseline, without first sinking to the load of the old baseline (4 in slow start).
    relearned = [c for c in run.changes if "re-learning the baseline" in c.reason]
    assert relearned and all(c.at > 10.0 for c in relearned)
    low_after, _ = run.limit_band(after=10.0)
    assert low_after >= 8
    assert limiter.baseline is not None
    assert 0.8 * server.base <= limiter.baseline <= 1.1 * server.base
    # Back at the same knee (capacity did not change, only latency), at full throughput.
    low, high = run.limit_band(after=20.0)
    assert 14 <= low <= high <= 34, (low, high)
    assert run.throughput(15.0, 40.0) >= 0.85 * server.max_throughput


def test_latency_that_falls_with_the_load_is_queueing() -> None:
    # The other side of re-learning: latency in proportion to the load is queueing, and
    # the baseline stays.
    limiter = AdaptiveLimit(maximum=30, initial=30)
    now, _ = feed_window(limiter, 0.0, 0.040)
    for _ in range(3):
        now, change = feed_window(limiter, now, 0.100 * limiter.limit / 30)
        assert change is not None and change.reason.startswith("lowered: latency rising")
        assert "re-learning" not in change.reason
    assert limiter.limit == 21
    assert limiter.baseline == pytest.approx(0.040)


def test_latency_that_holds_as_the_load_falls_is_relearned() -> None:
    limiter = AdaptiveLimit(maximum=30, initial=30)
    now, _ = feed_window(limiter, 0.0, 0.040)
    reasons = []
    for _ in range(3):
        now, change = feed_window(limiter, now, 0.100)
        assert change is not None
        reasons.append(change.reason)
    # 30 -> 27 -> 24: at 24 the load is a fifth below 30 and latency has not moved.
    assert reasons == [
        "lowered: latency rising (100 ms, baseline 40 ms)",
        "lowered: latency rising (100 ms, baseline 40 ms)",
        "lowered: latency rising (100 ms, baseline 40 ms), not from load: re-learning the baseline",
    ]
    assert limiter.baseline == pytest.approx(0.100)
    now, change = feed_window(limiter, now, 0.100)
    assert change is not None
    assert change.reason == "raised: throughput rising, latency steady (100 ms, baseline 100 ms)"


def test_unsaturated_source_never_raises_the_limit() -> None:
    limiter = AdaptiveLimit(initial=4)
    now = 0.0
    for _ in range(1000):
        # Always two in flight, fast and steady: a perfect server, but the limit is not used.
        for slot in (1, 2):
            assert limiter.on_sample(started=now, ended=now + 0.04, in_flight=slot) is None
        now += 0.04
    assert limiter.limit == 4
    assert limiter.last_change is None


# ---------------------------------------------------------------------------------------------
# Rules, one at a time


def feed_window(
    limiter: AdaptiveLimit, now: float, latency: float, *, in_flight: int | None = None
) -> tuple[float, LimitChange | None]:
    """Close one window of samples started after `now`; return the new time and the change."""
    size = max(limiter.limit, 4)
    load = limiter.limit if in_flight is None else in_flight
    change = None
    for i in range(size):
        started = now + 0.001 * (i + 1)
        result = limiter.on_sample(started=started, ended=started + latency, in_flight=load)
        if result is not None:
            assert change is None, "one change per window"
            change = result
    return now + 0.001 * size + latency + 0.001, change


def test_slow_start_doubles_then_additive_increase() -> None:
    limiter = AdaptiveLimit(maximum=64, initial=4)
    now = 0.0
    seen = []
    for _ in range(3):
        now, change = feed_window(limiter, now, 0.040)
        assert change is not None
        seen.append(change.limit)
    assert seen == [8, 16, 32]
    assert limiter.slow_start
    assert change is not None and change.reason.endswith("; slow start")
    assert "40 ms, baseline 40 ms" in change.reason

    change = limiter.on_sample(started=now, ended=now + 0.001, in_flight=32, overload="HTTP 503")
    assert change == LimitChange(
        limit=24, previous=32, reason="lowered: HTTP 503 from the server", at=now + 0.001
    )
    assert not limiter.slow_start
    now += 0.01
    now, change = feed_window(limiter, now, 0.040)
    assert change is not None and (change.previous, change.limit) == (24, 25)
    assert change.reason == "raised: throughput rising, latency steady (40 ms, baseline 40 ms)"


def test_slow_start_ends_when_the_first_requests_queue() -> None:
    limiter = AdaptiveLimit(maximum=64, initial=8)
    now, change = feed_window(limiter, now=0.0, latency=0.040)
    assert change is not None and change.limit == 16 and limiter.slow_start
    # A fifth of the window queued (twice the latency): the median still looks steady.
    for i in range(16):
        started = now + 0.001 * (i + 1)
        latency = 0.080 if i % 5 == 0 else 0.040
        change = limiter.on_sample(started=started, ended=started + latency, in_flight=16)
    assert change is not None and (change.previous, change.limit) == (16, 17)
    assert not limiter.slow_start and not change.reason.endswith("; slow start")


def test_latency_guard_lowers_with_the_reason() -> None:
    limiter = AdaptiveLimit(initial=20)
    now, change = feed_window(limiter, 0.0, 0.040, in_flight=10)  # baseline, not saturated
    assert change is None
    now, change = feed_window(limiter, now, 0.095)
    assert change is not None
    assert (change.previous, change.limit) == (20, 18)
    assert change.reason == "lowered: latency rising (95 ms, baseline 40 ms)"
    assert limiter.last_change == change
    assert not limiter.slow_start


def test_latency_guard_needs_both_ratio_and_gap() -> None:
    # 3 ms against 1 ms is three times the baseline, but only 2 ms more: noise, not a queue.
    limiter = AdaptiveLimit(initial=8)
    now, _ = feed_window(limiter, 0.0, 0.001, in_flight=1)
    now, change = feed_window(limiter, now, 0.003, in_flight=1)
    assert change is None
    now, change = feed_window(limiter, now, 0.0075, in_flight=1)  # 6.5 ms more: a queue
    assert change is not None and change.limit == 7
    assert change.reason == "lowered: latency rising (7.5 ms, baseline 1.0 ms)"


def test_latency_guard_lowers_by_at_least_one() -> None:
    limiter = AdaptiveLimit(minimum=2, initial=5)
    now, _ = feed_window(limiter, 0.0, 0.040, in_flight=1)
    limits = []
    for _ in range(6):
        now, _ = feed_window(limiter, now, 0.200, in_flight=1)
        limits.append(limiter.limit)
    assert limits == [4, 3, 2, 2, 2, 2]  # floor(5 * 0.9) = 4 ... then held at the minimum


def test_overloads_sent_before_a_decrease_cause_only_one() -> None:
    limiter = AdaptiveLimit(initial=32)
    # 32 requests sent at t=0..0.031, all answered 429 around t=1.
    changes = [
        limiter.on_sample(
            started=0.001 * i, ended=1.0 + 0.001 * i, in_flight=i + 1, overload="HTTP 429"
        )
        for i in range(32)
    ]
    assert [c for c in changes if c is not None] == [
        LimitChange(limit=24, previous=32, reason="lowered: HTTP 429 from the server", at=1.0)
    ]
    assert limiter.limit == 24
    # A request sent after the decrease that is still rejected: decrease again.
    change = limiter.on_sample(started=1.5, ended=1.6, in_flight=24, overload="timeout")
    assert change is not None and (change.previous, change.limit) == (24, 18)
    assert change.reason == "lowered: request timed out"
    # Sent at the very instant of the decrease: counted as sent before it.
    assert limiter.on_sample(started=1.6, ended=1.7, in_flight=1, overload="HTTP 429") is None
    assert limiter.limit == 18


def test_samples_from_before_a_change_do_not_fill_the_next_window() -> None:
    limiter = AdaptiveLimit(initial=8)
    now, change = feed_window(limiter, 0.0, 0.040)
    assert change is not None and change.limit == 16
    # Slow responses to requests sent before the raise: they measure the old limit.
    for _ in range(100):
        assert limiter.on_sample(started=now - 0.5, ended=now + 1.0, in_flight=8) is None
    assert limiter.limit == 16


def test_overload_never_goes_below_minimum() -> None:
    limiter = AdaptiveLimit(minimum=3, maximum=10, initial=10)
    now = 0.0
    for _ in range(20):
        now += 1.0
        limiter.on_sample(started=now, ended=now + 0.001, in_flight=1, overload="HTTP 429")
    assert limiter.limit == 3
    assert limiter.on_sample(started=now + 1, ended=now + 2, in_flight=1, overload="x") is None
    assert limiter.last_change is not None and limiter.last_change.limit == 3


def test_raising_stops_at_maximum() -> None:
    limiter = AdaptiveLimit(maximum=10)
    now = 0.0
    limits = []
    for _ in range(6):
        now, _ = feed_window(limiter, now, 0.040)
        limits.append(limiter.limit)
    assert limits == [8, 10, 10, 10, 10, 10]


def test_reset_restarts_from_the_given_limit() -> None:
    limiter = AdaptiveLimit(minimum=2, maximum=40)
    now, _ = feed_window(limiter, 0.0, 0.040)
    assert limiter.limit == 8 and limiter.slow_start
    # Half a window of samples, then an operator override.
    for i in range(3):
        limiter.on_sample(started=now + i * 0.001, ended=now + 0.05, in_flight=8)
    limiter.reset(20)
    assert limiter.limit == 20
    assert not limiter.slow_start
    assert limiter.last_change is None
    # An overload from a request sent before the reset is stale.
    assert (
        limiter.on_sample(started=now, ended=now + 0.06, in_flight=8, overload="HTTP 429") is None
    )
    # The next window is a fresh one of 20 samples, and additive: 20 -> 21 (no doubling).
    now += 0.1
    for i in range(19):
        started = now + i * 0.001
        assert limiter.on_sample(started=started, ended=started + 0.04, in_flight=20) is None
    change = limiter.on_sample(started=now + 0.02, ended=now + 0.06, in_flight=20)
    assert change is not None and (change.previous, change.limit) == (20, 21)
    # Out of bounds: clamped.
    limiter.reset(1000)
    assert limiter.limit == 40
    limiter.reset(0)
    assert limiter.limit == 2


def test_initial_limit_defaults_and_clamps() -> None:
    assert AdaptiveLimit().limit == 4
    assert AdaptiveLimit(maximum=2).limit == 2
    assert AdaptiveLimit(minimum=6).limit == 6
    assert AdaptiveLimit(minimum=2, maximum=8, initial=100).limit == 8
    assert AdaptiveLimit(minimum=2, maximum=8, initial=1).limit == 2
    assert AdaptiveLimit(minimum=5, maximum=5).limit == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"minimum": 0},
        {"minimum": 5, "maximum": 4},
        {"maximum": 0},
        {"minimum": 1.5},
        {"initial": 2.0},
        {"tolerance": 0.9},
        {"tolerance": math.inf},
        {"backoff": 0.0},
        {"backoff": 1.0},
        {"min_latency_gap": -0.001},
        {"min_latency_gap": math.nan},
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveLimit(**kwargs)


def test_bad_samples_raise() -> None:
    limiter = AdaptiveLimit()
    with pytest.raises(ValueError, match="before started"):
        limiter.on_sample(started=2.0, ended=1.0, in_flight=1)
    with pytest.raises(ValueError, match="before started"):
        limiter.on_sample(started=math.nan, ended=1.0, in_flight=1)
    with pytest.raises(ValueError, match="in_flight"):
        limiter.on_sample(started=0.0, ended=1.0, in_flight=0)
