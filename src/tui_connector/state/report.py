"""The checkpoints of a state database as `tui-connector status` prints them: one line per
source, or per stream; and each source's lake. Plain text from plain rows; no I/O."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

# A stream checkpointed as running when no run is in progress: its run was killed (or stopped
# at once) mid-page; the next run resumes it.
INTERRUPTED = "interrupted"


def as_of_no_run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as they stand with no run in progress: a running stream was interrupted."""
    return [{**row, "status": INTERRUPTED} if row["status"] == "running" else row for row in rows]


def aligned(table: list[tuple[str, ...]]) -> Iterator[str]:
    """A table's lines, its columns padded to their widest cell."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        yield "  ".join(cells).rstrip()


def _mark_text(mark: Any) -> str:
    return "" if not mark else str(mark.get("value", ""))


def stream_table(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = [
        ("SOURCE", "PARTITION", "STATUS", "PAGES", "RECORDS", "MARK", "UPDATED", "CURSOR")
    ]
    for row in rows:
        cursor = json.dumps(row["cursor"], separators=(",", ":"))
        table.append(
            (
                str(row["source"]),
                str(row["partition"]),
                str(row["status"]),
                str(row["pages"]),
                str(row["records"]),
                _mark_text(row["mark"]),
                str(row["updated_at"]),
                cursor if len(cursor) <= 60 else cursor[:59] + "…",
            )
        )
    return table


def source_table(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One line per source: its streams by status, its totals, its high-water mark (the
    lowest of its streams': where the next incremental run of the slowest one starts)."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(str(row["source"]), []).append(row)
    table: list[tuple[str, ...]] = [
        ("SOURCE", "STATUS", "STREAMS", "PAGES", "RECORDS", "HIGH-WATER MARK", "UPDATED")
    ]
    for source, streams in by_source.items():
        statuses = Counter(str(row["status"]) for row in streams)
        done = statuses.get("done", 0)
        overall = next(
            (s for s in ("failed", "running", INTERRUPTED, "stopped") if statuses.get(s)), "done"
        )
        marks = [row["mark"]["value"] for row in streams if row["mark"]]
        mark = ""
        with contextlib.suppress(TypeError):  # values of mixed types: show none
            mark = str(min(marks)) if marks else ""
        if marks and len(marks) < len(streams):
            mark += f" ({len(marks)} of {len(streams)} streams)"
        table.append(
            (
                source,
                overall,
                f"{done}/{len(streams)} done",
                str(sum(int(row["pages"]) for row in streams)),
                str(sum(int(row["records"]) for row in streams)),
                mark,
                max(str(row["updated_at"]) for row in streams),
            )
        )
    return table


def lake_lines(lakes: Mapping[str, Mapping[str, Any]], unknown: str | None) -> Iterator[str]:
    """Each source's lake: its format, destination and (Delta) table version, and why a
    version shows "?"; `unknown`: why the lake could not be read from the config at all."""
    if lakes:
        yield ""
        table: list[tuple[str, ...]] = [("SOURCE", "FORMAT", "DESTINATION", "VERSION")]
        for source, lake in lakes.items():
            table.append((source, lake["format"], lake["destination"], lake["version"]))
        yield from aligned(table)
        for source, lake in lakes.items():
            if lake["problem"]:
                yield f"{source}: table version ?: {lake['problem']}"
    if unknown:
        yield f"the lake: ? ({unknown})"
