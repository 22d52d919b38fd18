"""The `parquet` format: a batch's records as one Parquet file, written with pyarrow.

The records arrive staged as JSON lines or Arrow columns (`TableSchema.stage`) and become one
table off the event loop, with the source's schema (`arrow_schema.TableSchema`, one per source,
so every file of a source agrees on each column's type and a type change falls back the same
way)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tui_connector.sinks import LakeError, StagedPage, StreamKey
from tui_connector.sinks.arrow_schema import TableSchema, to_records
from tui_connector.sinks.dictionaries import dictionary_columns
from tui_connector.sinks.jsonl import stage_lines


class ParquetFormat:
    suffix = ".parquet"
    name = "parquet"
    encodes_in_thread = True

    def __init__(self) -> None:
        self._schemas: dict[str, TableSchema] = {}
        self._lock = threading.Lock()

    def columns(self, source: str) -> TableSchema | None:
        return self._schemas.get(source)

    def schema_of(self, source: str) -> TableSchema:
        with self._lock:
            schema = self._schemas.get(source)
            if schema is None:
                schema = self._schemas[source] = TableSchema()
            return schema

    def stage(self, records: Sequence[Any], source: str | None = None) -> StagedPage:
        if source is None:
            return stage_lines(records)
        return self.schema_of(source).stage(records)

    def encode(self, stream: StreamKey, pages: Sequence[StagedPage]) -> Sequence[bytes]:
        table = self.schema_of(stream.source).convert([page.payload for page in pages])
        sink = pa.BufferOutputStream()
        try:
            pq.write_table(table, sink, use_dictionary=dictionary_columns(table))
        except (pa.ArrowException, ValueError) as exc:
            raise LakeError(f"cannot encode a batch of {stream.source} as Parquet: {exc}") from None
        # Arrow's buffer as it is (files and object stores take any bytes-like chunk): a copy
        # into Python bytes would take the file's size from the C heap in this thread.
        return [sink.getvalue()]

    def decode(self, data: bytes) -> list[Any]:
        return to_records(pq.read_table(pa.BufferReader(data)))
