"""Runs that outlive their terminal, as an operator meets them: a dashboard whose terminal
closes, `d` handing a run to the background, `run --detach`, `status` of a live run, `stop`
and `attach` to a run that has ended. Real processes in real pseudo-terminals; what was
fetched is read from the demo server's log, what landed from the lake."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from terminal import Terminal
from tui_connector.control import socket_path
from tui_connector.demo.server import DemoServer
from tui_connector.engine.steering import handover_path

from helpers import cli, expected_ids, lake_ids, wait_for

# Real processes in pseudo-terminals, each run to its end: the slow set (CI runs it too).
pytestmark = pytest.mark.slow

RECORDS = 6_000  # 300 pages a source at 25 ms: long enough to act on mid-run
NAMES = ("alpha", "beta")
CURSOR = "pagination: {type: cursor, cursor: {header: X-Next-Cursor}, cursor_param: after}"


@pytest.fixture
def server(demo_server_factory: Callable[..., DemoServer]) -> DemoServer:
    return demo_server_factory(latency_ms=25, records=RECORDS, page_size=20)


@pytest.fixture
def config(server: DemoServer, tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(
        f"state: {tmp_path}/state/state.db\nout: {tmp_path}/lake\ncommit_interval: 0\nsources:\n"
        + "".join(
            f"  {name}:\n    url: {server.url}/v1/header-cursor/{name}\n"
            f"    params: {{limit: 20}}\n    {CURSOR}\n"
            for name in NAMES
        )
    )
    return path


def state_of(config: Path) -> Path:
    return config.parent / "state" / "state.db"


def pages_fetched(server: DemoServer) -> Counter[tuple[str, str]]:
    """Each page the server answered with data, and how often."""
    return Counter((e.path, e.query) for e in server.log() if e.status == 200)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def background(pid: int) -> Iterator[int]:
    """A run that went to the background: killed at the end of the test if it still runs."""
    try:
        yield pid
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def assert_exact(config: Path, server: DemoServer) -> None:
    """Every record once in the lake, every page fetched once."""
    for name in NAMES:
        assert lake_ids(config.parent / "lake", name) == expected_ids(name, RECORDS)
    fetched = pages_fetched(server)
    assert fetched and max(fetched.values()) == 1, fetched.most_common(3)


@pytest.mark.parametrize(
    "behind_a_shell",
    [
        pytest.param(False, id="hang-up"),
        # No SIGHUP reaches the run, only failing writes: they used to kill Textual's writer
        # thread and then block the loop forever, the run's lock held, deaf even to SIGTERM.
        pytest.param(True, id="no-hang-up"),
    ],
)
def test_a_dashboard_whose_terminal_goes_away_stops_gracefully_and_the_resume_refetches_nothing(
    config: Path, server: DemoServer, behind_a_shell: bool
) -> None:
    terminal = Terminal("run", str(config), behind_a_shell=behind_a_shell)
    try:
        wait_for(lambda: len(server.log()) > 20, what="pages fetched")
        terminal.close()
        assert terminal.wait() == 130
    finally:
        terminal.kill()
    assert 0 < sum(pages_fetched(server).values()) < 2 * RECORDS / 20
    resumed = cli("run", str(config), "--headless", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(config, server)


def test_d_hands_the_run_to_the_background_where_it_outlives_the_terminal(
    config: Path, server: DemoServer
) -> None:
    terminal = Terminal("run", str(config))
    try:
        wait_for(lambda: len(server.log()) > 20, what="pages fetched")
        terminal.press("d")
        terminal.wait_for_output("watch and steer it: tui-connector attach --state")
        assert terminal.wait() == 0
    finally:
        terminal.kill()  # closes the terminal too
    found = re.search(r"running in the background \(pid (\d+)\)", terminal.output)
    assert found, terminal.output[-2000:]
    with background(int(found[1])) as pid:
        wait_for(lambda: socket_path(state_of(config)).exists(), what="the background run")
        live = cli("status", "--config", str(config))
        assert f"a run is in progress (pid {pid}" in live.stdout, live.stdout
        wait_for(lambda: not alive(pid), timeout=300, what="the background run to finish")
    assert_exact(config, server)
    finished = cli("status", "--config", str(config))
    assert "a run is in progress" not in finished.stdout
    assert finished.stdout.count("done") >= 2, finished.stdout


def test_d_hands_the_run_over_as_the_operator_left_it(config: Path, server: DemoServer) -> None:
    terminal = Terminal("run", str(config))
    try:
        wait_for(lambda: len(server.log()) > 20, what="pages fetched")
        terminal.press("p")  # the selected source: alpha, the first row
        terminal.wait_for_output("paused")
        terminal.press("d")
        terminal.wait_for_output("watch and steer it: tui-connector attach --state")
        assert terminal.wait() == 0
    finally:
        terminal.kill()
    found = re.search(r"running in the background \(pid (\d+)\)", terminal.output)
    assert found, terminal.output[-2000:]
    alpha_fetched = sum(1 for entry in server.log() if "/alpha" in entry.path)
    with background(int(found[1])) as pid:
        wait_for(lambda: socket_path(state_of(config)).exists(), what="the background run")
        assert not handover_path(state_of(config)).exists()  # taken by the background run

        def beta_done() -> bool:
            return bool(re.search(r"beta +done", cli("status", "--config", str(config)).stdout))

        wait_for(beta_done, timeout=300, what="beta done in the background")
        live = cli("status", "--config", str(config)).stdout
        assert re.search(r"alpha +paused", live), live
        assert sum(1 for entry in server.log() if "/alpha" in entry.path) == alpha_fetched
        stopped = cli("stop", "--config", str(config))
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: not alive(pid), what="the stopped run to exit")
    resumed = cli("run", str(config), "--headless", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(config, server)


def test_run_detach_then_status_stop_and_attach_from_other_commands(
    config: Path, server: DemoServer
) -> None:
    started = cli("run", str(config), "--detach")
    assert started.returncode == 0, started.stderr
    found = re.search(r"running in the background \(pid (\d+)\)", started.stdout)
    assert found, started.stdout
    assert f"tui-connector attach --state {state_of(config)}" in started.stdout
    with background(int(found[1])) as pid:
        wait_for(lambda: len(server.log()) > 20, what="pages fetched")
        second = cli("run", str(config), "--headless")
        assert second.returncode == 2 and "in use" in second.stderr, second.stderr
        # Its endpoint answering is not the second one's: that one ended at once, and says so.
        also = cli("run", str(config), "--detach")
        assert also.returncode == 2 and "ended at once" in also.stderr, also.stderr
        assert "in use" in also.stderr and "running in the background" not in also.stdout
        live = cli("status", "--config", str(config))
        assert f"a run is in progress (pid {pid}" in live.stdout
        assert re.search(r"alpha +running", live.stdout), live.stdout
        stopped = cli("stop", "--config", str(config))
        assert stopped.returncode == 0, stopped.stderr
        assert "the run ended: 0 done, 0 failed, 2 stopped" in stopped.stdout
        wait_for(lambda: not alive(pid), what="the stopped run to exit")
    gone = cli("attach", "--config", str(config))
    assert gone.returncode == 1
    assert f"no run is in progress on {state_of(config)}" in gone.stderr
    assert "alpha" in gone.stdout  # and what its state database holds
    nothing = cli("stop", "--config", str(config))
    assert nothing.returncode == 1 and "no run is in progress" in nothing.stderr
    resumed = cli("run", str(config), "--headless", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(config, server)
