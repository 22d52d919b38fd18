"""OAuth2 against a real authorization server: oidc-provider (tests/oidc_server.py) issues
client credentials tokens that expire every two seconds, and the demo API lets a page through
only when oidc-provider's introspection says its token is active. A run outlives several
tokens: it completes exactly once, renewing them on the way, and no request fails in the
user's sight."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer

from helpers import expected_ids, lake_ids, run_engine, run_failed, single_source
from node_server import NodeServerMissing
from oidc_server import OidcProvider

TOKEN_LIFETIME = 2  # seconds, the shortest whole number that leaves room to renew ahead


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[OidcProvider]:
    """oidc-provider on 127.0.0.1 for this module's tests."""
    try:
        provider = OidcProvider(ttl=TOKEN_LIFETIME).start()
    except NodeServerMissing as exc:
        pytest.fail(str(exc))
    with provider:
        yield provider


def oauth2(provider: OidcProvider, client_secret: str) -> str:
    endpoints = provider.endpoints
    return (
        f"{{type: oauth2, token_url: '{provider.token_url}', client_id: {endpoints['client_id']},"
        f" client_secret: '{client_secret}', scopes: [{endpoints['scope']}],"
        f" token_params: {{resource: '{endpoints['resource']}'}}}}"
    )


async def test_a_run_outlives_several_tokens_and_completes_exactly_once(
    oidc_provider: OidcProvider,
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(
        records=500, latency_ms=80, oauth_introspection_url=oidc_provider.introspection_url
    )
    auth = oauth2(oidc_provider, oidc_provider.client_secret)
    config = write_config(f"""
sources:
  ledger:
    url: {server.url}/oauth/cursor/ledger
    records: items
    params: {{limit: 10}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
    auth: {auth}
  accounts:
    url: {server.url}/oauth/pages/accounts
    records: data
    params: {{per_page: 10}}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
    auth: {auth}
""")
    before = oidc_provider.stats()
    result, engine = await run_engine(config)
    telemetry = engine.telemetry
    assert result.done == ["ledger", "accounts"], result
    assert lake_ids(config.out, "ledger") == expected_ids("ledger", 500)
    assert lake_ids(config.out, "accounts") == expected_ids("accounts", 500)
    # Nothing the user sees says a request failed: no error, no retry, no warning.
    assert list(telemetry.errors) == []
    assert [(s.retries, s.errors, s.warnings) for s in telemetry.sources.values()] == [
        (0, 0, []),
        (0, 0, []),
    ]
    # Fifty pages, one after the other, of 80 ms and an introspection each, outlive several
    # tokens of two seconds: each renewal was one token the server issued, none refused. The
    # two sources give the same auth block: they share each token, both told of it.
    ledger = telemetry.sources["ledger"].tokens_obtained
    assert ledger >= 3
    assert telemetry.sources["accounts"].tokens_obtained == ledger
    after = oidc_provider.stats()
    assert after["tokens_issued"] - before["tokens_issued"] == ledger
    assert after["token_errors"] == before["token_errors"]
    # The server asked oidc-provider about every request's token.
    api = [entry for entry in server.log() if entry.path.startswith("/oauth/")]
    assert after["introspections"] - before["introspections"] == len(api)


async def test_a_wrong_client_secret_is_refused_by_the_provider_with_its_reason(
    oidc_provider: OidcProvider,
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
) -> None:
    server = demo_server_factory(oauth_introspection_url=oidc_provider.introspection_url)
    config = write_config(
        single_source(f"{server.url}/oauth/all/items", auth=oauth2(oidc_provider, "not-the-secret"))
    )
    error = await run_failed(config, "items")
    assert "(HTTP 401, invalid_client: client authentication failed)" in error, error
    assert server.log() == []  # nothing reached the API
