"""Errors in a config, phrased for the user: `file:line:col: field: message`.

Here is how a place in the file is named and how pydantic's errors are explained; where a
place stands in the text is `document`'s job.
"""

from __future__ import annotations

import difflib
import functools
import reprlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from tui_connector.config.document import Locations


class ConfigError(Exception):
    """A problem in the config, already phrased for the user: `file:line:col: field: message`."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


Loc = tuple[str | int, ...]
"""A place in the document: the keys and list indexes that lead to it."""


@dataclass(frozen=True)
class Mark:
    """A line and column in the file, counted from 1."""

    line: int
    column: int

    @classmethod
    def of(cls, mark: Any) -> Mark:
        """From a PyYAML mark (counted from 0); 1:1 when PyYAML gives none."""
        return cls(1, 1) if mark is None else cls(mark.line + 1, mark.column + 1)


def preview(value: Any) -> str:
    """A value as a message shows it: its repr, shortened if long."""
    return reprlib.repr(value)


def read_as_date(value: date) -> str:
    return f"YAML reads {value} as a date, not text; quote it to send it as text: '{value}'"


def field_name(loc: Loc) -> str:
    """How a message names a place: `sources.items.retry.statuses[0]`."""
    out = ""
    for part in loc:
        name = printable(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out or "(top level)"


def located(shown: str, mark: Mark, loc: Loc, message: str) -> str:
    """`file:line:col: field: message`."""
    return at(shown, mark, f"{field_name(loc)}: {message}")


def at(shown: str, mark: Mark, message: str) -> str:
    """`file:line:col: message`, for what names no field (the YAML text itself)."""
    return f"{shown}:{mark.line}:{mark.column}: {printable(message, newlines=True)}"


def printable(text: str, *, newlines: bool = False) -> str:
    """Control characters escaped: text from the file must not garble (or drive) the terminal."""
    return "".join(
        c if c.isprintable() or (newlines and c == "\n") else repr(c)[1:-1] for c in text
    )


# ---------------------------------------------------------------------------------------------
# pydantic's errors, explained

# pydantic's own wording is kept for these, with the value that was given.
_WRONG_VALUE_KINDS = frozenset(
    {
        "int_parsing",
        "int_type",
        "float_parsing",
        "float_type",
        "bool_parsing",
        "bool_type",
        "string_type",
        "dict_type",
        "list_type",
        "tuple_type",
        "model_type",
        "literal_error",
    }
)


def explain(error: dict[str, Any], block: Mapping[str, Any] | None = None) -> str:
    """One pydantic error as a sentence for the user; `block`: the mapping that holds the
    erring key in the user's document, if known."""
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), block or {})
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing"
    if kind == "union_tag_invalid":
        tag = error.get("input", {}).get("type") if isinstance(error.get("input"), dict) else None
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown type {tag!r}; use one of {expected}"
    if kind == "union_tag_not_found":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"'type' is missing; use one of {expected}"
    if kind == "invalid-json-value":
        value = error.get("input")
        if isinstance(value, date):
            return read_as_date(value)
        return (
            f"{preview(value)} cannot be sent as JSON; write text, a number, true/false, "
            "null, a list or a mapping"
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    # In YAML's words: a sequence field takes a list, a model a mapping.
    message = message.replace("a valid tuple", "a list").replace("a valid list", "a list")
    message = message.replace("a valid dictionary", "a mapping (key: value)")
    if kind in _WRONG_VALUE_KINDS:
        message += f" (got {preview(error.get('input'))})"
    return message


def _unknown_key(key: str, block: Mapping[str, Any]) -> str:
    """Why `key` is refused in `block`, with the key meant if one is close enough: among the
    keys of the blocks that take the block's other keys (and its `type`), else among all."""
    every_key = {k for keys, _ in _config_blocks() for k in keys}
    others = {name for name in block if name != key and name in every_key}  # typos aside
    kind = block.get("type")
    blocks = [
        keys
        for keys, types in _config_blocks()
        if others <= keys and (not isinstance(kind, str) or not types or kind in types)
    ]
    here = set().union(*blocks) if blocks else every_key
    close = difflib.get_close_matches(key, sorted(here - {key}), n=1, cutoff=0.75)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    if blocks and key in every_key:
        return f"{key!r} is not a key of this block; it belongs in another (see the reference)"
    return f"unknown key {key!r}; check the spelling (see the sources.yaml reference)"


@functools.cache
def _config_blocks() -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
    """Every kind of block sources.yaml has: the keys it takes, and the `type` values that
    name it (none for a block without `type`)."""
    from tui_connector.config.fields import Strict

    blocks = []
    models: list[type[Strict]] = [Strict]
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        fields = model.model_fields
        keys = frozenset(field.alias or name for name, field in fields.items())
        kind = fields.get("type")
        types = frozenset(typing.get_args(kind.annotation)) if kind is not None else frozenset()
        if keys:
            blocks.append((keys, frozenset(str(value) for value in types)))
    return tuple(blocks)


def _at(data: Any, loc: Loc) -> Mapping[str, Any] | None:
    """The mapping at `loc` in the user's document, if that is one."""
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data if isinstance(data, Mapping) else None


# The fields whose value is a union told apart by its `type` key.
_DISCRIMINATED = ("pagination", "auth", "partitions")


def document_loc(error: dict[str, Any], data: Any) -> Loc:
    """The error's path in the user's document. Pydantic's path holds parts of its own too (a
    union member's tag like "page_number" or "str", "[key]", "function-after[...]"): keep the
    parts the document has, and the name of a missing key."""
    raw = error["loc"]
    loc: list[str | int] = []
    node = data
    for index, part in enumerate(raw):
        if isinstance(node, dict):
            # The tag pydantic inserts after a discriminated union may also be a key of it:
            # `pagination: {type: cursor, cursor: ...}` has loc (..., "pagination", "cursor").
            is_tag = index > 0 and raw[index - 1] in _DISCRIMINATED and part == node.get("type")
            present = part in node and not is_tag
        else:
            present = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if present:
            node = node[part]
        elif not (error["type"] == "missing" and index == len(raw) - 1):
            continue
        loc.append(part)
    return tuple(loc)


def validation_messages(
    exc: ValidationError, data: Any, shown: str, locations: Locations
) -> list[str]:
    """Each of pydantic's errors located and explained, once each, in pydantic's order."""
    messages = []
    for details in exc.errors():
        error = dict(details)
        loc = document_loc(error, data)
        place = locations.find(loc, key=error["type"] == "extra_forbidden")
        block = _at(data, loc[:-1]) if error["type"] == "extra_forbidden" else None
        messages.append(located(shown, place, loc, explain(error, block)))
    return sorted(set(messages), key=messages.index)
