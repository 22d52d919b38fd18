"""What an OAuth2 source makes of its token requests' fates, against the demo API's token
endpoint: an odd answer (a token of another type, an access token no header can carry) fails
the source at once, yet the refresh token it brought is kept; refusals read as every error
does, the hint last; a connection refused or dropped at the token endpoint is retried; token
requests are requests of the source, but no samples of the API's load; and the file that keeps
a refresh token is replaced whole, readable by its owner only."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from tui_connector.demo.knobs import DemoKnobs
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.exchange import PageRequest
from tui_connector.http.secret_file import write_secret_file
from tui_connector.http.source import SourceHttp
from tui_connector.telemetry import AttemptOutcome, RunTelemetry

from helpers import async_wait_for, expected_ids, lake_ids, run_done, run_failed, single_source
from oauth_helpers import (
    QUICK_RETRIES,
    ROTATING,
    Factory,
    WriteConfig,
    api_requests,
    oauth2,
    refresh_tokens_of,
    token_requests,
)

PATIENT_RETRIES = "{max_attempts: 10, backoff_base: 0.1, backoff_max: 0.2}"


async def test_a_token_of_another_type_fails_the_source_but_its_refresh_token_is_kept(
    demo_server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    server = demo_server_factory(oauth_answer_fields={"token_type": "mac"})
    auth = oauth2(server, f"{ROTATING}, refresh_token_file: refresh-token")
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=auth))
    error = await run_failed(config)
    assert error == (
        "OAuth2 token request: the provider issued a token of type 'mac'; only bearer tokens "
        "are supported after 1 attempt"
    )
    assert token_requests(server) == [200]
    # The refresh revoked the configured refresh token: the one it brought is the one to use.
    assert (tmp_path / "refresh-token").read_text() == refresh_tokens_of(server)[-1] + "\n"


@pytest.mark.parametrize(
    ("access_token", "why"),
    [
        ("at-1\r\nX-Injected: yes", "it holds a space or a control character"),
        ("tøken-of-the-provider", "it holds a character that is not ASCII"),
        (12345678, "a number rather than text"),
    ],
)
async def test_an_access_token_no_header_can_carry_fails_the_source_at_once(
    demo_server_factory: Factory, write_config: WriteConfig, access_token: object, why: str
) -> None:
    server = demo_server_factory(oauth_answer_fields={"access_token": access_token})
    config = write_config(
        single_source(f"{server.url}/oauth/all/items", retry=QUICK_RETRIES, auth=oauth2(server))
    )
    error = await run_failed(config)
    assert error == (
        "OAuth2 token request: the provider issued an access_token that cannot be sent as a "
        f"bearer token ({why}; RFC 6750 allows visible ASCII characters only) after 1 attempt"
    )
    assert token_requests(server) == [200]  # not worth another
    assert api_requests(server) == []


async def test_a_refused_refresh_token_from_its_file_says_to_put_a_new_one_there(
    demo_server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    server = demo_server_factory()
    kept = tmp_path / "refresh-token"
    kept.write_text("revoked-long-ago\n")
    auth = oauth2(server, ", grant: refresh_token, refresh_token_file: refresh-token")
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=auth))
    error = await run_failed(config)
    # What happened, then what to do; the provider's description once (not its body again).
    assert error == (
        "OAuth2 token request: the provider refused the token request (HTTP 400, "
        "invalid_grant: the refresh token is invalid, expired or revoked) after 1 attempt; "
        f"the refresh token in {kept} is invalid, expired or revoked: put a new one in that file"
    )


async def test_a_token_the_api_refuses_even_fresh_says_what_to_check_last(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(oauth_api_accepts=False)
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=oauth2(server)))
    error = await run_failed(config)
    assert error == (
        "HTTP 401 Unauthorized: the API refuses even a freshly issued access token from "
        f"{server.url}/oauth/token after 1 attempt: "
        '{"error":"invalid_token","error_description":"the access token is invalid or has '
        'expired"}; check the scopes and token_params (audience, resource) it expects'
    )


async def test_a_token_endpoint_that_drops_connections_is_retried(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(records=30, fault_rate=1.0, faults=("drop",))
    config = write_config(
        single_source(
            f"{server.url}/oauth/pages/items",
            records="data",
            retry=PATIENT_RETRIES,
            pagination="{type: page_number, stop: {total_records: total}}",
            auth=oauth2(server),
        )
    )
    run = asyncio.create_task(run_done(config))
    await async_wait_for(lambda: len(token_requests(server)) >= 2, what="a retried token request")
    server.update_knobs(fault_rate=0.0)
    engine = await run
    statuses = token_requests(server)  # a dropped connection is logged with status 0
    assert statuses[:2] == [0, 0] and statuses[-1] == 200 and set(statuses) == {0, 200}
    retried = {event.error for event in engine.telemetry.errors}
    assert retried == {"OAuth2 token request: the server closed the connection without a response"}
    assert lake_ids(config.out, "items") == expected_ids("items", 30)


async def test_a_token_endpoint_that_refuses_connections_until_it_comes_up_is_retried(
    write_config: WriteConfig,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on, until the server starts there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    auth = (
        f"{{type: oauth2, token_url: {url}/oauth/token, client_id: demo-client, "
        "client_secret: demo-client-secret}"
    )
    config = write_config(single_source(f"{url}/oauth/all/items", retry=PATIENT_RETRIES, auth=auth))
    async with Engine(config) as engine:
        run = asyncio.create_task(engine.run())
        errors = engine.telemetry.errors
        await async_wait_for(lambda: len(errors) > 0, what="a refused token request")
        server = DemoServer(DemoKnobs(records=12), port=port).start()
        try:
            result = await run
        finally:
            server.stop()
    assert result.done == ["items"]
    assert {event.error for event in errors} == {
        f"OAuth2 token request: connection refused (127.0.0.1:{port})"
    }
    assert token_requests(server) == [200]
    assert lake_ids(config.out, "items") == expected_ids("items", 12)


async def test_token_requests_are_requests_of_the_source_but_no_samples_of_the_apis_load(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    # A token endpoint that says "too many requests" says nothing of the API's load: an
    # adaptive concurrency limit must not close for it.
    server = demo_server_factory(records=10, fault_rate=1.0, faults=("429",), retry_after_s=0.3)
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=oauth2(server)))
    telemetry = RunTelemetry()
    reporter = telemetry.reporter("items")
    outcomes: list[AttemptOutcome] = []
    reporter.attempt_listener = outcomes.append  # where an adaptive limit listens
    http = SourceHttp(config.sources["items"], reporter, config.redactor, pool_size=2)
    page = PageRequest(method="GET", url=f"{server.url}/oauth/all/items", params={}, json=None)
    try:
        fetching = asyncio.create_task(http.fetch(page))
        await async_wait_for(lambda: token_requests(server) == [429], what="the 429")
        server.update_knobs(fault_rate=0.0)
        response = await fetching
    finally:
        await http.aclose()
    assert len(response.body) == 10
    assert token_requests(server) == [429, 200]
    assert [outcome.status for outcome in outcomes] == [200]
    assert telemetry.sources["items"].requests == 3


# -- the file that keeps a refresh token -------------------------------------------------------


def test_a_secret_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_secret_file(path, "new\ud800")  # fails midway: no UTF-8 for a lone surrogate
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary file left


def test_a_secret_file_is_its_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token"
    previous = os.umask(0)
    try:
        write_secret_file(path, "new")
    finally:
        os.umask(previous)
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_secret_file_behind_a_symbolic_link_is_replaced_where_the_link_points(
    tmp_path: Path,
) -> None:
    target = tmp_path / "vault" / "token"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "token"
    link.symlink_to(target)
    write_secret_file(link, "new")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["token"]
