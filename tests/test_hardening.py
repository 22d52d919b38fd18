"""State and lake faults: a clear message, and nothing already committed is lost.

A full disk and a read-only lake are simulated inside the lake writer (a test cannot fill a
disk, and root ignores permissions); a lake path under a file is a real OS failure."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.demo.faults import FAULTS
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.sinks import local

from helpers import RECORDS, cli, expected_ids, lake_ids, run_engine

# A file per page (`commit_interval: 0`): these tests count and remove page files.
PAGES = """\
commit_interval: {commit_interval}
sources:
  items:
    url: {url}/v1/pages/items
    records: data
    params: {{per_page: 20}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  other:
    url: {url}/v1/cursor/other
    records: items
    params: {{limit: 50}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
"""
ITEM_PAGES = -(-RECORDS // 20)
TOKEN = "hardening-token-8d2e"


class _FailingFile:
    """A file that takes half of what it is given, then fails like the disk would."""

    def __init__(self, path: Path, error: int) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by __exit__
        self._error = error

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def write(self, data: bytes) -> int:
        self._file.write(data[: len(data) // 2])
        raise OSError(self._error, os.strerror(self._error))

    def writelines(self, chunks: Iterable[bytes]) -> None:
        self.write(b"".join(chunks))


def fail_lake_writes(
    monkeypatch: pytest.MonkeyPatch, error: int, after: int, only: str = "/items/"
) -> None:
    """Page files of `only` fail with `error` once `after` of them were written."""
    written = 0

    def open_page(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal written
        if "w" not in mode or only not in str(path):
            return open(path, mode, *args, **kwargs)
        if written >= after:
            return _FailingFile(path, error)
        opened = open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller closes it
        written += 1
        return opened

    # `open` looked up in the lake module finds this before the builtin.
    monkeypatch.setattr(local, "open", open_page, raising=False)


@pytest.mark.parametrize(
    ("error", "says", "commit_interval", "files_before"),
    [
        (errno.ENOSPC, "No space left on device", 0, 3),
        (errno.EROFS, "Read-only file system", 0, 3),
        # Batches written behind the fetching (about 4 pages each): the failure reaches the
        # stream later.
        (errno.ENOSPC, "No space left on device", 0.02, 1),
    ],
    ids=["disk-full", "read-only", "disk-full-batched"],
)
async def test_a_lake_that_cannot_be_written_fails_the_source_and_keeps_what_was_committed(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
    error: int,
    says: str,
    commit_interval: float,
    files_before: int,
) -> None:
    server = demo_server_factory(records=RECORDS, latency_ms=40)
    config = write_config(PAGES.format(url=server.url, commit_interval=commit_interval))
    fail_lake_writes(monkeypatch, error, after=files_before)
    result, engine = await run_engine(config)
    assert result.failed == ["items"] and result.done == ["other"]
    message = engine.telemetry.sources["items"].last_error or ""
    assert f"cannot write {config.out / 'items' / 'all'}" in message and says in message
    assert list(config.out.rglob("*.tmp")) == []  # the half-written file is gone
    committed = lake_ids(config.out, "items")
    assert committed and committed <= expected_ids("items")
    assert set(committed.values()) == {1}
    fetched_before = {entry.query for entry in server.log() if "/items" in entry.path}
    kept = {int(record_id.split("-")[1]) // 20 + 1 for record_id in committed}  # page numbers
    assert files_before <= len(kept) < ITEM_PAGES

    monkeypatch.undo()  # space freed, or the lake made writable again
    result, _ = await run_engine(config)
    assert result.done == ["items", "other"]
    assert lake_ids(config.out, "items") == expected_ids("items")
    assert lake_ids(config.out, "other") == expected_ids("other")
    # The committed pages were kept, not fetched again (pages in flight at the failure were).
    fetched_after = {e.query for e in server.log() if "/items" in e.path} - fetched_before
    refetched = [e.query for e in server.log() if "/items" in e.path][len(fetched_before) :]
    assert not {f"per_page=20&page={page}" for page in kept} & set(refetched)
    assert fetched_after


async def test_a_lake_that_cannot_be_written_fails_a_stream_going_page_by_page_too(
    demo: DemoServer,
    write_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cursor stream of 48 pages stages them one by one: the failure of a page's write
    # behind the fetching reaches it while it stages a later page.
    config = write_config(
        PAGES.format(url=demo.url, commit_interval=0).replace("limit: 50", "limit: 5")
    )
    fail_lake_writes(monkeypatch, errno.ENOSPC, after=2, only="/other/")
    result, engine = await run_engine(config)
    assert result.failed == ["other"]
    message = engine.telemetry.sources["other"].last_error or ""
    assert message.startswith(f"cannot write {config.out / 'other' / 'all'}"), message
    assert "No space left on device" in message
    # The stream's checkpoint says so too, at the last page that was committed.
    with sqlite3.connect(config.state) as db:
        status, error = db.execute(
            "SELECT status, last_error FROM streams WHERE source = 'other'"
        ).fetchone()
    db.close()
    assert status == "failed" and "No space left on device" in error


def test_a_lake_path_under_a_file_is_a_clear_error(demo: DemoServer, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    config = tmp_path / "sources.yaml"
    config.write_text(f"out: blocker/lake\n{PAGES.format(url=demo.url, commit_interval=0)}")
    result = cli("run", "--headless", str(config))
    assert result.returncode == 1, result.stderr
    assert "Not a directory" in result.stdout and "Traceback" not in result.stdout + result.stderr


async def test_lake_files_deleted_behind_the_states_back_are_noticed_not_ignored(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    config = write_config(PAGES.format(url=demo.url, commit_interval=0))
    result, _ = await run_engine(config)
    assert result.done == ["items", "other"]

    # One page file removed, and a whole source's directory.
    victim = sorted((config.out / "items" / "all").glob("page-*.jsonl"))[4]
    victim.unlink()
    shutil.rmtree(config.out / "other")
    result, engine = await run_engine(config)
    assert result.failed == ["items", "other"]
    items_error = engine.telemetry.sources["items"].last_error or ""
    assert f"holds {ITEM_PAGES - 1} of the {ITEM_PAGES} page files" in items_error
    assert "tui-connector reset items" in items_error
    assert "holds 0 of the" in (engine.telemetry.sources["other"].last_error or "")

    # Reset fetches them again, exactly.
    assert cli("reset", "items", "other", "--config", str(config.path)).returncode == 0
    result, _ = await run_engine(config)
    assert result.done == ["items", "other"]
    assert lake_ids(config.out) == expected_ids("items") + expected_ids("other")


async def test_a_deleted_lake_file_is_noticed_when_resuming(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=RECORDS)
    config = write_config(PAGES.format(url=server.url, commit_interval=0))
    engine = Engine(config, only=["items"])
    async with engine:
        # Stop after a few pages: the stream is left to resume.
        original = engine.telemetry.page_retrieved

        def stop_after_three(*args: Any) -> None:
            original(*args)
            if engine.telemetry.sources["items"].pages == 3:
                engine.request_stop()

        engine.telemetry.page_retrieved = stop_after_three  # type: ignore[method-assign]
        result = await engine.run()
    assert result.stopped == ["items"]
    files = sorted((config.out / "items" / "all").glob("page-*.jsonl"))
    assert 3 <= len(files) < ITEM_PAGES  # the pages in flight at the stop were committed too
    files[0].unlink()
    result, engine = await run_engine(config, only=["items"])
    assert result.failed == ["items"]
    says = f"holds {len(files) - 1} of the {len(files)} page files"
    assert says in (engine.telemetry.sources["items"].last_error or "")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"SQLite format 3\x00" + b"\xff" * 4000, "not a usable tui-connector state database"),
        (b"just some text, not a database\n" * 50, "not a usable tui-connector state database"),
        (None, "not a tui-connector state"),
    ],
    ids=["corrupt", "garbage", "foreign"],
)
def test_a_bad_state_database_exits_2_with_what_to_do_and_is_left_alone(
    demo: DemoServer, tmp_path: Path, content: bytes | None, says: str
) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(PAGES.format(url=demo.url, commit_interval=0))
    state = tmp_path / ".tui-connector" / "state.db"
    state.parent.mkdir()
    if content is None:
        with sqlite3.connect(state) as db:
            db.execute("CREATE TABLE invoices (id)")
    else:
        state.write_bytes(content)
    before = state.read_bytes()
    for command in (["run", "--headless"], ["status"]):
        result = cli(*command, str(config) if command[0] == "run" else f"--config={config}")
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert str(state) in result.stderr and says in result.stderr, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    assert state.read_bytes() == before  # never "repaired" by overwriting
    assert not (tmp_path / "lake").exists()


# -- faults: every record retrieved; permanent failures fail only their source ---------------

FAULTY = """\
defaults:
  retry: {{max_attempts: 12, backoff_base: 0.01, backoff_max: 0.1}}
  timeout: {{read: 0.3, total: 5}}
sources:
  pages:
    url: {url}/v1/pages/pages
    records: data
    params: {{per_page: 10}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  offsets:
    url: {url}/v1/offset/offsets
    records: results
    pagination: {{type: offset, limit: 10, stop: {{total_records: count}}}}
  cursors:
    url: {url}/secure/cursor/cursors
    records: items
    params: {{limit: 10}}
    auth: {{type: bearer, token: "${{API_TOKEN}}"}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
  links:
    url: {url}/v1/link/links
    params: {{per_page: 10}}
    pagination: {{type: next_url, next: {{header: Link}}}}
  denied:
    url: {url}/secure/pages/denied
    records: data
    auth: {{type: bearer, token: not-the-token}}
  forbidden:
    url: {url}/v1/bad/status/403/forbidden
    records: data
  missing:
    url: {url}/v1/nothing-here/missing
    records: data
  garbage:
    url: {url}/v1/bad/never-valid/garbage
    records: data
    retry: {{max_attempts: 3, backoff_base: 0.01}}
"""
FAULTY_RECORDS = 800  # 80 pages a source: every kind of fault is met
GOOD = ("pages", "offsets", "cursors", "links")
PERMANENT = {
    "denied": "HTTP 401",
    "forbidden": "HTTP 403",
    "missing": "HTTP 404",
    "garbage": "response is not valid JSON",
}


def test_with_20_percent_faults_every_source_completes_exactly_and_only_broken_ones_fail(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(
        records=FAULTY_RECORDS,
        fault_rate=0.2,
        seed=20,
        retry_after_s=0.02,
        slow_ms=600,
        token=TOKEN,
    )
    config = tmp_path / "sources.yaml"
    config.write_text(FAULTY.format(url=server.url))
    result = cli("run", "--headless", str(config), env={"API_TOKEN": TOKEN})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # Every kind of fault was met, and retried through.
    met = {entry.fault for entry in server.log() if entry.fault}
    assert met >= set(FAULTS), set(FAULTS) - met
    for source in GOOD:
        assert lake_ids(tmp_path / "lake", source) == expected_ids(source, FAULTY_RECORDS), source
    summary = result.stdout.splitlines()
    for source, says in PERMANENT.items():
        line = next(line for line in summary if line.startswith(f"{source} "))
        assert "failed" in line and says in line, line

    # No token in the environment: status needs only the state, not the sources' secrets.
    status = cli("status", f"--config={config}", "--json")
    assert status.returncode == 0, status.stderr
    rows = {row["source"]: row for row in json.loads(status.stdout)}
    for source in GOOD:
        assert rows[source]["status"] == "done", rows[source]
    for source, says in PERMANENT.items():
        assert rows[source]["status"] == "failed" and says in rows[source]["last_error"]


# -- hostile servers: no hang, no memory blow-up ------------------------------------------

HOSTILE = """\
defaults:
  retry: {{max_attempts: 2, backoff_base: 0.01}}
sources:
  fine:
    url: {url}/v1/pages/fine
    records: data
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  silent:
    url: {url}/v1/bad/hang/silent
    timeout: {{read: 0.5}}
  trickling:
    url: {url}/v1/bad/trickle/trickling
    params: {{every_ms: 20}}
    timeout: {{read: 1, total: 1.5}}
  huge-declared:
    url: {url}/v1/bad/huge/h
    params: {{mb: 300, length: 1}}
    max_response_size: 1MiB
  huge-chunked:
    url: {url}/v1/bad/huge/h
    params: {{mb: 300}}
    max_response_size: 1MiB
  looping:
    url: {url}/v1/bad/redirect-loop/looping
  leaving:
    url: {url}/v1/bad/redirect-away/leaving
    params: {{to: "http://localhost:{port}/v1/all/leaving"}}
  too-deep-to-decode:
    url: {url}/v1/bad/deep/d
    params: {{depth: 5000}}
    records: data
  too-deep-to-write:
    url: {url}/v1/bad/deep/d
    params: {{depth: 1000}}
    records: data
    pagination: {{type: page_number}}
  deep:
    url: {url}/v1/bad/deep/d
    params: {{depth: 500}}
    records: data
"""
HOSTILE_ERRORS = {
    "silent": "timed out (ReadTimeout)",
    "trickling": "no complete response within 1.5 s (timeout.total)",
    "huge-declared": "larger than max_response_size (1.0 MiB)",
    "huge-chunked": "larger than max_response_size (1.0 MiB)",
    "looping": "more than 10 redirects",
    "leaving": "redirect to another host (http://localhost",
    "too-deep-to-decode": "response nests arrays and objects too deeply to decode",
    "too-deep-to-write": "a record nests arrays and objects too deeply to be written",
}


async def test_hostile_servers_fail_their_source_quickly_and_hold_no_huge_body(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(records=RECORDS)
    config = write_config(HOSTILE.format(url=server.url, port=server.port))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # run_engine's one-minute guard is the hang guard; each error below names the limit that
    # ended its source.
    result, engine = await run_engine(config)
    assert sorted(result.done) == ["deep", "fine"]
    assert sorted(result.failed) == sorted(HOSTILE_ERRORS)
    for source, says in HOSTILE_ERRORS.items():
        error = engine.telemetry.sources[source].last_error or ""
        assert says in error, (source, error)
    # Two 300 MiB bodies were refused, not read: the process grew far less than one of them.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100 * 1024
    # A size refusal is final (no retry): one request each.
    huge = [entry for entry in server.log() if "/huge/" in entry.path]
    assert len(huge) == 2
    # A body nested past what can be decoded or written fails at once, and leaves no page.
    deep = [entry for entry in server.log() if "/deep/" in entry.path]
    assert len(deep) == 3
    assert lake_ids(config.out, "too-deep-to-write") == Counter()
    (page,) = local.source_pages_sync(config.out, "deep")
    assert json.loads(page.read_text()) == json.loads("[" * 500 + "]" * 500)
