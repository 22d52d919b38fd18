"""Picking records, and cursor, total and next-link values, out of a decoded JSON response.

Every path is a JMESPath expression (https://jmespath.org). Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jmespath
from jmespath.visitor import TreeInterpreter

from tui_connector.config import ValueRef

__all__ = [
    "ExtractError",
    "JsonPath",
    "check_errors",
    "compile_path",
    "excerpt",
    "extract_records",
    "finds_value",
    "header_value",
    "read_value",
    "search",
    "shape_hint",
]

_EXCERPT_LIMIT = 300
_KEYS_SHOWN = 12


class ExtractError(Exception):
    """The response does not have the shape the config expects; the message says how to fix it."""


# One interpreter for every search. `ParsedResult.search` builds a new one per call, and an
# interpreter refers to itself (its method cache holds bound methods), so each call left a
# cycle for the garbage collector: two a page for records and cursor, one a record for an
# incremental cursor. Interpreting keeps no state between calls.
_INTERPRETER = TreeInterpreter()


class JsonPath:
    """A compiled JMESPath expression."""

    __slots__ = ("_holder", "_tree", "expression")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._tree = jmespath.compile(expression).parsed
        self._holder = _last_key(self._tree)

    def search(self, value: Any) -> Any:
        """What the expression selects in `value`, or None when nothing matches."""
        return _INTERPRETER.visit(self._tree, value)

    def finds(self, value: Any) -> bool:
        """Whether the expression finds something in `value`, a JSON null included: JMESPath
        answers None both for a key holding null and for a key missing, and only the object
        that would hold the key tells them apart. An expression that does not end in a key
        name (a function, a filter, an index) finds only what is not null."""
        if self.search(value) is not None:
            return True
        if self._holder is None:
            return False
        key, parent = self._holder
        holder = value if parent is None else _INTERPRETER.visit(parent, value)
        return isinstance(holder, dict) and key in holder


@lru_cache(maxsize=512)
def compile_path(expression: str) -> JsonPath:
    """`expression` compiled, once per expression."""
    return JsonPath(expression)


def search(path: str, body: Any) -> Any:
    """The value at the JMESPath `path` in `body`, or None when nothing matches."""
    return compile_path(path).search(body)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value by case-insensitive name, from any mapping (plain dict or httpx.Headers)."""
    # httpx.Headers and similar answer case-insensitively already: the fast path.
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def read_value(ref: ValueRef, body: Any, headers: Mapping[str, str]) -> Any:
    """The value `ref` points at: a body path, or a header (None when absent)."""
    if ref.path is not None:
        return search(ref.path, body)
    assert ref.header is not None  # ValueRef guarantees exactly one of path / header
    return header_value(headers, ref.header)


def finds_value(ref: ValueRef, body: Any, headers: Mapping[str, str]) -> bool:
    """Whether the response has the value `ref` points at, be it null (see `JsonPath.finds`)."""
    if ref.path is not None:
        return compile_path(ref.path).finds(body)
    assert ref.header is not None  # ValueRef guarantees exactly one of path / header
    return header_value(headers, ref.header) is not None


def extract_records(body: Any, path: str | None) -> list[Any]:
    """The list of records in a response: the body itself (`path=None`) or the list at `path`."""
    if path is None:
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            list_keys = [key for key, value in body.items() if isinstance(value, list)]
            hint = (
                f"e.g. one of: {_key_list(list_keys)}"
                if list_keys
                else f"its top-level keys are: {_key_list(list(body))}"
            )
            raise ExtractError(
                "the response is a JSON object, not an array; set 'records' to the JMESPath "
                f"of the list, {hint}"
            )
        raise ExtractError(
            f"the response is {_json_kind(body)}, not an array of records: {excerpt(body)}"
        )

    found = search(path, body)
    if isinstance(found, list):
        return found
    if found is None:
        each = (
            f" (a JSON Lines body is the array of its lines); to read {path!r} in each "
            f"element write '[*].{path}'"
            if isinstance(body, list)
            else ""
        )
        raise ExtractError(
            f"records: the path {path!r} matched nothing in the response; {shape_hint(body)}{each}"
        )
    if isinstance(found, dict):
        raise ExtractError(
            f"records: the path {path!r} points to a JSON object, not a list "
            f"(its keys: {_key_list(list(found))}); point it at the list of records"
        )
    raise ExtractError(
        f"records: the path {path!r} points to {_json_kind(found)}, not a list: {excerpt(found)}"
    )


def check_errors(body: Any, path: str | None) -> None:
    """Raise when the response reports an error in its body, as GraphQL does with HTTP 200."""
    if path is None:
        return
    value = search(path, body)
    # Truthy means something was reported: a non-empty list/object/string, true, a non-zero code.
    if value:
        raise ExtractError(
            f"the server reported an error at {path!r} (in a successful HTTP response): "
            f"{excerpt(value)}"
        )


def excerpt(value: Any, limit: int = _EXCERPT_LIMIT) -> str:
    """Compact JSON of `value`, cut to at most `limit` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_key(tree: Any) -> tuple[str, Any] | None:
    """The key an expression's value is read from last, and the expression of the object
    holding that key (None: the value searched itself); None when it does not end in a key."""
    kind = tree["type"]
    if kind == "field":
        return tree["value"], None
    children = tree["children"]
    if kind not in ("subexpression", "pipe") or children[-1]["type"] != "field":
        return None
    *parents, last = children
    parent = parents[0] if len(parents) == 1 else {"type": kind, "children": parents}
    return last["value"], parent


def shape_hint(body: Any) -> str:
    """What a response holds at its top, for a message about a path that found nothing."""
    if isinstance(body, dict):
        if not body:
            return "the response is an empty JSON object"
        return f"the response's top-level keys are: {_key_list(list(body))}"
    return f"the response is {_json_kind(body)}"


def _key_list(keys: list[Any]) -> str:
    shown = ", ".join(str(key) for key in keys[:_KEYS_SHOWN])
    more = len(keys) - _KEYS_SHOWN
    return f"{shown} (and {more} more)" if more > 0 else shown


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__
