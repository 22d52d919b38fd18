"""Bad input gives a specific message and exit code 2, never a traceback and never a hang.

Valid `sources.yaml` files are mutated at random (hypothesis): keys deleted, values replaced
with wrong types, garbage and unicode text, huge numbers, unknown keys; the YAML text itself
damaged (bytes inserted, deleted, truncated, not UTF-8); anchor/alias bombs and deep nesting.
Every outcome must be "valid" or exit 2 with `file:line:col: field: message` lines. Bad
command-line arguments must give exit 2 and a message too.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import tui_connector.config as config_module
from tui_connector.cli import cli
from tui_connector.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sources.yaml"
ENTRY_POINT = Path(sys.executable).with_name("tui-connector")

# A variable that is surely unset, and the ones the configs below take defaults from: the test
# must not depend on the caller's environment.
UNSET = "TUI_CONNECTOR_TEST_SURELY_UNSET"
CONFIG_VARIABLES = ("DEMO_URL", "DEMO_TOKEN", "API_KEY", "SECRET_PW", UNSET)
ENV = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}

# Auth, values partitions, incremental, POST with a body, a cursor in the body, adaptive
# concurrency, every timeout and retry knob.
SMALL_POST = """\
version: 1
out: lake
state: state/state.db
fsync: true
max_concurrency: 16
defaults:
  concurrency: {min: 1, max: 8, start: 2}
  rate_limit: 20
  transport: httpx
  timeout: {connect: 5, read: 10, total: 30}
  retry: {max_attempts: 3, backoff_base: 0.1, backoff_max: 2, max_wait: 10, statuses: [429, 503]}
  headers: {X-Client: test}
sources:
  graph:
    url: https://api.example.com/graphql
    method: POST
    body:
      query: "{ items }"
      variables: {first: 50, nested: [1, "two", {three: 3.0}], flag: true, none: null}
    records: data.items.nodes
    errors: errors
    auth: {type: basic, username: me, password: "${SECRET_PW:-hunter22}"}
    pagination:
      type: cursor
      cursor: data.items.pageInfo.endCursor
      cursor_body_field: variables.after
      stop: {has_more: data.items.pageInfo.hasNextPage, max_pages: 100}
    partitions:
      type: values
      values: [north, south, 3, true]
      body_field: variables.region
    incremental:
      cursor_field: updatedAt
      initial: 0
      body_field: variables.since
      primary_key: id
"""

# Date windows, parent partitions, api_key and bearer auth, offset, next_url and page_number.
SMALL_GET = """\
sources:
  accounts:
    url: https://api.example.com/accounts
    records: results
    auth: {type: api_key, key: "${API_KEY:-k-123456}", param: api_key}
    concurrency: 3
    pagination:
      type: offset
      offset_param: skip
      limit_param: take
      limit: 50
      start: 0
      parallel: false
      stop: {total_records: {header: X-Total}, short_page: true, empty_page: false}
    partitions:
      type: dates
      start: 2024-01-01T00:00:00Z
      end: 2024-03-01
      step: 1w
      format: epoch_ms
      start_param: from
      end_param: to
  transactions:
    url: https://api.example.com/accounts/{account}/transactions
    auth: {type: bearer, token: tok-abcdef}
    pagination: {type: next_url, next: {header: Link}, allow_other_hosts: true}
    partitions:
      type: parent
      source: accounts
      value: id
      path: account
      copy_fields: [id, name]
    incremental: {cursor_field: ts, param: since}
  pages:
    url: http://127.0.0.1:9/pages
    pagination:
      type: page_number
      page_param: p
      start: 0
      size_param: n
      size: 25
      stop: {total_pages: meta.pages}
    rate_limit: 0.5
    timeout: {total: 60}
    retry: {statuses: [500]}
    transport: aiohttp
    params: {a: 1, b: x, c: 1.5, d: false}
    headers: {Accept: application/json}
"""

BASE_TEXTS = {"example": EXAMPLE.read_text(encoding="utf-8"), "post": SMALL_POST, "get": SMALL_GET}
BASES = {name: yaml.safe_load(text) for name, text in BASE_TEXTS.items()}

# Every key some model of the schema knows: a key not among these is surely unknown.
KNOWN_KEYS = {
    name
    for model in vars(config_module).values()
    if isinstance(model, type) and issubclass(model, BaseModel)
    for name in model.model_fields
}
# Mappings whose keys are the user's (names of sources, parameters, headers, body fields).
FREE_FORM = {"sources", "params", "headers", "body", "copy_fields"}

# `path:line:col: rest`; the rest names a field (or says what is wrong with the YAML).
LOCATED = re.compile(r"(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)", re.DOTALL)

Loc = tuple[Any, ...]

# Examples per property; BAD_INPUT_EXAMPLES=5000 for a long hunt.
EXAMPLES = int(os.environ.get("BAD_INPUT_EXAMPLES", "150"))


# ---------------------------------------------------------------------------------------------
# Helpers


def paths(data: Any, loc: Loc = (), inside: frozenset[int] = frozenset()) -> Iterator[Loc]:
    """Every place in a parsed document: the root, each mapping value, each list item (a value
    that contains itself, through an alias, is not entered again)."""
    yield loc
    if id(data) in inside:
        return
    inside |= {id(data)}
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*loc, key), inside)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from paths(value, (*loc, index), inside)


def get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def field_name(loc: Loc) -> str:
    """How a message names a place (the same convention as config.py, written again here)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return printable(out) or "(top level)"


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_free_form(loc: Loc) -> bool:
    return (bool(loc) and loc[-1] in FREE_FORM) or "body" in loc


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=80)


def write(directory: str, content: str | bytes) -> Path:
    path = Path(directory) / "sources.yaml"
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def outcome(path: Path) -> list[str] | None:
    """Load `path` directly and through `tui-connector validate`; check that both agree and
    that every error is located. Returns the error messages, or None when the file is valid."""
    try:
        load_config(path, env=ENV)
    except ConfigError as exc:
        messages: list[str] | None = exc.messages
    else:
        messages = None

    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines() or [""]
    for message in messages or []:
        match = LOCATED.fullmatch(message)
        assert match, f"not located as path:line:col: {message!r}"
        assert match["path"] == str(path), message
        assert 1 <= int(match["line"]) <= len(lines) + 1, message
        assert int(match["col"]) >= 1, message
        assert all(c.isprintable() or c == "\n" for c in message), f"raw control: {message!r}"

    result = CliRunner().invoke(cli, ["validate", str(path)], env=dict.fromkeys(CONFIG_VARIABLES))
    output = result.output + result.stderr
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    if messages is None:
        assert result.exit_code == 0, output
        assert result.stdout.startswith(f"{path}: OK")
    else:
        assert result.exit_code == 2, output
        for message in messages:
            assert message in result.stderr
    return messages


# ---------------------------------------------------------------------------------------------
# Strategies: nasty values and keys

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
CONTROLS = st.sampled_from(["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff"])
GARBAGE_TEXT = st.text(
    alphabet=st.one_of(st.characters(), SURROGATES, CONTROLS, st.sampled_from("${}[]:*&!%@`'\"")),
    max_size=40,
)
SPECIAL_TEXT = st.sampled_from(
    [
        "",
        " ",
        f"${{{UNSET}}}",
        "${",
        "${BAD NAME}",
        "${}",
        "{",
        "{nope}",
        "http://",
        "http://[::1",
        "https://h/{a}{b}",
        "ftp://example.com/x",
        "1e999",
        "nan",
        "auto",
        "AUTO ",
        "now",
        "2024-02-30",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "99999999999999w",
        "0d",
        "1" + "0" * 5000,
        "x" * 100_000,
        "data[?",
        "`x",
        "\x1b[2J\x1b[31mred",
        "\u202eevil",
        "\ud83d\ude00",
        "zwj\u200d",
        "line\nbreak",
    ]
)
NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1001, 10_001, 2**63, 10**400, -(10**30)]),
    st.floats(),
    st.sampled_from([1e308, -1e308, math.inf, -math.inf, math.nan, 5e-324, 0.5]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    GARBAGE_TEXT,
    SPECIAL_TEXT,
    st.dates(),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.binary(max_size=8),
)
KEYS = st.one_of(
    GARBAGE_TEXT,
    st.sampled_from(sorted(KNOWN_KEYS)),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.sampled_from(["x[1]", "a.b", "function-after[x]", "str", "int", "[key]", "page_number"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A valid config with one to three random mutations applied to its parsed tree."""
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    applied: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "replace", "replace", "add", "rename", "share"]))
        everywhere = list(paths(data))
        if kind == "delete" and len(everywhere) > 1:
            loc = draw(st.sampled_from(everywhere[1:]))
            del get(data, loc[:-1])[loc[-1]]
        elif kind == "add":
            holders = [loc for loc in everywhere if isinstance(get(data, loc), dict | list)]
            if not holders:
                continue
            loc = draw(st.sampled_from(holders))
            holder = get(data, loc)
            value = draw(VALUES)
            if isinstance(holder, dict):
                holder[draw(KEYS)] = value
            else:
                holder.append(value)
        elif kind == "rename":
            keys = [loc for loc in everywhere[1:] if isinstance(get(data, loc[:-1]), dict)]
            if not keys:
                continue
            loc = draw(st.sampled_from(keys))
            parent = get(data, loc[:-1])
            parent[draw(KEYS)] = parent.pop(loc[-1])
        elif kind == "share" and len(everywhere) > 1:
            # The same object in two places: the dump writes an anchor and an alias (&id001,
            # *id001), or an alias inside its own anchor when a value is put inside itself.
            loc = draw(st.sampled_from(everywhere[1:]))
            get(data, loc[:-1])[loc[-1]] = get(data, draw(st.sampled_from(everywhere)))
        else:
            loc = draw(st.sampled_from(everywhere))
            value = draw(VALUES)
            if loc:
                get(data, loc[:-1])[loc[-1]] = value
            else:
                data = value
        applied.append(f"{kind} {field_name(loc)}")
        event(kind)
    return data, applied


# ---------------------------------------------------------------------------------------------
# 1. Mutations of the parsed tree


def test_the_valid_bases_are_valid() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for name, text in BASE_TEXTS.items():
            assert outcome(write(directory, text)) is None, name
            assert outcome(write(directory, dump(BASES[name]))) is None, name


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(EXAMPLES // 2, id="quick"),
        # The slow set (CI runs it too) tries many more: the default run stays within minutes.
        pytest.param(EXAMPLES * 2, id="thorough", marks=pytest.mark.slow),
    ],
)
def test_mutated_configs_are_valid_or_located_errors(examples: int) -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated())
    def check(case: tuple[Any, list[str]]) -> None:
        data, applied = case
        with tempfile.TemporaryDirectory() as directory:
            try:
                text = dump(data)
            except yaml.representer.RepresenterError:
                return
            path = write(directory, text)
            messages = outcome(path)
        outcomes["valid" if messages is None else "invalid"] += 1
        event("valid" if messages is None else "invalid")
        # Every schema error names a real place of the document (or a key missing there).
        # The document as written: a dump does not keep everything ("\x85" reads back as " ").
        written = yaml.safe_load(text)
        places = {field_name(loc) for loc in paths(written)}
        places |= {field_name((*loc, key)) for loc in paths(written) for key in KNOWN_KEYS}
        places.add("(top level)")
        for message in messages or []:
            rest = LOCATED.fullmatch(message)["rest"]  # type: ignore[index]
            if not rest.startswith(("YAML", "the YAML")):
                assert any(rest.startswith(f"{place}: ") for place in places), (message, applied)

    check()
    # Most random damage is an error: the test would notice if every file passed.
    assert outcomes["invalid"] >= outcomes.total() // 2, outcomes


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(st.data())
def test_an_unknown_key_is_named_where_it_is_written(data: st.DataObject) -> None:
    config = copy.deepcopy(BASES[data.draw(st.sampled_from(sorted(BASES)))])
    holders = [
        loc for loc in paths(config) if isinstance(get(config, loc), dict) and not is_free_form(loc)
    ]
    loc = data.draw(st.sampled_from(holders))
    key = data.draw(
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)
        .filter(lambda k: k not in KNOWN_KEYS)
        .filter(lambda k: yaml.safe_load(dump({k: 1})) == {k: 1})  # "\x85" reads back as " "
    )
    get(config, loc)[key] = data.draw(st.none() | st.booleans() | st.integers() | st.text())
    with tempfile.TemporaryDirectory() as directory:
        path = write(directory, dump(config))
        messages = outcome(path)
        node = yaml.compose(path.read_text(encoding="utf-8"))
    assert messages is not None
    for part in (*loc, key):  # where the key was written, found independently of config.py
        if isinstance(node, yaml.MappingNode):
            key_node, node = next((k, v) for k, v in node.value if k.value == part)
        else:
            node = node.value[part]
    line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
    expected = f"{path}:{line}:{col}: {field_name((*loc, key))}: unknown key {key!r}"
    assert any(m.startswith(expected) for m in messages), (expected, messages)


# ---------------------------------------------------------------------------------------------
# 2. Damage to the text itself

# Characters that UTF-8 can encode: the damaged text is saved as UTF-8 (bytes that are not
# UTF-8 are added separately below); a lone surrogate would fail the test's own encoding.
NASTY_CHARS = st.one_of(
    st.sampled_from([*":-[]{}&*!|>%@`'\",#?\t\n \\", "\r", "\ufeff", "\x00", "\x1b"]),
    st.characters(codec="utf-8"),
)


@st.composite
def damaged_text(draw: st.DrawFn) -> bytes:
    text = BASE_TEXTS[draw(st.sampled_from(sorted(BASE_TEXTS)))]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "truncate", "duplicate"]))
        if kind == "insert":
            text = text[:at] + draw(st.text(NASTY_CHARS, min_size=1, max_size=5)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif kind == "truncate":
            text = text[:at]
        else:
            end = draw(st.integers(at, min(len(text), at + 200)))
            text = text[:end] + text[at:end] + text[end:]
        event(kind)
    data = text.encode("utf-8")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        event("bytes")
    return data


def test_damaged_yaml_text_gives_located_errors() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(damaged_text())
    def check(content: bytes) -> None:
        with tempfile.TemporaryDirectory() as directory:
            messages = outcome(write(directory, content))
        outcomes["valid" if messages is None else "invalid"] += 1

    check()
    assert outcomes["invalid"] >= outcomes.total() // 4, outcomes


GOOD = "sources:\n  items:\n    url: http://127.0.0.1:9/x\n"

# (id, content, expected "line:col: rest" fragment, or "" when the file is valid)
RAW_CASES: list[tuple[str, str | bytes, str]] = [
    ("empty", "", ":1:1: (top level): the file is empty"),
    ("comments-only", "# nothing\n\n", ":1:1: (top level): the file is empty"),
    ("scalar", "just text\n", ":1:1: (top level): expected a mapping"),
    ("list", "- sources\n- x\n", ":1:1: (top level): expected a mapping"),
    ("tab", "sources:\n  items:\n\turl: http://h/x\n", ":3:1: YAML syntax error"),
    ("bom", "\ufeff" + GOOD, ""),
    ("crlf", GOOD.replace("\n", "\r\n"), ""),
    ("nul-byte", GOOD + "    records: a\x00b\n", ":4:15: YAML syntax error"),
    ("escape-char", GOOD + "    records: a\x1bb\n", ":4:15: YAML syntax error"),
    ("not-utf8", GOOD.encode() + b"    records: caf\xe9\n", ":4:17: not UTF-8"),
    ("utf16", GOOD.encode("utf-16"), ":1:1: not UTF-8"),
    ("binary", bytes(range(256)) * 4, ":2:118: not UTF-8 text (byte 0x80: invalid start byte)"),
    ("two-documents", GOOD + "---\n" + GOOD, ":4:1: YAML syntax error"),
    ("python-tag", GOOD + "    records: !!python/object:os.system x\n", ":4:14: YAML syntax error"),
    ("undefined-alias", GOOD + "    records: *nope\n", ":4:14: YAML syntax error"),
    (
        "unhashable-key",
        GOOD + "    params: {? [a, b] : c}\n",
        ":4:16: YAML syntax error: a key must be text, not a list",
    ),
    (
        "mapping-key",
        GOOD + "    params:\n      ? {a: 1}\n      : c\n",
        ":5:9: YAML syntax error: a key must be text, not a mapping",
    ),
    ("huge-int", GOOD + "    concurrency: 1" + "0" * 5000 + "\n", ":4:18: YAML syntax error"),
    ("bad-date", GOOD + "    params: {since: 2024-02-30}\n", ":4:21: YAML syntax error"),
    ("year-zero", GOOD + "    params: {since: 0000-01-01}\n", ":4:21: YAML syntax error"),
    ("explicit-int", GOOD + "    concurrency: !!int abc\n", ":4:18: YAML syntax error"),
    ("explicit-float", GOOD + "    rate_limit: !!float abc\n", ":4:17: YAML syntax error"),
    ("explicit-bool", GOOD + "    params: {a: !!bool maybe}\n", ":4:17: YAML syntax error"),
    ("explicit-timestamp", GOOD + "    params: {a: !!timestamp x}\n", ":4:17: YAML syntax error"),
    ("binary-tag", GOOD + "    params: {a: !!binary '%%%'}\n", ":4:17: sources.items.params.a: "),
    ("set-tag", GOOD + "    params: !!set {a, b}\n", ":4:13: sources.items.params: "),
    ("merge-key", "base: &b {records: data}\n" + GOOD + "    <<: *b\n", ":1:1: base: unknown"),
    (
        "lone-surrogate",
        'sources:\n  items:\n    url: "http://h/\\ud800"\n',
        ":3:10: sources.items.url: ",
    ),
    (
        "surrogate-key",
        GOOD + '    headers: {"\\udc80": x}\n',
        ":4:25: sources.items.headers.\\udc80: the key '\\udc80' contains",
    ),
    ("control-key", GOOD + '    "\\e[2J": 1\n', ":4:5: sources.items.\\x1b[2J: unknown key"),
    ("bracket-key", "sources:\n  x[1]:\n    url: 5\n", ":3:10: sources.x[1].url: "),
    (
        "int-key",
        "sources:\n  1:\n    url: http://h/x\n",
        ":2:3: YAML syntax error: the key '1' is read by YAML as a whole number, not as text",
    ),
    (
        "bool-key",
        "sources:\n  on:\n    url: http://h/x\n",
        ":2:3: YAML syntax error: the key 'on' is read by YAML as true or false, not as text; "
        'quote it: "on"',
    ),
    (
        "null-key",
        GOOD + "    ~: 1\n",
        ":4:5: YAML syntax error: the key '~' is read by YAML as null",
    ),
    ("nul-in-state", 'state: "a\\0b"\n' + GOOD, ":1:8: state: "),
    ("nul-in-out", 'out: "\\0"\n' + GOOD, ":1:6: out: "),
    (
        "date-in-params",
        GOOD + "    params: {since: 2024-01-01}\n",
        ":4:21: sources.items.params.since",
    ),
    ("date-in-body", GOOD + "    method: POST\n    body: {since: 2024-01-01}\n", ":5:19: "),
    ("bytes-in-body", GOOD + "    method: POST\n    body: {a: !!binary AAAA}\n", ":5:15: "),
    ("recursive-alias", "a: &a [1, *a]\n" + GOOD, ":1:11: the YAML"),
    (
        "step-overflow",
        GOOD.replace("/x", "/{d}")
        + "    partitions:\n      type: dates\n      start: 2024-01-01\n      end: 2024-02-01\n"
        "      step: 99999999999w\n      path: d\n",
        ":8:13: sources.items.partitions.step: ",
    ),
    (
        "step-digits",
        GOOD.replace("/x", "/{d}") + "    partitions:\n      type: dates\n      start: 2024-01-01\n"
        f"      step: {'1' * 5000}d\n      path: d\n",
        ":7:13: sources.items.partitions.step: ",
    ),
    (
        "date-out-of-range",
        GOOD + "    partitions:\n      type: dates\n      start: '0001-01-01T00:00:00+01:00'\n"
        "      step: 1d\n      param: d\n",
        ":6:14: sources.items.partitions.start: ",
    ),
    (
        "window-past-year-9999",
        GOOD
        + "    partitions:\n      type: dates\n      start: 9999-12-30\n      end: 9999-12-31\n"
        "      step: 1w\n      start_param: d\n",
        ":5:7: sources.items.partitions: the last window would end after the year 9999",
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [case[1:] for case in RAW_CASES],
    ids=[case[0] for case in RAW_CASES],
)
def test_raw_damage_case(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = write(str(tmp_path), content)
    messages = outcome(path)
    if not expected:
        assert messages is None
        return
    assert messages is not None, "the file was accepted"
    assert any(m.startswith(f"{path}{expected}") for m in messages), messages


def test_an_environment_variable_that_is_not_utf8(tmp_path: Path) -> None:
    # os.environ decodes bytes that are not UTF-8 as lone surrogates ("\udce9" for 0xe9).
    path = write(str(tmp_path), "sources:\n  items:\n    url: ${BASE}/x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"BASE": "http://h/caf\udce9"})
    message = str(caught.value)
    assert message.startswith(f"{path}:3:10: sources.items.url: 'http://h/caf\\udce9/x' contains")
    assert "half of a UTF-16 surrogate pair" in message


# ---------------------------------------------------------------------------------------------
# 3. Bombs: aliases that expand exponentially, deep nesting


def laughs(levels: int, width: int) -> str:
    """The "billion laughs": each level a list of `width` aliases of the level before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n" + GOOD


BOMBS = [
    ("laughs-9x9", laughs(9, 9), ":6:10: the YAML expands"),
    ("laughs-5x20", laughs(5, 20), ":4:60: the YAML expands"),
    (
        "bomb-in-body",
        "defaults:\n  headers: &h {" + ", ".join(f"h{i}: {i}" for i in range(300)) + "}\n"
        "x: &x [" + ", ".join(["*h"] * 200) + "]\n"
        "y: [" + ", ".join(["*x"] * 200) + "]\n" + GOOD,
        ":3:672: the YAML expands",
    ),
    ("deep-flow-open", "a: " + "[" * 10_000 + "\n" + GOOD, ":1:"),
    ("deep-flow-closed", "a: " + "[" * 10_000 + "]" * 10_000 + "\n" + GOOD, ":1:"),
    ("deep-block", "".join(" " * i + "- \n" for i in range(3000)) + "x\n", ":"),
    ("deep-mapping", "a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n" + GOOD, ":1:"),
]


# The memory bound is what shows nothing was expanded. The timeout is only a hang guard: these
# take up to 2.5 s on a slow machine of CI's kind.
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BOMBS], ids=[b[0] for b in BOMBS])
def test_bombs_are_refused_quickly_in_little_memory(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(str(tmp_path), text)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(path, env=ENV)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000, f"{peak / 1e6:.0f} MB"
    message = str(caught.value)
    assert message.startswith(f"{path}{expected}"), message
    assert "Traceback" not in message
    outcome(path)


def test_an_alias_bomb_message_says_what_to_do(tmp_path: Path) -> None:
    path = write(str(tmp_path), laughs(9, 9))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:\d+:\d+: the YAML expands to more than [\d,]+ values "
        r"through anchors and aliases \(an alias bomb\?\); .+",
        str(caught.value),
    ), str(caught.value)


def test_deep_nesting_message(tmp_path: Path) -> None:
    path = write(str(tmp_path), "a: " + "[" * 10_000 + "]" * 10_000 + "\n" + GOOD)
    with pytest.raises(ConfigError, match=r":1:\d+: the YAML nests deeper than \d+ levels"):
        load_config(path, env=ENV)


def test_modest_anchors_and_aliases_are_fine(tmp_path: Path) -> None:
    # Shared blocks used by many sources: far more than 100 aliases, few values.
    sources = "".join(
        f"  s{i}:\n    url: http://127.0.0.1:9/{i}\n    retry: *retry\n    headers: *headers\n"
        for i in range(150)
    )
    text = (
        "x-shared:\n  retry: &retry {max_attempts: 3}\n  headers: &headers {A: b, C: d}\n"
        "defaults:\n  headers: *headers\n"
    )
    path = write(str(tmp_path), text + "sources:\n" + sources)
    messages = outcome(path)
    # The only complaint is the unknown x-shared key; the 300 aliases themselves are fine.
    assert messages is not None and len(messages) == 1
    assert messages[0].startswith(f"{path}:1:1: x-shared: unknown key 'x-shared'")


# ---------------------------------------------------------------------------------------------
# 4. Files that cannot be read


def test_config_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env=ENV)
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.stderr
    assert isinstance(result.exception, SystemExit)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 000 does not stop root from reading the file",
)
def test_config_is_unreadable(tmp_path: Path) -> None:
    path = write(str(tmp_path), GOOD)
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: cannot be read"):
            load_config(path, env=ENV)
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 2 and "Permission denied" in result.stderr
    finally:
        path.chmod(0o644)


def test_config_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.stderr


def test_a_values_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "stores.txt").write_bytes(b"north\n\xff\xfe\n")
    (tmp_path / "dir.txt").mkdir()
    path = write(
        str(tmp_path),
        "sources:\n"
        "  a:\n    url: http://h/{s}\n"
        "    partitions: {type: values, values_file: stores.txt, path: s}\n"
        "  b:\n    url: http://h/{s}\n"
        "    partitions: {type: values, values_file: dir.txt, path: s}\n",
    )
    messages = outcome(path)
    assert messages is not None and len(messages) == 2
    assert messages[0].startswith(f"{path}:4:45: sources.a.partitions.values_file: stores.txt: ")
    assert messages[1].startswith(f"{path}:7:45: sources.b.partitions.values_file: dir.txt: ")


# ---------------------------------------------------------------------------------------------
# 5. Bad command-line arguments


@pytest.fixture
def good_config(tmp_path: Path) -> Path:
    return write(str(tmp_path), GOOD)


BAD_ARGUMENTS: list[Any] = [
    (["run", "{config}", "--progress-interval", "abc"], "'abc' is not a valid float"),
    (["run", "{config}", "--progress-interval", "0"], "--progress-interval"),
    (["run", "{config}", "--progress", "xml"], "Invalid value for '--progress'"),
    (["run", "{config}", "--state", "{dir}"], "is a directory"),
    (["run", "{config}", "--out", "{config}"], "is a file"),
    (["run", "{dir}"], "is a directory"),
    (["run", "{dir}/missing.yaml"], "file not found"),
    (["run", "{config}", "--headless", "--only", "nope"], "unknown source nope"),
    (["run", "{config}", "extra"], "unexpected extra argument"),
    (["validate", "--bogus"], "No such option '--bogus'"),
    (["validate", "{dir}"], "is a directory"),
    (["validate", "{config}", "{config}"], "unexpected extra argument"),
    (["status", "--config", "{dir}"], "is a directory"),
    (["status", "--json=yes"], "does not take a value"),
    (["status", "--state"], "requires an argument"),
    (["reset", "--config", "{dir}"], "is a directory"),
    (["reset", "--frobnicate"], "No such option"),
    (["demo", "{dir}"], "is a directory"),
    (["demo", "{dir}/missing.yaml"], "not found"),
    (["demo", "{config}", "--fault-rate", "2"], "--fault-rate"),
    (["demo", "{config}", "--latency-ms", "-1"], "--latency-ms"),
    (["demo", "{config}", "--records", "many"], "'many' is not a valid integer"),
    (["serve-demo", "--port", "-1"], "--port"),
    (["serve-demo", "--port", "65536"], "--port"),
    (["serve-demo", "--port", "http"], "'http' is not a valid integer"),
    (["serve-demo", "--fault-rate", "2"], "--fault-rate"),
    (["serve-demo", "--page-size", "0"], "--page-size"),
    (["serve-demo", "--capacity", "0"], "--capacity"),
    (["--no-such-global"], "No such option"),
    # click's FloatRange alone lets nan and inf through (every comparison with nan is false).
    (["serve-demo", "--latency-ms", "nan"], "--latency-ms"),
    (["serve-demo", "--retry-after-s", "inf"], "--retry-after-s"),
    (["demo", "{dir}/missing.yaml", "--fault-rate", "nan"], "--fault-rate"),
    (["run", "{dir}/missing.yaml", "--progress-interval", "nan"], "--progress-interval"),
]


def _argument_ids(cases: list[Any]) -> list[str]:
    return [" ".join(case.values[0] if hasattr(case, "values") else case[0]) for case in cases]


def _fill(args: list[str], config: Path) -> list[str]:
    return [a.format(config=config, dir=config.parent) for a in args]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS, ids=_argument_ids(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_a_message(
    good_config: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, _fill(args, good_config), env=dict.fromkeys(CONFIG_VARIABLES))
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in output


def test_bad_state_files_exit_2_with_a_message(good_config: Path) -> None:
    garbage = good_config.with_name("state.db")
    garbage.write_bytes(b"this is not a SQLite database\n" * 100)
    for command in (["status", "--state", str(garbage)], ["reset", "--state", str(garbage)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert isinstance(result.exception, SystemExit)
        assert result.stderr.startswith("tui-connector: ")
        assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "{dir}"], "is a directory"),
        (["validate", "{config}.bad"], ":4:24: sources.items.concurrency.min: "),
        (["run", "{config}", "--progress-interval", "abc"], "'abc' is not a valid float"),
        (["serve-demo", "--port", "-1"], "--port"),
        (["status", "--json=yes"], "does not take a value"),
    ],
    ids=["directory", "bad-config", "bad-float", "bad-port", "flag-with-value"],
)
def test_the_installed_command_exits_2_without_traceback(
    good_config: Path, args: list[str], message: str
) -> None:
    """Through the real entry point: `main()` turns click's exceptions into exit codes."""
    Path(f"{good_config}.bad").write_text(GOOD + "    concurrency: {min: x}\n")
    command = (
        [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [sys.executable, "-m", "tui_connector"]
    )
    proc = subprocess.run(
        [*command, *_fill(args, good_config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=good_config.parent,
        env=ENV,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_non_utf8_path_argument(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/caf\xe9.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "tui_connector", "validate", name],
        capture_output=True,
        timeout=60,
        env=ENV,
    )
    assert proc.returncode == 2
    assert b"file not found" in proc.stderr
    assert b"Traceback" not in proc.stderr
