"""Pages staged as Arrow columns: the fast way into a Parquet or Delta table.

Staging a page as JSON lines and having Arrow's JSON reader parse them back cost a writer
thread 0.5 µs a record, most of a typed format's cost over JSON Lines. Building the columns
from the decoded records instead costs the event loop ~2.5 µs a field per page more than
encoding them, which 100-record pages do not earn back, so only pages of at least `MIN_ROWS`
records are staged this way. And converting Python values to Arrow is exact only where
Arrow is left to infer the types: given a type, pyarrow takes a float 1.0 into an int64 column,
True into a float64 one, and drops keys the type lacks. So a page is staged this way only when
every record is an object and every field with a value holds scalars of one kind that Arrow
infers exactly: ints (int64), floats (float64, all finite: the JSON way writes NaN and
infinities as null), strings or booleans — or ints and floats together in a field already
typed float64 (Arrow refuses an int that a float would round). Anything else — an object or an
array, mixed kinds in a field that is not float64 yet, a type change of a typed field, a field
stored as JSON text, a name the table cannot take as a column — goes as JSON lines.

Such a page's values are exact, so the writer thread decides the batch's schema from their
types just as it would from the JSON lines (`arrow_schema.TableSchema.convert`): a new field is
a new column, an int beyond 2^53 for a float64 column or a type change falls back to JSON
text, whose text the values give exactly. A batch of both kinds of page whose columns bring new
fields is converted as JSON lines whole (the columns written back as lines), so that a field
mixed within the first batch that sees it is still JSON text from the start. Two things differ
from a batch staged all as JSON lines, neither losing a value: a batch of both kinds of page in
which a typed field falls back to JSON text keeps the values of the pages before the one that
changed its type in the typed column (as the rows of earlier batches); and the values a page
took as floats for a float64 column (`fitted`: maybe ints among them) stay in that column,
should the field fall back between the page's staging and its batch's conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tui_connector.sinks.jsonl import encode_lines

# Pages of fewer records go as JSON lines: pyarrow's conversion costs ~2.5 µs a call however
# short, a call a field, and on workload 2's 100-record pages the loop's extra cost ate the
# writer thread's saving (CPU per run no lower, and higher for Delta); from 1000 records a
# page, Parquet took 30 % less CPU and memory peaked 30-45 MB lower (bench/RESULTS.md).
# Gathering a stream's shorter pages to build their columns at once did not pay either: on
# workload 2 the loop's conversion from Python objects took 0.7-0.8 s a run against 0.2 s of
# JSON lines, as much as the writer thread saved (process CPU the same for Parquet, higher for
# Delta; measured in the engine, 2026-12-03).
MIN_ROWS = 500
INFERRED = frozenset({pa.int64(), pa.float64(), pa.string(), pa.bool_()})
FLOAT = pa.float64()
INT = pa.int64()
_INFERRED_IDS = frozenset(kind.id for kind in INFERRED)
_NULL_ID, _FLOAT_ID, _INT_ID = pa.null().id, FLOAT.id, INT.id
_SAMPLES = {_FLOAT_ID: 0.5, pa.string().id: "", pa.bool_().id: False}


@dataclass(slots=True)
class ColumnPage:
    """A page's records as Arrow arrays, one per field with a value (in the order the fields
    first appear), each of the type Arrow inferred but `fitted`: the fields taken as floats for
    their float64 column."""

    columns: dict[str, pa.Array]
    rows: int
    fitted: frozenset[str] = frozenset()

    @property
    def nbytes(self) -> int:
        # Not Array.nbytes, which took 4 µs an array: a fifth of a page's staging.
        return sum(array.get_total_buffer_size() for array in self.columns.values())


def column_page(
    records: Sequence[Any],
    typed: Mapping[str, int],
    may_be_column: Callable[[str], bool],
) -> ColumnPage | None:
    """The records as columns, or None when they are to go as JSON lines (see the module's doc).
    `typed`: the table's typed fields, by the id of their type (`type_ids`); `may_be_column`:
    whether a field not among them may get a typed column."""
    try:
        keys = set().union(*map(dict.keys, records))
    except TypeError:  # a record that is not an object
        return None
    if not keys.issubset(typed.keys()):
        first_seen = dict.fromkeys(key for record in records for key in record)
        keys = first_seen.keys()  # type: ignore[assignment]  # new columns keep this order
    columns = {}
    fitted = set()
    for key in keys:
        values = [record.get(key) for record in records]
        try:
            array = pa.array(values)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return None  # mixed kinds, an int beyond int64, text that is no UTF-8...
        kind = array.type.id  # ids, not types: comparing types costs a microsecond each
        if kind == _NULL_ID:
            continue  # a field only ever null reads back as absent either way
        if kind not in _INFERRED_IDS:
            return None
        into = typed.get(key)
        if into is None:
            if not may_be_column(key) or (kind == _FLOAT_ID and not _floats_only(values)):
                return None
        elif into == _FLOAT_ID and kind == _FLOAT_ID:
            fitted.add(key)  # maybe ints among the floats, which Arrow checks for 2^53
        elif kind != into and (kind != _INT_ID or into != _FLOAT_ID):
            return None  # a type change: the JSON way decides it
        columns[key] = array
    return ColumnPage(columns, len(records), frozenset(fitted))


def type_ids(typed: Mapping[str, pa.DataType]) -> dict[str, int]:
    """Typed fields by the id of their type, -1 for a type no page is staged as."""
    return {name: kind.id if kind in INFERRED else -1 for name, kind in typed.items()}


def _floats_only(values: list[Any]) -> bool:
    """No int among the values, and no NaN or infinity (which the JSON way has as null)."""
    return all(
        type(value) is float and math.isfinite(value) for value in values if value is not None
    )


def lines_of(page: ColumnPage) -> bytes:
    """The page as JSON lines again (its nulls left out: a null reads as absent either way)."""
    names = list(page.columns)
    if not names:
        return encode_lines([{}] * page.rows)
    rows = zip(*(array.to_pylist() for array in page.columns.values()), strict=True)
    return encode_lines(
        [
            {name: value for name, value in zip(names, row, strict=True) if value is not None}
            for row in rows
        ]
    )


def samples(arrays: Sequence[pa.Array]) -> list[Any]:
    """Values that a field's kinds and bounds decide alike to its arrays' (for `_fit`); one
    compute call for all its ints (each call gives the GIL up, and a busy loop holds it)."""
    ints = [array for array in arrays if array.type.id == _INT_ID]
    values = [_SAMPLES[array.type.id] for array in arrays if array.type.id != _INT_ID]
    if ints:
        bounds = pc.min_max(pa.chunked_array(ints, INT)).as_py()
        values += [bounds["min"], bounds["max"]]
    return values


def finite_or_null(column: pa.ChunkedArray | pa.Array) -> Any:
    """NaN and infinities as null, as the JSON way has them (orjson writes them as null)."""
    finite = pc.is_finite(column)
    if pc.all(finite).as_py() is not False:
        return column
    return pc.if_else(finite, column, pa.scalar(None, FLOAT))
