"""The hostile routes: hang, trickle, huge, redirects, error statuses, deep JSON, echoes."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tui_connector.demo import data
from tui_connector.demo.server import DemoServer

from .helpers import MIB, TOKEN, Factory, assert_quiet, read_at_least
from helpers import wait_for

HOSTILE = (
    "/bad/hang/a",
    "/bad/trickle/a",
    "/bad/huge/a",
    "/bad/redirect-loop/a",
    "/bad/redirect-away/a?to=http://example.invalid/",
    "/bad/status/404/a",
    "/bad/never-valid/a",
    "/bad/deep/a",
    "/bad/echo-error/a",
)


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_routes_need_the_token_under_secure(client: httpx.Client, path: str) -> None:
    response = client.get(f"/secure{path}")
    assert response.status_code == 401 and response.json() == {"error": "unauthorized"}


def test_hang_never_answers_until_the_client_gives_up(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/v1/bad/hang/h", timeout=httpx.Timeout(5, read=0.3))
    assert time.monotonic() - started >= 0.3
    wait_for(lambda: server.in_flight == 0, timeout=30, what="the server to see the client go")
    [entry] = server.log()
    assert (entry.path, entry.status, entry.fault) == ("/v1/bad/hang/h", 0, None)
    assert entry.ended - entry.started >= 0.3
    assert httpx.get(f"{server.url}/v1/pages/h").status_code == 200
    assert_quiet(caplog)


def test_a_hang_holds_a_turn_of_the_capacity(factory: Factory) -> None:
    server = factory(capacity=1, capacity_queue=0)
    with socket.create_connection((server.host, server.port), timeout=5) as hanging:
        hanging.sendall(b"GET /v1/bad/hang/c HTTP/1.1\r\nHost: demo\r\n\r\n")
        wait_for(lambda: server.serving == 1, timeout=5, what="the hang to be served")
        assert httpx.get(f"{server.url}/v1/pages/c").status_code == 429  # over capacity
    wait_for(lambda: server.serving == 0, timeout=30, what="the turn to be given back")
    assert httpx.get(f"{server.url}/v1/pages/c").status_code == 200
    assert [(e.status, e.fault) for e in server.log()] == [
        (429, "capacity"),
        (0, None),
        (200, None),
    ]


def test_trickle_beats_a_read_timeout(factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    server = factory()
    started = time.monotonic()
    timeout = httpx.Timeout(5, read=0.1)  # shorter than the whole, longer than a byte's wait
    with httpx.stream("GET", f"{server.url}/v1/bad/trickle/tr?every_ms=20", timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
        got = read_at_least(r, 30)
    assert time.monotonic() - started >= 29 * 0.02  # a byte at a time, and no read timeout
    assert got[:30] == b'{"data":[{"id":"tr-000000","n"'
    wait_for(lambda: server.in_flight == 0, timeout=30, what="the server to see the client go")
    assert [(e.status, e.fault) for e in server.log()] == [(200, None)]

    with httpx.stream("GET", f"{server.url}/v1/bad/trickle/tr?every_ms=5000", timeout=0.2) as r:
        chunks = r.iter_raw()
        assert next(chunks) == b"{"  # sent at once
        with pytest.raises(httpx.ReadTimeout):
            next(chunks)
    assert httpx.get(f"{server.url}/v1/bad/trickle/tr?every_ms=0").status_code == 400
    assert_quiet(caplog)


def test_trickle_is_an_endless_valid_json_prefix(demo: DemoServer) -> None:
    with httpx.stream("GET", f"{demo.url}/v1/bad/trickle/tp?every_ms=1", timeout=5) as response:
        text = read_at_least(response, 400).decode()
    records = data.records_json("tp", range(10))
    assert text == ('{"data":[' + records[1:-1] + ",")[: len(text)]


def page_records(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The records of a page ``{"data":[...]}`` read chunk by chunk, checking its JSON on the way
    with no more than a record in memory (the demo's records are flat: one ends at a "}")."""
    buffer, started, ended = b"", False, False
    for chunk in chunks:
        buffer += chunk
        if not started:
            if len(buffer) < 9:
                continue
            assert buffer.startswith(b'{"data":['), buffer[:20]
            buffer, started, expect_record = buffer[9:], True, True
        while buffer and not ended:
            if expect_record and buffer[:1] == b"{":
                end = buffer.find(b"}")
                if end < 0:
                    break
                yield json.loads(buffer[: end + 1])
                buffer, expect_record = buffer[end + 1 :], False
            elif not expect_record and buffer[:1] == b",":
                buffer, expect_record = buffer[1:], True
            else:
                buffer, ended = buffer.lstrip(b" "), True
        if ended and len(buffer) > 2:
            raise AssertionError(f"not a page's end: {buffer[:40]!r}")
    assert started and ended and buffer == b"]}", buffer[:40]


def test_huge_streams_a_valid_page_of_the_size_asked(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("GET", "/v1/bad/huge/hg?mb=3") as response:  # chunked
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
            numbers = [record["n"] for record in page_records(response.iter_bytes())]
            assert response.num_bytes_downloaded == 3 * MIB
        assert numbers == list(range(len(numbers))) and len(numbers) > 3 * MIB // 120

        sized = http.get("/v1/bad/huge/hg?mb=1&length=1")
        assert sized.headers["Content-Length"] == str(MIB) and len(sized.content) == MIB
        assert "Transfer-Encoding" not in sized.headers
        page = sized.json()["data"]  # small enough to parse whole: valid JSON
        assert page == data.records("hg", range(len(page)))
        assert sized.content.endswith(b" ]}") and len(sized.content) - len(json.dumps(page)) < 200

        for length in ("0", "1"):
            empty = http.get(f"/v1/bad/huge/hg?mb=0&length={length}")
            assert empty.content == b'{"data":[]}'
        for bad in ("mb=-1", "mb=x", "length=2"):
            assert http.get(f"/v1/bad/huge/hg?{bad}").status_code == 400
    assert [e.status for e in server.log()] == [200] * 4 + [400] * 3
    assert_quiet(caplog)


def test_huge_can_be_refused_on_its_header(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = factory()
    with httpx.stream("GET", f"{server.url}/v1/bad/huge/hr?length=1", timeout=5) as response:
        assert response.headers["Content-Length"] == str(64 * MIB)  # the default: 64 MiB
    # Refused unread: the server stops writing. (64 MiB cannot fit in the sockets' buffers, so
    # a server that went on writing to a client that reads nothing would never be done.)
    wait_for(lambda: server.in_flight == 0, timeout=30, what="the server to see the client go")
    [entry] = server.log()
    assert entry.status == 200
    assert_quiet(caplog)


def test_redirect_loop_redirects_to_itself_forever(demo: DemoServer, client: httpx.Client) -> None:
    first = client.get("/v1/bad/redirect-loop/rl?keep=me")
    assert first.status_code == 302
    assert first.headers["Location"] == "/v1/bad/redirect-loop/rl?hop=1&keep=me"
    second = client.get(urljoin(str(first.url), first.headers["Location"]))
    assert second.status_code == 302
    assert second.headers["Location"] == "/v1/bad/redirect-loop/rl?hop=2&keep=me"
    following = httpx.Client(base_url=demo.url, follow_redirects=True, max_redirects=5)
    with following, pytest.raises(httpx.TooManyRedirects):
        following.get("/v1/bad/redirect-loop/rl?keep=me")


def test_redirect_away_sends_the_client_to_any_host(client: httpx.Client) -> None:
    to = "http://other.example:8080/steal?x=1"
    response = client.get("/v1/bad/redirect-away/ra", params={"to": to})
    assert response.status_code == 302 and response.headers["Location"] == to
    for bad in ("", "/relative", "ftp://other.example/", "http://", "javascript:alert(1)"):
        response = client.get("/v1/bad/redirect-away/ra", params={"to": bad})
        assert response.status_code == 400 and "to must be" in response.json()["error"], bad
    injected = client.get("/v1/bad/redirect-away/ra", params={"to": "http://a/\r\nX-Evil: 1"})
    assert injected.status_code == 400 and "X-Evil" not in injected.headers


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 500, 599])
def test_status_always_answers_its_code(client: httpx.Client, code: int) -> None:
    for _ in range(2):
        response = client.get(f"/v1/bad/status/{code}/st")
        assert response.status_code == code
        assert response.json()["error"].startswith(f"{code} ")


def test_status_codes_outside_errors_are_refused(client: httpx.Client) -> None:
    for code in ("200", "302", "399", "600"):
        response = client.get(f"/v1/bad/status/{code}/st")
        assert response.status_code == 400 and "code must be" in response.json()["error"]
    assert client.get("/v1/bad/status/40x/st").status_code == 404
    assert client.get("/v1/bad/status/st").status_code == 404


def test_never_valid_is_never_json(client: httpx.Client) -> None:
    for _ in range(3):
        response = client.get("/v1/bad/never-valid/nv")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        with pytest.raises(json.JSONDecodeError):
            response.json()


def test_deep_nests_its_one_record_as_deep_as_asked(client: httpx.Client) -> None:
    assert client.get("/v1/bad/deep/d", params={"depth": 3}).content == b'{"data": [[[[]]]]}'
    deepest = client.get("/v1/bad/deep/d", params={"depth": 100_000}).content
    assert deepest.count(b"[") == 100_001
    for bad in ("0", "100001", "x"):
        response = client.get("/v1/bad/deep/d", params={"depth": bad})
        assert response.status_code == 400 and "depth must be" in response.json()["error"], bad


def test_echo_error_echoes_the_whole_request(client: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-API-Key": TOKEN, "X-Custom": "v"}
    response = client.get(
        "/secure/bad/echo-error/ee", params={"api_key": TOKEN, "q": "1"}, headers=headers
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] and body["method"] == "GET" and body["path"] == "/secure/bad/echo-error/ee"
    assert body["query"] == {"api_key": TOKEN, "q": "1"}
    assert body["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert body["headers"]["x-api-key"] == TOKEN and body["headers"]["x-custom"] == "v"
    assert body["body"] == ""

    posted = client.post(
        "/v1/bad/echo-error/ee?status=401", json={"client_secret": "s3cr3t"}, headers=headers
    )
    assert posted.status_code == 401
    body = posted.json()
    assert body["method"] == "POST" and body["query"] == {"status": "401"}
    assert json.loads(body["body"]) == {"client_secret": "s3cr3t"}
    assert body["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert client.get("/v1/bad/echo-error/ee?status=503").status_code == 503
    refused = client.get("/v1/bad/echo-error/ee?status=200")
    assert refused.status_code == 400 and "status must be" in refused.json()["error"]
