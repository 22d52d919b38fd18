"""The SQLite checkpoint store: group commits, refusing files it must not touch, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tui_connector.state import Checkpoint, StateError
from tui_connector.state.sqlite import SCHEMA_VERSION, StateStore


async def test_state_checkpoints_group_commit_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await StateStore(path).open()
    await store.begin_run("sources.yaml")
    await store.start_stream("s", "all", {"page": 1}, str(tmp_path), "fp")
    for page in range(2, 50):
        store.checkpoint(Checkpoint("s", "all", {"page": page}, page - 1, "running", page - 1, 0))
    await store.flush()
    await store.close()
    store = await StateStore(path).open()
    [row] = await store.streams()
    await store.close()
    assert row.cursor == {"page": 49} and row.position == 48


async def test_state_refuses_foreign_corrupt_and_newer_databases(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE something (x)")
    with pytest.raises(StateError, match="not a tui-connector state"):
        await StateStore(foreign).open()

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StateError, match="not a usable tui-connector state database"):
        await StateStore(corrupt).open()

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateError, match="newer tui-connector"):
        await StateStore(newer).open()


async def test_state_from_an_older_schema_is_migrated(tmp_path: Path) -> None:
    from tui_connector.state.sqlite import _MIGRATIONS

    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as db:
        db.executescript(_MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        db.execute(
            "INSERT INTO streams (source, partition, cursor, position, status, out_dir,"
            " started_at, updated_at) VALUES ('s', 'all', '{\"page\": 3}', 2, 'running', 'x',"
            " 'then', 'then')"
        )
    store = await StateStore(path).open()
    [row] = await store.streams()
    await store.close()
    assert row.cursor == {"page": 3} and row.fingerprint == "" and row.files is None
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
