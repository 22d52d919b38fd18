"""When OAuth2 tokens are renewed, and by whom: sources that give one auth block share its
token (a rotating refresh token is refreshed by one of them at a time), a token is renewed
ahead of its expiry so that none reaches the API expired, every task waiting for a renewal
takes the token it brought (even one already due for renewal when it arrived), and a refresh
cut short by a cancel still keeps the refresh token its answer brings. Against the demo API's
token endpoint and `/oauth` routes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tui_connector.config import ConfigError, OAuth2Auth, RetryPolicy
from tui_connector.http.oauth2 import OAuth2Tokens
from tui_connector.redact import Redactor
from tui_connector.telemetry import RunTelemetry

from helpers import async_wait_for, expected_ids, lake_ids, run_engine
from oauth_helpers import (
    ROTATING,
    Factory,
    WriteConfig,
    api_requests,
    assert_nothing_failed,
    by_cursor,
    by_region,
    oauth2,
    refresh_tokens_of,
    token_requests,
)


def by_cursor_twice(server_url: str, auth: str) -> str:
    """Two sources, `ledger` and `accounts`, paging by cursor with the same `auth`."""
    return "sources:\n" + "".join(
        f"""
  {dataset}:
    url: {server_url}/oauth/cursor/{dataset}
    records: items
    params: {{limit: 5}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
    auth: {auth}
"""
        for dataset in ("ledger", "accounts")
    )


async def test_sources_that_give_one_auth_block_share_its_rotating_refresh_token(
    demo_server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    server = demo_server_factory(records=240, latency_ms=10, oauth_token_ttl_s=0.3)
    auth = oauth2(server, f"{ROTATING}, refresh_token_file: refresh-token")
    config = write_config(by_cursor_twice(server.url, auth))
    result, engine = await run_engine(config)
    # Refreshed apart, the first refresh would have revoked the other source's refresh token.
    assert_nothing_failed(result, engine)
    for dataset in ("ledger", "accounts"):
        assert lake_ids(config.out, dataset) == expected_ids(dataset, 240)
    statuses = token_requests(server)
    assert statuses == [200] * len(statuses)
    # One token at a time for both: each source was told of every one.
    sources = engine.telemetry.sources
    assert sources["ledger"].tokens_obtained == sources["accounts"].tokens_obtained
    assert sources["ledger"].tokens_obtained == len(statuses) >= 3
    assert (tmp_path / "refresh-token").read_text() == refresh_tokens_of(server)[-1] + "\n"


async def test_one_refresh_token_in_two_different_auth_blocks_is_a_config_error(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory()
    shared = f"{ROTATING}, refresh_token_file: refresh-token"
    text = by_cursor_twice(server.url, oauth2(server, shared))
    text = text.replace(shared, f"{shared}, scopes: [more]", 2).replace(
        f"{shared}, scopes: [more]", shared, 1
    )
    with pytest.raises(ConfigError) as raised:
        write_config(text)
    message = str(raised.value)
    assert "sources.accounts.auth.refresh_token_file" in message, message
    assert "source ledger refreshes the same refresh token with another auth block" in message


async def test_tokens_are_renewed_ahead_so_none_reaches_the_api_expired(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    # Every request waits 50 ms before the API looks at its token: one sent in the last 50 ms
    # of a token's life would be refused (401), had it not been renewed ahead.
    server = demo_server_factory(records=150, latency_ms=50, oauth_token_ttl_s=0.6)
    config = write_config(by_cursor(server, "accounts", oauth2(server)))
    result, engine = await run_engine(config)
    assert_nothing_failed(result, engine)
    assert engine.telemetry.sources["accounts"].tokens_obtained >= 3
    assert 401 not in api_requests(server)
    assert lake_ids(config.out, "accounts") == expected_ids("accounts", 150)


async def test_a_token_due_for_renewal_when_it_arrives_serves_every_waiting_request(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    # The provider says its tokens live 0.3 s, and a token request takes 0.25 s: by the time
    # a token arrives, it is due for renewal.
    server = demo_server_factory(
        records=20, latency_ms=250, oauth_answer_fields={"expires_in": 0.3}
    )
    config = write_config(by_region(server, oauth2(server), concurrency=6))
    result, engine = await run_engine(config)
    assert_nothing_failed(result, engine)
    assert api_requests(server) == [200] * 12  # six partitions of two pages
    # The six requests of each round wait for one token and take it: one token request a
    # round (two), give or take a round the partitions did not start together; not one each.
    assert len(token_requests(server)) <= 4, token_requests(server)


async def test_a_refresh_cut_short_by_a_cancel_still_keeps_its_new_refresh_token(
    demo_server_factory: Factory, tmp_path: Path
) -> None:
    server = demo_server_factory(latency_ms=300)
    kept = tmp_path / "refresh-token"
    auth = OAuth2Auth.model_validate(
        {
            "type": "oauth2",
            "token_url": f"{server.url}/oauth/token",
            "client_id": "demo-client",
            "client_secret": "demo-client-secret",
            "grant": "refresh_token",
            "refresh_token": "demo-refresh-token",
            "refresh_token_file": str(kept),
        }
    )
    tokens = OAuth2Tokens(auth, Redactor())
    async with httpx.AsyncClient() as client:
        source = tokens.for_source(client, RetryPolicy(), 10.0, RunTelemetry().reporter("s"))
        first = httpx.Request("GET", f"{server.url}/oauth/all/items")
        refreshing = asyncio.create_task(source.authorize(first, None, None))
        # The provider has the refresh (and will revoke the token it carries) when the
        # source is cancelled: a stop, a sibling source's failure.
        await async_wait_for(lambda: server.serving == 1, what="the refresh at the provider")
        refreshing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await refreshing
        # The next renewal waits for that refresh, and refreshes with the token it brought.
        second = httpx.Request("GET", f"{server.url}/oauth/all/items")
        await source.authorize(second, None, None)
        await source.settle()
        assert (await client.send(second)).status_code == 200
    assert token_requests(server) == [200, 200]
    assert kept.read_text() == refresh_tokens_of(server)[-1] + "\n"


async def test_a_source_paused_while_it_renews_a_shared_token_holds_no_other_source_back(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    """The sources sharing a token wait for the one renewing it. If that source is paused
    while its token request waits to be retried, the next attempt is another source's: the
    others go on, and the paused one takes their token when it is resumed."""
    from tui_connector.engine import Engine

    server = demo_server_factory(records=40, fault_rate=1.0, faults=("503",), retry_after_s=0.5)
    auth = oauth2(server)
    config = write_config(
        "defaults:\n  retry: {max_attempts: 20}\n" + by_cursor_twice(server.url, auth)
    )
    async with Engine(config) as engine:
        run = asyncio.create_task(engine.run())
        sources = engine.telemetry.sources
        await async_wait_for(
            lambda: any(stats.backoff_until is not None for stats in sources.values()),
            what="a token request waiting to be retried",
        )
        renewing = next(name for name, stats in sources.items() if stats.backoff_until)
        other = ({"ledger", "accounts"} - {renewing}).pop()
        engine.pause(renewing)
        server.update_knobs(fault_rate=0.0)
        await async_wait_for(lambda: sources[other].status == "done", what=f"{other} done")
        assert sources[renewing].records_this_run == 0
        engine.resume(renewing)
        result = await asyncio.wait_for(run, timeout=30)
    assert sorted(result.done) == ["accounts", "ledger"] and result.failed == []
    for dataset in ("ledger", "accounts"):
        assert lake_ids(config.out, dataset) == expected_ids(dataset, 40)
    # One token served both: the paused source took the one obtained while it waited.
    assert token_requests(server).count(200) == 1, token_requests(server)
