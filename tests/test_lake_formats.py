"""The lake end to end in every format and on every store: the demo API's datasets (every
pagination style, partitions of each kind, parent -> child, incremental) written as JSON Lines,
Parquet and Delta, on local disk, on a real S3 endpoint and on a real Azure Blob endpoint over
HTTP, read back by readers other than ours; and what a store's failure or a wrong lake config
tells the operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tui_connector.config import load_config
from tui_connector.demo.server import DemoServer
from tui_connector.facade import ExitCode

from helpers import (
    ROOT,
    StoredObjects,
    cli,
    documented_ids,
    expected_ids,
    free_port,
    lake_in,
    run_engine,
    table_ids,
)
from s3_server import ALLOW_READING, Bucket, S3Endpoint

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


@pytest.mark.parametrize("store", ["local", "s3", "azure"])
@pytest.mark.parametrize("format", FORMATS)
async def test_every_dataset_lands_exactly_once_in_each_format_and_store(
    demo: DemoServer, tmp_path: Path, request: pytest.FixtureRequest, format: str, store: str
) -> None:
    lake = lake_in(store, tmp_path, request)
    config = load_config(documented_config(tmp_path, lake.url, format), env=demo_env(demo))
    result, engine = await run_engine(config)
    assert result.failed == [], [engine.telemetry.sources[n].last_error for n in result.failed]
    for source, expected in documented_ids().items():
        found = table_ids(lake.url, format, source, lake.store)
        assert found == expected, (source, sum((found - expected).values()), expected - found)


# -- a store that fails: the source fails with the store's reason, and no secret shows --------

ONE_SOURCE = """
out: {out}
format: {format}
storage: {storage}
sources:
  customers:
    url: {url}/v1/pages/customers
    records: data
    params: {{per_page: 50}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
"""
# Unreachable endpoints are retried: a second, not the default minute.
QUICK_RETRIES = {"max_retries": "1", "retry_timeout": "1s"}


def write_one_source(
    tmp_path: Path,
    demo: DemoServer,
    out: str,
    format: str,
    storage: dict[str, str] | None = None,
    text: str = ONE_SOURCE,
) -> Path:
    path = tmp_path / "sources.yaml"
    storage_text = json.dumps(storage or {})
    path.write_text(text.format(out=out, format=format, storage=storage_text, url=demo.url))
    return path


def places_holding(
    secret: str,
    run: subprocess.CompletedProcess[str],
    tmp_path: Path,
    bucket: StoredObjects | None,
) -> list[str]:
    """Where a secret shows: the run's output, the state database and the log beside it
    (every file under tmp_path), and every object of the bucket or container (Delta's log
    included)."""
    places = [
        name for name, text in (("stdout", run.stdout), ("stderr", run.stderr)) if secret in text
    ]
    places += [
        str(path)
        for path in tmp_path.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    if bucket is not None:
        places += [key for key in bucket.object_keys() if secret.encode() in bucket.read(key)]
    return places


def run_failing(
    tmp_path: Path,
    demo: DemoServer,
    out: str,
    format: str,
    storage: dict[str, str] | None,
    reason: str,
    secret: str,
    bucket: StoredObjects,
) -> str:
    """Run one source on a store that fails: the source fails with the store's `reason`, no
    traceback, and the secret nowhere. What the run printed."""
    config = write_one_source(tmp_path, demo, out, format, storage)
    run = cli("run", "--headless", str(config), "--log-level", "debug")
    output = run.stdout + run.stderr
    assert run.returncode == ExitCode.FAILED, output
    assert reason in output
    assert "Traceback" not in output
    assert places_holding(secret, run, tmp_path, bucket) == []
    return output


# A Delta source takes its table's lock (files, through obstore, like Parquet's) before it
# writes: only a store that lets it lock but not write reaches delta-rs's own failure.
@pytest.mark.parametrize(
    ("failure", "format"),
    [
        ("missing bucket", "parquet"),
        ("wrong secret", "parquet"),
        ("unreachable", "parquet"),
        ("access denied", "parquet"),
        ("access denied", "delta"),
        ("wrong secret", "delta"),
    ],
)
def test_a_failing_store_fails_the_source_with_its_reason_and_shows_no_secret(
    demo: DemoServer,
    s3: S3Endpoint,
    bucket: Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    format: str,
) -> None:
    out, storage, secret = bucket.url("lake"), None, s3.lake_user.secret_access_key
    if failure == "missing bucket":
        out, reason = "s3://no-such-bucket/lake", "NoSuchBucket"
    elif failure == "wrong secret":
        secret, reason = "wR0ng+secret/" + "k" * 27, "SignatureDoesNotMatch"
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    elif failure == "access denied":
        reader = s3.create_user("reader", ALLOW_READING)
        for name, value in s3.env(reader).items():
            monkeypatch.setenv(name, value)
        # The table's lock may be taken: Delta's own write is denied.
        secret, reason = reader.secret_access_key, "AccessDenied"
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
        storage, reason = QUICK_RETRIES, "onnection refused"
    run_failing(tmp_path, demo, out, format, storage, reason, secret, bucket)
    assert [key for key in bucket.object_keys() if "/_tc_locks/" not in key] == []


# Parquet files and a Delta table in one run.
TWO_FORMATS = (
    ONE_SOURCE
    + """
  orders:
    url: {url}/v1/offset/orders
    records: results
    format: delta
    pagination: {{type: offset, limit: 50, stop: {{total_records: {{header: X-Total-Count}}}}}}
"""
)


def test_the_store_secret_shows_nowhere_after_a_run_on_s3(
    demo: DemoServer, s3: S3Endpoint, bucket: Bucket, tmp_path: Path
) -> None:
    config = write_one_source(tmp_path, demo, bucket.url("lake"), "parquet", text=TWO_FORMATS)
    run = cli("run", "--headless", str(config), "--log-level", "debug")
    assert run.returncode == 0, run.stdout + run.stderr
    assert table_ids(bucket.url("lake"), "parquet", "customers", s3) == expected_ids("customers")
    assert table_ids(bucket.url("lake"), "delta", "orders", s3) == expected_ids("orders")
    assert any("/_delta_log/" in key for key in bucket.object_keys())
    assert (tmp_path / ".tui-connector" / "tui-connector.log").stat().st_size > 0
    assert places_holding(s3.lake_user.secret_access_key, run, tmp_path, bucket) == []


# -- a lake config that cannot work: a config error that says what to do -----------------------


def cli_without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a Python where `modules` are not installed. None in sys.modules is
    Python's own mark of a module that cannot be imported: importlib.util.find_spec answers
    None for it, and importing it raises ModuleNotFoundError, as when it is absent."""
    program = (
        "import runpy, sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(','))); "
        "sys.argv[:2] = ['tui-connector']; runpy.run_module('tui_connector', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", program, ",".join(modules), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("format", "out", "missing", "extra"),
    [
        ("parquet", "lake", ("pyarrow",), "parquet"),
        ("delta", "lake", ("deltalake",), "delta"),
        ("jsonl", "s3://some-bucket/lake", ("obstore",), "cloud"),
        ("delta", "s3://some-bucket/lake", ("obstore",), "cloud"),
    ],
    ids=["parquet", "delta", "jsonl on s3", "delta on s3"],
)
def test_a_format_or_store_whose_extra_is_missing_names_the_pip_install(
    demo: DemoServer, tmp_path: Path, format: str, out: str, missing: tuple[str, ...], extra: str
) -> None:
    config = write_one_source(tmp_path, demo, out, format)
    run = cli_without(missing, "run", "--headless", str(config))
    assert run.returncode == ExitCode.USAGE, run.stdout + run.stderr
    needs = "an object store" if extra == "cloud" else f"format: {format}"
    assert (
        f"sources.yaml:3:9: format: {needs} needs the '{missing[0]}' package, which is not "
        f"installed: pip install 'tui-connector[{extra}]'"
    ) in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "lake").exists()


def test_an_out_on_a_store_whose_extra_is_missing_names_the_pip_install(
    demo: DemoServer, tmp_path: Path
) -> None:
    config = write_one_source(tmp_path, demo, "lake", "jsonl")
    run = cli_without(("obstore",), "run", "--headless", str(config), "--out", "s3://bucket/lake")
    assert run.returncode == ExitCode.USAGE, run.stdout + run.stderr
    assert (
        "s3://bucket/lake: an object store needs the 'obstore' package, which is not "
        "installed: pip install 'tui-connector[cloud]'"
    ) in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("out", "lines", "message"),
    [
        (
            "lake",
            "    write: merge\n    primary_key: id\n",
            "sources.yaml:9:12: sources.customers.write: write: merge updates rows in place, "
            "which only format: delta can do (this source writes jsonl files)",
        ),
        (
            "ftp://files.example/lake",
            "",
            "sources.yaml:2:6: out: 'ftp://files.example/lake': ftp:// is not a lake location",
        ),
    ],
    ids=["merge on jsonl", "ftp URL"],
)
def test_a_lake_that_cannot_be_written_so_is_a_config_error(
    demo: DemoServer, tmp_path: Path, out: str, lines: str, message: str
) -> None:
    config = write_one_source(tmp_path, demo, out, "jsonl")
    config.write_text(
        config.read_text().replace("    records: data\n", "    records: data\n" + lines)
    )
    run = cli("run", "--headless", str(config))
    assert run.returncode == ExitCode.USAGE, run.stdout + run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
