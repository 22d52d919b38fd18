"""The lake end to end in every format and on every store: the demo API's datasets (every
pagination style, partitions of each kind, parent -> child, incremental) written as JSON Lines,
Parquet and Delta, on local disk and on a real S3 endpoint over HTTP, read back by readers
other than ours; and what a store's failure or a wrong lake config tells the operator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tui_connector.config import load_config
from tui_connector.demo.server import DemoServer

from helpers import ROOT, documented_ids, run_engine, table_ids
from s3_server import S3Endpoint

FORMATS = ("jsonl", "parquet", "delta")
TOKEN = "test-token-5f3a9"  # the session demo server's (conftest.demo)


def documented_config(tmp_path: Path, lake: str, format: str) -> Path:
    """The documented sources.yaml, writing `format` to `lake`."""
    document = yaml.safe_load((ROOT / "sources.yaml").read_text())
    document.update(out=lake, format=format)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def demo_env(demo: DemoServer) -> dict[str, str]:
    return {**os.environ, "DEMO_URL": demo.url, "DEMO_TOKEN": TOKEN}


@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("format", FORMATS)
async def test_every_dataset_lands_exactly_once_in_each_format_and_store(
    demo: DemoServer, tmp_path: Path, request: pytest.FixtureRequest, format: str, store: str
) -> None:
    s3: S3Endpoint | None = None
    lake = str(tmp_path / "lake")
    if store == "s3":
        bucket = request.getfixturevalue("bucket")
        s3, lake = bucket.endpoint, bucket.url("lake")
    config = load_config(documented_config(tmp_path, lake, format), env=demo_env(demo))
    result, engine = await run_engine(config)
    assert result.failed == [], [engine.telemetry.sources[n].last_error for n in result.failed]
    for source, expected in documented_ids().items():
        found = table_ids(lake, format, source, s3)
        assert found == expected, (source, sum((found - expected).values()), expected - found)
