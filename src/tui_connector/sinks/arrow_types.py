"""Which Arrow type holds a field's JSON values (`arrow_schema`'s rules of types): one type per
field, widened only where nothing is lost (an int into a float64 column up to 2^53, a struct
gaining fields), with what Delta can store and read back (no null type, no struct without
fields, no keys that differ only in case, no nesting deeper than `MAX_DEPTH`). Values no one
type holds raise `Misfit`, and their field falls back to JSON text."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

EXACT_IN_FLOAT = 2**53
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Delta reads a table's schema with a nesting limit: 41 structs in structs, 30 lists of structs.
MAX_DEPTH = 32
_TOO_DEEP = f"objects and arrays nested more than {MAX_DEPTH} deep"
_JSON_KINDS = {bool: "boolean", int: "number", float: "number", str: "string"}
_JSON_KINDS.update({dict: "object", list: "array"})


class Misfit(Exception):
    """Values no one type holds without loss; the message says why."""


def _struct(children: dict[str, pa.DataType]) -> pa.DataType:
    seen: dict[str, str] = {}
    for name in children:
        other = seen.setdefault(name.casefold(), name)
        if other != name:  # Delta refuses such a struct
            raise Misfit(f"keys {other!r} and {name!r} differ only in case")
    if "" in children:  # DuckDB would read it as "element1"
        raise Misfit("an empty key")
    return pa.struct(list(children.items()))


def fit(values: list[Any], into: pa.DataType | None, depth: int = 0) -> pa.DataType | None:
    """The type to store one field's values in: `into` (the column's type so far; None: none
    yet) where it holds them, widened where that loses nothing (an int into a float64 column, a
    struct gaining fields); None while no value is known. Works column by column rather than
    value by value, so a batch builds few types."""
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        return into
    wide = False  # ints a float64 column would round
    if kinds <= {int, float}:
        ints = [value for value in values if type(value) is int] or [0]
        low, high = min(ints), max(ints)
        if low < _INT64_MIN or high > _INT64_MAX:
            raise Misfit("an int beyond int64")
        kind = pa.float64() if float in kinds or into == pa.float64() else pa.int64()
        wide = kind == pa.float64() and max(-low, high) > EXACT_IN_FLOAT
    elif len(kinds) > 1:
        raise Misfit("mixed " + " and ".join(sorted({_JSON_KINDS[kind] for kind in kinds})))
    elif depth == MAX_DEPTH and kinds & {dict, list}:
        raise Misfit(_TOO_DEEP)
    elif dict in kinds:
        if into is not None and not pa.types.is_struct(into):
            raise Misfit(f"{into} -> object")
        children: dict[str, list[Any]] = {}
        for value in values:
            for key, child in (value or {}).items():
                children.setdefault(key, []).append(child)
        fields = {} if into is None else {field.name: field.type for field in into}
        for key, child_values in children.items():
            child = fit(child_values, fields.get(key), depth + 1)
            if child is not None:
                fields[key] = child
        return _struct(fields) if fields else None
    elif list in kinds:
        if into is not None and not pa.types.is_list(into):
            raise Misfit(f"{into} -> array")
        items = [item for value in values for item in value or ()]
        item = fit(items, None if into is None else into.value_type, depth + 1)
        return None if item is None else pa.list_(item)
    else:
        kind = pa.bool_() if bool in kinds else pa.string()
    if into is not None and kind != into:
        raise Misfit(f"{into} -> {kind}")
    if wide:
        raise Misfit("double -> an int beyond 2^53" if into else "floats and ints beyond 2^53")
    return kind


def clean(kind: pa.DataType, depth: int = 0) -> tuple[pa.DataType | None, bool]:
    """What the JSON reader inferred, as this module stores it (None: nothing to store yet), and
    whether it had read strings as timestamps."""
    if depth > MAX_DEPTH:
        raise Misfit(_TOO_DEEP)
    if pa.types.is_timestamp(kind):
        return pa.string(), True
    if pa.types.is_null(kind):
        return None, False
    if pa.types.is_struct(kind):
        children, reread = {}, False
        for field in kind:
            child, child_reread = clean(field.type, depth + 1)
            reread |= child_reread
            if child is not None:
                children[field.name] = child
        return (_struct(children) if children else None), reread
    if pa.types.is_list(kind):
        item, reread = clean(kind.value_type, depth + 1)
        return (None if item is None else pa.list_(item)), reread
    return kind, False
