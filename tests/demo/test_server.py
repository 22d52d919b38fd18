"""Running the demo server: start, stop (without waiting for slow or hostile requests),
``serve_forever`` and its signals."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.server import DemoServer

from .helpers import assert_quiet, ids
from helpers import wait_for


def test_start_stop_and_a_busy_port() -> None:
    with DemoServer(DemoKnobs(records=1)) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/v1/all/a").json()[0]["id"] == "a-000000"
        with pytest.raises(OSError):
            DemoServer(port=server.port).start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/all/a")


# The hang guard of the two tests below: a stop that waited for the 10-minute request or the
# 5-minute grace would not return within it (a stop takes well under a second).
@pytest.mark.timeout(60)
def test_stop_does_not_wait_for_slow_requests() -> None:
    latency_s = 600
    server = DemoServer(DemoKnobs(latency_ms=latency_s * 1000)).start()
    with httpx.Client(base_url=server.url, timeout=latency_s) as http:
        failed = threading.Event()

        def call() -> None:
            try:
                http.get("/v1/all/slow")
            except httpx.TransportError:
                failed.set()

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        wait_for(lambda: server.in_flight == 1, timeout=5, what="the request to arrive")
        server.stop()
        worker.join(timeout=30)
        assert failed.is_set()  # the request was cut off, not answered: stop did not wait


@pytest.mark.timeout(60)
def test_stop_does_not_wait_for_hostile_requests(caplog: pytest.LogCaptureFixture) -> None:
    grace_s = 300  # longer than the test's hang guard: waiting for it fails the test
    server = DemoServer(DemoKnobs(), shutdown_grace=grace_s).start()
    paths = ("/v1/bad/hang/s", "/v1/bad/trickle/s?every_ms=10000", "/v1/bad/huge/s?mb=512")
    sockets = []
    try:
        for path in paths:  # never read: the huge page fills the buffers, then waits
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sockets.append(sock)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
        wait_for(lambda: server.in_flight == 3, timeout=5, what="the requests to arrive")
        server.stop()
        # Each connection was closed at once (a socket left open would time out its read).
        for sock in sockets:
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(1 << 20):
                    pass
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    entries = sorted((e.path, e.status) for e in server.log())
    assert entries == [("/v1/bad/hang/s", 0), ("/v1/bad/huge/s", 200), ("/v1/bad/trickle/s", 200)]
    assert_quiet(caplog)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_forever_prints_its_url_and_stops_on_a_signal(signum: int) -> None:
    code = (
        "from tui_connector.demo.knobs import DemoKnobs\n"
        "from tui_connector.demo.server import serve_forever\n"
        "serve_forever(DemoKnobs(records=2))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(r"listening on http://127\.0\.0\.1:\d+\n", line)
        url = line.removeprefix("listening on ").strip()
        assert ids(httpx.get(f"{url}/v1/all/z", timeout=10).json()) == ["z-000000", "z-000001"]
    finally:
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert stdout == "" and stderr == ""
