"""The command line as an operator uses it: real subprocesses, real signals, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tui_connector.demo.server import DemoServer

from helpers import (
    cli,
    crash_and_resume,
    expected_ids,
    lake_ids,
    start,
    stream_pages,
    wait_for,
)


def backfill_config(tmp_path: Path, url: str, records_per_page: int = 20) -> Path:
    """Three sources in three pagination styles, retrying hard so faults never fail them.
    Batches of a tenth of a second: a short run commits often, so kills land between and
    inside batches."""
    retry = "{max_attempts: 30, backoff_base: 0.01, backoff_max: 0.1}"
    path = tmp_path / "sources.yaml"
    path.write_text(f"""\
commit_interval: 0.1
defaults:
  retry: {retry}
  timeout: {{read: 5, total: 10}}
sources:
  pages:
    url: {url}/v1/pages/pages
    records: data
    pagination: {{type: page_number, size_param: per_page, size: {records_per_page}}}
  cursor:
    url: {url}/v1/cursor/cursor
    records: items
    params: {{limit: {records_per_page}}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
  links:
    url: {url}/v1/link/links
    params: {{per_page: {records_per_page}}}
    pagination: {{type: next_url, next: {{header: Link}}}}
""")
    return path


def assert_lake_exact(out: Path, records: int) -> None:
    for source in ("pages", "cursor", "links"):
        assert lake_ids(out, source) == expected_ids(source, records), source


@pytest.mark.parametrize(
    ("seed", "fault_rate"),
    [
        (1, 0.0),
        pytest.param(2, 0.15, marks=pytest.mark.slow),
        pytest.param(3, 0.3, marks=pytest.mark.slow),
    ],
    ids=["clean", "faults15", "faults30"],
)
def test_sigkill_at_random_instants_then_resume_is_exact(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path, seed: int, fault_rate: float
) -> None:
    records = 1500  # 75 pages per source at 15 ms each: long enough to be killed mid-stream
    server = demo_server_factory(
        records=records,
        latency_ms=15,
        fault_rate=fault_rate,
        seed=seed,
        retry_after_s=0.05,
        faults=("429", "429-date", "500", "503", "drop", "truncate"),
    )
    config = backfill_config(tmp_path, server.url)
    kills = crash_and_resume(config, tmp_path / ".tui-connector" / "state.db", seed)
    assert kills >= 1
    assert_lake_exact(tmp_path / "lake", records)
    leftovers = list((tmp_path / "lake").rglob("*.tmp"))
    assert leftovers == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_commits_then_resume_refetches_nothing(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path, signum: signal.Signals
) -> None:
    records = 400
    server = demo_server_factory(records=records, latency_ms=10)
    config = backfill_config(tmp_path, server.url)
    state = tmp_path / ".tui-connector" / "state.db"
    process = start("run", "--headless", str(config), "--progress-interval", "60")
    wait_for(lambda: stream_pages(state) >= 6, timeout=60, what="some pages committed")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert f"{signum.name}: stopping" in stderr and "Traceback" not in stderr
    fetched = [(e.path, e.query) for e in server.log()]
    final = cli("run", "--headless", str(config))
    assert final.returncode == 0, final.stderr
    assert_lake_exact(tmp_path / "lake", records)
    # Nothing fetched before the interrupt was fetched again.
    refetched = [(e.path, e.query) for e in server.log()[len(fetched) :]]
    assert not set(fetched) & set(refetched)


def test_second_sigint_exits_at_once_and_stays_safe(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    # Every request takes 10 minutes: a graceful stop would wait out its grace for them and then
    # print the run's summary, whatever happened meanwhile; only an immediate exit prints none.
    server = demo_server_factory(records=300, latency_ms=600_000)
    config = backfill_config(tmp_path, server.url)
    process = start("run", "--headless", str(config), "--progress-interval", "60")
    wait_for(
        lambda: server.in_flight >= 1 or process.poll() is not None,
        timeout=30,
        what="requests in flight",
    )
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    while "stopping" not in process.stderr.readline():
        pass
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted:" not in stdout  # no summary: the graceful stop did not run to its end
    server.update_knobs(latency_ms=0)
    final = cli("run", "--headless", str(config))
    assert final.returncode == 0
    assert_lake_exact(tmp_path / "lake", 300)


def test_json_progress_and_exit_codes(demo: DemoServer, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"sources:\n  ok:\n    url: {demo.url}/v1/all/ok\n"
        f"  missing:\n    url: {demo.url}/v1/nothing-here\n"
    )
    result = cli("run", "--headless", str(config), "--progress", "json")
    assert result.returncode == 1, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["done"] == ["ok"] and summary["failed"] == ["missing"]
    assert summary["exit_code"] == 1
    final = {e["source"]: e for e in events if e["event"] == "final"}
    assert final["ok"]["records"] == 237 and final["ok"]["status"] == "done"
    assert "HTTP 404" in final["missing"]["last_error"]


def test_status_reset_and_only(demo: DemoServer, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"sources:\n  alpha:\n    url: {demo.url}/v1/all/alpha\n"
        f"  beta:\n    url: {demo.url}/v1/all/beta\n"
    )
    assert cli("run", "--headless", str(config), "--only", "alpha").returncode == 0
    status = cli("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "alpha" in status.stdout and "beta" not in status.stdout and "done" in status.stdout
    reset = cli("reset", "alpha", "--config", str(config))
    assert reset.returncode == 0 and "1 stream checkpoint(s) removed" in reset.stdout
    rows = json.loads(cli("status", "--config", str(config), "--json").stdout)
    assert rows == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--headless", "--only", "nope"], "unknown source nope"),
        (["run", "--headless", "--progress", "xml"], "Invalid value for '--progress'"),
        (["run", "--bogus"], "No such option '--bogus'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    demo: DemoServer, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "sources.yaml").write_text(f"sources:\n  a:\n    url: {demo.url}/v1/all/a\n")
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_engine_imports_without_textual() -> None:
    code = (
        "import sys; sys.modules['textual'] = None\n"
        "import tui_connector.engine, tui_connector.headless, tui_connector.cli\n"
        "import tui_connector.config, tui_connector.state, tui_connector.http.source\n"
        "import tui_connector.facade, tui_connector.in_process, tui_connector.figures\n"
        "import tui_connector.describe, tui_connector.tui, tui_connector.tui.format\n"
        "assert not any(m == 'textual' or m.startswith('textual.') for m in sys.modules"
        " if sys.modules[m] is not None)\n"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_serve_demo_prints_its_port_and_serves(tmp_path: Path) -> None:
    process = start("serve-demo", "--port", "0", "--records", "5")
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        import httpx

        body = httpx.get(line.removeprefix("listening on ") + "/v1/all/x", timeout=10).json()
        assert [r["id"] for r in body] == [f"x-{n:06d}" for n in range(5)]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert "Traceback" not in stderr


def test_an_empty_first_page_is_reported_as_suspicious(demo: DemoServer, tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    # A page far past the end: the kind of empty result a misspelt filter param gives.
    config.write_text(
        f"sources:\n  empty:\n    url: {demo.url}/v1/pages/e\n    records: data\n"
        "    pagination: {type: page_number, start: 999}\n"
    )
    result = cli("run", "--headless", str(config))
    assert result.returncode == 0
    assert "empty: warning: the first page had no records" in result.stdout


def test_an_empty_partition_among_many_is_no_warning_but_all_empty_is(
    demo: DemoServer, tmp_path: Path
) -> None:
    config = tmp_path / "sources.yaml"
    # Four 6-hour windows of a day whose records all lie in its first hours: a quiet night.
    config.write_text(
        f"sources:\n  activity:\n    url: {demo.url}/v1/offset/activity\n    records: results\n"
        "    pagination: {type: offset, limit: 100, stop: {total_records: count}}\n"
        "    partitions: {type: dates, start: 2024-01-01, end: 2024-01-02, step: 6h,\n"
        "      format: iso, start_param: updated_since, end_param: updated_before}\n"
    )
    result = cli("run", "--headless", str(config))
    assert result.returncode == 0, result.stderr
    assert lake_ids(tmp_path / "lake", "activity") == expected_ids("activity")
    assert "warning" not in result.stdout, result.stdout

    # Every window empty (dates the API has nothing for, a filter param misspelt): worth a word.
    config.write_text(config.read_text().replace("2024-01-0", "2023-01-0"))
    again = cli("run", "--headless", "--full-refresh", str(config))
    assert again.returncode == 0, again.stderr
    assert "activity: warning: none of the 4 partitions' pages had records" in again.stdout


def test_status_tells_a_killed_runs_streams_as_interrupted_and_a_live_ones_as_running(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(records=4000, page_size=20, latency_ms=20)
    config = tmp_path / "sources.yaml"
    config.write_text(
        f"state: {tmp_path}/state.db\nout: {tmp_path}/lake\ncommit_interval: 0\n"
        f"sources:\n  alpha:\n    url: {server.url}/v1/pages/alpha\n    records: data\n"
        "    pagination: {type: page_number, size_param: per_page, size: 20}\n"
    )
    # No control endpoint: status cannot ask the run, only see that it holds the state.
    process = start("run", "--headless", "--no-control", str(config))
    try:
        wait_for(lambda: stream_pages(tmp_path / "state.db") >= 3, what="pages committed")
        live = cli("status", "--config", str(config))
        assert "running" in live.stdout and "interrupted" not in live.stdout, live.stdout
    finally:
        process.kill()
        process.communicate(timeout=60)
    killed = cli("status", "--config", str(config))
    assert killed.returncode == 0, killed.stderr
    assert "interrupted" in killed.stdout and "running" not in killed.stdout, killed.stdout
    streams = cli("status", "--config", str(config), "--streams")
    assert " interrupted " in streams.stdout, streams.stdout
