"""One evolving Arrow schema per table, for batches of JSON records (the Parquet and Delta sinks).

A batch arrives as the JSON lines its pages were staged as; `TableSchema.convert` turns it into
a pyarrow Table that conforms to the table's schema after that batch. The schema follows the data:
- ints become int64, floats float64, booleans bool, strings string (never timestamps: a later
  string that is no date would then be a type change), objects structs, arrays lists. A non-object
  record is the object `{"value": record}`.
- A field that was only ever null, `{}` or `[]` (no element seen) is not a column yet: Delta has
  no null type and neither writer stores a struct without fields. It becomes one when a value
  shows up; until then such values read back as absent.
- A new field is a new nullable column appended to the schema (a new key inside an object: a new
  field appended to its struct); a field missing from a record is null there.
- A value the column holds without loss widens it: an int into a float64 column (up to 2^53),
  a struct gaining fields. Anything else (a number that becomes a string, an object a scalar, an
  array of mixed things, an int beyond int64, a float into an int64 column, which Delta cannot
  widen, nesting deeper than 32 levels, which Delta cannot read back) makes the top-level field
  fall back, never failing and never losing a value: from then on its values are stored as
  compact JSON text in the string column `<field>__json`; earlier rows keep the typed column. A
  field mixed within the first batch that sees it is JSON text from the start. Each fallback is
  told once through `take_news`, and listed with the others so far in `notes`.

Column names: both writers (pyarrow's Parquet writer, deltalake 1.6) accept any text, including
the empty string, spaces, dots and newlines, but Delta refuses names that differ only in case
(at any depth), DuckDB reads an empty name as "C0" ("element1" inside a struct), and `_tc_*`
columns are the sink's own. So a top-level field is stored under its own name unless that name
is empty, starts with `_tc_`, ends with `__json` (the JSON-text suffix) or starts with `__json_`
(ignoring case), or differs only in case from a field seen before: such a field is always JSON
text, in `__json_<hex of its UTF-8 name>`. An object with an empty key or keys that differ only
in case makes its top-level field fall back. Every column decodes back to its field's name.

A batch's pages come staged as JSON lines or, where that keeps every value exactly, as Arrow
columns of the table's typed fields (`column_pages`, built from the decoded records on the event
loop: the fastest way). JSON lines go to pyarrow's JSON reader (C++, without the GIL) with the
schema so far as its explicit schema; a batch the reader cannot take (a type change, a
non-object record, an int that would round in a float64 column, a field stored as JSON text) is
converted from Python objects. The reader is most of a batch's cost, so a batch is read once
where it can be: a table's first batch with the dates of its first page as text (the reader
would read them as timestamps, and the batch again), and a batch whose schema another batch
changed while it was read is read again only if the two disagree (a source's first batches are
read at the same time).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tui_connector.sinks import StagedPage
from tui_connector.sinks.arrow_types import EXACT_IN_FLOAT, Misfit, clean, fit
from tui_connector.sinks.column_pages import (
    FLOAT,
    MIN_ROWS,
    ColumnPage,
    column_page,
    finite_or_null,
    lines_of,
    samples,
    type_ids,
)
from tui_connector.sinks.jsonl import _ENCODER, stage_lines

SINK_PREFIX = "_tc_"
JSON_SUFFIX = "__json"
ESCAPED_PREFIX = "__json_"

# Long runs of digits are looked for through bytes.translate: 20 times faster than a regex.
_DIGITS_AS_NINES = bytes(57 if 48 <= byte <= 57 else 32 for byte in range(256))


def _digit_run(chunks: Iterable[bytes], length: int) -> bool:
    """Whether `length` digits in a row are in the chunks (each of whole lines, so no run spans
    two of them)."""
    run = b"9" * length
    return any(run in chunk.translate(_DIGITS_AS_NINES) for chunk in chunks)


def _may_have_rounded(chunks: Sequence[bytes], arrays: Iterable[pa.Array]) -> bool:
    """Whether an int literal may have been rounded into a float64 column: it reads as a float of
    at least 2^53, which JSON floats rarely are (the slow path then decides exactly). Without 16
    digits in a row in the batch there is none, which is worth knowing first: every compute call
    releases the GIL, and taking it back beside a busy thread waits up to the switch interval."""
    return _digit_run(chunks, 16) and _float_beyond_exact(arrays)


def _float_beyond_exact(arrays: Iterable[pa.Array]) -> bool:
    for array in arrays:
        kind = array.type
        if pa.types.is_floating(kind):
            bounds = pc.min_max(array).as_py()
            if max(-(bounds["min"] or 0), bounds["max"] or 0) >= EXACT_IN_FLOAT:
                return True
        elif pa.types.is_struct(kind):
            if _float_beyond_exact(array.field(index) for index in range(kind.num_fields)):
                return True
        elif pa.types.is_list(kind) and _float_beyond_exact([array.values]):
            return True
    return False


def _joined(chunks: Sequence[bytes]) -> pa.Buffer:
    """A batch's chunks as one buffer of Arrow's memory pool, for the JSON reader. (Joined as
    Python bytes, each batch was a megabyte taken from and given back to the C heap in a writer
    thread.)"""
    joined = pa.allocate_buffer(sum(map(len, chunks)))
    writer = pa.FixedSizeBufferWriter(joined)
    for chunk in chunks:
        writer.write(chunk)
    return joined


def _read(data: pa.Buffer, explicit: pa.Schema, new_fields: str) -> pa.Table:
    # One block: inference then sees the whole batch at once.
    options = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
    parse = pa_json.ParseOptions(explicit_schema=explicit, unexpected_field_behavior=new_fields)
    return pa_json.read_json(pa.BufferReader(data), read_options=options, parse_options=parse)


def _parse(
    chunks: Sequence[bytes], explicit: pa.Schema
) -> tuple[pa.Table, dict[str, pa.DataType], bool] | None:
    """The batch as the JSON reader reads it, the types of its columns that are new or have
    grown, and whether it has a column for every field of the batch (a second reading leaves
    out the fields that hold no value yet). None: the reader cannot take this batch."""
    if not _objects_only(chunks):
        return None  # the reader refuses other records, and a null one crashes it (pyarrow 26)
    data = _joined(chunks)
    try:
        reading = explicit
        if not len(explicit) and len(chunks) > 1 and chunks[0]:
            reading = _dates_as_text(chunks[0])
        table = _read(data, reading, "infer")
        changed, reread = {}, False
        for field, column in zip(table.schema, table.columns, strict=True):
            index = explicit.get_field_index(field.name)
            stored = explicit.field(index).type if index >= 0 else None
            if field.type != stored:
                kind, field_reread = clean(field.type)
                # A list the reader inferred from a first element that is null is an array
                # Arrow's own checks refuse (pyarrow 26): read such a column again, typed.
                reread |= field_reread or (pa.types.is_nested(field.type) and not _valid(column))
                if kind is not None and kind != stored:
                    changed[field.name] = kind
        if reread:
            kinds = {field.name: field.type for field in explicit} | changed
            table = _read(data, pa.schema(list(kinds.items())), "ignore")
    except (pa.ArrowInvalid, Misfit):
        return None
    arrays = (array for column in table.columns for array in column.chunks)
    return None if _may_have_rounded(chunks, arrays) else (table, changed, not reread)


def _objects_only(chunks: Sequence[bytes]) -> bool:
    """Whether every line of the chunks is an object (each chunk is whole lines, each ending in
    a newline; no JSON text holds a raw newline). A chunk that does not end in one is not
    taken as such."""
    return all(
        not chunk
        or (
            chunk.endswith(b"\n")
            and chunk.count(b"\n") == chunk.startswith(b"{") + chunk.count(b"\n{")
        )
        for chunk in chunks
    )


def _valid(column: pa.ChunkedArray) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _dates_as_text(lines: bytes) -> pa.Schema:
    """The top-level fields of `lines` that the JSON reader infers as timestamps, as text: an
    explicit schema that spares a table's first batch a second reading (each page's fields are
    most of the next one's). Dates inside objects and arrays are left to that second reading:
    fixing a nested type from one page would fix its other leaves too."""
    read = _read(pa.py_buffer(lines), pa.schema([]), "infer").schema
    return pa.schema([(f.name, pa.string()) for f in read if pa.types.is_timestamp(f.type)])


def _agrees(table: pa.Table, explicit: pa.Schema) -> bool:
    """Whether each column of `table` that `explicit` has is of its type there."""
    for field in explicit:
        index = table.schema.get_field_index(field.name)
        if index >= 0 and table.schema.field(index).type != field.type:
            return False
    return True


def _holds_keys(chunks: Sequence[bytes], keys: Sequence[bytes]) -> bool:
    return any(key in chunk for chunk in chunks for key in keys)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    present = set(table.column_names)
    columns = [
        pa.nulls(table.num_rows, field.type)
        if field.name not in present
        else table.column(field.name).cast(field.type)
        if table.schema.field(field.name).type != field.type
        else table.column(field.name)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _loads(text: bytes | str, exact: bool = False) -> Any:
    if not exact:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # NaN or Infinity, which the stdlib writes
            pass
    return json.loads(text)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an int past 64 bits, or nested too deep for orjson
        return _ENCODER.encode(value)


def _field_of(column: str) -> tuple[str, bool]:
    """The field a column holds, and whether it holds it as JSON text."""
    if column.startswith(ESCAPED_PREFIX):
        with contextlib.suppress(ValueError):
            name = bytes.fromhex(column[len(ESCAPED_PREFIX) :])
            return name.decode("utf-8", "surrogatepass"), True
    if column.endswith(JSON_SUFFIX):
        return column[: -len(JSON_SUFFIX)], True
    return column, False


def _reserved(field: str) -> bool:
    folded = field.casefold()  # DuckDB reads a column without a name as "C0"
    return (
        not field
        or folded.startswith((SINK_PREFIX, ESCAPED_PREFIX))
        or folded.endswith(JSON_SUFFIX)
    )


class TableSchema:
    """One table's schema as its batches make it evolve. Worker threads convert batches of the
    table at the same time: each parses on its own and takes the lock only to evolve the schema."""

    def __init__(self, known: pa.Schema | None = None, column_rows: int = MIN_ROWS) -> None:
        """`known`: the schema the table was written with (`_tc_*` columns are left out);
        `column_rows`: the fewest records a page staged as Arrow columns has."""
        self._column_rows = column_rows
        self._lock = threading.Lock()
        self._columns: dict[str, pa.DataType] = {}  # every column, in the schema's order
        self._typed: dict[str, pa.DataType] = {}  # fields stored typed (the column is the name)
        self._json: dict[str, str] = {}  # fields stored as JSON text -> their column
        self._claimed: dict[str, str] = {}  # casefolded column stems -> the field that has them
        self._news: list[str] = []
        self._notes: tuple[str, ...] = ()  # every fallback, oldest first
        self._version = 0
        self._cached: tuple[int, pa.Schema, pa.Schema, tuple[bytes, ...]] | None = None
        self._typed_view: tuple[int, Mapping[str, int]] = (-1, {})
        for field in known or ():
            if not field.name.startswith(SINK_PREFIX):
                self._columns[field.name] = field.type
                name, as_json = _field_of(field.name)
                if as_json:
                    self._json[name] = field.name
        for column, kind in self._columns.items():
            name, as_json = _field_of(column)
            if not as_json and name not in self._json:
                self._typed[name] = kind
            if column in (name, name + JSON_SUFFIX):
                self._claimed.setdefault(name.casefold(), name)

    @property
    def schema(self) -> pa.Schema:
        with self._lock:
            return self._schemas()[0]

    @property
    def json_columns(self) -> frozenset[str]:
        """The fields now stored as JSON text (their names in the records)."""
        with self._lock:
            return frozenset(self._json)

    @property
    def notes(self) -> tuple[str, ...]:
        """Every fallback to JSON text so far, oldest first, one sentence each."""
        return self._notes  # replaced whole, never changed in place: no lock needed

    def take_news(self) -> list[str]:
        """What fell back to JSON text since the last call, one sentence each."""
        with self._lock:
            news, self._news = self._news, []
        return news

    def stage(self, records: Sequence[Any]) -> StagedPage:
        """A page of this table's records for a batch: as Arrow columns when it is long enough
        and they hold its values exactly (see `column_pages`), otherwise as JSON lines."""
        page = None
        if records and len(records) >= self._column_rows:
            page = column_page(records, self._typed_ids(), self._may_be_column)
        if page is None:
            return stage_lines(records)
        return StagedPage(page, page.nbytes, page.rows)

    def _may_be_column(self, name: str) -> bool:
        """Whether a field that is no typed column may become one (a page's values decide)."""
        with self._lock:
            return name not in self._json and self._free(name)

    def _typed_ids(self) -> Mapping[str, int]:
        with self._lock:
            if self._typed_view[0] != self._version:
                self._typed_view = (self._version, MappingProxyType(type_ids(self._typed)))
            return self._typed_view[1]

    def convert(self, chunks: Sequence[bytes | ColumnPage]) -> pa.Table:
        """The records of `chunks` (each the payload of a page `stage` made: JSON lines, one
        record a line, each chunk whole lines; or Arrow columns), in order, as a table of the
        schema this batch leaves: every column so far, those new in this batch appended."""
        columnar = [chunk for chunk in chunks if isinstance(chunk, ColumnPage)]
        if not columnar:
            return self._convert_lines(cast("Sequence[bytes]", chunks))
        if len(columnar) < len(chunks) and self._new_fields_in(columnar):
            # The batch's JSON lines and these pages decide the new fields' types together.
            as_lines = [lines_of(c) if isinstance(c, ColumnPage) else c for c in chunks]
            return self._convert_lines(as_lines)
        parts: list[pa.Table] = []  # of consecutive pages staged alike, in order
        lines: list[bytes] = []
        pages: list[ColumnPage] = []
        for chunk in chunks:
            if isinstance(chunk, ColumnPage):
                if lines:
                    parts.append(self._convert_lines(lines))
                    lines = []
                pages.append(chunk)
            else:
                if pages:
                    parts.append(self._pages_table(pages))
                    pages = []
                lines.append(chunk)
        parts.append(self._pages_table(pages) if pages else self._convert_lines(lines))
        with self._lock:
            schema = self._schemas()[0]
        # One chunk a column, as the JSON reader gives: a chunk a page made writing slower.
        return pa.concat_tables([_conform(part, schema) for part in parts]).combine_chunks()

    def _new_fields_in(self, pages: Sequence[ColumnPage]) -> bool:
        with self._lock:
            return any(name not in self._typed for page in pages for name in page.columns)

    def _pages_table(self, pages: Sequence[ColumnPage]) -> pa.Table:
        """Pages staged as columns, in order, as a table of the schema they leave. Their values'
        types decide it as the values would: `_fit` of samples of the same kinds and bounds."""
        arrays: dict[str, list[pa.Array]] = {}  # by field, in the order the fields appear
        for page in pages:
            for name, array in page.columns.items():
                arrays.setdefault(name, []).append(array)
        with self._lock:
            typed = dict(self._typed)
        schema, typed, json_field = self._fit_all(
            {
                name: samples(of_field)
                for name, of_field in arrays.items()
                # A typed scalar column never changes type: what it holds already needs no fit.
                if not all(array.type == typed.get(name) for array in of_field)
            }
        )
        columns = []
        for field in schema:
            json_of = json_field.get(field.name)
            chunks = [_page_column(page, field, json_of, typed) for page in pages]
            column = pa.chunked_array(chunks, field.type)
            columns.append(finite_or_null(column) if field.type == FLOAT else column)
        return pa.Table.from_arrays(columns, schema=schema)

    def _convert_lines(self, chunks: Sequence[bytes]) -> pa.Table:
        while any(chunks):
            with self._lock:
                version, (_, explicit, as_json) = self._version, self._schemas()
            if _holds_keys(chunks, as_json):
                break  # a field stored as JSON text, which the reader would read typed
            parsed = _parse(chunks, explicit)
            if parsed is None:
                break
            table, changed, whole = parsed
            with self._lock:
                if version != self._version:
                    # Another batch changed the schema meanwhile (a source's first batches are
                    # read at once): this reading stands if it has every field of the batch and
                    # agrees with the new schema, else read again with it.
                    _, explicit, as_json = self._schemas()
                    agrees = whole and _agrees(table, explicit)
                    if not agrees or _holds_keys(chunks, as_json):
                        continue
                    changed = {
                        name: kind
                        for name, kind in changed.items()
                        if explicit.get_field_index(name) < 0 or explicit.field(name).type != kind
                    }
                if not self._grow(changed):
                    break
                schema = self._schemas()[0]
            return _conform(table, schema)
        return self._convert_slowly(b"".join(chunks))

    def _schemas(self) -> tuple[pa.Schema, pa.Schema, tuple[bytes, ...]]:
        """The whole schema, that of the typed fields (the JSON reader's explicit schema), and
        the fields stored as JSON text as keys in JSON lines."""
        if self._cached is None or self._cached[0] != self._version:
            whole, typed = (
                pa.schema(list(self._columns.items())),
                pa.schema(list(self._typed.items())),
            )
            keys = tuple(orjson.dumps(name) + b":" for name in self._json)
            self._cached = (self._version, whole, typed, keys)
        return self._cached[1:]

    def _grow(self, changed: dict[str, pa.DataType]) -> bool:
        """Take the columns the JSON reader found new or grown (what it reads for a typed column
        holds the type so far); False, changing nothing, when a new one needs the slow path."""
        new = [name for name in changed if name not in self._typed]
        if len({name.casefold() for name in new}) < len(new) or not all(map(self._free, new)):
            return False
        for name, kind in changed.items():
            self._set_typed(name, kind)
        return True

    def _convert_slowly(self, data: bytes) -> pa.Table:
        # orjson reads an int past 64 bits as a float, rounding it: such batches go to the stdlib.
        exact = _digit_run([data], 19)
        records = [_loads(line, exact) for line in data.split(b"\n") if line]
        values: dict[str, list[Any]] = {}
        for row, record in enumerate(records):
            for name, value in (record if isinstance(record, dict) else {"value": record}).items():
                column = values.get(name)
                if column is None:
                    column = values[name] = [None] * len(records)
                column[row] = value
        schema, typed, json_field = self._fit_all(values)
        arrays = []
        for field in schema:
            name = field.name if field.name in typed else json_field.get(field.name)
            if name not in values:
                arrays.append(pa.nulls(len(records), field.type))
            elif name in typed:
                arrays.append(pa.array(values[name], field.type))
            else:
                arrays.append(pa.array(list(map(_json_text, values[name])), pa.string()))
        return pa.Table.from_arrays(arrays, schema=schema)

    def _fit_all(
        self, values: Mapping[str, list[Any]]
    ) -> tuple[pa.Schema, dict[str, pa.DataType], dict[str, str]]:
        """Evolve the schema by each field's values; the schema then, its typed fields, and the
        fields of its JSON-text columns by column."""
        while True:
            with self._lock:
                version, typed = self._version, dict(self._typed)
            kinds: dict[str, pa.DataType | Misfit | None] = {}
            for name, column in values.items():
                try:
                    kinds[name] = fit(column, typed.get(name))
                except Misfit as misfit:
                    kinds[name] = misfit
            with self._lock:
                if version != self._version:
                    continue  # another batch changed the schema meanwhile: fit again
                for name, kind in kinds.items():
                    self._evolve(name, kind)
                json_field = {column: name for name, column in self._json.items()}
                return self._schemas()[0], dict(self._typed), json_field

    def _evolve(self, name: str, kind: pa.DataType | Misfit | None) -> None:
        if name in self._json or kind is None:
            return
        if isinstance(kind, Misfit) and name in self._typed:
            self._fall_back(name, f"column {name!r} changed type ({kind})")
        elif not self._free(name) and name not in self._typed:
            other = self._claimed.get(name.casefold())
            why = f"differs only in case from {other!r}" if other else "has a reserved name"
            self._fall_back(name, f"field {name!r} {why}")
        elif isinstance(kind, Misfit):
            self._claimed[name.casefold()] = name
            self._fall_back(name, f"field {name!r} holds {kind}")
        elif kind != self._typed.get(name):
            self._set_typed(name, kind)

    def _free(self, name: str) -> bool:
        return not _reserved(name) and name.casefold() not in self._claimed

    def _set_typed(self, name: str, kind: pa.DataType) -> None:
        self._typed[name] = self._columns[name] = kind
        self._claimed.setdefault(name.casefold(), name)
        self._version += 1

    def _fall_back(self, name: str, reason: str) -> None:
        if self._claimed.get(name.casefold()) == name:
            column = name + JSON_SUFFIX
        else:
            column = ESCAPED_PREFIX + name.encode("utf-8", "surrogatepass").hex()
        self._typed.pop(name, None)
        self._json[name] = column
        self._columns[column] = pa.string()
        self._version += 1
        news = f"{reason}: from now on its values are stored as JSON text in {column!r}"
        self._news.append(news)
        self._notes += (news,)


def _page_column(
    page: ColumnPage, column: pa.Field, json_of: str | None, typed: Mapping[str, pa.DataType]
) -> pa.Array:
    """A page's values for one column: `json_of` names the field a JSON-text column holds (None:
    the column is the typed one of the field it is named after). A page's values of a typed field
    go to its column, as do those it took as floats for a float64 column that has fallen back
    since (`fitted`); a field stored as JSON text gets the rest, as their exact text."""
    if json_of is None:
        array = page.columns.get(column.name)
        if array is not None and (column.name in typed or column.name in page.fitted):
            return array if array.type == column.type else array.cast(column.type)
    else:
        array = page.columns.get(json_of)
        if array is not None and json_of not in page.fitted:
            return pa.array([_json_text(value) for value in array.to_pylist()], pa.string())
    return pa.nulls(page.rows, column.type)


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """The records of a table `TableSchema` made, for reading it back: `_tc_*` columns left out,
    JSON text parsed back under the field's name, nulls left out at every depth of typed values.

    What does not come back as it went in: a null (or a value while the field's type was unknown:
    `{}`, `[]`) reads as absent; an int in a float64 column as a float of the same value; keys in
    the schema's order, not the record's; a non-object record as `{"value": record}`. JSON text
    comes back exactly, its nulls included."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not name.startswith(SINK_PREFIX):
            columns.append((*_field_of(name), column.to_pylist()))
    records = []
    for row in range(table.num_rows):
        record = {}
        for name, as_json, values in columns:
            value = values[row]
            if value is not None:
                record[name] = json.loads(value) if as_json else _without_nulls(value)
        records.append(record)
    return records


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(child) for key, child in value.items() if child is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value
