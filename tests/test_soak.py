"""The crash soak: a multi-source backfill with faults on, SIGKILLed again and again.

Each round starts `run --headless` and kills it: at a random instant, or at a crash point
inside the work where a bug would lose or duplicate data (a page file written but not renamed,
renamed but not checkpointed, a checkpoint transaction not yet committed; a Delta commit not
yet checkpointed, a replace staged but not swapped in; see `failpoints`). The crash points
are tried first, then drawn at random. A run that finishes before its kill has its lake
checked, and the next round refreshes everything, so kills also land in full refreshes. After
the last kill, one run must finish: then every id is in the lake exactly once, and a last run
sends no request but for what it must fetch again.

JSON Lines on local disk soak the longest; Parquet and Delta on local disk, and every format
on the S3 endpoint (s3_server.py) and the Azure Blob endpoint (azurite_server.py), soak a
smaller backfill with a `replace` source, by default killed once after a batch is in the lake
and before its checkpoint, and (Delta) before a swap.
`.ci/run` runs the short forms; `SOAK_KILLS=500 SOAK_SEED=7 python3 scripts/dev.py test -m
soak` soaks longer (the seed is printed when a round fails, to replay it).
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
from tui_connector.failpoints import POINTS, REPLACE_POINTS

from helpers import cli, expected_ids, lake_ids, lake_in, soak_ids, start, table_ids, wait_for

pytestmark = [pytest.mark.soak, pytest.mark.slow]

KILLS = os.environ.get("SOAK_KILLS")
SEED = int(os.environ.get("SOAK_SEED", "2026"))
RECORDS = 400

# 20 % of requests fault; twelve attempts make a page that never gets through (0.2^12) moot.
FAULTS = """
defaults:
  retry: {{max_attempts: 12, backoff_base: 0.01, backoff_max: 0.1}}
  timeout: {{read: 0.5, total: 5}}
"""
FEED = """
  feed:
    url: {url}/v1/next/feed
    records: data
    params: {{per_page: 25}}
    pagination: {{type: next_url, next: links.next}}
"""
# The backfill of test_backfill (value and parent/child partitions, parallel pages, offsets),
# with date windows, cursors and next links added.
SOAK = (
    FAULTS
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
"""
    + FEED
)


Ids = Callable[[str], Counter[str]]


def _assert_exact(ids_of: Ids, expected: dict[str, Counter[str]], when: str) -> None:
    for source, wanted in expected.items():
        found = ids_of(source)
        missing, extra = wanted - found, found - wanted
        assert not missing and not extra, (
            f"{when}: {source}: {sum(missing.values())} ids missing (e.g. "
            f"{sorted(missing)[:3]}), {sum(extra.values())} extra (e.g. {sorted(extra)[:3]})"
        )


def _soak(
    config: Path,
    points: tuple[str, ...],
    first: tuple[str, ...],
    kills_wanted: int,
    check: Callable[[str], None],
) -> Counter[str]:
    """Run `config` and kill it, round after round: once at each of `first` (crash points or
    "instant"), then at random instants and `points` until `kills_wanted` kills; `check` the
    lake after every run that finished. The kills, by where."""
    chooser = random.Random(SEED)
    kills, finished, refresh = Counter[str](), 0, False
    untried = list(first)
    while kills.total() < kills_wanted or untried:
        rounds = kills.total() + finished
        assert rounds < 4 * kills_wanted + 20, f"no kill at {untried} in {rounds} rounds"
        where = untried[0] if untried else chooser.choice(("instant", "instant", *points))
        args = ["run", "--headless", str(config), "--progress-interval", "60"]
        if refresh:
            args.append("--full-refresh")
        # A swap happens once per run; other points are reached page after page.
        hit = 1 if where in REPLACE_POINTS else chooser.randint(1, 3 if untried else 12)
        env = {CRASH_AT: f"{where}:{hit}"} if where in points else None
        process = start(*args, env=env)
        if where == "instant":
            # Startup takes about 0.3 s: most instants fall in the retrieval itself.
            try:
                process.wait(timeout=chooser.uniform(0.2, 1.5))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
        round_ = f"round {rounds + 1} (seed {SEED}, kill at {where})"
        if process.returncode == -signal.SIGKILL:
            kills[where] += 1
            if where in untried:
                untried.remove(where)
            refresh = False
            continue
        assert process.returncode == 0, f"{round_}: exit {process.returncode}\n{stdout}{stderr}"
        check(f"{round_}: a run that finished")
        print(f"{round_}: the run finished first")
        finished += 1
        refresh = True
    return kills


def test_sigkill_at_random_instants_and_crash_points_loses_and_duplicates_nothing(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(
        records=RECORDS, latency_ms=5, fault_rate=0.2, seed=SEED, retry_after_s=0.02, slow_ms=700
    )
    config = tmp_path / "sources.yaml"
    config.write_text(SOAK.format(url=server.url))
    out = tmp_path / "lake"

    def check(when: str) -> None:
        _assert_exact(lambda source: lake_ids(out, source), soak_ids(RECORDS), when)
        assert list(out.rglob("*.tmp")) == [], f"{when}: temporary files left in the lake"

    kills = _soak(config, POINTS, ("instant", *POINTS), int(KILLS or 50), check)
    final = cli("run", "--headless", str(config), "--progress-interval", "60")
    assert final.returncode == 0, final.stdout + final.stderr
    check(f"after {kills.total()} kills {dict(kills)} (seed {SEED})")
    # Every crash point was hit at least once (else the soak did not test what it claims).
    assert set(kills) == {"instant", *POINTS}, dict(kills)
    # Finished streams are never fetched again.
    wait_for(lambda: server.in_flight == 0, what="the killed runs' requests to end")
    server.reset()
    again = cli("run", "--headless", str(config))
    assert again.returncode == 0, again.stderr
    assert server.log() == []


# Value partitions with parallel pages (streams sharing one Delta table), next links, and a
# source that every run fetches whole and replaces. A page per batch: many commits to kill at.
LAKE_RECORDS = 120
LAKE_SOAK = (
    """
format: {format}
out: {out}
commit_interval: 0
"""
    + FAULTS
    + """
sources:
  regions:
    url: {url}/v1/pages/{{ds}}
    records: data
    concurrency: 4
    params: {{per_page: 20}}
    partitions: {{type: values, values: [north, south, east], path: ds}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  snapshot:
    url: {url}/v1/offset/snapshot
    records: results
    write: replace
    pagination: {{type: offset, limit: 20, parallel: false, stop: {{total_records: count}}}}
"""
    + FEED
)
LAKE_IDS = {
    "regions": sum(
        (expected_ids(region, LAKE_RECORDS) for region in ("north", "south", "east")), Counter()
    ),
    "feed": expected_ids("feed", LAKE_RECORDS),
    "snapshot": expected_ids("snapshot", LAKE_RECORDS),
}


# JSON Lines on local disk: the soak above.
@pytest.mark.parametrize(
    ("format", "store"),
    [
        *((format, store) for format in ("parquet", "delta") for store in ("local", "s3", "azure")),
        ("jsonl", "s3"),
        ("jsonl", "azure"),
    ],
)
def test_every_format_on_every_store_loses_and_duplicates_nothing_through_kills(
    demo_server_factory: Callable[..., DemoServer],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    format: str,
    store: str,
) -> None:
    server = demo_server_factory(
        records=LAKE_RECORDS, latency_ms=5, fault_rate=0.2, seed=SEED, retry_after_s=0.02
    )
    place = lake_in(store, tmp_path, request)
    lake = place.url
    config = tmp_path / "sources.yaml"
    config.write_text(LAKE_SOAK.format(format=format, out=lake, url=server.url))
    points = POINTS + REPLACE_POINTS if format == "delta" else POINTS

    def check(when: str) -> None:
        _assert_exact(lambda source: table_ids(lake, format, source, place.store), LAKE_IDS, when)

    # By default a kill where the lake holds a batch its checkpoint does not cover (a file in
    # place, an object PUT, a Delta commit) and, for Delta, between a staged replace and its
    # swap; the JSON Lines soak kills at the other points. SOAK_KILLS adds every point.
    first = tuple(point for point in points if point in ("lake.after_rename", "lake.before_swap"))
    kills = _soak(config, points, first, int(KILLS or 0), check)
    final = cli("run", "--headless", str(config), "--progress-interval", "60")
    assert final.returncode == 0, final.stdout + final.stderr
    check(f"after {kills.total()} kills {dict(kills)} (seed {SEED})")
    if store == "local":
        assert list(Path(lake).rglob("*.tmp")) == []
        assert not (Path(lake) / "_tc_staging").exists()
    else:
        assert place.objects is not None
        assert [key for key in place.objects.object_keys() if "/_tc_staging/" in key] == []
    # Finished streams are never fetched again; the replaced source is, whole.
    wait_for(lambda: server.in_flight == 0, what="the killed runs' requests to end")
    server.reset()
    again = cli("run", "--headless", str(config))
    assert again.returncode == 0, again.stderr
    assert {entry.path for entry in server.log()} == {"/v1/offset/snapshot"}
    check("after a run that fetched the replaced source again")
