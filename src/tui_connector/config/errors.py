"""Errors in a config, phrased for the user: `file:line:col: field: message`.

Here is how a place in the file is named and how pydantic's errors are explained; where a
place stands in the text is `document`'s job.
"""

from __future__ import annotations

import difflib
import functools
import reprlib
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


def explain(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence for the user."""
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _config_keys(), n=1, cutoff=0.75)
        if close:
            return f"unknown key {loc[-1]!r}; did you mean {close[0]!r}?"
        return f"unknown key {loc[-1]!r}; check the spelling (see the sources.yaml reference)"
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


@functools.cache
def _config_keys() -> tuple[str, ...]:
    """Every key any part of sources.yaml takes: what a misspelt key is compared with."""
    from tui_connector.config.fields import Strict

    keys: set[str] = set()
    models = [Strict]
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        for name, field in model.model_fields.items():
            keys.add(field.alias or name)
    return tuple(sorted(keys))


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
        messages.append(located(shown, place, loc, explain(error)))
    return sorted(set(messages), key=messages.index)
