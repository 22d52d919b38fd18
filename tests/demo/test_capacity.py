"""Capacity: at most N served at once, a short line for a turn, 429 past it; changed live."""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tui_connector.demo.knobs import DemoKnobs

from .helpers import Factory
from helpers import wait_for


def fire(url: str, count: int) -> list[httpx.Response]:
    """`count` concurrent GETs of `url`, each on its own connection."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(timeout=10, limits=limits) as http:
            return list(await asyncio.gather(*(http.get(url) for _ in range(count))))

    return asyncio.run(main())


def test_capacity_serves_n_queues_some_and_rejects_the_rest(factory: Factory) -> None:
    server = factory(latency_ms=200, capacity=4, capacity_queue=2, retry_after_s=0.25)
    responses = fire(f"{server.url}/v1/pages/cap", 12)
    assert Counter(r.status_code for r in responses) == {200: 6, 429: 6}
    for rejected in (r for r in responses if r.status_code == 429):
        assert rejected.json() == {"error": "over capacity"}
        assert rejected.headers["Retry-After"] == "0.25"
    log = server.log()
    assert Counter((e.status, e.fault) for e in log) == {(200, None): 6, (429, "capacity"): 6}
    assert server.max_serving == 4
    assert (server.serving, server.waiting, server.in_flight) == (0, 0, 0)
    served = sorted(e.ended - e.started for e in log if e.status == 200)
    refused = [e.ended - e.started for e in log if e.status == 429]
    assert max(refused) < served[0]  # answered at once, not after a turn
    assert served[0] >= 0.2 and served[-1] >= 0.3  # two waited for a turn: about 2x the latency
    assert served[-1] > served[0]


def test_capacity_changes_live(factory: Factory) -> None:
    server = factory(latency_ms=300, capacity=1, capacity_queue=3)
    url = f"{server.url}/v1/all/live"
    with ThreadPoolExecutor(max_workers=1) as pool:
        burst = pool.submit(fire, url, 4)
        wait_for(lambda: server.waiting == 3, timeout=5, what="three requests in line")
        server.update_knobs(capacity=4)  # the three are served together, not one by one
        assert [r.status_code for r in burst.result()] == [200] * 4
    assert server.max_serving == 3

    server.reset()
    assert server.max_serving == 0
    with httpx.Client(base_url=server.url) as http:
        knobs = {"capacity": 2, "capacity_queue": 0, "latency_ms": 150}
        changed = http.post("/_demo/knobs", json=knobs).json()
    assert (changed["capacity"], changed["capacity_queue"]) == (2, 0)
    assert Counter(r.status_code for r in fire(url, 4)) == {200: 2, 429: 2}
    assert server.max_serving == 2

    server.update_knobs(capacity=None)  # no limit: every request is served at once
    assert [r.status_code for r in fire(url, 8)] == [200] * 8
    assert server.max_serving > 4


def test_capacity_admission_comes_before_auth(factory: Factory) -> None:
    server = factory(capacity=1, token="cap-secret-42")
    assert httpx.get(f"{server.url}/secure/pages/a").status_code == 401
    headers = {"Authorization": "Bearer cap-secret-42"}
    assert httpx.get(f"{server.url}/secure/pages/a", headers=headers).status_code == 200
    assert [e.status for e in server.log()] == [401, 200]
    assert server.max_serving == 1 and server.serving == 0


def test_capacity_knobs_are_validated() -> None:
    assert DemoKnobs().capacity is None and DemoKnobs().capacity_queue is None
    assert [DemoKnobs(capacity=n).queue_limit for n in (1, 2, 9)] == [1, 1, 4]
    assert DemoKnobs(capacity=9, capacity_queue=0).queue_limit == 0
    for bad in ({"capacity": 0}, {"capacity_queue": -1}):
        with pytest.raises(ValueError):
            DemoKnobs(**bad)  # type: ignore[arg-type]
    for bad_type in ({"capacity": True}, {"capacity": 2.0}, {"capacity_queue": "1"}):
        with pytest.raises(TypeError):
            DemoKnobs(**bad_type)  # type: ignore[arg-type]
