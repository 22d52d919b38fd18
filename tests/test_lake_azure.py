"""The lake on Azure Blob Storage (Azurite on 127.0.0.1, azurite_server.py) beyond what every
store shares (test_lake_formats.py, test_soak.py): the account configured in `storage:`
instead of the environment, the URL forms Azure has (az://, abfs://, abfss://
container@account...), the emulator switch, the table lock taken with a conditional PUT, and
what a failing store tells the operator, with the account key shown nowhere."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from test_lake_formats import (
    QUICK_RETRIES,
    TWO_FORMATS,
    places_holding,
    run_failing,
    write_one_source,
)
from tui_connector.demo.server import DemoServer
from tui_connector.facade import ExitCode
from tui_connector.sinks import LakeError
from tui_connector.sinks.locks import TableLock, run_owner

from azurite_server import ACCOUNT, ACCOUNT_KEY, Container
from helpers import cli, expected_ids, free_port, table_ids


@pytest.mark.parametrize(
    ("scheme", "setting"),
    [
        ("abfss://{container}@devstoreaccount1.dfs.core.windows.net", "account"),
        ("abfs://{container}", "emulator"),
    ],
    ids=["abfss-account-in-storage", "abfs-emulator"],
)
def test_parquet_and_delta_land_once_through_each_url_form_and_setting(
    demo: DemoServer,
    container: Container,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    setting: str,
) -> None:
    """The environment says nothing of the account: `storage:` does, or the emulator switch
    (Azurite's account, at AZURITE_BLOB_STORAGE_URL) does."""
    endpoint = container.endpoint
    for name in endpoint.env():
        monkeypatch.delenv(name)
    if setting == "account":  # as the README shows it
        monkeypatch.setenv("LAKE_ACCOUNT_KEY", ACCOUNT_KEY)
        storage = {
            "azure_storage_account_name": ACCOUNT,
            "azure_storage_account_key": "${LAKE_ACCOUNT_KEY}",
            "azure_storage_endpoint": endpoint.account_url,
            "azure_allow_http": "true",
        }
    else:
        monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", endpoint.url)
        storage = {"azure_storage_use_emulator": "true"}
    out = scheme.format(container=container.name) + "/lake"
    config = write_one_source(tmp_path, demo, out, "parquet", storage, text=TWO_FORMATS)
    run = cli("run", "--headless", str(config), "--log-level", "debug")
    assert run.returncode == 0, run.stdout + run.stderr
    lake = container.url("lake")  # the same objects, read through az://
    assert table_ids(lake, "parquet", "customers", endpoint) == expected_ids("customers")
    assert table_ids(lake, "delta", "orders", endpoint) == expected_ids("orders")
    assert any("/_delta_log/" in key for key in container.object_keys())
    assert [key for key in container.object_keys() if "/_tc_locks/" in key] == []
    assert places_holding(ACCOUNT_KEY, run, tmp_path, container) == []


@pytest.mark.parametrize(
    ("failure", "format"),
    [
        ("missing container", "parquet"),
        ("missing container", "delta"),
        ("wrong key", "parquet"),
        ("wrong key", "delta"),
        ("unreachable", "parquet"),
    ],
)
def test_a_failing_azure_store_fails_the_source_saying_what_to_fix_and_shows_no_key(
    demo: DemoServer,
    container: Container,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    format: str,
) -> None:
    out, storage, key = container.url("lake"), None, ACCOUNT_KEY
    if failure == "missing container":
        out, reason = "az://no-such-container/lake", "ContainerNotFound"
    elif failure == "wrong key":
        key = base64.b64encode(b"not the account's key".ljust(64, b".")).decode()
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", key)
        reason = "check the account name and key: AZURE_STORAGE_ACCOUNT_NAME and"
    else:
        monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", f"http://127.0.0.1:{free_port()}/x")
        storage, reason = QUICK_RETRIES, "onnection refused"
    output = run_failing(tmp_path, demo, out, format, storage, reason, key, container)
    assert "RequestId" not in output  # Azure's message is cut to its first line
    assert container.object_keys() == []


def test_a_second_writer_is_refused_on_azure_and_a_killed_runs_lock_taken_over(
    demo: DemoServer, container: Container, tmp_path: Path
) -> None:
    """The lock is created with a conditional PUT (If-None-Match: *): a lock object that
    exists already is another run's, or, written by this state database, a killed run's."""
    config = write_one_source(tmp_path, demo, container.url("lake"), "delta")
    lock = "lake/_tc_locks/customers.json"
    held = {"owner": "elsewhere:/other/state.db", "pid": 1, "since": "then"}
    container.write(lock, json.dumps(held).encode())
    refused = cli("run", "--headless", str(config))
    assert refused.returncode == ExitCode.FAILED, refused.stdout + refused.stderr
    assert "is being written by another run (state elsewhere:/other/state.db" in refused.stdout
    assert f"delete {container.url('lake')}/_tc_locks/customers.json" in refused.stdout
    assert container.object_keys() == [lock]

    state = tmp_path / ".tui-connector" / "state.db"
    container.write(lock, json.dumps({**held, "owner": run_owner(state)}).encode())
    finished = cli("run", "--headless", str(config))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert table_ids(container.url("lake"), "delta", "customers", container.endpoint) == (
        expected_ids("customers")
    )
    assert lock not in container.object_keys()  # released


def test_a_lock_object_left_in_place_is_not_overwritten_by_a_second_create(
    container: Container,
) -> None:
    """What the lock relies on, on Azure: a create of an existing object fails instead of
    replacing it (obstore's PutMode.Create: If-None-Match: *)."""
    first = TableLock(container.url("lake"), "items", {}, "run-a")
    first.acquire()
    second = TableLock(container.url("lake"), "items", {}, "run-b")
    with pytest.raises(LakeError, match=r"is being written by another run \(state run-a"):
        second.acquire()
    first.release()
    second.acquire()
    assert json.loads(container.read("lake/_tc_locks/items.json"))["owner"] == "run-b"
    second.release()
    assert container.object_keys() == []
