"""Pages staged as Arrow columns: the fast way into a Parquet or Delta table.

Staging a page as JSON lines and having Arrow's JSON reader parse them back cost a writer
thread 0.5 µs a record, most of a typed format's cost over JSON Lines; building the columns
from the decoded records costs the event loop about 0.25 µs a record more than encoding them
(measured on workload 2's pages). But converting Python values to Arrow is exact only where
the values are already what the table holds: pyarrow with a given type takes a float 1.0 into
an int64 column, True into a float64 one, and drops keys the type lacks. So a page is staged
this way only when every value is a scalar whose type Arrow infers exactly the column's type
(an int also fits a float64 column, up to 2^53, which Arrow checks), and every field with a
value is already a typed column. Anything else — a new field, a type change, an object or an
array, a field stored as JSON text, a record that is not an object — is staged as JSON lines,
and the table's schema follows the data there (`arrow_schema`).

A typed scalar column keeps its type for good (it never widens: a new type makes its field
JSON text), so a page checked against the schema still fits its column when a writer thread
converts it, whatever the schema became meanwhile. A field that fell back to JSON text in
between keeps its typed column: the page's values go there, as the rows before the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_INFERRED = frozenset({pa.int64(), pa.float64(), pa.string(), pa.bool_()})
_NULL = pa.null()
_FLOAT = pa.float64()
_INT = pa.int64()


@dataclass(slots=True)
class ColumnPage:
    """A page's records as Arrow arrays, one per field with a value, each of its column's type."""

    columns: dict[str, pa.Array]
    rows: int

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.columns.values())


def column_page(records: Sequence[Any], typed: Mapping[str, pa.DataType]) -> ColumnPage | None:
    """The records as columns of the types in `typed` (the table's typed fields), or None when
    that would not keep every value exactly as the JSON way would (see the module's doc)."""
    try:
        keys = set().union(*map(dict.keys, records))
    except TypeError:  # a record that is not an object
        return None
    new = keys.difference(typed)
    if new and any(record.get(key) is not None for key in new for record in records):
        return None  # a field with a value that is no typed column yet
    columns = {}
    for key in keys.difference(new):
        values = [record.get(key) for record in records]
        try:
            array = pa.array(values)
            kind = array.type
            if kind == _NULL:
                continue  # a field only ever null reads back as absent either way
            into = typed[key]
            if kind != into:
                if kind != _INT or into != _FLOAT:
                    return None
                array = pa.array(values, _FLOAT)  # refuses an int a float would round
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return None  # mixed types, an int beyond int64, text that is no UTF-8...
        if kind not in _INFERRED:
            return None
        columns[key] = array
    return ColumnPage(columns, len(records))


def pages_table(pages: Sequence[ColumnPage], schema: pa.Schema) -> pa.Table:
    """The pages' rows, in order, as a table of `schema` (which holds every page's columns)."""
    columns = []
    for field in schema:
        chunks = [page.columns.get(field.name) for page in pages]
        chunks = [
            pa.nulls(page.rows, field.type) if chunk is None else chunk
            for page, chunk in zip(pages, chunks, strict=True)
        ]
        column = pa.chunked_array(chunks, field.type)
        if field.type == _FLOAT:
            column = _finite_or_null(column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _finite_or_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """NaN and infinities as null, as the JSON way has them (orjson writes them as null)."""
    finite = pc.is_finite(column)
    if pc.all(finite).as_py() is not False:
        return column
    return pc.if_else(finite, column, pa.scalar(None, _FLOAT))
