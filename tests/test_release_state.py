"""A state database and lake left by an interrupted run of the release before the redesign of
issue 15 resume to an exact lake: the checkpoint JSON (every pagination style, parallel pages,
partitions, an incremental mark), the fingerprints and the lake layout are still understood.

The fixture was made by `fixtures/release_state/make_fixture.py` with that release; only the
demo API's origin, the lake directory and the config path are filled in here (they were
placeholders), and each source's fingerprint is computed again from the identity the release
hashed with those filled in, by the release's formula."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer

from helpers import expected_ids, lake_ids, run_engine, soak_ids

FIXTURE = Path(__file__).parent / "fixtures" / "release_state"
RECORDS = 400  # per dataset, as make_fixture.py served them


def release_fingerprint(identity: dict[str, object]) -> str:
    """How the release hashed a source's identity into its checkpoints' fingerprint."""
    encoded = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def restore(config: LoadedConfig, origin: str) -> None:
    """The fixture's state database and lake, placed where `config` keeps them."""
    lake = config.out.resolve()
    filled = {"{lake}": str(lake), "{origin}": origin, "{config}": str(config.path.resolve())}

    def fill(text: str) -> str:
        for placeholder, value in filled.items():
            text = text.replace(placeholder, value)
        return text

    shutil.copytree(FIXTURE / "lake", lake)
    config.state.parent.mkdir(parents=True, exist_ok=True)
    identities = json.loads(fill((FIXTURE / "identities.json").read_text()))
    with sqlite3.connect(config.state) as db:
        db.executescript(fill((FIXTURE / "state.sql").read_text()))
        for source, identity in identities.items():
            db.execute(
                "UPDATE streams SET fingerprint = ? || substr(fingerprint, instr(fingerprint, ':'))"
                " WHERE source = ?",
                (release_fingerprint(identity), source),
            )
    db.close()


def expected() -> dict[str, Counter[str]]:
    return {**soak_ids(RECORDS), "changes": expected_ids("changes", RECORDS)}


def pages_asked(server: DemoServer, path: str) -> list[int]:
    return sorted(
        int(parse_qs(entry.query)["page"][0]) for entry in server.log() if entry.path == path
    )


async def test_a_state_database_of_the_release_before_resumes_to_an_exact_lake(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=RECORDS, seed=1)
    template = (FIXTURE / "sources.template.yaml").read_text()
    config = write_config(template.format(url=server.url))
    restore(config, server.url)
    with sqlite3.connect(config.state) as db:
        committed = dict(db.execute("SELECT source || '/' || partition, position FROM streams"))
    db.close()

    result, engine = await run_engine(config)

    assert sorted(result.done) == sorted(expected()), {
        name: stats.last_error for name, stats in engine.telemetry.sources.items()
    }
    for source, ids in expected().items():
        assert lake_ids(config.out, source) == ids, source
    assert list(config.out.rglob("*.tmp")) == []
    # What the release committed was not fetched again: finished streams send nothing, the
    # others continue from their checkpoint.
    assert [e for e in server.log() if e.path == "/v1/offset/repos"] == []
    assert committed["repos/all"] == 6
    north = pages_asked(server, "/v1/pages/north")
    assert north and min(north) == committed["regions/north"] + 1  # position 13 is page 14
    feed = pages_asked(server, "/v1/next/feed")
    assert feed and min(feed) == committed["feed/all"] + 1
    assert pages_asked(server, "/v1/pages/repos-000000") == []
