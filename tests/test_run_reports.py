"""What a run tells of its sources wherever it is shown — headless text and JSON progress, the
summary, `status`: the server's reason for a refused request, how to give a source the auth a
server wants, and where a finished parallel stream stands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tui_connector.demo.server import DemoServer

from helpers import cli

# The demo API refuses a page size that is not a number with a 400 and its reason as JSON.
REASON = "per_page must be an integer, not 'fifty'"
REFUSED = """\
  sized:
    url: {url}/v1/pages/sized
    records: data
    params: {{per_page: fifty}}
    pagination: {{type: page_number}}
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
