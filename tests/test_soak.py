"""The crash soak: a multi-source backfill with faults on, SIGKILLed again and again.

Each round starts `run --headless` and kills it: at a random instant, or at a crash point
inside the work where a bug would lose or duplicate data (a page file written but not renamed,
renamed but not checkpointed, a checkpoint transaction not yet committed; see `failpoints`).
A run that finishes before its kill has its lake checked, and the next round refreshes
everything, so kills also land in full refreshes. After the last kill, one run must finish:
then every id is in the lake exactly once, and a last run sends no request at all.

`.ci/run` runs the short form; `SOAK_KILLS=500 SOAK_SEED=7 python3 scripts/dev.py test -m soak`
soaks longer (the seed is printed when a round fails, to replay it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from test_backfill import BACKFILL
from tui_connector.demo.server import DemoServer
from tui_connector.failpoints import ENV as CRASH_AT
from tui_connector.failpoints import POINTS

from helpers import cli, lake_ids, soak_ids, start, wait_for

pytestmark = [pytest.mark.soak, pytest.mark.slow]

KILLS = int(os.environ.get("SOAK_KILLS", "50"))
SEED = int(os.environ.get("SOAK_SEED", "2026"))
RECORDS = 400

# Partitions (values, parent/child, dates), parallel pages, offsets, cursors and next links.
# 20 % of requests fault; twelve attempts make a page that never gets through (0.2^12) moot.
# The backfill of test_backfill (value and parent/child partitions, parallel pages, offsets),
# with date windows, cursors and next links added. 20 % of requests fault; twelve attempts
# make a page that never gets through (0.2^12) moot.
SOAK = (
    """
defaults:
  retry: {{max_attempts: 12, backoff_base: 0.01, backoff_max: 0.1}}
  timeout: {{read: 0.5, total: 5}}
"""
    + BACKFILL
    + """
  events:
    url: {url}/v1/cursor/events
    records: items
    concurrency: 3
    params: {{limit: 25}}
    partitions:
      type: dates
      start: 2024-01-01
      end: 2024-01-01T08:00:00Z
      step: 1h
      start_param: updated_since
      end_param: updated_before
    pagination:
      type: cursor
      cursor: next_cursor
      cursor_param: cursor
      stop: {{has_more: has_more}}
  feed:
    url: {url}/v1/next/feed
    records: data
    params: {{per_page: 25}}
    pagination: {{type: next_url, next: links.next}}
"""
)


def _assert_exact(out: Path, when: str) -> None:
    for source, expected in soak_ids(RECORDS).items():
        found = lake_ids(out, source)
        missing, extra = expected - found, found - expected
        assert not missing and not extra, (
            f"{when}: {source}: {sum(missing.values())} ids missing (e.g. "
            f"{sorted(missing)[:3]}), {sum(extra.values())} extra (e.g. {sorted(extra)[:3]})"
        )
    assert list(out.rglob("*.tmp")) == [], f"{when}: temporary files left in the lake"


def test_sigkill_at_random_instants_and_crash_points_loses_and_duplicates_nothing(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(
        records=RECORDS, latency_ms=5, fault_rate=0.2, seed=SEED, retry_after_s=0.02, slow_ms=700
    )
    config = tmp_path / "sources.yaml"
    config.write_text(SOAK.format(url=server.url))
    out = tmp_path / "lake"
    chooser = random.Random(SEED)
    kills, finished, refresh = Counter[str](), 0, False
    while kills.total() < KILLS:
        where = chooser.choice(("instant", "instant", *POINTS))
        args = ["run", "--headless", str(config), "--progress-interval", "60"]
        if refresh:
            args.append("--full-refresh")
        env = {CRASH_AT: f"{where}:{chooser.randint(1, 12)}"} if where in POINTS else None
        process = start(*args, env=env)
        if where == "instant":
            # Startup takes about 0.3 s: most instants fall in the retrieval itself.
            try:
                process.wait(timeout=chooser.uniform(0.2, 1.5))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
        round_ = f"round {kills.total() + finished + 1} (seed {SEED}, kill at {where})"
        if process.returncode == -signal.SIGKILL:
            kills[where] += 1
            refresh = False
            continue
        assert process.returncode == 0, f"{round_}: exit {process.returncode}\n{stdout}{stderr}"
        _assert_exact(out, f"{round_}: a run that finished")
        print(f"{round_}: the run finished first")
        finished += 1
        refresh = True

    final = cli("run", "--headless", str(config), "--progress-interval", "60")
    assert final.returncode == 0, final.stdout + final.stderr
    _assert_exact(out, f"after {kills.total()} kills {dict(kills)} (seed {SEED})")
    # Every crash point was hit at least once (else the soak did not test what it claims).
    assert set(kills) == {"instant", *POINTS}, dict(kills)
    # Finished streams are never fetched again.
    wait_for(lambda: server.in_flight == 0, what="the killed runs' requests to end")
    server.reset()
    again = cli("run", "--headless", str(config))
    assert again.returncode == 0, again.stderr
    assert server.log() == []
