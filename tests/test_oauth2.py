"""OAuth2 sources against the demo API's token endpoint (`/oauth/token`) and its protected
`/oauth` routes: tokens renewed ahead of expiry and once on a 401, one token request however
many streams and pages need one, refusals that fail the source with the provider's reason,
token requests retried like any request, and rotated refresh tokens kept.

The real authorization server (oidc-provider) is `test_oauth2_provider.py`'s."""

from __future__ import annotations

import asyncio
import stat
from collections import Counter
from pathlib import Path

from tui_connector.engine import Engine
from tui_connector.http.secret_file import write_secret_file

from helpers import (
    async_wait_for,
    expected_ids,
    lake_ids,
    run_engine,
    run_failed,
    single_source,
)
from oauth_helpers import (
    QUICK_RETRIES,
    REGIONS,
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


async def test_short_lived_tokens_are_renewed_ahead_of_expiry_through_a_run(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(records=240, latency_ms=10, oauth_token_ttl_s=0.3)
    config = write_config(
        by_cursor(server, "accounts", oauth2(server, ", scopes: [accounts.read, reports]"))
    )
    result, engine = await run_engine(config)
    assert_nothing_failed(result, engine)
    assert lake_ids(config.out, "accounts") == expected_ids("accounts", 240)
    tokens = engine.telemetry.sources["accounts"].tokens_obtained
    # 48 pages of at least 10 ms each outlive several tokens of 0.3 s; each renewal is one
    # token request, and every one of them was needed.
    assert tokens >= 3
    assert token_requests(server) == [200] * tokens
    # Renewed ahead of expiry: had they waited for a 401, one would precede each renewal.
    assert api_requests(server).count(401) < tokens - 1


async def test_one_token_request_serves_every_stream_and_page(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(records=200, latency_ms=40)
    config = write_config(by_region(server, oauth2(server), concurrency=24))
    run = asyncio.create_task(run_engine(config))
    # Mid-run, the API revokes the token: the requests in flight all get a 401, and all of
    # them wait for the one renewal.
    await async_wait_for(lambda: api_requests(server).count(200) >= 30, what="30 pages")
    server.revoke_access_tokens()
    result, engine = await run
    assert_nothing_failed(result, engine)
    expected = sum((expected_ids(region, 200) for region in REGIONS), Counter())
    assert lake_ids(config.out, "regions") == expected
    assert token_requests(server) == [200, 200]
    assert api_requests(server).count(401) >= 2  # several refused at once, one renewal


async def test_a_token_refused_even_when_fresh_fails_the_source_saying_so(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(oauth_api_accepts=False)
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=oauth2(server)))
    error = await run_failed(config, "items")
    assert error.startswith("HTTP 401 Unauthorized: the API refuses even a freshly issued")
    assert "check the scopes and token_params" in error
    # The first 401 renewed the token once; the second failed the source.
    assert token_requests(server) == [200, 200]
    assert api_requests(server) == [401, 401]


async def test_a_client_refused_fails_the_source_at_once_with_the_providers_reason(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory()
    config = write_config(f"""
sources:
  regions:
    url: {server.url}/oauth/pages/{{region}}
    records: data
    concurrency: 6
    partitions: {{type: values, values: [{", ".join(REGIONS)}], path: region}}
    auth: {{type: oauth2, token_url: {server.url}/oauth/token, client_id: demo-client,
            client_secret: not-the-secret}}
""")
    result, engine = await run_engine(config)
    assert result.failed == ["regions"]
    # Each partition that was waiting for the token fails with the one refusal.
    errors = {event.error for event in engine.telemetry.errors}
    assert errors == {
        "OAuth2 token request: the provider refused the token request (HTTP 401, "
        "invalid_client: client authentication failed); check client_id, client_secret and "
        "client_auth (basic or post) after 1 attempt"
    }
    # One token request for all six partitions, none retried, and nothing sent to the API.
    assert token_requests(server) == [401]
    assert api_requests(server) == []


async def test_a_refresh_token_refused_names_it(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory()
    refused = oauth2(server, ", grant: refresh_token, refresh_token: revoked-long-ago")
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=refused))
    error = await run_failed(config, "items")
    assert "(HTTP 400, invalid_grant: the refresh token is invalid, expired or revoked)" in error
    assert "obtain a new one" in error
    assert token_requests(server) == [400]


async def test_an_empty_refresh_token_file_says_what_to_put_there(
    demo_server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    server = demo_server_factory()
    auth = oauth2(server, ", grant: refresh_token, refresh_token_file: refresh-token")
    (tmp_path / "refresh-token").write_text("\n")  # a missing one is a config error
    config = write_config(single_source(f"{server.url}/oauth/all/items", auth=auth))
    error = await run_failed(config, "items")
    assert error.startswith(
        f"OAuth2 token request: refresh_token_file {tmp_path / 'refresh-token'} is missing or "
        "empty; put the refresh token in it, or set refresh_token"
    )
    assert server.log() == []


async def test_token_requests_are_retried_like_any_request(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(records=100, fault_rate=1.0, faults=("503",), retry_after_s=0.2)
    config = write_config(f"""
defaults:
  retry: {{max_attempts: 10}}
sources:
  items:
    url: {server.url}/oauth/pages/items
    records: data
    pagination: {{type: page_number, stop: {{total_records: total}}}}
    auth: {oauth2(server)}
""")
    run = asyncio.create_task(run_engine(config))
    await async_wait_for(lambda: len(token_requests(server)) >= 2, what="a retried token request")
    server.update_knobs(fault_rate=0.0)
    result, engine = await run
    assert result.done == ["items"]
    statuses = token_requests(server)
    assert statuses[:2] == [503, 503] and statuses[-1] == 200 and set(statuses) == {200, 503}
    retried = [event.error for event in engine.telemetry.errors]
    assert retried and all(
        error == "OAuth2 token request: HTTP 503 Service Unavailable" for error in retried
    )
    assert lake_ids(config.out, "items") == expected_ids("items", 100)


async def test_a_token_endpoint_that_stays_down_fails_the_source_after_the_retries(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("500",))
    config = write_config(
        single_source(f"{server.url}/oauth/all/items", retry=QUICK_RETRIES, auth=oauth2(server))
    )
    error = await run_failed(config, "items")
    assert error == (
        "OAuth2 token request: HTTP 500 Internal Server Error after 3 attempts: "
        '{"error":"internal server error (injected fault)"}'
    )
    assert token_requests(server) == [500, 500, 500]
    assert api_requests(server) == []


async def test_a_stop_while_a_token_request_waits_to_be_retried_ends_the_run_at_once(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(fault_rate=1.0, faults=("503",), retry_after_s=30)
    config = write_config(
        single_source(f"{server.url}/oauth/pages/items", records="data", auth=oauth2(server))
    )
    async with Engine(config) as engine:
        run = asyncio.create_task(engine.run())
        stats = engine.telemetry.sources["items"]
        await async_wait_for(lambda: stats.backoff_until is not None, what="the 503's wait")
        engine.request_stop()
        result = await asyncio.wait_for(run, timeout=20)
    # Stopped, not failed, and no token request more: none rushed out once the wait was cut.
    assert result.interrupted and result.stopped == ["items"]
    assert token_requests(server) == [503]


async def test_rotated_refresh_tokens_are_kept_in_the_file_for_the_next_run(
    demo_server_factory: Factory, write_config: WriteConfig, tmp_path: Path
) -> None:
    server = demo_server_factory(records=200, latency_ms=10, oauth_token_ttl_s=0.3)
    rotating = ", grant: refresh_token, refresh_token: demo-refresh-token"
    text = by_cursor(
        server, "items", oauth2(server, f"{rotating}, refresh_token_file: secrets/refresh-token")
    )
    config = write_config(text)
    result, engine = await run_engine(config)
    assert_nothing_failed(result, engine)
    kept = tmp_path / "secrets" / "refresh-token"
    refresh_tokens = refresh_tokens_of(server)
    assert len(refresh_tokens) >= 2  # rotated at each renewal
    assert kept.read_text() == refresh_tokens[-1] + "\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    # The configured token was revoked by the first rotation: the next run starts from the
    # file's, or the provider would refuse it.
    result, engine = await run_engine(write_config(text), full_refresh=True)
    assert_nothing_failed(result, engine)
    assert token_requests(server).count(400) == 0
    assert kept.read_text() == refresh_tokens_of(server)[-1] + "\n"


async def test_a_rotated_refresh_token_without_a_file_is_said_once(
    demo_server_factory: Factory, write_config: WriteConfig
) -> None:
    server = demo_server_factory(records=200, latency_ms=10, oauth_token_ttl_s=0.3)
    rotating = ", grant: refresh_token, refresh_token: demo-refresh-token"
    config = write_config(by_cursor(server, "items", oauth2(server, rotating)))
    result, engine = await run_engine(config)
    assert result.done == ["items"]
    stats = engine.telemetry.sources["items"]
    assert stats.tokens_obtained >= 2
    assert stats.warnings == [
        "the provider rotated the refresh token: the configured refresh_token is now stale "
        "(the next run may be refused with invalid_grant); set auth.refresh_token_file to "
        "keep the newest one"
    ]


def test_a_secret_file_is_replaced_whole_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old\n")
    path.chmod(0o644)
    write_secret_file(path, "new")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary file left
