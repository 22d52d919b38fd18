"""sources.yaml validation: every wrong config names file, line, column and field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui_connector.config import ConfigError, load_config, state_path_of

ROOT = Path(__file__).resolve().parent.parent

GOOD_SOURCE = """\
sources:
  items:
    url: http://127.0.0.1:9/v1/pages/items
    records: data
"""

# (id, yaml, env, expected "LINE:COL: field: message" fragment)
BAD_CONFIGS: list[tuple[str, str, dict[str, str], str]] = [
    ("yaml-syntax", "sources:\n  a: [1, 2\n", {}, ":3:1: YAML syntax error"),
    ("tab-indent", "sources:\n\ta: 1\n", {}, ":2:1: YAML syntax error"),
    ("empty-file", "", {}, ":1:1: (top level): the file is empty"),
    ("top-level-list", "- a\n- b\n", {}, ":1:1: (top level): expected a mapping"),
    ("no-sources", "out: lake\n", {}, ":1:1: sources: required key 'sources' is missing"),
    ("empty-sources", "sources: {}\n", {}, ":1:10: sources: no sources defined"),
    (
        "names-differ-in-case",
        "sources:\n  Orders: {url: 'http://h/a'}\n  orders: {url: 'http://h/b'}\n",
        {},
        ":2:3: sources: sources 'Orders' and 'orders' differ only in case",
    ),
    (
        "unknown-top-key",
        GOOD_SOURCE + "outt: lake\n",
        {},
        ":5:1: outt: unknown key 'outt'; did you mean 'out'?",
    ),
    (
        "unknown-source-key",
        GOOD_SOURCE + "    recrods: data\n",
        {},
        ":5:5: sources.items.recrods: unknown key 'recrods'; did you mean 'records'?",
    ),
    (
        "a-key-of-another-block",
        GOOD_SOURCE + "    size: 10\n",
        {},
        ":5:5: sources.items.size: 'size' is not a key of this block; it belongs in another",
    ),
    (
        "a-typo-told-apart-by-type",  # bearer takes no token_url: no suggestion of it
        GOOD_SOURCE + "    auth: {type: bearer, token: t, tokn_url: x}\n",
        {},
        ":5:36: sources.items.auth.tokn_url: unknown key 'tokn_url'; check the spelling",
    ),
    (
        "a-list-in-yaml-words",
        GOOD_SOURCE + "    partitions: {type: values, values: abc, param: x}\n",
        {},
        ":5:40: sources.items.partitions.values: Input should be a list (got 'abc')",
    ),
    (
        "missing-url",
        "sources:\n  items:\n    records: data\n",
        {},
        ":2:3: sources.items.url: required key 'url' is missing",
    ),
    (
        "bad-url",
        "sources:\n  items:\n    url: not a url\n",
        {},
        ":3:10: sources.items.url: 'not a url' is not an absolute http(s) URL",
    ),
    (
        "ftp-url",
        "sources:\n  items:\n    url: ftp://example.com/x\n",
        {},
        "sources.items.url: 'ftp://example.com/x' is not an absolute http(s) URL",
    ),
    (
        "concurrency-not-int",
        GOOD_SOURCE + "    concurrency: lots\n",
        {},
        ":5:18: sources.items.concurrency: 'lots' is not a concurrency; write a whole number, "
        "'auto', or a range {min: 2, max: 64}",
    ),
    (
        "concurrency-zero",
        GOOD_SOURCE + "    concurrency: 0\n",
        {},
        ":5:18: sources.items.concurrency: Input should be greater than or equal to 1",
    ),
    (
        "unknown-pagination",
        GOOD_SOURCE + "    pagination:\n      type: pages\n",
        {},
        "sources.items.pagination: unknown type 'pages'; use one of 'none', 'page_number'",
    ),
    (
        "pagination-missing-type",
        GOOD_SOURCE + "    pagination:\n      page_param: p\n",
        {},
        ":6:7: sources.items.pagination: 'type' is missing",
    ),
    (
        "cursor-without-destination",
        GOOD_SOURCE + "    pagination:\n      type: cursor\n      cursor: next\n",
        {},
        "sources.items.pagination: give exactly one of 'cursor_param' (query parameter) or "
        "'cursor_body_field'",
    ),
    (
        "cursor-body-with-get",
        GOOD_SOURCE
        + "    pagination:\n      type: cursor\n      cursor: next\n"
        + "      cursor_body_field: v.after\n",
        {},
        "sources.items: pagination.cursor_body_field puts the cursor in the JSON body, "
        "which needs 'method: POST'",
    ),
    (
        "body-with-get",
        GOOD_SOURCE + "    body: {a: 1}\n",
        {},
        "sources.items: 'body' is sent only with 'method: POST'",
    ),
    (
        "bad-method",
        GOOD_SOURCE + "    method: DELETE\n",
        {},
        ":5:13: sources.items.method: Input should be 'GET' or 'POST' (got 'DELETE')",
    ),
    (
        "bad-jmespath",
        "sources:\n  items:\n    url: http://127.0.0.1:9/x\n    records: 'data[?'\n",
        {},
        ":4:14: sources.items.records: not a valid JMESPath expression",
    ),
    (
        "missing-env",
        "sources:\n  items:\n    url: ${NO_SUCH_BASE_URL}/x\n",
        {},
        ":3:10: sources.items.url: environment variable NO_SUCH_BASE_URL is not set; export it, "
        "or give a default with ${NO_SUCH_BASE_URL:-value}",
    ),
    (
        "malformed-env",
        "sources:\n  items:\n    url: http://h/${BROKEN\n",
        {},
        ":3:10: sources.items.url: malformed variable reference",
    ),
    (
        "unknown-auth-type",
        GOOD_SOURCE + "    auth:\n      type: oauth\n",
        {},
        "sources.items.auth: unknown type 'oauth'; use one of 'bearer', 'basic', 'api_key'",
    ),
    (
        "bearer-without-token",
        GOOD_SOURCE + "    auth:\n      type: bearer\n",
        {},
        ":5:5: sources.items.auth.token: required key 'token' is missing",
    ),
    (
        "api-key-nowhere",
        GOOD_SOURCE + "    auth:\n      type: api_key\n      key: abcd\n",
        {},
        "sources.items.auth: give exactly one of 'header' or 'param'",
    ),
    (
        "size-without-param",
        GOOD_SOURCE + "    pagination:\n      type: page_number\n      size: 10\n",
        {},
        "sources.items.pagination: 'size' needs 'size_param'",
    ),
    (
        "stop-max-pages-negative",
        GOOD_SOURCE + "    pagination:\n      type: page_number\n      stop: {max_pages: -3}\n",
        {},
        "sources.items.pagination.stop.max_pages: Input should be greater than 0",
    ),
    (
        "value-ref-both",
        GOOD_SOURCE
        + "    pagination:\n      type: cursor\n      cursor_param: c\n"
        + "      cursor: {path: a, header: B}\n",
        {},
        "sources.items.pagination.cursor: give exactly one of 'path'",
    ),
    (
        "retry-status-out-of-range",
        GOOD_SOURCE + "    retry:\n      statuses: [200]\n",
        {},
        "sources.items.retry.statuses[0]: Input should be greater than or equal to 400",
    ),
    (
        "duplicate-key",
        GOOD_SOURCE + "    url: http://127.0.0.1:9/again\n",
        {},
        ":5:5: YAML syntax error: duplicate key 'url' (first at line 3)",
    ),
    (
        "bad-source-name",
        "sources:\n  'bad name!':\n    url: http://127.0.0.1:9/x\n",
        {},
        "sources.bad name!: String should match pattern",
    ),
    (
        "oauth2-refresh-grant-without-a-token",
        GOOD_SOURCE
        + "    auth:\n      type: oauth2\n      token_url: https://a.example/token\n"
        + "      client_id: c\n      client_secret: s\n      grant: refresh_token\n",
        {},
        ":6:7: sources.items.auth: grant: refresh_token needs the refresh token: set refresh_token",
    ),
    (
        "oauth2-refresh-token-for-client-credentials",
        GOOD_SOURCE
        + "    auth:\n      type: oauth2\n      token_url: https://a.example/token\n"
        + "      client_id: c\n      client_secret: s\n      refresh_token: r\n",
        {},
        ":10:22: sources.items.auth.refresh_token: refresh_token is used by grant: "
        "refresh_token only",
    ),
    (
        "oauth2-refresh-token-file-missing",
        GOOD_SOURCE
        + "    auth: {type: oauth2, token_url: 'https://a.example/token', client_id: c,\n"
        + "           client_secret: s, grant: refresh_token, refresh_token_file: rt.txt}\n",
        {},
        ":6:72: sources.items.auth.refresh_token_file: rt.txt does not exist",
    ),
    (
        "oauth2-client-credentials-without-a-secret",
        GOOD_SOURCE
        + "    auth: {type: oauth2, token_url: 'https://a.example/token', client_id: c}\n",
        {},
        "sources.items.auth: grant: client_credentials authenticates the client with its "
        "secret: set client_secret",
    ),
    (
        "oauth2-token-params-overriding-the-grant",
        GOOD_SOURCE
        + "    auth: {type: oauth2, token_url: 'https://a.example/token', client_id: c,\n"
        + "           client_secret: s, token_params: {grant_type: password}}\n",
        {},
        "sources.items.auth.token_params: 'grant_type' is set by the grant and client_auth",
    ),
    (
        "oauth2-scopes-in-one-string",
        GOOD_SOURCE
        + "    auth: {type: oauth2, token_url: 'https://a.example/token', client_id: c,\n"
        + "           client_secret: s, scopes: ['read write']}\n",
        {},
        "sources.items.auth.scopes[0]: 'read write' is not one scope: write each scope as its "
        "own list item",
    ),
    (
        "unknown-transport",
        "defaults:\n  transport: curl\n" + GOOD_SOURCE,
        {},
        ":2:14: defaults.transport: Input should be 'aiohttp' or 'httpx' (got 'curl')",
    ),
    (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
            for i in range(11)
        )
        + GOOD_SOURCE,
        {},
        ":5:36: the YAML expands to more than 100,000 values through anchors and aliases",
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_is_reported_with_location(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    message = str(caught.value)
    assert expected in message, message
    for line in caught.value.messages:
        assert line.startswith(f"{path}:"), line


def test_there_are_at_least_twenty_bad_configs() -> None:
    assert len(BAD_CONFIGS) >= 20


def test_the_state_path_needs_neither_secrets_nor_valid_sources(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "state: ${STATE_DIR:-runs}/state.db\nsources:\n  a:\n    url: ${API_URL}\n"
        "    auth: {type: bearer, token: '${API_TOKEN}'}\n    nonsense: 1\n"
    )
    assert state_path_of(path, env={}) == tmp_path / "runs" / "state.db"
    assert state_path_of(path, env={"STATE_DIR": "/var/x"}) == Path("/var/x/state.db")
    path.write_text("sources: {}\n")
    assert state_path_of(path, env={}) == tmp_path / ".tui-connector" / "state.db"
    path.write_text("state: 3\nsources: {}\n")
    with pytest.raises(ConfigError, match=r":1:8: state: "):
        state_path_of(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_env_interpolation_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        textwrap.dedent("""\
        sources:
          items:
            url: ${BASE:-http://127.0.0.1:1}/items
            headers:
              X-Api-Token: ${MY_TOKEN}
            auth:
              type: bearer
              token: ${OTHER_SECRET}
        """)
    )
    loaded = load_config(path, env={"MY_TOKEN": "tok-123456", "OTHER_SECRET": "sek-abcdef"})
    spec = loaded.sources["items"]
    assert spec.url == "http://127.0.0.1:1/items"
    assert spec.headers["X-Api-Token"] == "tok-123456"
    # Secrets are redacted by value, wherever they appear.
    assert loaded.redactor("x tok-123456 y sek-abcdef") == "x *** y ***"
    # The secret type keeps the token out of reprs.
    assert "sek-abcdef" not in repr(spec.auth)


def test_defaults_apply_and_sources_override(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "defaults:\n  concurrency: 7\n  retry: {max_attempts: 9}\n"
        "sources:\n  a: {url: 'http://127.0.0.1:1/a'}\n"
        "  b: {url: 'http://127.0.0.1:1/b', concurrency: 2}\n"
    )
    loaded = load_config(path, env={})
    assert loaded.sources["a"].concurrency == 7
    assert loaded.sources["a"].retry.max_attempts == 9
    assert loaded.sources["b"].concurrency == 2
    assert loaded.out == tmp_path / "lake"


def test_the_documented_example_is_valid() -> None:
    loaded = load_config(ROOT / "sources.yaml", env={})
    assert len(loaded.sources) >= 7
    kinds = {spec.pagination.type for spec in loaded.sources.values()}
    assert kinds == {"none", "page_number", "offset", "cursor", "next_url"}


def test_validate_command_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(GOOD_SOURCE + "    concurrency: -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tui_connector", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{path}:5:18: sources.items.concurrency:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
