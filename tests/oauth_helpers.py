"""What the OAuth2 tests share: an `auth:` for the demo API's token endpoint, a config that
pages through its `/oauth` routes, and what the server saw of tokens and of the API."""

from __future__ import annotations

from collections.abc import Callable

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine, RunResult

Factory = Callable[..., DemoServer]
WriteConfig = Callable[..., LoadedConfig]

CLIENT = "client_id: demo-client, client_secret: demo-client-secret"
REGIONS = ("north", "south", "east", "west", "centre", "isles")
QUICK_RETRIES = "{max_attempts: 3, backoff_base: 0.01, backoff_max: 0.05}"
# The refresh token grant from the demo's first refresh token, which each refresh rotates.
ROTATING = ", grant: refresh_token, refresh_token: demo-refresh-token"


def oauth2(server: DemoServer, extra: str = "") -> str:
    """An `auth:` for the demo's token endpoint (client credentials unless `extra` says)."""
    return f"{{type: oauth2, token_url: {server.url}/oauth/token, {CLIENT}{extra}}}"


def by_cursor(server: DemoServer, dataset: str, auth: str) -> str:
    """A config of one source paging `dataset` by cursor, five records a page, with `auth`."""
    return f"""
sources:
  {dataset}:
    url: {server.url}/oauth/cursor/{dataset}
    records: items
    params: {{limit: 5}}
    pagination: {{type: cursor, cursor: next_cursor, cursor_param: cursor}}
    auth: {auth}
"""


def by_region(server: DemoServer, auth: str, concurrency: int) -> str:
    """A config of one source, `regions`, paging ten records at a time through a partition
    per region, `concurrency` requests at once, with `auth`."""
    return f"""
sources:
  regions:
    url: {server.url}/oauth/pages/{{region}}
    records: data
    params: {{per_page: 10}}
    concurrency: {concurrency}
    pagination: {{type: page_number, stop: {{total_records: total}}}}
    partitions: {{type: values, values: [{", ".join(REGIONS)}], path: region}}
    auth: {auth}
"""


def token_requests(server: DemoServer) -> list[int]:
    """The statuses of the token requests the server saw, in order."""
    return [entry.status for entry in server.log() if entry.path == "/oauth/token"]


def refresh_tokens_of(server: DemoServer) -> list[str]:
    """The refresh tokens the server issued, oldest first."""
    return [token for token in server.issued_tokens() if token.startswith("rt-")]


def api_requests(server: DemoServer) -> list[int]:
    return [entry.status for entry in server.log() if entry.path != "/oauth/token"]


def assert_nothing_failed(result: RunResult, engine: Engine) -> None:
    """Done, and nothing the user sees says a request failed."""
    telemetry = engine.telemetry
    assert result.failed == [], [telemetry.sources[n].last_error for n in result.failed]
    assert list(telemetry.errors) == []
    assert all(stats.retries == 0 and not stats.warnings for stats in telemetry.sources.values())
