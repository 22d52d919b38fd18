"""What a run tells of its sources wherever it is shown — headless text and JSON progress, the
summary, `status`: the server's reason for a refused request, how to give a source the auth a
server wants, and where a finished parallel stream stands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer

from helpers import cli, run_engine

# The demo API refuses a page size that is not a number with a 400 and its reason as JSON.
REASON = "per_page must be an integer, not 'fifty'"
REFUSED = """\
  sized:
    url: {url}/v1/pages/sized
    records: data
    params: {{per_page: fifty}}
    pagination: {{type: page_number}}
"""
# The demo's /secure routes want a bearer token (the session's server has one); its
# /bad/status/403 route refuses everyone.
DENIED = """\
  anonymous:
    url: {url}/secure/all/anonymous
  forbidden:
    url: {url}/v1/bad/status/403/forbidden
  wrong:
    url: {url}/secure/all/wrong
    auth: {{type: bearer, token: not-the-token}}
"""
# One parallel stream: the first page tells the total, the other 99 go concurrently.
PARALLEL = """\
  parallel:
    url: {url}/v1/pages/parallel
    records: data
    params: {{per_page: 10, dataset_size: 1000}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_a_refused_request_shows_what_the_server_said_everywhere(
    demo: DemoServer, tmp_path: Path
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text("sources:\n" + REFUSED.format(url=demo.url))
    said = f'HTTP 400 Bad Request after 1 attempt: {{"error":"{REASON}"}}'

    progress = cli("run", "--headless", str(config), "--progress", "json", cwd=tmp_path)
    assert progress.returncode == 1, progress.stderr
    (final,) = [event for event in json_events(progress.stdout) if event["event"] == "final"]
    assert final["status"] == "failed" and final["last_error"] == said

    text = cli("run", "--headless", str(config), "--progress-interval", "0.1", cwd=tmp_path)
    assert text.returncode == 1, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.startswith("sized ") and line.endswith(f"error: {said}") for line in lines)
    assert f"  sized: {said}" in lines  # the summary

    streams = cli("status", "--streams", "--config", str(config), cwd=tmp_path)
    assert f"sized/all: {said}" in streams.stdout.splitlines(), streams.stdout
    (row,) = json.loads(cli("status", "--json", "--config", str(config), cwd=tmp_path).stdout)
    assert row["status"] == "failed" and row["last_error"] == said


async def test_a_401_without_auth_says_how_to_add_it_and_with_auth_to_check_it(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config("sources:\n" + DENIED.format(url=demo.url))
    result, engine = await run_engine(config)
    assert result.failed == ["anonymous", "forbidden", "wrong"]
    errors = {name: stats.last_error or "" for name, stats in engine.telemetry.sources.items()}
    example = 'add auth: to the source in sources.yaml, e.g. auth: {type: bearer, token: "'
    # The demo's 401 challenges for a bearer token.
    assert errors["anonymous"].startswith("HTTP 401 Unauthorized after 1 attempt: ")
    assert (
        "; the server wants authentication (Bearer) and the source sends none: "
        in (errors["anonymous"])
    )
    assert example in errors["anonymous"]
    assert "refuses access and the source sends no credentials" in errors["forbidden"]
    assert example in errors["forbidden"]
    for name in ("anonymous", "forbidden"):
        assert "check the source's auth credentials" not in errors[name]
    assert errors["wrong"].endswith(
        "; check the source's auth credentials (and the environment variable behind them)"
    )
    assert "add auth:" not in errors["wrong"]


def test_the_last_progress_of_a_parallel_stream_says_where_it_stands(
    demo: DemoServer, tmp_path: Path
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text("sources:\n" + PARALLEL.format(url=demo.url))
    result = cli("run", "--headless", str(config), "--progress", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (final,) = [event for event in json_events(result.stdout) if event["event"] == "final"]
    assert (final["status"], final["pages"], final["records"]) == ("done", 100, 1000)
    assert final["position"] == "finished"
