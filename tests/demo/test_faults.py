"""Injected faults: deterministic per seed and request, and what each one does to a reply."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tui_connector.demo.faults import FAULTS, decide, request_key
from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.server import DemoServer

from .helpers import MIB, Factory, assert_quiet, read_at_least
from helpers import RECORDS, wait_for


def test_every_dataset_request_faults_but_control_routes_do_not(factory: Factory) -> None:
    server = factory(records=RECORDS, fault_rate=1.0, faults=("500",))
    with httpx.Client(base_url=server.url) as http:
        for url in ("/v1/pages/f", "/v1/cursor/f", "/v1/all/f", "/secure/link/f"):
            response = http.get(url)
            assert response.status_code == 500 and "error" in response.json()
        assert http.post("/v1/graphql", json={"variables": {"dataset": "f"}}).status_code == 500
        assert http.get("/_demo/knobs").status_code == 200
        assert http.get("/_demo/log").status_code == 200
        assert http.post("/_demo/reset").status_code == 200
        assert http.get("/secure/echo").status_code == 200
    assert server.log() == []  # reset cleared it; control requests are never logged


REQUESTS = [f"/v1/pages/det?page={n % 7 + 1}" for n in range(60)] + ["/v1/all/det"] * 10


def statuses(server: DemoServer) -> list[tuple[int, str | None]]:
    with httpx.Client(base_url=server.url) as http:
        codes = [http.get(url).status_code for url in REQUESTS]
        gql = [
            http.post("/v1/graphql", json={"variables": {"dataset": "det", "first": n}})
            for n in (1, 2, 1, 2, 1, 2)
        ]
    codes += [response.status_code for response in gql]
    return list(zip(codes, [entry.fault for entry in server.log()], strict=True))


def test_faults_are_deterministic(factory: Factory) -> None:
    knobs = {"fault_rate": 0.3, "faults": ("429", "500", "503"), "retry_after_s": 0.01}
    first = statuses(factory(seed=7, **knobs))
    second = statuses(factory(seed=7, **knobs))
    assert first == second
    faulted = [status for status, fault in first if fault]
    assert 0.15 * len(first) < len(faulted) < 0.45 * len(first)
    assert {status for status, _ in first} == {200, 429, 500, 503}
    assert statuses(factory(seed=8, **knobs)) != first


def test_a_retried_request_gets_a_fresh_decision(factory: Factory) -> None:
    server = factory(fault_rate=0.5, faults=("500",), seed=1)
    attempts: list[int] = []
    with httpx.Client(base_url=server.url) as http:
        for page in range(1, 9):
            for attempt in range(1, 50):
                if http.get(f"/v1/pages/retry?page={page}").status_code == 200:
                    attempts.append(attempt)
                    break
    assert len(attempts) == 8  # every page eventually succeeded
    assert max(attempts) > 1  # and some only after a retry


def test_reset_restarts_the_occurrence_counters(factory: Factory) -> None:
    server = factory(fault_rate=0.5, faults=("500",), seed=2)
    with httpx.Client(base_url=server.url) as http:
        before = [http.get("/v1/all/r?x=1").status_code for _ in range(12)]
        server.reset()
        after = [http.get("/v1/all/r?x=1").status_code for _ in range(12)]
    assert before == after and len(set(before)) == 2


def test_fault_decision_is_a_pure_function() -> None:
    key = request_key("GET", "/v1/pages/a", "per_page=5&page=2", b"")
    assert key == request_key("GET", "/v1/pages/a", "page=2&per_page=5", b"")  # sorted query
    assert key != request_key("POST", "/v1/pages/a", "page=2&per_page=5", b"")
    assert key != request_key("GET", "/v1/pages/a", "page=2&per_page=5", b"{}")
    faults = ("429", "500")
    runs = [[decide(0, key, k, 0.5, faults) for k in range(200)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert {None, "429", "500"} == set(runs[0])
    assert all(decide(0, key, k, 0.0, faults) is None for k in range(50))
    assert all(decide(0, key, k, 1.0, faults) in faults for k in range(50))
    assert runs[0] != [decide(1, key, k, 0.5, faults) for k in range(200)]


def test_429_retry_after_seconds_and_date(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("429",), retry_after_s=2.5)
    response = httpx.get(f"{server.url}/v1/pages/t")
    assert response.status_code == 429 and response.headers["Retry-After"] == "2.5"
    server.update_knobs(retry_after_s=1.0)
    assert httpx.get(f"{server.url}/v1/pages/t").headers["Retry-After"] == "1"
    server.update_knobs(faults=("503",))
    response = httpx.get(f"{server.url}/v1/pages/t")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"

    server.update_knobs(faults=("429-date",), retry_after_s=2.5)
    before = datetime.now(UTC)
    response = httpx.get(f"{server.url}/v1/pages/t")
    after = datetime.now(UTC)
    assert response.status_code == 429
    when = parsedate_to_datetime(response.headers["Retry-After"])
    assert when.tzinfo is not None and when.microsecond == 0
    # Rounded up to whole seconds: never earlier than asked, at most one second later.
    assert before + timedelta(seconds=2.5) <= when <= after + timedelta(seconds=3.5)


def test_drop_closes_the_connection_without_a_response(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("drop",))
    with httpx.Client(base_url=server.url) as http:
        with pytest.raises(httpx.TransportError):
            http.get("/v1/pages/d")
        server.update_knobs(fault_rate=0.0)
        assert http.get("/v1/pages/d").status_code == 200  # the server lives on
    assert [(e.status, e.fault) for e in server.log()] == [(0, "drop"), (200, None)]


def test_truncate_sends_half_the_json(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("truncate",))
    url = f"{server.url}/v1/cursor/tr?limit=10"
    truncated = httpx.get(url)
    assert truncated.status_code == 200
    assert truncated.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    server.update_knobs(fault_rate=0.0)
    full = httpx.get(url).content
    assert truncated.content == full[: len(full) // 2]


def test_latency_and_slow(factory: Factory) -> None:
    server = factory(latency_ms=100)
    started = time.monotonic()
    assert httpx.get(f"{server.url}/v1/all/l").status_code == 200
    assert time.monotonic() - started >= 0.1
    # Control routes have no latency: with a 10-minute one, they still answer.
    server.update_knobs(latency_ms=600_000)
    assert httpx.get(f"{server.url}/_demo/knobs", timeout=60).status_code == 200
    server.update_knobs(latency_ms=0, fault_rate=1.0, faults=("slow",), slow_ms=150)
    started = time.monotonic()
    assert httpx.get(f"{server.url}/v1/all/l").status_code == 200
    assert time.monotonic() - started >= 0.15
    assert server.log()[-1].fault == "slow"


def test_the_default_fault_mix_has_every_fault() -> None:
    assert FAULTS[:7] == ("429", "429-date", "500", "503", "slow", "drop", "truncate")
    assert set(FAULTS[7:]) == {"html-200", "wrong-content-type", "drop-mid-body"}
    assert DemoKnobs().faults == FAULTS
    key = request_key("GET", "/v1/pages/mix", "", b"")
    drawn = Counter(decide(3, key, k, 1.0, FAULTS) for k in range(2000))
    assert set(drawn) == set(FAULTS) and min(drawn.values()) > 100


def outcomes(server: DemoServer) -> list[tuple[str, int, str | None]]:
    """What a client sees for a fixed sequence of requests (a status or the transport error),
    with what the server logged for each."""
    seen: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for url in [f"/v1/pages/mix?page={n % 9 + 1}" for n in range(90)] + ["/v1/all/mix"] * 10:
            try:
                response = http.get(url)
                seen.append(f"{response.status_code} {response.headers['Content-Type']}")
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
    log = server.log()
    return [(s, e.status, e.fault) for s, e in zip(seen, log, strict=True)]


def test_the_default_mix_is_deterministic(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    knobs = {"fault_rate": 0.6, "slow_ms": 1, "retry_after_s": 0.01}
    first = outcomes(factory(seed=7, **knobs))
    assert outcomes(factory(seed=7, **knobs)) == first
    assert {fault for _, _, fault in first} == {None, *FAULTS}
    assert outcomes(factory(seed=8, **knobs)) != first
    assert_quiet(caplog)


def test_stopping_with_a_reply_pending_leaves_no_task_behind(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory(records=RECORDS, latency_ms=30_000)
    with (
        httpx.Client(base_url=server.url, timeout=0.3) as http,
        contextlib.suppress(httpx.TimeoutException),
    ):
        http.get("/v1/pages/pending")  # the client gives up; the server's handler still waits
    server.stop()
    gc.collect()  # a task left pending in the closed loop is destroyed (and logged) here
    assert_quiet(caplog)


def test_slow_is_how_read_timeouts_are_tested(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("slow",), slow_ms=600)
    with pytest.raises(httpx.ReadTimeout):  # the client gave up before the slow reply came
        httpx.get(f"{server.url}/v1/pages/s", timeout=httpx.Timeout(5, read=0.2))
    wait_for(lambda: len(server.log()) == 1, timeout=5, what="the slow reply")
    assert [(e.status, e.fault) for e in server.log()] == [(200, "slow")]


def test_html_200_is_a_proxy_error_page(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("html-200",))
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for url in ("/v1/pages/h", "/v1/bad/hang/h", "/v1/bad/huge/h"):  # it replaces any reply
            response = http.get(url)
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/html"
            assert "<html>" in response.text and "<h1>502 Bad Gateway</h1>" in response.text
            with pytest.raises(json.JSONDecodeError):
                response.json()
    assert [(e.status, e.fault) for e in server.log()] == [(200, "html-200")] * 3


def test_wrong_content_type_is_the_right_json(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("wrong-content-type",))
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for url in ("/v1/pages/w?page=2", "/v1/bad/huge/w?mb=0&length=1"):
            labelled = http.get(url)
            server.update_knobs(fault_rate=0.0)
            right = http.get(url)
            server.update_knobs(fault_rate=1.0)
            assert labelled.headers["Content-Type"] == "text/html; charset=utf-8"
            assert right.headers["Content-Type"] == "application/json"
            assert labelled.status_code == right.status_code == 200
            assert labelled.content == right.content and labelled.json() == right.json()
    faults = [(e.status, e.fault) for e in server.log()]
    assert faults == [(200, "wrong-content-type"), (200, None)] * 2


def raw_get(server: DemoServer, path: str) -> tuple[str, bytes]:
    """GET over a bare socket: the response head, and every byte after it until the server
    closes the connection (what an HTTP client would hide)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n".encode())
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return head.decode(), body


def header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def test_drop_mid_body_closes_the_connection_half_way(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory(fault_rate=1.0, faults=("drop-mid-body",))
    url = "/v1/cursor/dm?limit=10"
    with httpx.Client(base_url=server.url, timeout=5) as http:
        with pytest.raises(httpx.TransportError) as raised:
            http.get(url)
        assert isinstance(raised.value, httpx.RemoteProtocolError | httpx.ReadError)
        head, partial = raw_get(server, url)
        server.update_knobs(fault_rate=0.0)
        full = http.get(url)  # a new connection: the server lives on
        assert full.status_code == 200 and len(full.json()["items"]) == 10
    assert head.startswith("HTTP/1.1 200 ")
    assert header(head, "Content-Type") == "application/json"
    assert header(head, "Content-Length") == str(len(full.content))  # the whole body's length
    assert partial == full.content[: len(full.content) // 2]  # then only half of it came
    faults = [(e.status, e.fault) for e in server.log()]
    assert faults == [(200, "drop-mid-body"), (200, "drop-mid-body"), (200, None)]
    assert_quiet(caplog)


def test_drop_mid_body_and_truncate_cut_a_streamed_body(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory(fault_rate=1.0, faults=("drop-mid-body",))
    head, partial = raw_get(server, "/v1/bad/huge/dh?mb=1&length=1")
    assert header(head, "Content-Length") == str(MIB) and len(partial) == MIB // 2
    assert partial.startswith(b'{"data":[{"id":"dh-000000"')
    with pytest.raises(httpx.TransportError):  # chunked: no last chunk
        httpx.get(f"{server.url}/v1/bad/huge/dh?mb=1", timeout=5)

    server.update_knobs(faults=("truncate",))
    short = httpx.get(f"{server.url}/v1/bad/huge/dh?mb=1&length=1", timeout=5)
    assert short.headers["Content-Length"] == str(MIB // 2) and len(short.content) == MIB // 2
    chunked = httpx.get(f"{server.url}/v1/bad/huge/dh?mb=1", timeout=5)  # ends cleanly
    assert "Content-Length" not in chunked.headers and chunked.content == short.content
    faults = [(e.status, e.fault) for e in server.log()]
    assert faults == [(200, "drop-mid-body")] * 2 + [(200, "truncate")] * 2
    assert_quiet(caplog)


def test_faults_that_need_a_body_do_not_apply_to_hang_and_trickle(factory: Factory) -> None:
    server = factory(fault_rate=1.0, faults=("truncate", "drop-mid-body"))
    timeout = httpx.Timeout(5, read=0.3)
    with httpx.stream("GET", f"{server.url}/v1/bad/trickle/t?every_ms=5", timeout=timeout) as r:
        assert r.status_code == 200  # no half of a never-ending body: served as it is
        assert read_at_least(r, 20)[:20] == b'{"data":[{"id":"t-00'
    wait_for(lambda: len(server.log()) == 1, timeout=5, what="the server to see the client go")
    server.update_knobs(faults=("wrong-content-type", "truncate", "drop-mid-body"))
    with pytest.raises(httpx.ReadTimeout):  # no reply to relabel or cut: it still hangs
        httpx.get(f"{server.url}/v1/bad/hang/t", timeout=timeout)
    wait_for(lambda: len(server.log()) == 2, timeout=5, what="both requests to end")
    assert [(e.path, e.status, e.fault) for e in server.log()] == [
        ("/v1/bad/trickle/t", 200, None),
        ("/v1/bad/hang/t", 0, None),
    ]
