"""`d` hands a run to the background as the operator left it: the pauses and limits set by hand
are recorded by the run, carried in a file beside the state, applied by the run that takes
over; the sources that were done or stopped by hand are left out of it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.engine.steering import Steering, handover_path
from tui_connector.telemetry import SourceStatus

from helpers import async_wait_for, cli, expected_ids, lake_ids

PAGES = "records: data\npagination:\n  type: page_number\n  size_param: per_page\n  size: 10\n"


def sources_yaml(url: str, names: tuple[str, ...]) -> str:
    return "sources:\n" + "".join(
        f"  {name}:\n    url: {url}/v1/pages/{name}\n"
        + "".join(f"    {line}\n" for line in PAGES.splitlines())
        for name in names
    )


def requests_of(server: DemoServer, name: str) -> int:
    return sum(1 for entry in server.log() if entry.path.endswith(f"/{name}"))


async def test_the_run_records_what_the_operator_set_by_hand(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    slow = demo_server_factory(records=2000, page_size=10, latency_ms=20)
    quick = demo_server_factory(records=20, page_size=10, latency_ms=0)
    config = write_config(
        sources_yaml(slow.url, ("alpha", "beta", "gamma"))
        + sources_yaml(quick.url, ("delta",)).removeprefix("sources:\n")
    )
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run(until_done=False))
        stats = engine.telemetry.sources
        await async_wait_for(lambda: stats["delta"].status is SourceStatus.DONE, within=60)
        engine.pause("alpha")
        engine.pause("delta")  # done: nothing to pause
        engine.set_concurrency("alpha", 0)  # `-` at 1: the limit stays 1
        engine.set_concurrency("beta", 3)
        engine.set_rate_limit("beta", 40.0)
        engine.set_rate_limit("gamma", 5.0)
        engine.set_rate_limit("gamma", 0)  # the operator lifted the limit: no limit carried
        engine.stop("gamma")
        engine.stop("delta")  # done already: not stopped by hand
        steering = engine.steering
        assert steering.paused == {"alpha"}
        assert steering.concurrency == {"alpha": 1, "beta": 3}
        assert steering.rate_limits == {"beta": 40.0, "gamma": None}
        assert steering.stopped == {"gamma"}
        await async_wait_for(lambda: stats["gamma"].status.finished, what="gamma stopped")
        handed = engine.handover()
        assert (handed.stopped, handed.done, handed.left_out) == (
            {"gamma"},
            {"delta"},
            {"gamma", "delta"},
        )
        handed.write(handover_path(config.state))  # valid as recorded: the file takes it
        assert engine.retry("gamma")
        assert engine.steering.stopped == set()
        engine.request_stop()
        await asyncio.wait_for(task, timeout=60)


async def test_a_run_taking_over_applies_the_pauses_and_limits_it_was_handed(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=200, page_size=10, latency_ms=5)
    config = write_config(sources_yaml(server.url, ("alpha", "beta")))
    engine = Engine(config)
    engine.carry_over(
        Steering(paused={"alpha", "gone"}, concurrency={"beta": 2}, rate_limits={"beta": 400.0})
    )
    async with engine:
        task = asyncio.create_task(engine.run())
        stats = engine.telemetry.sources
        await async_wait_for(lambda: stats["beta"].status is SourceStatus.DONE, within=60)
        assert stats["alpha"].status is SourceStatus.PAUSED
        assert requests_of(server, "alpha") == 0
        assert (stats["beta"].concurrency, stats["beta"].rate_limit) == (2, 400.0)
        assert engine.steering.paused == {"alpha"}  # carried on, should it be handed over again
        engine.resume("alpha")
        result = await asyncio.wait_for(task, timeout=60)
    assert sorted(result.done) == ["alpha", "beta"]
    assert lake_ids(config.out, "alpha") == expected_ids("alpha", 200)


def test_the_handover_file_is_private_and_taken_once(tmp_path: Path) -> None:
    path = handover_path(tmp_path / "state.db")
    handed = Steering(
        paused={"a"}, stopped={"b"}, concurrency={"c": 4}, rate_limits={"c": 2.5}, done={"d"}
    )
    handed.write(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    taken = Steering.take(path)
    assert taken == handed
    assert taken.left_out == {"b", "d"}
    assert not path.exists()


def test_run_leaves_out_what_the_handover_says_was_done(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(records=100, page_size=10, latency_ms=0)
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"state: {tmp_path}/state.db\nout: {tmp_path}/lake\n"
        + sources_yaml(server.url, ("alpha", "beta"))
    )
    handed = handover_path(tmp_path / "state.db")
    Steering(done={"alpha"}).write(handed)
    ran = cli("run", str(config), "--headless", "--handover", str(handed))
    assert ran.returncode == 0, ran.stderr
    assert requests_of(server, "alpha") == 0
    assert lake_ids(tmp_path / "lake", "beta") == expected_ids("beta", 100)
    assert not handed.exists()

    Steering(done={"alpha"}, stopped={"beta"}).write(handed)
    nothing = cli("run", str(config), "--headless", "--handover", str(handed))
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to take over" in nothing.stdout


def test_a_handover_file_that_is_not_valid_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(f"state: {tmp_path}/state.db\nsources:\n  a: {{url: http://127.0.0.1:9}}\n")
    handed = tmp_path / "handover.json"
    handed.write_text(json.dumps({"concurrency": {"a": 0}}))
    ran = cli("run", str(config), "--headless", "--handover", str(handed))
    assert ran.returncode == 2
    assert f"the hand-over file {handed} is not valid" in ran.stderr
    assert "Traceback" not in ran.stderr
    missing = cli("run", str(config), "--headless", "--handover", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "cannot read the hand-over file" in missing.stderr


async def test_the_children_of_a_source_stopped_by_hand_are_left_out_with_it(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=200, page_size=10, latency_ms=20)
    config = write_config(
        f"sources:\n  repos:\n    url: {server.url}/v1/offset/repos\n    records: results\n"
        "    params: {dataset_size: 400}\n"
        "    pagination: {type: offset, limit: 5, parallel: false, stop: {total_records: count}}\n"
        f"  issues:\n    url: {server.url}/v1/pages/{{repo}}\n    records: data\n"
        "    params: {per_page: 10, dataset_size: 20}\n"
        "    partitions: {type: parent, source: repos, value: id, path: repo}\n"
        "    pagination: {type: page_number, stop: {total_records: total}}\n"
    )
    engine = Engine(config)
    async with engine:
        task = asyncio.create_task(engine.run(until_done=False))
        stats = engine.telemetry.sources
        await async_wait_for(lambda: stats["issues"].pages >= 2, what="the child under way")
        engine.stop("repos")
        await async_wait_for(
            lambda: stats["repos"].status.finished and stats["issues"].status.finished,
            what="parent and child stopped",
        )
        assert engine.steering.stopped == {"repos"}
        assert engine.handover().left_out == {"repos", "issues"}
        engine.request_stop()
        await asyncio.wait_for(task, timeout=60)
