"""Every way a connection or a response can go wrong, from a raw socket server on 127.0.0.1,
over both transports (aiohttp, the default, and `transport: httpx`): the error says what
happened, is retried when another attempt may help, counts as a connection error (not a
timeout) for adaptive concurrency, and never reaches the engine's catch-all."""

from __future__ import annotations

import json
import logging
import random
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import trustme

from tui_connector.config import LoadedConfig
from tui_connector.exchange import PageRequest
from tui_connector.http.errors import FetchError
from tui_connector.http.source import SourceHttp
from tui_connector.http.transport import server_of
from tui_connector.redact import Redactor
from tui_connector.telemetry import AttemptOutcome, RunTelemetry

from helpers import cli, run_engine

TRANSPORTS = ["aiohttp", "httpx"]
ATTEMPTS = 3
READ_TIMEOUT = 0.3
CONNECT_TIMEOUT = 0.5  # time enough for a TLS handshake with a test server on a busy machine
RECORDS = [{"id": 1}, {"id": 2}]
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)
# Paths whose first requests are reset, how many.
RESET_FIRST = {"/reset-twice": 2, "/paged": 4}
# Bytes that are no HTTP: seeded, so every run sends the same (none is a line break).
NOISE = bytes(b for b in random.Random(17).randbytes(96) if b not in b"\r\n")[:48]


class FaultServer:
    """A raw TCP server: each connection's request is answered as its path says, each path
    breaking HTTP its own way (see `_answer`). `requests` counts the requests per path.
    With `tls`, connections are TLS first (with a certificate no client trusts)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: Counter[str] = Counter()
        lock = threading.Lock()
        fault = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                connection: socket.socket = self.request
                if tls is not None:
                    try:
                        connection = tls.wrap_socket(connection, server_side=True)
                    except (ssl.SSLError, OSError):
                        return  # the client refused the certificate, as it should
                head = _read_head(connection)
                if not head.startswith(b"GET "):
                    # What a plain HTTP server says to a TLS handshake.
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                path, _, query = head.split(b" ", 2)[1].decode().partition("?")
                with lock:
                    fault.requests[path] += 1
                    seen = fault.requests[path]
                fault._answer(connection, path, parse_qs(query), seen)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(
        self, connection: socket.socket, path: str, query: dict[str, list[str]], seen: int
    ) -> None:
        if path == "/reset" or seen <= RESET_FIRST.get(path, 0):
            # No FIN but a RST: linger on, for no time.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif path == "/close":
            pass
        elif path == "/slow":
            connection.recv(1)  # nothing is sent until the client gives up and closes
        elif path == "/paged":  # pages 1-4, 50 ms each
            page = int(query["page"][0])
            time.sleep(0.05)
            connection.sendall(_ok(json.dumps([{"id": page}] if page <= 4 else []).encode()))
        else:
            connection.sendall(_REPLIES[path])
            if path == "/bad-chunk-later":
                # The body's first chunk reads fine, then a bad one arrives on its own.
                time.sleep(0.2)
                connection.sendall(b"zz\r\n[3]\r\n0\r\n\r\n")
        connection.close()


class _QuietServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # every source of a run connects at once: none may wait for a SYN

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up first (after a timeout, a bad chunk) is no news


def _read_head(connection: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        data = connection.recv(65536)
        if not data:
            break
        head += data
        if not head.startswith(b"GET"):
            break
    return head


def _ok(body: bytes, *headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", *headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_REPLIES = {
    "/ok": _ok(json.dumps(RECORDS).encode()),
    "/reset-twice": _ok(json.dumps(RECORDS).encode()),
    "/bad-status": b"HTTP/1.1 OK-ish nonsense\r\n\r\n",
    "/noise": NOISE + b"\r\n\r\n",
    "/bad-chunk": CHUNKED_HEAD + b"5\r\n[1,2]\r\nzz\r\n[3]\r\n0\r\n\r\n",
    "/bad-chunk-later": CHUNKED_HEAD + b"5\r\n[1,2]\r\n",
    "/truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1,2",
    "/bad-gzip": _ok(b"[1, 2] is not gzip", "Content-Encoding: gzip"),
}


@dataclass(frozen=True)
class Fault:
    """What a source whose server fails this way must be told."""

    says: str  # the error's message: all of it, or its beginning when it ends in "..."
    retried: bool = True
    timed_out: bool = False
    # The status line was valid (a transport may still refuse the whole response at once).
    valid_status_line: bool = False

    def matches(self, message: str) -> bool:
        if self.says.endswith("..."):
            return message.startswith(self.says[:-3])
        return message == self.says


INVALID = "the server sent an invalid HTTP response: ..."
CUT_SHORT = "the server closed the connection before the response was complete: ..."
FAULTS = {
    "refused": Fault("connection refused (127.0.0.1:..."),  # which server refused
    "/reset": Fault("connection reset by peer"),
    "/close": Fault("the server closed the connection without a response"),
    "/bad-status": Fault(INVALID),
    "/noise": Fault(INVALID),
    "/bad-chunk": Fault(INVALID, valid_status_line=True),
    "/bad-chunk-later": Fault(INVALID, valid_status_line=True),
    "/truncated": Fault(CUT_SHORT, valid_status_line=True),
    "/slow": Fault(
        f"timed out (ReadTimeout): the server sent nothing for {READ_TIMEOUT:g} s (timeout.read)",
        timed_out=True,
    ),
    "/bad-gzip": Fault(
        "the response body does not decode as its Content-Encoding says: ...",
        valid_status_line=True,
    ),
    "tls-to-plain": Fault("TLS handshake failed: wrong version number", retried=False),
    "untrusted": Fault("TLS certificate verification failed: ...", retried=False),
    "dns": Fault("DNS lookup of no-such-host.invalid failed: ..."),
    "no-accept": Fault(
        f"timed out (ConnectTimeout): no connection within {CONNECT_TIMEOUT:g} s (timeout.connect)",
        timed_out=True,
    ),
}
DETAILS = {  # what the invalid responses' messages quote, on both transports
    "/bad-status": "OK-ish nonsense",
    "/bad-chunk": "zz",
    "/bad-chunk-later": "zz",
    "/truncated": "100",
    "/bad-gzip": "incorrect header check",
}


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def untrusted() -> Iterator[FaultServer]:
    """A TLS server whose certificate comes from a CA no client here trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    server = FaultServer(tls=context)
    yield server
    server.close()


@pytest.fixture(scope="module")
def refusing() -> Iterator[str]:
    """The URL of a port that refuses connections: bound, never listening, so no other
    process can take it while the tests run."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


@pytest.fixture(scope="module")
def not_accepting() -> Iterator[str]:
    """The URL of a server that accepts no connection: its accept queue is full (a backlog
    of none, and a connection waiting in it), so the kernel drops the SYNs of any other."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        with socket.create_connection(address), socket.socket() as second:
            second.setblocking(False)
            second.connect_ex(address)  # whichever of the two gets in, the queue is full
            yield f"http://{address[0]}:{address[1]}/"


@pytest.fixture
def url_of(
    faults: FaultServer, untrusted: FaultServer, refusing: str, not_accepting: str
) -> Callable[[str], str]:
    def url(fault: str) -> str:
        special = {
            "refused": f"{refusing}/",
            "no-accept": not_accepting,
            "tls-to-plain": faults.url.replace("http://", "https://") + "/ok",
            "untrusted": f"{untrusted.url}/ok",
            "dns": "http://no-such-host.invalid/",
        }
        return special.get(fault, f"{faults.url}{fault}")

    return url


def source_yaml(
    name: str,
    url: str,
    transport: str,
    extra: str = "",
    attempts: int = ATTEMPTS,
    read_timeout: float = READ_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> str:
    return (
        f"  {name}:\n    url: {url}\n    transport: {transport}\n"
        f"    retry: {{max_attempts: {attempts}, backoff_base: 0.01, backoff_max: 0.05}}\n"
        f"    timeout: {{connect: {connect_timeout}, read: {read_timeout}, total: 10}}\n{extra}"
    )


def requests_per_attempt(transport: str, fault: str) -> int:
    """aiohttp sends an idempotent request once more by itself when its connection is reset
    or closed before the response (RFC 9112 9.3.1: for a kept-alive connection the server
    closed meanwhile); each attempt is two requests then."""
    return 2 if transport == "aiohttp" and fault in ("/reset", "/close") else 1


async def fetch(
    config: LoadedConfig, url: str
) -> tuple[FetchError | list[object], RunTelemetry, list[AttemptOutcome]]:
    """Fetch `url` with the config's source "s": the error (or the records) and what its
    telemetry heard."""
    telemetry = RunTelemetry()
    reporter = telemetry.reporter("s")
    outcomes: list[AttemptOutcome] = []
    reporter.attempt_listener = outcomes.append
    source_http = SourceHttp(config.sources["s"], reporter, Redactor(), pool_size=2)
    request = PageRequest(method="GET", url=url, params={}, json=None)
    try:
        response = await source_http.fetch(request)
    except FetchError as error:
        return error, telemetry, outcomes
    finally:
        await source_http.aclose()
    return response.body, telemetry, outcomes


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_each_failure_says_what_happened_and_is_retried_as_it_deserves(
    fault: str,
    transport: str,
    url_of: Callable[[str], str],
    faults: FaultServer,
    write_config: Callable[..., LoadedConfig],
) -> None:
    expected = FAULTS[fault]
    url = url_of(fault)
    config = write_config("sources:\n" + source_yaml("s", url, transport))
    served_before = faults.requests[fault]
    error, telemetry, outcomes = await fetch(config, url)
    assert isinstance(error, FetchError), error
    assert expected.matches(error.message), error.message
    if fault in DETAILS:
        assert DETAILS[fault] in error.message
    attempts = ATTEMPTS if expected.retried else 1
    assert (error.retryable, error.attempts) == (expected.retried, attempts)
    if fault.startswith("/"):
        sent = attempts * requests_per_attempt(transport, fault)
        assert faults.requests[fault] - served_before == sent
    # Every attempt said the same, and the retries were told as such.
    retries = list(telemetry.errors)
    assert [event.error for event in retries] == [error.message] * (attempts - 1)
    assert all(event.next_step.startswith("retrying in ") for event in retries)
    assert telemetry.sources["s"].retries == attempts - 1
    # A timeout is a timeout; anything else is not (adaptive concurrency learns from this).
    assert [o.timed_out for o in outcomes] == [expected.timed_out] * attempts
    if not expected.valid_status_line:
        assert [o.status for o in outcomes] == [None] * attempts


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_reset_twice_is_retried_into_the_page(
    transport: str, faults: FaultServer, write_config: Callable[..., LoadedConfig]
) -> None:
    url = f"{faults.url}/reset-twice"
    config = write_config("sources:\n" + source_yaml("s", url, transport))
    faults.requests["/reset-twice"] = 0
    body, telemetry, outcomes = await fetch(config, url)
    assert body == RECORDS
    assert faults.requests["/reset-twice"] == 3
    failed = 2 // requests_per_attempt(transport, "/reset")
    assert [event.error for event in telemetry.errors] == ["connection reset by peer"] * failed
    assert [(o.status, o.timed_out) for o in outcomes] == [(None, False)] * failed + [(200, False)]


AUTO = "    concurrency: {min: 1, max: 8, start: 4}\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_transport_failure_reaches_the_engines_catch_all(
    transport: str,
    url_of: Callable[[str], str],
    write_config: Callable[..., LoadedConfig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    names = {fault: fault.strip("/") for fault in FAULTS}
    text = "sources:\n" + "".join(
        source_yaml(names[fault], url_of(fault), transport, AUTO) for fault in FAULTS
    )
    text += source_yaml("fine", url_of("/ok"), transport, AUTO)
    caplog.set_level(logging.ERROR, logger="tui_connector")
    result, engine = await run_engine(write_config(text))
    assert result.done == ["fine"]
    assert sorted(result.failed) == sorted(names.values())
    # The catch-all logs a traceback and calls the failure an internal error: neither.
    assert [r for r in caplog.records if r.name.startswith("tui_connector.engine")] == []
    for fault, expected in FAULTS.items():
        stats = engine.telemetry.sources[names[fault]]
        attempts = ATTEMPTS if expected.retried else 1
        plural = "s" if attempts > 1 else ""
        said, _, tries = (stats.last_error or "").rpartition(" after ")
        assert expected.matches(said) and tries == f"{attempts} attempt{plural}", stats.last_error
        # Adaptive concurrency is lowered by a timeout alone.
        if expected.timed_out:
            assert stats.concurrency_reason == "lowered: request timed out"
            assert stats.concurrency < 4
        else:
            assert stats.concurrency_reason == "adaptive: starting", (fault, stats)
            assert stats.concurrency == 4


async def test_a_failed_connection_is_no_latency_for_adaptive_concurrency(
    faults: FaultServer, write_config: Callable[..., LoadedConfig]
) -> None:
    # Four resets, then four pages at 50 ms: were the resets (a few milliseconds)
    # latencies, they would make the first window and its median the baseline, and the
    # pages' window would read as latency rising. Counted as what they are, they leave one
    # window of pages, the baseline, and the limit unchanged. (`transport: httpx`: aiohttp
    # would send each attempt twice, see `requests_per_attempt`.)
    url = f"{faults.url}/paged"
    extra = (
        "    concurrency: {min: 1, max: 8, start: 2}\n"
        "    pagination: {type: page_number, parallel: false}\n"
    )
    # Timeouts far above a page's 50 ms and a local connection's: on a loaded machine a read
    # once took over 0.3 s, and that timeout was, rightly, a fifth retry; a fifth retry came
    # once more (the attempt failed before the server saw it: a connection past the 0.5 s the
    # other tests allow, most likely).
    config = write_config(
        "sources:\n"
        + source_yaml("s", url, "httpx", extra, attempts=6, read_timeout=5.0, connect_timeout=5.0)
    )
    faults.requests["/paged"] = 0
    result, engine = await run_engine(config)
    assert result.done == ["s"]
    stats = engine.telemetry.sources["s"]
    assert stats.records == 4 and stats.retries == 4
    assert (stats.concurrency, stats.concurrency_reason) == (2, "adaptive: starting")


def test_a_headless_run_says_plainly_what_failed(
    url_of: Callable[[str], str], tmp_path: Path
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n"
        + source_yaml("refused", url_of("refused"), "aiohttp")
        + source_yaml("reset", url_of("/reset"), "aiohttp")
        + source_yaml("garbled", url_of("/bad-status"), "aiohttp")
        + source_yaml("fine", url_of("/ok"), "aiohttp")
    )
    result = cli("run", "--headless", str(config), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    summary = lines[lines.index(next(line for line in lines if line.startswith("failed: "))) :]
    refusing = httpx.URL(url_of("refused"))
    assert (
        f"  refused: connection refused ({refusing.host}:{refusing.port}) after {ATTEMPTS} attempts"
        in summary
    )
    assert f"  reset: connection reset by peer after {ATTEMPTS} attempts" in summary
    (garbled,) = [line for line in summary if line.startswith("  garbled: the server sent ")]
    assert garbled.startswith("  garbled: the server sent an invalid HTTP response: ")
    assert "OK-ish nonsense" in garbled
    output = result.stdout + result.stderr
    for misleading in ("timed out", "Timeout", "internal error", "Traceback"):
        assert misleading not in output, output


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:9/x", "127.0.0.1:9"),
        ("http://api.example/x", "api.example:80"),
        ("https://api.example/x", "api.example:443"),
        ("http://[::1]:8080/x", "[::1]:8080"),
        ("https://user:hunter2@api.example/x", "api.example:443"),
    ],
)
def test_a_connect_error_names_the_server_and_never_a_password(url: str, named: str) -> None:
    assert server_of(httpx.Request("GET", url)) == named
