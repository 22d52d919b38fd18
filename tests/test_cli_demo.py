"""`tui-connector demo`: a few minutes at its defaults, long enough to pause a source and watch
a backfill; about 20 seconds with --quick (the one tests run)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tui_connector.cli_demo import DEFAULT_DEMO, QUICK_DEMO, DemoPace

from helpers import cli, lake_ids

# A date-window backfill as the documented sources.yaml writes it: the demo says where it ends.
BACKFILL = """\
sources:
  activity:
    url: ${DEMO_URL}/v1/offset/activity
    records: results
    pagination: {type: offset, limit: 100, stop: {total_records: count}}
    partitions:
      type: dates
      start: 2024-01-01
      end: ${DEMO_BACKFILL_END:-2024-03-01}
      step: 6h
      start_param: updated_since
      end_param: updated_before
"""


def test_the_default_demo_is_slower_larger_and_backfills_every_days_records() -> None:
    default = DemoPace.of(quick=False, latency_ms=None, records=None)
    quick = DemoPace.of(quick=True, latency_ms=None, records=None)
    assert quick == QUICK_DEMO and (quick.latency_ms, quick.records) == (30, 20_000)
    assert default.latency_ms >= 5 * quick.latency_ms and default.records > quick.records
    # A record a minute from 2024-01-01: the backfill reaches the day of the last one.
    assert default.records == DEFAULT_DEMO.records == 50_000
    assert default.backfill_end.isoformat() == "2024-02-05" and quick.backfill_days == 1
    given = DemoPace.of(quick=True, latency_ms=0, records=3000)
    assert (given.latency_ms, given.records, given.backfill_days) == (0, 3000, 1)
    assert DemoPace.of(quick=False, latency_ms=5, records=3000).backfill_end.isoformat() == (
        "2024-01-04"
    )


def test_the_quick_demo_runs_a_one_day_backfill(tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(BACKFILL)
    result = cli("demo", str(config), "--headless", "--quick", "--fault-rate", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(30 ms a request, 20,000 records a dataset, a 1-day backfill)" in result.stderr
    with sqlite3.connect(tmp_path / ".tui-connector" / "state.db") as db:
        windows = db.execute("SELECT count(*) FROM streams WHERE source = 'activity'").fetchone()
    assert windows == (4,)  # four 6-hour windows of the first day
    assert sum(lake_ids(tmp_path / "lake", "activity").values()) == 1440  # a record a minute
