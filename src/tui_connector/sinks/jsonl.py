"""JSON Lines: a page's records as compact UTF-8 JSON, one per line. Every format stages pages
this way but those a typed table stages as Arrow columns (`column_pages`; the Parquet and Delta
writers parse these lines with Arrow's reader, off the loop); the `jsonl` format writes them as
they are."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from tui_connector.sinks import LakeError, StagedPage, StreamKey

# The stdlib's encoder, for what orjson refuses: integers past 64 bits, keys that are not text.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_lines(records: Sequence[Any]) -> bytes:
    """JSON lines. orjson writes them in a fifth of the stdlib's time, and encoding was the
    largest cost of a page after the request itself. (Both write compact UTF-8 JSON; orjson
    writes NaN and infinities, which are not JSON, as null.)"""
    if not records:
        return b""
    try:
        return b"\n".join(map(orjson.dumps, records)) + b"\n"  # map: no generator frames
    except TypeError:  # also a record nested more than 254 deep, which orjson refuses
        try:
            lines = [_ENCODER.encode(record) for record in records]
        except RecursionError:
            raise LakeError(
                "a record nests arrays and objects too deeply to be written as JSON (about "
                "1000 levels or more)"
            ) from None
        lines.append("")
        return "\n".join(lines).encode("utf-8")


def stage_lines(records: Sequence[Any]) -> StagedPage:
    data = encode_lines(records)
    return StagedPage(data, len(data), len(records))


def decode_lines(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]


class JsonLinesFormat:
    """The `jsonl` format: the staged lines, written as they are."""

    suffix = ".jsonl"
    name = "jsonl"
    encodes_in_thread = False

    def stage(self, records: Sequence[Any], source: str | None = None) -> StagedPage:
        return stage_lines(records)

    def encode(self, stream: StreamKey, pages: Sequence[StagedPage]) -> Sequence[bytes]:
        return [page.payload for page in pages if page.payload]

    def decode(self, data: bytes) -> list[Any]:
        return decode_lines(data)

    def columns(self, source: str) -> None:
        return None  # JSON lines keep each record as it came


JSON_LINES = JsonLinesFormat()
