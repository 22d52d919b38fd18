"""The JSON Schema for editors (`tui-connector schema`): it accepts what the loader accepts,
refuses the obvious mistakes, and the committed sources.schema.json is what the command prints."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from tui_connector.cli import cli
from tui_connector.config import load_config

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "tui-connector schema > sources.schema.json"


class EditorLoader(yaml.SafeLoader):
    """YAML as editors read it (YAML 1.2's core schema): 2024-01-01 is text, not a date."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def as_editor_reads(text: str) -> Any:
    return yaml.load(text, Loader=EditorLoader)


@pytest.fixture(scope="module")
def printed() -> str:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def validator(printed: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(printed)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_committed_schema_is_what_the_command_prints(printed: str) -> None:
    committed = (ROOT / "sources.schema.json").read_text(encoding="utf-8")
    assert committed == printed, f"sources.schema.json is stale; regenerate it: {REGENERATE}"


def test_the_shipped_sources_yaml_names_the_schema_and_passes_it(
    validator: jsonschema.Draft202012Validator,
) -> None:
    text = (ROOT / "sources.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./sources.schema.json"
    assert problems(validator, as_editor_reads(text)) == []


# What the loader accepts beyond the obvious: shorthands, units, dates, the environment.
LENIENT = """\
max_concurrency: ${MAX_CONCURRENCY:-64}
fsync: ${FSYNC:-false}
defaults:
  concurrency: auto
  max_response_size: 64MiB
  rate_limit: ${RATE:-5}
  timeout: {total: 60}
sources:
  windows:
    url: ${API:-https://api.example.com}/events
    method: post
    body: {query: "{ events }", since: null, tags: [a, 1, true]}
    concurrency: {min: 2, max: 16}
    max_response_size: 1048576
    partitions:
      type: dates
      start: 2024-01-01
      end: now
      step: 1d
      start_body_field: since
    pagination:
      type: cursor
      cursor: data.next
      cursor_body_field: after
      stop: {has_more: {header: X-More}, max_pages: 10}
  stores:
    url: https://api.example.com/stores/{store}
    concurrency: auto
    partitions: {type: values, values: [north, 3, true], path: store}
    pagination: {type: next_url, next: links.next}
  children:
    url: https://api.example.com/children
    partitions: {type: parent, source: stores, value: id, param: store, copy_fields: [name]}
    incremental: {cursor_field: updated_at, param: since, initial: '2024-06-01T00:00:00Z'}
    auth: {type: api_key, key: "${API_KEY:-k-123456}", header: X-Key}
"""


def test_what_the_loader_accepts_the_schema_accepts(
    validator: jsonschema.Draft202012Validator, tmp_path: Path
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(LENIENT)
    loaded = load_config(path, env={})
    assert loaded.sources["windows"].auto_concurrency is not None
    assert problems(validator, as_editor_reads(LENIENT)) == []


GOOD = "sources:\n  items:\n    url: https://api.example.com/items\n"

# (id, yaml, a fragment of what the schema says, at which path)
REFUSED: list[tuple[str, str, str]] = [
    ("unknown-top-key", GOOD + "outt: lake\n", "'outt' was unexpected"),
    ("unknown-source-key", GOOD + "    recrods: data\n", "'recrods' was unexpected"),
    (
        "unknown-pagination-type",
        GOOD + "    pagination: {type: pages}\n",
        "sources.items.pagination: {'type': 'pages'} is not valid",
    ),
    ("pagination-not-a-mapping", GOOD + "    pagination: 3\n", "sources.items.pagination: 3"),
    ("concurrency-word", GOOD + "    concurrency: lots\n", "sources.items.concurrency: 'lots'"),
    ("concurrency-zero", GOOD + "    concurrency: 0\n", "sources.items.concurrency: 0"),
    ("size-word", GOOD + "    max_response_size: big\n", "max_response_size: 'big'"),
    ("not-a-url", "sources:\n  items:\n    url: not a url\n", "sources.items.url: 'not a url'"),
    ("no-sources", "out: lake\n", "'sources' is a required property"),
    ("empty-sources", "sources: {}\n", "sources: {} should be non-empty"),
    ("bad-source-name", "sources:\n  'bad name!': {url: 'https://h/x'}\n", "'bad name!' does not"),
    (
        "bad-step",
        GOOD.replace("items\n", "items/{d}\n")
        + "    partitions: {type: dates, start: 2024-01-01, step: daily, path: d}\n",
        "sources.items.partitions",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_the_schema_refuses_obvious_mistakes(
    validator: jsonschema.Draft202012Validator, tmp_path: Path, text: str, expected: str
) -> None:
    found = problems(validator, as_editor_reads(text))
    assert any(expected in problem for problem in found), found


def test_descriptions_reach_the_editor(validator: jsonschema.Draft202012Validator) -> None:
    schema = validator.schema
    source = schema["$defs"]["Source"]
    assert "JMESPath to the list of records" in source["properties"]["records"]["description"]
    # A source's knob left out takes the value of `defaults:`: no default of its own is shown.
    assert "default" not in source["properties"]["concurrency"]
    assert schema["properties"]["defaults"]["default"]["concurrency"] == 4
    assert textwrap.dedent(schema["$defs"]["CursorPagination"]["description"]).startswith(
        "The next cursor is read from the response"
    )
