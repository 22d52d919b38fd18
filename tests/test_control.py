"""The control endpoint: a run's view and controls served over its Unix socket (and TCP with a
token), and `RemoteRun`, the facade a front end in another process attaches with. Here both
ends share one event loop; tests/test_attach.py runs them in separate processes."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.control import ControlAddress, ControlServer, RemoteRun, socket_path, token_path
from tui_connector.control.client import RUN_ENDED
from tui_connector.control.wire import MAX_MESSAGE_BYTES, encode
from tui_connector.demo.server import DemoServer
from tui_connector.facade import RunError, RunResult
from tui_connector.telemetry import SourceStatus

from helpers import async_wait_for, free_port, lake_ids, served_run


def slow_config(url: str, sources: int = 2, records: int = 2000) -> str:
    lines = ["commit_interval: 0", "sources:"]
    for index in range(sources):
        lines += [
            f"  s{index}:",
            f"    url: {url}/v1/header-cursor/s{index}",
            f"    params: {{limit: 20, dataset_size: {records}}}",
            "    pagination: {type: cursor, cursor: {header: X-Next-Cursor}, cursor_param: after}",
        ]
    return "\n".join(lines) + "\n"


async def test_an_attached_client_sees_the_run_and_its_end(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    tmp_path: Path,
) -> None:
    server = demo_server_factory(latency_ms=20, records=2000, page_size=20)
    config = write_config(slow_config(server.url))
    async with served_run(config) as (run, task):
        path = socket_path(run.facts.state_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        remote = RemoteRun(ControlAddress(unix=path))
        await remote.open()
        try:
            assert remote.facts.selected == ("s0", "s1")
            assert remote.facts.attached and not remote.facts.read_only
            assert remote.describe("s0") == run.describe("s0")
            await async_wait_for(
                lambda: (
                    remote.snapshot().sources.get("s0") is not None
                    and remote.snapshot().sources["s0"].records > 0
                ),
                what="records seen through the socket",
            )
            result = await asyncio.wait_for(remote.run(), 60)
        finally:
            await remote.close()
        own = await task
    assert remote.ended == f"{RUN_ENDED} (2 done, 0 failed, 0 stopped)"
    assert result == own == RunResult(done=["s0", "s1"])
    mirrored, original = remote.snapshot(), run.snapshot()
    for name in ("s0", "s1"):
        theirs, ours = mirrored.sources[name], original.sources[name]
        assert (theirs.status, theirs.records, theirs.pages, theirs.requests) == (
            ours.status,
            ours.records,
            ours.pages,
            ours.requests,
        )
        assert remote.lake(name) == run.lake(name)
    assert not mirrored.in_flight
    assert not path.exists()  # the endpoint is gone with the run


async def test_the_picture_of_a_run_where_nothing_changes_is_there_at_once(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(latency_ms=20, records=2000, page_size=20)
    config = write_config(slow_config(server.url, sources=1))
    async with served_run(config) as (run, _task):
        sources = run.snapshot().sources
        await async_wait_for(lambda: "s0" in sources and sources["s0"].pages > 0)
        run.pause("s0")
        await async_wait_for(lambda: sources["s0"].status is SourceStatus.PAUSED)
        remote = RemoteRun(ControlAddress(unix=socket_path(run.facts.state_path)))
        await remote.open()
        try:
            await async_wait_for(lambda: "s0" in remote.snapshot().sources, what="a picture")
            # The one update has come: `status` and `stop` must not wait for another, which a
            # run where nothing changes never sends (they waited 30 s, then saw nothing).
            await asyncio.wait_for(remote.pictured(), 10)
        finally:
            await remote.close()


async def test_controls_reach_the_run(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(latency_ms=30, records=100_000, page_size=20)
    config = write_config(slow_config(server.url, records=100_000))
    async with served_run(config) as (run, task):
        remote = RemoteRun(ControlAddress(unix=socket_path(run.facts.state_path)))
        await remote.open()
        try:
            await async_wait_for(lambda: run.snapshot().sources.get("s1") is not None)
            remote.pause("s0")
            await async_wait_for(lambda: run.is_paused("s0"), what="the pause to arrive")
            await async_wait_for(lambda: remote.is_paused("s0"), what="the pause to be seen")
            await async_wait_for(
                lambda: remote.snapshot().sources["s0"].status is SourceStatus.PAUSED
            )
            paused_at = time.monotonic()
            paused_pages = run.snapshot().sources["s0"].pages
            remote.set_concurrency("s1", 3)
            await async_wait_for(lambda: run.snapshot().sources["s1"].concurrency == 3)
            # Nothing of s0 was asked for while it was paused; it asks again once resumed.
            assert not [e for e in server.log() if "/s0" in e.path and e.started > paused_at]
            remote.resume("s0")
            await async_wait_for(lambda: run.snapshot().sources["s0"].pages > paused_pages)
            assert [e for e in server.log() if "/s0" in e.path and e.started > paused_at]
            remote.stop("s1")
            await async_wait_for(
                lambda: remote.snapshot().sources["s1"].status is SourceStatus.STOPPED
            )
            assert remote.retry("s1")
            await async_wait_for(lambda: run.snapshot().sources["s1"].status.finished is False)
            remote.request_stop()
            result = await asyncio.wait_for(remote.run(), 60)
        finally:
            await remote.close()
        own = await task
    assert own.interrupted and result == own
    assert remote.stop_requested_at is not None


async def test_a_read_only_client_steers_nothing(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(latency_ms=30, records=100_000, page_size=20)
    config = write_config(slow_config(server.url, sources=1, records=100_000))
    async with served_run(config) as (run, _task):
        address = ControlAddress(unix=socket_path(run.facts.state_path))
        watcher, steerer = RemoteRun(address, read_only=True), RemoteRun(address)
        await watcher.open()
        await steerer.open()
        try:
            assert watcher.facts.read_only
            watcher.pause("s0")
            watcher.request_stop()
            await async_wait_for(lambda: (watcher.snapshot().sources.get("s0") or 0) and True)
            # The other client's control passes after the watcher's: had the watcher's gone
            # through, the pause would have arrived first.
            steerer.set_concurrency("s0", 2)
            await async_wait_for(lambda: run.snapshot().sources["s0"].concurrency == 2)
            assert not run.is_paused("s0") and run.stop_requested_at is None
        finally:
            await watcher.close()
            await steerer.close()


async def raw_exchange(path: Path, *lines: bytes) -> bytes:
    """What the endpoint answers to `lines` before it hangs up (or 5 s pass in silence)."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_MESSAGE_BYTES * 2)
    for line in lines:
        writer.write(line)
    writer.write_eof()  # a line cut short stays cut short
    await writer.drain()
    answer = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            answer += chunk
    except TimeoutError:
        pass
    writer.close()
    return answer


HELLO = encode({"type": "hello", "protocol": 1})


@pytest.mark.parametrize(
    "lines",
    [
        [b"not json\n"],
        [b"[1, 2]\n"],
        [encode({"type": "control", "id": 1, "action": "pause", "source": "s0"})],
        [HELLO, b'{"type": "control", "id": 1, "action": "explode"}\n'],
        [HELLO, encode({"type": "control", "id": "1", "action": "pause", "source": "s0"})],
        [
            HELLO,
            encode(
                {
                    "type": "control",
                    "id": 2,
                    "action": "set_rate_limit",
                    "source": "s0",
                    "value": -1,
                }
            ),
        ],
        [b'{"type": "hello", "protocol": 1, "interval": 0}\n'],
        [b"x" * (MAX_MESSAGE_BYTES + 10) + b"\n"],
        [HELLO, b'{"type": "control"'],
    ],
)
async def test_a_client_that_breaks_the_protocol_is_hung_up_on_and_the_run_goes_on(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    lines: list[bytes],
) -> None:
    server = demo_server_factory(latency_ms=10, records=100_000, page_size=20)
    config = write_config(slow_config(server.url, sources=1, records=100_000))
    async with served_run(config) as (run, task):
        path = socket_path(run.facts.state_path)
        answer = await raw_exchange(path, *lines)
        for line in answer.splitlines():
            assert json.loads(line)["type"] in ("welcome", "update")
        assert not task.done() and not run.is_paused("s0")
        pages = run.snapshot().sources["s0"].pages
        await async_wait_for(lambda: run.snapshot().sources["s0"].pages > pages)
        # And the endpoint still serves.
        remote = RemoteRun(ControlAddress(unix=path))
        await remote.open()
        await remote.close()


async def test_tcp_wants_the_runs_token(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(latency_ms=20, records=100_000, page_size=20)
    config = write_config(slow_config(server.url, sources=1, records=100_000))
    tcp = ControlAddress.parse(f"tcp://127.0.0.1:{free_port()}")
    async with served_run(config, ControlServer(unix=False, tcp=tcp)) as (run, _task):
        token_file = token_path(run.facts.state_path)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert not socket_path(run.facts.state_path).exists()
        for wrong in (None, "nope"):
            with pytest.raises(RunError, match="refused the connection: the token is not"):
                await RemoteRun(tcp, token=wrong).open()
        remote = RemoteRun(tcp, token=token_file.read_text().strip())
        await remote.open()
        await remote.close()
    assert not token_file.exists()


def test_tcp_beyond_loopback_needs_the_operator_to_say_so() -> None:
    with pytest.raises(ValueError, match="--control-public"):
        ControlServer(tcp=ControlAddress.parse("tcp://0.0.0.0:8765"))
    ControlServer(tcp=ControlAddress.parse("tcp://0.0.0.0:8765"), public=True)


async def test_a_stale_socket_is_replaced_and_a_long_state_path_works(
    demo, write_config: Callable[..., LoadedConfig], tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    config = write_config(
        f"state: {deep}/state.db\nout: {tmp_path}/lake\nsources:\n"
        f"  items:\n    url: {demo.url}/v1/header-cursor/items\n"
        "    pagination: {type: cursor, cursor: {header: X-Next-Cursor}, cursor_param: after}\n"
    )
    stale = socket_path(deep / "state.db")
    stale.write_text("left by a killed run")
    async with served_run(config) as (_run, task):
        assert stale.is_socket()
        remote = RemoteRun(ControlAddress(unix=stale))
        await remote.open()
        result = await asyncio.wait_for(remote.run(), 60)
        await remote.close()
    assert result.done == ["items"] and (await task).done == ["items"]
    assert sum(lake_ids(tmp_path / "lake").values()) > 0
    assert not stale.exists()


async def test_errors_before_and_after_attaching_are_counted_once(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(
        latency_ms=5, records=600, page_size=20, fault_rate=0.3, seed=3, faults=("500",)
    )
    config = write_config(
        slow_config(server.url, records=1000).replace(
            "commit_interval: 0", "commit_interval: 0\ndefaults:\n  retry: {backoff_base: 0.01}"
        )
    )
    async with served_run(config) as (run, task):
        await async_wait_for(lambda: run.snapshot().errors_seen > 0, what="errors before attaching")
        remote = RemoteRun(ControlAddress(unix=socket_path(run.facts.state_path)))
        await remote.open()
        result = await asyncio.wait_for(remote.run(), 60)
        await remote.close()
        await task
    assert result.done == ["s0", "s1"]
    mirrored, original = remote.snapshot(), run.snapshot()
    for name in ("s0", "s1"):
        assert mirrored.sources[name].errors == original.sources[name].errors > 0
        assert mirrored.sources[name].retries == original.sources[name].retries
    assert [e.text for e in mirrored.errors] == [e.text for e in original.errors]
