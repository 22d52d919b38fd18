"""The adaptive limit's fast start when the work is known (`AdaptiveLimit.expect`): the rules one
at a time, then whole jobs against simulated servers on a simulated clock."""

from __future__ import annotations

import random

import pytest

from tui_connector.adaptive import AdaptiveLimit, LimitChange

from adaptive_sim import BASE, QueueServer, SlowingServer, run_job


def first_page(limiter: AdaptiveLimit, latency: float = 0.050) -> float:
    """The stream's first page, fetched alone; returns when it came back."""
    assert limiter.on_sample(started=0.0, ended=latency, in_flight=1) is None
    return latency


# ---------------------------------------------------------------------------------------------
# Rules, one at a time


def test_known_work_opens_the_limit_after_one_response() -> None:
    limiter = AdaptiveLimit()  # 4, up to 64
    now = first_page(limiter)
    # The first page told 99 more: the limit opens to all it may, paced over one round trip.
    change = limiter.expect(99, now)
    assert change == LimitChange(
        limit=64,
        previous=4,
        reason="raised: 99 requests ready; fast start",
        at=now,
        spread=pytest.approx(0.050),
    )
    assert limiter.limit == 64 and limiter.slow_start
    assert limiter.baseline == pytest.approx(0.050)  # the first page, the probe's yardstick
    assert limiter.expect(99, now) is None  # already there


def test_known_work_is_capped_by_the_work_and_by_maximum() -> None:
    limiter = AdaptiveLimit(maximum=30)
    now = first_page(limiter)
    change = limiter.expect(10, now)
    assert change is not None and change.limit == 10
    assert limiter.expect(8, now) is None  # less than the limit: nothing to open
    assert limiter.expect(3, now) is None
    change = limiter.expect(500, now + 0.01)
    assert change is not None and (change.previous, change.limit) == (10, 30)
    with pytest.raises(ValueError, match="requests"):
        limiter.expect(1.5, now)  # type: ignore[arg-type]


def test_known_work_before_any_response_waits_for_the_first() -> None:
    # Partitions waiting at the start: no latency is known yet to judge the probe by.
    limiter = AdaptiveLimit()
    assert limiter.expect(40, 0.0) is None
    assert limiter.limit == 4
    change = limiter.on_sample(started=0.0, ended=0.060, in_flight=4)
    assert change == LimitChange(
        limit=40,
        previous=4,
        reason="raised: 40 requests ready; fast start",
        at=0.060,
        spread=pytest.approx(0.060),
    )


def test_the_first_429_of_the_probe_cuts_from_the_load_it_was_refused_at() -> None:
    limiter = AdaptiveLimit()
    now = first_page(limiter)
    limiter.expect(99, now)
    # The 37th request in flight was refused: the server takes 36, whatever the limit says.
    change = limiter.on_sample(started=0.070, ended=0.071, in_flight=37, overload="HTTP 429")
    assert change == LimitChange(
        limit=27,
        previous=64,
        reason="lowered: HTTP 429 from the server (37 in flight)",
        at=0.071,
    )
    assert not limiter.slow_start
    # Refusals of requests sent before the cut were acted upon; no second fast start.
    assert limiter.on_sample(started=0.070, ended=0.072, in_flight=38, overload="HTTP 429") is None
    assert limiter.expect(99, 0.08) is None
    assert limiter.limit == 27


def test_after_a_clean_first_window_a_429_cuts_the_limit_as_always() -> None:
    limiter = AdaptiveLimit()
    now = first_page(limiter)
    limiter.expect(99, now)
    for i in range(64):  # the probe's first window: steady latency, the jump confirmed
        started = now + 0.001 * (i + 1)
        assert limiter.on_sample(started=started, ended=started + 0.050, in_flight=64) is None
    change = limiter.on_sample(started=0.2, ended=0.201, in_flight=30, overload="HTTP 503")
    assert change is not None and (change.limit, change.reason) == (
        48,
        "lowered: HTTP 503 from the server",
    )


def test_the_probe_is_judged_against_the_latency_before_it() -> None:
    # The probe's own window ran at the jumped load: alone it would be its own baseline, and
    # a queue would look steady. Judged against the first page, it steps down.
    limiter = AdaptiveLimit()
    now = first_page(limiter, latency=0.040)
    limiter.expect(99, now)
    change = None
    for i in range(64):
        started = now + 0.001 * (i + 1)
        change = limiter.on_sample(started=started, ended=started + 0.100, in_flight=64)
    assert change is not None and (change.previous, change.limit) == (64, 57)
    assert change.reason == "lowered: latency rising (100 ms, baseline 40 ms)"


def test_no_fast_start_once_slow_start_is_over() -> None:
    limiter = AdaptiveLimit()
    now = first_page(limiter)
    limiter.on_sample(started=now, ended=now + 0.001, in_flight=1, overload="timeout")
    assert not limiter.slow_start
    assert limiter.expect(99, now + 0.01) is None
    limiter = AdaptiveLimit()
    limiter.expect(40, 0.0)  # waiting for a first response ...
    limiter.reset(8)  # ... when the operator set the limit and handed it back
    assert limiter.on_sample(started=0.0, ended=0.05, in_flight=1) is None
    assert limiter.expect(40, 0.06) is None
    assert limiter.limit == 8


# ---------------------------------------------------------------------------------------------
# Whole jobs against simulated servers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_short_job_takes_a_few_round_trips(seed: int) -> None:
    def job(limiter: AdaptiveLimit, tell: bool = True) -> float:
        # A server that takes whatever comes, with jitter but no hiccups: the job's end is
        # its last request's, and one hiccup there would be most of the difference.
        server = QueueServer(random.Random(seed), capacity=1000, queue=0, hiccups=0.0)
        result = run_job(limiter, server, pages=100, tell=tell)
        assert result.rejected == 0
        return result.finished

    fixed_64 = job(AdaptiveLimit(minimum=64, maximum=64))
    fast = job(AdaptiveLimit())
    slow = job(AdaptiveLimit(), tell=False)
    # Pacing the probe costs about half a round trip against the same limit set at once.
    assert fast <= fixed_64 + 0.75 * BASE
    assert slow >= fast + 3 * BASE  # doubling per window: from 4 to 64 takes rounds


def test_the_probe_opens_the_client_limit_within_one_round_trip() -> None:
    server = QueueServer(random.Random(1), capacity=1000, queue=0, hiccups=0.0)
    job = run_job(AdaptiveLimit(), server, pages=100)
    probe = job.changes[0]
    assert (probe.previous, probe.limit) == (4, 64)
    assert job.limit_at(probe.at) == 5  # one slot at once, the rest paced
    assert 5 < job.limit_at(probe.at + probe.spread / 2) < 64
    assert job.limit_at(probe.at + probe.spread) == 64


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_paced_probe_is_refused_a_few_times_where_a_burst_is_refused_many(seed: int) -> None:
    def probe_refusals(paced: bool) -> int:
        server = QueueServer(random.Random(seed), capacity=20, queue=10)
        job = run_job(AdaptiveLimit(), server, pages=3000, paced=paced)
        # Either way the first refusal cut the limit under the 30 the server takes ...
        cut = next(c for c in job.changes if c.limit < c.previous)
        assert "429" in cut.reason and cut.limit <= 24
        # ... and the limit found the server's capacity.
        low, high = job.limit_band(after=3.0)
        assert 12 <= low <= high <= 32, (low, high)
        assert not paced or job.rejected < 0.01 * len(job.responses)
        # The probe's refusals: up to the cut, and those sent before it (back at once).
        return sum(rejected for at, rejected in job.responses if at <= cut.at + 0.005)

    paced, burst = probe_refusals(paced=True), probe_refusals(paced=False)
    assert paced <= 3 and burst >= 30  # the burst: 64 sent at once, 30 taken


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fast_start_against_a_slowing_server_finds_its_knee(seed: int) -> None:
    server = SlowingServer(random.Random(seed))
    job = run_job(AdaptiveLimit(), server, pages=3000)
    assert job.changes[0].reason == "raised: 2999 requests ready; fast start"
    assert job.rejected == 0
    low, high = job.limit_band(after=4.0)
    assert 14 <= low <= high <= 34, (low, high)
