"""Picking records and values out of responses: bare arrays, paths, helpful errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jmespath.visitor import TreeInterpreter

from tui_connector import extract
from tui_connector.config import SourceSpec, ValueRef, load_config
from tui_connector.extract import (
    ExtractError,
    check_errors,
    excerpt,
    extract_records,
    header_value,
    read_value,
)


def spec_from(tmp_path: Path, **source: Any) -> SourceSpec:
    path = tmp_path / "sources.yaml"
    config = {"sources": {"items": {"url": "https://api.example.com/v1/items", **source}}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_config(path, env={}).sources["items"]


# -- extract_records --------------------------------------------------------------------------


def test_bare_array_is_returned_as_is() -> None:
    body = [{"id": 1}, {"id": 2}]
    assert extract_records(body, None) is body


def test_empty_bare_array() -> None:
    assert extract_records([], None) == []


def test_object_without_path_names_the_list_keys() -> None:
    body = {"data": [1], "items": [], "meta": {"total": 3}, "next": None}
    with pytest.raises(ExtractError) as caught:
        extract_records(body, None)
    message = str(caught.value)
    assert "the response is a JSON object, not an array" in message
    assert "set 'records' to the JMESPath of the list, e.g. one of: data, items" in message
    assert "meta" not in message


def test_object_without_any_list_names_its_keys() -> None:
    with pytest.raises(ExtractError, match="top-level keys are: result, count"):
        extract_records({"result": {"rows": []}, "count": 0}, None)


@pytest.mark.parametrize(
    ("body", "kind"), [("text", "a JSON string"), (None, "null"), (3, "number")]
)
def test_scalar_body_without_path(body: Any, kind: str) -> None:
    with pytest.raises(ExtractError, match=kind):
        extract_records(body, None)


def test_path_to_a_list(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, records="data.items")
    body = {"data": {"items": [{"id": 1}, {"id": 2}]}}
    assert extract_records(body, spec.records) == [{"id": 1}, {"id": 2}]


def test_path_projection() -> None:
    body = {"results": [{"row": {"id": 1}}, {"row": {"id": 2}}]}
    assert extract_records(body, "results[].row") == [{"id": 1}, {"id": 2}]


def test_path_that_matches_nothing_lists_top_level_keys() -> None:
    with pytest.raises(ExtractError) as caught:
        extract_records({"items": [], "meta": {}}, "data")
    message = str(caught.value)
    assert "'data' matched nothing" in message
    assert "items, meta" in message


def test_path_that_matches_nothing_in_a_non_object() -> None:
    with pytest.raises(ExtractError, match=r"matched nothing.*a JSON array"):
        extract_records([1, 2], "data")


def test_a_path_over_an_array_suggests_reading_it_in_each_element() -> None:
    """A JSON Lines body is the array of its lines: `data` in each line is `[*].data`."""
    lines = [{"data": {"id": 1}}, {"data": {"id": 2}}]
    with pytest.raises(
        ExtractError,
        match=r"a JSON array \(a JSON Lines body is the array of its lines\); to read 'data' "
        r"in each element write '\[\*\]\.data'$",
    ):
        extract_records(lines, "data")
    assert extract_records(lines, "[*].data") == [{"id": 1}, {"id": 2}]


def test_path_to_an_object_is_refused() -> None:
    with pytest.raises(ExtractError, match=r"points to a JSON object, not a list.*rows, total"):
        extract_records({"data": {"rows": [], "total": 0}}, "data")


def test_path_to_a_scalar_is_refused() -> None:
    with pytest.raises(ExtractError, match="points to a JSON string, not a list"):
        extract_records({"data": "nope"}, "data")


def test_many_keys_are_cut_short() -> None:
    body = {f"key{i}": i for i in range(30)}
    with pytest.raises(ExtractError, match=r"\(and 18 more\)"):
        extract_records(body, "missing")


def test_expressions_are_compiled_once() -> None:
    extract.compile_path.cache_clear()
    for _ in range(5):
        extract_records({"cached": {"path": [1]}}, "cached.path")
    info = extract.compile_path.cache_info()
    assert (info.misses, info.hits) == (1, 4)


def test_searches_share_one_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches run for every page (and every record of an incremental stream): jmespath's own
    `search` built an interpreter each time, left in a reference cycle for the collector."""
    built: list[object] = []
    monkeypatch.setattr(TreeInterpreter, "__init__", lambda self, *a: built.append(self))
    path = extract.compile_path("items[?n > `1`].{id: id, n: n}")
    body = {"items": [{"id": "a", "n": 1}, {"id": "b", "n": 2}]}
    for _ in range(3):
        assert path.search(body) == [{"id": "b", "n": 2}]
    assert built == []


# -- read_value -------------------------------------------------------------------------------


def test_read_value_from_body_path() -> None:
    ref = ValueRef(path="meta.next_cursor")
    assert read_value(ref, {"meta": {"next_cursor": "abc"}}, {}) == "abc"
    assert read_value(ref, {"meta": {}}, {}) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"x-next-cursor": "abc"},
        {"X-NEXT-CURSOR": "abc"},
        {"X-Next-Cursor": "abc"},
        httpx.Headers({"X-NEXT-cursor": "abc"}),
    ],
)
def test_read_value_from_header_any_case(headers: Any) -> None:
    assert read_value(ValueRef(header="X-Next-Cursor"), {}, headers) == "abc"


def test_missing_header_is_none() -> None:
    ref = ValueRef(header="X-Total-Count")
    assert read_value(ref, {"X-Total-Count": 5}, {"Other": "1"}) is None
    assert read_value(ref, {}, httpx.Headers()) is None


def test_header_value_joins_repeated_httpx_headers() -> None:
    headers = httpx.Headers([("Link", "<a>; rel=next"), ("link", "<b>; rel=last")])
    assert header_value(headers, "LINK") == "<a>; rel=next, <b>; rel=last"


# -- check_errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"data": {}}, {"errors": []}, {"errors": None}, {"errors": ""}, {"errors": False}, [1, 2]],
)
def test_no_error_reported(body: Any) -> None:
    check_errors(body, "errors")


def test_no_errors_path_checks_nothing() -> None:
    check_errors({"errors": [{"message": "boom"}]}, None)


def test_graphql_errors_with_http_200(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, records="data.items", errors="errors")
    body = {"data": None, "errors": [{"message": "Field 'x' doesn't exist", "path": ["x"]}]}
    with pytest.raises(ExtractError) as caught:
        check_errors(body, spec.errors)
    message = str(caught.value)
    assert "reported an error at 'errors'" in message
    assert '[{"message":"Field \'x\' doesn\'t exist","path":["x"]}]' in message


@pytest.mark.parametrize("value", [True, "rate limited", {"code": 7}])
def test_other_truthy_errors(value: Any) -> None:
    with pytest.raises(ExtractError):
        check_errors({"status": {"error": value}}, "status.error")


def test_error_excerpt_is_short() -> None:
    errors = [{"message": "x" * 100, "index": i} for i in range(50)]
    with pytest.raises(ExtractError) as caught:
        check_errors({"errors": errors}, "errors")
    shown = str(caught.value).split(": ", 1)[1]
    assert len(shown) <= 300
    assert shown.endswith("…")


def test_excerpt_keeps_short_values_whole() -> None:
    assert excerpt({"a": [1, 2]}) == '{"a":[1,2]}'
    assert len(excerpt("y" * 1000)) == 300
