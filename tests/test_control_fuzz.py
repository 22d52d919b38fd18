"""A run's control endpoint under random input (hypothesis): random bytes, lines cut short or
over the limit, JSON that is not a message (wrong types, unknown or missing fields, NaN and
Infinity, nesting deeper than the parser goes), controls before the hello, a second hello, huge
ids, and wrong or missing TCP tokens, mixed with valid messages over several connections at once,
to one real run of the demo API.

Each connection is checked against a model of the protocol: every valid message before the first
invalid one is answered (a welcome, a reply to each control by its id), then the connection is
closed; a wrong TCP token gets `refused` and nothing else. Meanwhile the run goes on undisturbed:
it never logs an error, and once the fuzzing ends it finishes with every record once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_connector.config import LoadedConfig
from tui_connector.control import ControlAddress, ControlServer, socket_path, token_path
from tui_connector.control.wire import MAX_MESSAGE_BYTES, encode
from tui_connector.demo.server import DemoServer
from tui_connector.facade import RunResult

from helpers import async_wait_for, expected_ids, free_port, lake_ids, served_run

EXAMPLES = int(os.environ.get("CONTROL_FUZZ_EXAMPLES", "120"))
SOURCES = ("s0", "s1")
RECORDS = 20_000
PAGE = 100
# Slow enough that the run outlasts the fuzzing (200 pages a source), lifted afterwards.
REQUESTS_PER_SECOND = 2.0
REFUSED = b'{"type":"error","error":"refused"}\n'
READ_TIMEOUT = 30.0  # a connection still open after this long was never closed

SOURCE_ACTIONS = ("pause", "resume", "stop", "retry", "set_auto")
RUN_ACTIONS = ("pause_all", "resume_all", "request_stop")


def config_text(url: str) -> str:
    cursor = "pagination: {type: cursor, cursor: {header: X-Next-Cursor}, cursor_param: after}"
    return "commit_interval: 0\nsources:\n" + "".join(
        f"  {name}:\n    url: {url}/v1/header-cursor/{name}\n"
        f"    params: {{limit: {PAGE}, dataset_size: {RECORDS}}}\n"
        f"    rate_limit: {REQUESTS_PER_SECOND}\n    {cursor}\n"
        for name in SOURCES
    )


# -- what a client sends, and what the model expects of it -------------------------------------


@dataclass(frozen=True)
class Send:
    """Bytes for one connection, and what the protocol says they are: `hello` (answered by a
    welcome), `control` (answered by a reply, `ok` or not), `refused` (a TCP hello with a wrong
    token: answered by `refused`, then closed), `foreign` (a hello of another protocol: an error,
    then closed) or `broken` (closes the connection unanswered)."""

    data: bytes
    kind: str
    what: str
    read_only: bool = False
    id: int = 0
    ok: bool = True
    error: str = ""


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
NOT_AN_INT = st.one_of(
    st.floats(), st.text(max_size=10), st.booleans(), st.none(), st.lists(st.integers())
)
NOT_A_STRING = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text()))
# Any text a JSON string can carry, but lone surrogates (which the protocol refuses anyway).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
IDS = st.integers(-(10**40), 10**40) | st.sampled_from([0, 2**63, -(2**63) - 1, 10**4000])
UNKNOWN_SOURCES = TEXT.filter(lambda name: name not in SOURCES)
POSITIVE = st.floats(min_value=1e-9, max_value=1e300)
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
CONTROL = {"type": "control", "id": 1, "action": "set_concurrency", "source": "s0", "value": 2}
FIELDS = {"type", "protocol", "token", "interval", "read_only", "id", "action", "source", "value"}
NAMES = {"hello", "control", *SOURCE_ACTIONS, *RUN_ACTIONS, "set_concurrency", "set_rate_limit"}
BREAKAGES = (
    "random bytes",
    "cut short",
    "over the limit",
    "not an object",
    "wrong type",
    "unknown field",
    "missing field",
    "unknown type or action",
    "NaN or Infinity",
    "out of range",
    "nested deeply",
    "not UTF-8",
)


def dumps(message: Any) -> bytes:
    """As `wire.encode`, but NaN and Infinity written as JSON's extension literals."""
    return json.dumps(message, allow_nan=True).encode() + b"\n"


@st.composite
def hellos(draw: st.DrawFn, token: str | None) -> tuple[dict[str, Any], bool]:
    """A valid hello (its token: the run's, on TCP; any on the Unix socket, which ignores it)."""
    read_only = draw(st.booleans())
    message: dict[str, Any] = {"type": "hello", "protocol": 1}
    if draw(st.booleans()):
        message["read_only"] = read_only
    else:
        read_only = False
    if draw(st.booleans()):
        message["interval"] = draw(st.floats(0.1, 60) | st.integers(1, 60))
    if token is not None:
        message["token"] = token
    elif draw(st.booleans()):
        message["token"] = draw(st.none() | TEXT)
    return message, read_only


@st.composite
def controls(draw: st.DrawFn, read_only: bool) -> Send:
    """A valid control, and the reply it must get; on a connection that may steer, only those
    that leave the run's pace and lake alone (the run's own sources get a concurrency or a retry,
    which a running source declines)."""
    request_id = draw(IDS)
    ours = draw(st.sampled_from(SOURCES))
    options: list[tuple[dict[str, Any], bool, str]] = [
        ({"action": "set_concurrency", "source": ours, "value": draw(st.integers(1, 8))}, True, ""),
        ({"action": "retry", "source": ours}, True, ""),
    ]
    elsewhere = draw(UNKNOWN_SOURCES)
    options += [
        ({"action": action, "source": elsewhere}, False, "no source") for action in SOURCE_ACTIONS
    ]
    options.append(
        (
            {
                "action": "set_rate_limit",
                "source": elsewhere,
                "value": draw(st.none() | st.floats(0, 1e9)),
            },
            False,
            "no source",
        )
    )
    if read_only:  # anything at all, refused
        options += [({"action": action}, False, "read-only") for action in RUN_ACTIONS]
        options += [
            ({"action": action, "source": ours}, False, "read-only") for action in SOURCE_ACTIONS
        ]
    fields, ok, error = draw(st.sampled_from(options))
    if read_only:
        ok, error = False, "read-only"
    message = {"type": "control", "id": request_id, **fields}
    if draw(st.booleans()):
        message = dict(reversed(list(message.items())))  # the order of fields is free
    return Send(encode(message), "control", fields["action"], id=request_id, ok=ok, error=error)


@st.composite
def broken(draw: st.DrawFn, kind: str, valid: bytes) -> Send:
    """Bytes that are no message, whatever follows them on the connection (a line cut short runs
    into the next one, which leaves a `{` open)."""
    hello: dict[str, Any] = {"type": "hello", "protocol": 1}
    message = draw(st.sampled_from([hello, CONTROL]))
    if kind == "random bytes":
        data = draw(st.binary(min_size=1, max_size=300)) + b"\n"
    elif kind == "cut short":
        data = valid[: draw(st.integers(1, len(valid) - 2))]
    elif kind == "over the limit":
        pad = "x" * (MAX_MESSAGE_BYTES + draw(st.integers(0, 1000)))
        data = draw(st.sampled_from([pad.encode() + b"\n", encode({**message, "pad": pad})]))
    elif kind == "not an object":
        data = dumps(draw(JSON_VALUES.filter(lambda value: not isinstance(value, dict))))
    elif kind == "wrong type":
        field = draw(st.sampled_from(sorted(message)))
        wrong = NOT_A_STRING if field in ("type", "action", "source") else NOT_AN_INT
        data = dumps({**message, field: draw(wrong)})
    elif kind == "unknown field":
        name = draw(TEXT.filter(lambda name: name not in FIELDS))
        data = dumps({**message, name: draw(JSON_VALUES)})
    elif kind == "missing field":
        field = draw(st.sampled_from(sorted(message)))
        data = dumps({key: value for key, value in message.items() if key != field})
    elif kind == "unknown type or action":
        field = draw(st.sampled_from(["type", "action"]))
        data = dumps({**message, field: draw(TEXT.filter(lambda text: text not in NAMES))})
    elif kind == "NaN or Infinity":
        nan = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        data = draw(
            st.sampled_from(
                [
                    dumps({**hello, "interval": nan}),
                    dumps({**hello, "protocol": nan}),
                    dumps({**CONTROL, "id": nan}),
                    dumps({**CONTROL, "value": nan}),
                    dumps({**CONTROL, "action": "set_rate_limit", "value": nan}),
                ]
            )
        )
    elif kind == "out of range":
        data = draw(
            st.sampled_from(
                [
                    dumps({**hello, "interval": draw(st.floats(-1e9, 0.0999) | st.floats(60.01))}),
                    dumps({**hello, "token": "t" * draw(st.integers(201, 5000))}),
                    dumps({**CONTROL, "value": draw(st.integers(max_value=0))}),
                    dumps({**CONTROL, "value": draw(st.integers(min_value=1_000_001))}),
                    dumps({**CONTROL, "action": "set_rate_limit", "value": -draw(POSITIVE)}),
                    dumps({**CONTROL, "source": "s" * 1001}),
                    # An id longer than Python reads a number (4300 digits).
                    b'{"type":"control","id":' + b"9" * 4400 + b',"action":"pause_all"}\n',
                ]
            )
        )
    elif kind == "nested deeply":
        depth = draw(st.integers(1000, 200_000))
        nested = b"[" * depth + b"]" * depth
        data = draw(
            st.sampled_from([nested + b"\n", b'{"type":"control","id":1,"x":' + nested + b"}\n"])
        )
    else:  # not UTF-8
        data = b'{"type":"hello","protocol":1,"token":"' + draw(INVALID_UTF8) + b'"}\n'
    return Send(data, "broken", kind)


@dataclass(frozen=True)
class Connection:
    tcp: bool
    script: tuple[Send, ...]


@st.composite
def connections(draw: st.DrawFn, token: str, breakage: str) -> Connection:
    """A connection's messages: an opening, valid controls, maybe something that breaks the
    protocol (a second hello is one), then messages that must go unanswered."""
    tcp = draw(st.booleans())
    openings = ["hello", "hello", "hello", "another protocol", "control first", "broken"]
    opening = draw(st.sampled_from([*openings, *(["wrong token"] if tcp else [])]))
    own_token = token if tcp else None
    script: list[Send] = []
    read_only = False
    if opening == "hello":
        message, read_only = draw(hellos(own_token))
        script.append(Send(encode(message), "hello", "hello", read_only=read_only))
        script += [draw(controls(read_only)) for _ in range(draw(st.integers(0, 4)))]
    elif opening == "wrong token":
        hello: dict[str, Any] = {"type": "hello", "protocol": 1}
        if draw(st.booleans()):
            hello["token"] = draw(st.none() | TEXT.filter(lambda text: text != token))
        script.append(Send(encode(hello), "refused", "wrong token", error="refused"))
    elif opening == "another protocol":
        protocol = draw(st.integers().filter(lambda number: number != 1))
        hello = {"type": "hello", "protocol": protocol, "token": own_token}
        script.append(Send(encode(hello), "foreign", "another protocol", error="protocol"))
    elif opening == "control first":
        script.append(draw(controls(read_only=False)))
    valid = script[-1].data if script else encode(CONTROL)
    ending = draw(st.sampled_from(["none", "broken", "broken", "broken", "hello again"]))
    if opening == "broken" or ending == "broken":
        script.append(draw(broken(breakage, valid)))
    elif ending == "hello again":
        message, _ = draw(hellos(own_token))
        script.append(Send(encode(message), "hello", "hello again"))
    script += [draw(controls(read_only)) for _ in range(draw(st.integers(0, 2)))]
    return Connection(tcp, tuple(script))


@dataclass(frozen=True)
class Plan:
    connections: tuple[Connection, ...]
    order: tuple[int, ...]  # which connection sends its next message, step by step


@st.composite
def plans(draw: st.DrawFn, token: str, breakage: str) -> Plan:
    """Connections whose broken messages are of one kind (`BREAKAGES`)."""
    opened = tuple(draw(connections(token, breakage)) for _ in range(draw(st.integers(1, 4))))
    turns = [index for index, connection in enumerate(opened) for _ in connection.script]
    return Plan(opened, tuple(draw(st.permutations(turns))))


def expected_answers(script: tuple[Send, ...]) -> tuple[list[tuple[Any, ...]], bool]:
    """What the protocol answers to `script`, in order (updates aside), and whether a message
    broke it: it ends at the first that does, or with one answered by an error."""
    answers: list[tuple[Any, ...]] = []
    welcomed = False
    for send in script:
        if not welcomed and send.kind == "hello":
            answers.append(("welcome",))
            welcomed = True
        elif not welcomed and send.kind in ("refused", "foreign"):
            answers.append(("error", send.error))
            return answers, False
        elif welcomed and send.kind == "control":
            answers.append(("reply", send.id, send.ok, send.error))
        else:  # broken; a control before the hello; a hello after it
            return answers, True
    return answers, False


def answers_of(received: bytes) -> list[tuple[Any, ...]]:
    """The answers in what a connection received, checked to be whole JSON-lines messages."""
    assert received == b"" or received.endswith(b"\n"), received[-200:]
    answers: list[tuple[Any, ...]] = []
    for line in received.splitlines():
        message = json.loads(line)
        kind = message["type"]
        if kind == "welcome":
            assert message["facts"]["selected"] == list(SOURCES)
            answers.append(("welcome",))
        elif kind == "reply":
            error = "" if message["ok"] else message["error"]
            answers.append(("reply", message["id"], message["ok"], error))
        elif kind == "error":
            answers.append(("error", message["error"]))
        else:
            assert kind == "update", message
    return answers


def matches(expected: list[tuple[Any, ...]], answered: list[tuple[Any, ...]]) -> bool:
    """Each answer as expected; a reply's or an error's text need only contain what the model
    names (e.g. "no source" in "no source 'x' in this run")."""
    if len(expected) != len(answered):
        return False
    for want, got in zip(expected, answered, strict=True):
        if want[:-1] != got[:-1] or (len(want) > 1 and str(want[-1]) not in str(got[-1])):
            return False
    return True


class Client:
    """One raw connection: sends what it is told until the endpoint hangs up, then reads
    everything to the end."""

    def __init__(self, connection: Connection, unix: str, tcp: ControlAddress) -> None:
        if connection.tcp:
            self.socket = socket.create_connection((tcp.host, tcp.port))
        else:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.socket.connect(unix)
        self.socket.settimeout(READ_TIMEOUT)
        self.hung_up = False

    def send(self, data: bytes) -> None:
        if self.hung_up:
            return
        try:
            self.socket.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.hung_up = True

    def received(self) -> bytes:
        """All the endpoint sent, once it has closed the connection (told there is no more)."""
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := self.socket.recv(1 << 16):
                received += chunk
        except ConnectionResetError:  # closed with our lines unread: all it sent came first
            pass
        except TimeoutError:
            raise AssertionError(
                f"the endpoint kept a connection open: {received[-300:]!r}"
            ) from None
        finally:
            self.socket.close()
        return received


def exchange(plan: Plan, unix: str, tcp: ControlAddress) -> list[bytes]:
    clients = [Client(connection, unix, tcp) for connection in plan.connections]
    scripts = [iter(connection.script) for connection in plan.connections]
    for index in plan.order:
        clients[index].send(next(scripts[index]).data)
    return [client.received() for client in clients]


async def test_random_input_closes_its_connection_and_never_disturbs_the_run(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server = demo_server_factory(records=RECORDS, page_size=PAGE)
    config = write_config(config_text(server.url))
    tcp = ControlAddress.parse(f"tcp://127.0.0.1:{free_port()}")
    seen: Counter[str] = Counter()
    async with served_run(config, ControlServer(tcp=tcp)) as (run, task):
        token = token_path(run.facts.state_path).read_text().strip()
        unix = str(socket_path(run.facts.state_path))
        await async_wait_for(lambda: set(run.snapshot().sources) == set(SOURCES))
        pages = {name: run.snapshot().sources[name].pages for name in SOURCES}

        def check(plan: Plan) -> None:
            logged = len(caplog.records)
            for connection, received in zip(
                plan.connections, exchange(plan, unix, tcp), strict=True
            ):
                expected, broke = expected_answers(connection.script)
                if connection.script[0].kind == "refused":
                    assert received == REFUSED  # and nothing else: no detail, no welcome
                answered = answers_of(received)
                assert matches(expected, answered), (connection, expected, answered)
                seen.update(send.what for send in connection.script)
                seen.update(answer[0] for answer in answered)
                seen["broke the protocol"] += broke
            # The run goes on as it was, and the endpoint logged no error (the server logs
            # before it hangs up).
            assert not task.done()
            assert run.stop_requested_at is None
            assert not any(run.is_paused(name) for name in SOURCES)
            assert not errors_in(caplog.records[logged:]), errors_in(caplog.records[logged:])

        def fuzz() -> None:
            for breakage in BREAKAGES:  # each kind as often: hypothesis draws unevenly
                examples = settings(
                    max_examples=max(1, EXAMPLES // len(BREAKAGES)),
                    deadline=None,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                )
                examples(given(plans(token, breakage))(check))()

        await asyncio.to_thread(fuzz)
        assert not task.done()
        for name in SOURCES:  # the run went on while it was fuzzed
            assert run.snapshot().sources[name].pages > pages[name]
            run.set_rate_limit(name, None)
        result = await asyncio.wait_for(task, 60)
    assert result == RunResult(done=list(SOURCES))
    for name in SOURCES:
        assert lake_ids(tmp_path / "lake", name) == expected_ids(name, RECORDS)
    assert not errors_in(caplog.records), errors_in(caplog.records)
    # The test can fail: the endpoint saw every kind of input, answered the valid messages and
    # told each connection that broke the protocol why it hung up.
    assert set(BREAKAGES) | {"wrong token", "another protocol", "hello again"} <= set(seen), seen
    assert seen["welcome"] and seen["reply"] and seen["error"], seen
    told = [record for record in caplog.records if "broke the protocol" in record.getMessage()]
    assert len(told) == seen["broke the protocol"]


def errors_in(records: list[logging.LogRecord]) -> list[str]:
    return [record.getMessage() for record in records if record.levelno >= logging.ERROR]
