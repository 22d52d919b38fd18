"""Secrets never leak: a token given through ${VAR} is sent in a bearer header, a query param,
basic auth, a custom header and a custom param, and as an OAuth2 client secret and refresh
token, to a server that fails some requests and echoes others back in its error bodies. Then
everything the tool shows or writes is searched for the token (and its URL-encoded and base64
forms), and for every OAuth2 token the server issued during the run: headless text and JSON
progress, a debug log, `status`, `validate`, the state database, the lake, the
dashboard's screens and error pane, `/metrics` during and after a run, and everything that
crosses the control socket (a whole session's bytes, a dashboard attached through it) — with
the lake's storage key too."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
from rich.text import Text
from textual.pilot import Pilot

from tui_connector.config import load_config
from tui_connector.control import ControlAddress, RemoteRun, socket_path
from tui_connector.control.client import RUN_ENDED
from tui_connector.control.wire import MAX_MESSAGE_BYTES, encode
from tui_connector.demo.faults import FAULTS
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.metrics import MetricsServer
from tui_connector.services import ServedRun
from tui_connector.tui.app import Dashboard

from helpers import (
    LastScrape,
    async_wait_for,
    cli,
    engine_of,
    run_engine,
    scrape,
    served_run,
)
from s3_server import Bucket, S3Endpoint

SECRET = "s3cr3t/Zq+tok=en-77"  # '/', '+' and '=' change under URL encoding
WRONG = "wrong-token-but-still-secret-42"
REFRESH = "r3fresh/Tok+en=99"
ENV = {"API_TOKEN": SECRET, "OTHER_TOKEN": WRONG, "REFRESH_TOKEN": REFRESH}
# Written into the config as they are, not through ${VAR}: secrets by the name of their field
# (an OAuth2 token parameter's), or by their place (a password in the token_url).
TOKEN_PARAM = "subj3ct/t0ken+param"
TOKEN_URL_PASSWORD = "ur1-pa55/word"
# The demo server: the token its secret (its OAuth2 client's too), faults, and OAuth2 tokens
# short-lived, so that they are renewed during a run.
SERVER_KNOBS = {
    "token": SECRET,
    "fault_rate": 0.2,
    "retry_after_s": 0.02,
    "oauth_client_secret": SECRET,
    "oauth_refresh_token": REFRESH,
    "oauth_token_ttl_s": 0.2,
}
# The faults but `truncate`, which would cut the echoed error bodies the dashboard test reads.
KEEP_BODIES_WHOLE = tuple(fault for fault in FAULTS if fault != "truncate")

CONFIG = """\
defaults:
  retry: {{max_attempts: 10, backoff_base: 0.01, backoff_max: 0.05}}
sources:
  bearer:
    url: {url}/secure/pages/bearer
    records: data
    params: {{per_page: 20}}
    auth: {{type: bearer, token: "${{API_TOKEN}}"}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  keyparam:
    url: {url}/secure/next/keyparam
    records: data
    params: {{per_page: 20}}
    auth: {{type: api_key, key: "${{API_TOKEN}}", param: api_key}}
    pagination: {{type: next_url, next: links.next}}
  basic:
    url: {url}/secure/link/basic
    params: {{per_page: 20}}
    auth: {{type: basic, username: demo, password: "${{API_TOKEN}}"}}
    pagination: {{type: next_url, next: {{header: Link}}}}
  custom-header:
    url: {url}/v1/bad/echo-error/h
    params: {{status: 403}}
    headers: {{X-Custom-Thing: "${{API_TOKEN}}"}}
  custom-param:
    url: {url}/v1/bad/echo-error/p
    params: {{status: 400, q: "${{API_TOKEN}}"}}
  basic-echo:
    url: {url}/v1/bad/echo-error/b
    params: {{status: 401}}
    auth: {{type: basic, username: demo, password: "${{API_TOKEN}}"}}
  wrong:
    url: {url}/secure/pages/wrong
    records: data
    auth: {{type: bearer, token: "${{OTHER_TOKEN}}"}}
  oauth2:
    url: {url}/oauth/pages/oauth2
    records: data
    params: {{per_page: 20}}
    auth: {{type: oauth2, token_url: "{url}/oauth/token", client_id: demo-client,
            client_secret: "${{API_TOKEN}}"}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
  oauth2-echo:
    url: {url}/oauth/bad/echo-error/o
    params: {{status: 400}}
    auth: {{type: oauth2, token_url: "{url}/oauth/token", client_id: demo-client,
            client_secret: "${{API_TOKEN}}", client_auth: post, grant: refresh_token,
            refresh_token: "${{REFRESH_TOKEN}}"}}
"""


def forms(secret: str) -> list[str]:
    """The secret as it may appear: plain, URL-encoded, and inside a basic-auth header (an
    OAuth2 client's too, whose secret is form-encoded first)."""
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(f"demo:{secret}".encode()).decode(),
        base64.b64encode(f"demo-client:{quote_plus(secret)}".encode()).decode(),
    ]


def assert_no_secret(text: str, where: str, issued: list[str]) -> None:
    """No secret of the config, nor any token the server issued (`issued`), in `text`."""
    for secret in (SECRET, WRONG, REFRESH, TOKEN_PARAM, TOKEN_URL_PASSWORD, *issued):
        for form in forms(secret):
            assert form not in text, f"{where} shows a secret ({form!r})"
    # An excerpt may be cut within a token: none of a bearer token may show.
    shown = re.search(r"Bearer (?!\*\*\*)\S", text)
    assert shown is None, f"{where} shows part of a token ({shown and shown.group()!r})"


def every_file(root: Path) -> Iterator[Path]:
    return (path for path in root.rglob("*") if path.is_file() and path.name != "sources.yaml")


def test_the_token_appears_nowhere(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(records=120, seed=8, **SERVER_KNOBS)
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG.format(url=server.url))

    shown: dict[str, str] = {}
    text = cli(
        "run",
        "--headless",
        str(config),
        "--log-level",
        "debug",
        "--progress-interval",
        "0.1",
        env=ENV,
    )
    assert text.returncode == 1  # the echoing and the wrong-token sources fail
    shown["headless text"] = text.stdout + text.stderr
    as_json = cli(
        "run",
        "--headless",
        str(config),
        "--full-refresh",
        "--progress",
        "json",
        "--progress-interval",
        "0.1",
        "--log-level",
        "debug",
        env=ENV,
    )
    shown["headless json"] = as_json.stdout + as_json.stderr
    for args in (["status"], ["status", "--streams"], ["status", "--json", "--streams"]):
        result = cli(*args, f"--config={config}", env=ENV)
        assert result.returncode == 0, result.stderr
        shown[" ".join(args)] = result.stdout + result.stderr
    validate = cli("validate", str(config), env=ENV)
    shown["validate"] = validate.stdout + validate.stderr

    # The test can fail: the secret was sent, echoed back and retried through faults, and the
    # outputs hold what they would leak it through.
    echoed = [entry for entry in server.log() if "/echo-error/" in entry.path]
    assert echoed and any(entry.fault for entry in server.log())
    assert any(entry.path.startswith("/oauth/bad/echo-error/") for entry in echoed)
    issued = server.issued_tokens()
    assert len([t for t in issued if t.startswith("at-")]) > 2  # renewed, in both runs
    assert any(t.startswith("rt-") for t in issued)  # a rotated refresh token
    assert "api_key=***" in shown["headless json"] or "api_key=***" in _log(tmp_path)
    assert "HTTP 400 Bad Request" in shown["status"]  # the echoing source's failure
    assert "HTTP Request" in _log(tmp_path)  # httpx's request lines, URLs included

    for where, output in shown.items():
        assert_no_secret(output, where, issued)
    for path in every_file(tmp_path):
        assert_no_secret(path.read_bytes().decode("utf-8", "replace"), str(path), issued)


async def test_token_params_and_a_password_in_the_token_url_are_secrets(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory()
    # A token endpoint that echoes the token request back in its error, its form (the token
    # parameters) at the end.
    password = quote(TOKEN_URL_PASSWORD, safe="")
    echo = f"127.0.0.1:{server.port}/v1/bad/echo-error/t"
    path = tmp_path / "sources.yaml"
    path.write_text(f"""\
sources:
  exchange:
    url: {server.url}/oauth/all/exchange
    auth: {{type: oauth2, token_url: "http://demo:{password}@{echo}", client_id: demo-client,
            client_secret: "${{API_TOKEN}}", client_auth: post,
            token_params: {{subject_token: "{TOKEN_PARAM}", audience: api}}}}
""")
    config = load_config(path, env=ENV)
    result, engine = await run_engine(config)
    assert result.failed == ["exchange"]
    [event] = engine.telemetry.errors
    # The test can fail: the error shows the token endpoint's URL, and its echo of the request.
    assert event.url == f"http://demo:***@{echo}"
    assert '"path":"/v1/bad/echo-error/t"' in event.body_excerpt
    shown = {"url": event.url, "error": event.text, "excerpt": event.body_excerpt}
    for where, text in shown.items():
        assert_no_secret(text, where, [])
    for file in every_file(tmp_path):
        assert_no_secret(file.read_bytes().decode("utf-8", "replace"), str(file), [])
    # The echo is cut before the form: the redactor itself says the parameter is a secret.
    assert config.redactor(f"subject_token={quote_plus(TOKEN_PARAM)}") == "subject_token=***"


def _log(root: Path) -> str:
    return (root / ".tui-connector" / "tui-connector.log").read_text()


async def dashboard_screens(
    app: Dashboard, pilot: Pilot[Any], running: Callable[[], bool]
) -> tuple[list[str], list[str]]:
    """What a dashboard shows: its screens while `running`, then its error pane (every source's
    errors) scrolled sideways and every source's detail screen; and the error pane's cells. It
    is left with q."""
    screens: list[str] = []
    # Mid-run screens show the requests in flight, URLs and all.
    while running():
        screens.append(app.export_screenshot())
        await asyncio.sleep(0.05)
    await pilot.pause()
    screens.append(app.export_screenshot())
    if app.errors_follow_selection:
        await pilot.press("f")  # the errors of every source
    await pilot.press("e")
    for _ in range(4):  # scroll sideways: urls and body excerpts
        await pilot.press("right")
        screens.append(app.export_screenshot())
    table = app.errors_table
    cells = [
        value.plain if isinstance(value, Text) else str(value)
        for row in range(table.row_count)
        for value in table.get_row_at(row)
    ]
    for name in app.facts.selected:
        app.show_detail(name)
        await async_wait_for(lambda n=name: getattr(app.screen, "source", None) == n)
        await pilot.pause()
        screens.append(app.export_screenshot())
    await pilot.press("escape", "q")
    return screens, cells


async def test_the_dashboard_never_shows_the_token(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(
        records=200, seed=9, latency_ms=20, faults=KEEP_BODIES_WHOLE, **SERVER_KNOBS
    )
    path = tmp_path / "sources.yaml"
    path.write_text(CONFIG.format(url=server.url))
    app = Dashboard(InProcessRun(Engine(load_config(path, env=ENV))))
    async with app.run_test(size=(160, 50)) as pilot:
        screens, cells = await dashboard_screens(app, pilot, lambda: not app.all_finished())
    table = app.errors_table
    assert len(screens) > 10 and table.row_count > 0
    assert any("echo-error" in cell for cell in cells)
    # The echoed custom header and basic-auth header were redacted, not cut in the middle.
    excerpts = [event.body_excerpt for event in engine_of(app).telemetry.errors]
    assert any('"x-custom-thing":"***"' in excerpt for excerpt in excerpts), excerpts
    assert any('"authorization":"Basic ***"' in excerpt for excerpt in excerpts), excerpts
    issued = server.issued_tokens()
    assert_no_secret("\n".join(excerpts), "the errors behind the pane", issued)
    assert any('"authorization":"Bearer ***"' in excerpt for excerpt in excerpts), excerpts
    for number, screen in enumerate(screens):
        assert_no_secret(screen, f"dashboard screen {number}", issued)
    assert_no_secret("\n".join(cells), "the error pane", issued)


async def whole_session(path: Path) -> bytes:
    """Every byte a client attached at `path` receives, from its hello to the run's end."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_MESSAGE_BYTES)
    writer.write(encode({"type": "hello", "protocol": 1}))
    await writer.drain()
    received = await reader.read()  # the endpoint hangs up once it said the run finished
    writer.close()
    return received


async def test_an_attached_client_and_dashboard_never_see_a_secret(
    demo_server_factory: Callable[..., DemoServer],
    bucket: Bucket,
    s3: S3Endpoint,
    tmp_path: Path,
) -> None:
    """Everything that crosses the control socket: the raw bytes of a whole session, and what
    a dashboard attached through it shows. The lake is on S3, its key given in `storage:`."""
    server = demo_server_factory(
        records=200, seed=9, latency_ms=20, faults=KEEP_BODIES_WHOLE, **SERVER_KNOBS
    )
    storage_key = s3.lake_user.secret_access_key
    path = tmp_path / "sources.yaml"
    path.write_text(
        f'out: s3://{bucket.name}/lake\nstorage: {{aws_secret_access_key: "${{LAKE_KEY}}"}}\n'
        + CONFIG.format(url=server.url)
    )
    config = load_config(path, env={**ENV, "LAKE_KEY": storage_key})
    async with served_run(config) as (run, task):
        address = socket_path(run.facts.state_path)
        session = asyncio.create_task(whole_session(address))
        remote = RemoteRun(ControlAddress(unix=address))
        await remote.open()  # as `attach` does: the run's facts first
        await remote.close()
        app = Dashboard(remote)
        async with app.run_test(size=(160, 50)) as pilot:
            screens, cells = await dashboard_screens(app, pilot, lambda: remote.ended is None)
        received = (await session).decode()
        result = await task
    assert remote.ended is not None and remote.ended.startswith(RUN_ENDED), remote.ended
    # The test can fail: the session ran from the welcome to the run's end, carried the
    # requests in flight and the errors that echo the secret, and the dashboard showed them.
    messages = [json.loads(line) for line in received.splitlines()]
    assert messages[0]["type"] == "welcome" and messages[-1]["type"] == "finished"
    assert messages[-1]["result"]["failed"] == result.failed and "custom-header" in result.failed
    assert "bearer" in result.done and bucket.object_keys()  # the key was used: a lake on S3
    assert any(message.get("in_flight", {}).get("add") for message in messages)
    assert "api_key=***" in received and '\\"x-custom-thing\\":\\"***\\"' in received
    assert len(screens) > 10 and any("echo-error" in cell for cell in cells)
    # JSON text escapes none of the secrets' characters: the raw bytes show them as they are.
    issued = [*server.issued_tokens(), storage_key]
    assert_no_secret(received, "the control session", issued)
    for number, screen in enumerate(screens):
        assert_no_secret(screen, f"attached dashboard screen {number}", issued)
    assert_no_secret("\n".join(cells), "the attached error pane", issued)


async def test_metrics_never_show_the_token(
    demo_server_factory: Callable[..., DemoServer], tmp_path: Path
) -> None:
    server = demo_server_factory(records=200, seed=9, latency_ms=20, **SERVER_KNOBS)
    path = tmp_path / "sources.yaml"
    path.write_text(CONFIG.format(url=server.url))
    metrics = MetricsServer("127.0.0.1", 0)
    last = LastScrape(lambda: metrics.url)
    run = ServedRun(InProcessRun(Engine(load_config(path, env=ENV))), [metrics, last])
    scrapes: list[str] = []
    await run.open()
    try:
        running = asyncio.create_task(run.run())
        while not running.done():  # mid-run: retries, backoffs, tokens being renewed
            try:
                scrapes.append((await scrape(metrics.url)).text)
            except httpx.TransportError:
                if running.done():  # the run ended mid-scrape, and its server with it
                    break
                raise
            await asyncio.sleep(0.05)
        result = running.result()
    finally:
        await run.close()
    assert last.scraped is not None
    scrapes.append(last.scraped.text)
    # The test can fail: the run failed sources with errors that echo the secret, and the
    # scrapes cover them.
    assert "custom-header" in result.failed and len(scrapes) > 3
    assert 'tui_connector_source_status{source="custom-header",status="failed"} 1.0' in scrapes[-1]
    assert any(event.body_excerpt for event in run.snapshot().errors)
    issued = server.issued_tokens()
    for number, text in enumerate(scrapes):
        assert_no_secret(text, f"scrape {number}", issued)
