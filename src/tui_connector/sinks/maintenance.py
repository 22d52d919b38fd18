"""Delta tables kept in shape (what `tui-connector compact` does to them), and what `status`
shows of each source's lake: its format, where it is, and a Delta table's version.

Compacting a table is two steps:
- optimize: one commit that replaces the table's small files with larger ones holding the same
  rows (their `_tc_*` columns too); the streams' transaction versions stay as they were, so a
  later run resumes as if nothing happened;
- vacuum: deletes the files that no version within the retention still needs. Only files under
  the table's own directory are candidates: a staged `replace` (`_tc_staging/`) and the table
  locks (`_tc_locks/`) live beside it. A reader still reading an older version, and time travel
  to one, need those files: a retention shorter than the table's
  `delta.deletedFileRetentionDuration` (7 days unless the table says otherwise) is refused
  unless forced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tui_connector.config.lake import missing_extra
from tui_connector.sinks import LakeError
from tui_connector.sinks.storage import delta_options, store_reason

DEFAULT_RETENTION_HOURS = 7 * 24  # Delta's own default for deletedFileRetentionDuration
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
# `status` reads every Delta table's version: an unreachable store answers "?" within this.
STATUS_RETRY_TIMEOUT = "5s"


class RetentionRefused(LakeError):
    """A vacuum retention shorter than the table keeps deleted files for, not forced."""


def parse_retention(text: str) -> int:
    """Hours, from `168h`, `7d` or `1w` (vacuum keeps files for whole hours)."""
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a retention; write whole hours, days or weeks: 168h, 7d")
    return int(match.group(1)) * {"h": 1, "d": 24, "w": 168}[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes, from a size such as 128MiB or 64MB."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        size = int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise ValueError(f"{text!r} is not a size; write e.g. 128MiB or 64MB") from None
    if size <= 0:
        raise ValueError(f"a target size must be more than 0 bytes, not {text!r}")
    return size


_INTERVAL = re.compile(r"\s*(?:interval\s+)?(\d+)\s*([a-z]+?)s?\s*", re.IGNORECASE)
_UNIT_HOURS = {
    "week": 168.0,
    "day": 24.0,
    "hour": 1.0,
    "minute": 1 / 60,
    "second": 1 / 3600,
    "millisecond": 1 / 3_600_000,
    "microsecond": 1 / 3_600_000_000,
    "nanosecond": 1 / 3_600_000_000_000,
}


def table_retention_hours(configuration: Mapping[str, str | None]) -> float | None:
    """How long the table keeps deleted files, in hours (Delta's 7 days when it does not say);
    None for a value this cannot read (delta-rs then enforces it itself)."""
    value = configuration.get(RETENTION_PROPERTY)
    if not value:
        return float(DEFAULT_RETENTION_HOURS)
    match = _INTERVAL.fullmatch(value)
    if match is None or match.group(2).lower() not in _UNIT_HOURS:
        return None
    return int(match.group(1)) * _UNIT_HOURS[match.group(2).lower()]


def table_uri(lake: str, source: str) -> str:
    return f"{lake.rstrip('/')}/{source}"


def table_options(lake: str, storage: Mapping[str, str]) -> dict[str, str] | None:
    """delta-rs's storage options for the lake's tables (none on local disk)."""
    return delta_options(storage) if "://" in lake else None


def open_table(uri: str, options: dict[str, str] | None) -> Any:
    """The Delta table at `uri`, or None when there is none. Raises LakeError."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return None
    except Exception as exc:
        raise LakeError(f"cannot open the Delta table {uri}: {store_reason(exc)}") from None


def vacuum_retention(table: Any, uri: str, hours: int | None, force: bool) -> int:
    """The retention to vacuum with: `hours`, or the table's own. Raises RetentionRefused for
    a shorter one than the table's, unless forced."""
    kept = table_retention_hours(table.metadata().configuration)
    if hours is None:
        return math.ceil(kept) if kept is not None else DEFAULT_RETENTION_HOURS
    if kept is not None and hours < kept and not force:
        raise RetentionRefused(
            f"{uri}: a vacuum retention of {hours} h is shorter than the {kept:g} h the table "
            f"keeps deleted files for ({RETENTION_PROPERTY}): it would delete files that "
            "readers still reading an older version need, and break time travel to versions "
            "older than that. Pass --force to vacuum anyway"
        )
    return hours


@dataclass(frozen=True)
class TableCompaction:
    version_before: int
    version_after: int
    files_removed: int  # small files the optimize commit replaced
    files_added: int  # the larger ones it wrote
    vacuumed: int  # files deleted by the vacuum
    retention_hours: int

    def describe(self) -> str:
        versions = f"version {self.version_before}"
        if self.version_after != self.version_before:
            versions += f" → {self.version_after}"
        optimized = (
            f"{self.files_removed} files compacted into {self.files_added}"
            if self.files_removed
            else "no small files to compact"
        )
        return (
            f"{versions}: {optimized}; vacuum deleted {self.vacuumed} files unused for "
            f"{self.retention_hours} h"
        )


def compact_table(
    table: Any, uri: str, *, retention_hours: int, force: bool, target_size: int | None
) -> TableCompaction:
    """Optimize, then vacuum a table (the caller holds its lock). Raises LakeError."""
    before = table.version()
    try:
        metrics = table.optimize.compact(target_size=target_size)
        deleted = table.vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=not force
        )
    except Exception as exc:
        raise LakeError(f"cannot compact the Delta table {uri}: {store_reason(exc)}") from None
    return TableCompaction(
        before,
        table.version(),
        int(metrics.get("numFilesRemoved", 0)),
        int(metrics.get("numFilesAdded", 0)),
        len(deleted),
        retention_hours,
    )


# -- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeStatus:
    """A source's lake as `status` shows it."""

    format: str
    destination: str
    version: str = ""  # a Delta table's version; "?" when it cannot be read
    problem: str | None = None  # why it is "?"


def lake_status(
    lake: str, storage: Mapping[str, str], formats: Mapping[str, str]
) -> dict[str, LakeStatus]:
    """Each source's format and destination, and its Delta table's version, read (never
    written) with a short retry bound; a table that cannot be read shows "?" and why."""
    found = {
        source: LakeStatus(format, table_uri(lake, source)) for source, format in formats.items()
    }
    tables = [source for source, format in formats.items() if format == "delta"]
    if not tables:
        return found
    missing = missing_extra("delta", lake)
    if missing is not None:
        for source in tables:
            found[source] = LakeStatus("delta", found[source].destination, "?", missing)
        return found
    options = table_options(lake, storage)
    if options is not None:
        options["retry_timeout"] = STATUS_RETRY_TIMEOUT
    with ThreadPoolExecutor(min(8, len(tables))) as readers:
        versions = readers.map(lambda source: _version(table_uri(lake, source), options), tables)
        for source, (version, problem) in zip(tables, versions, strict=True):
            found[source] = LakeStatus("delta", found[source].destination, version, problem)
    return found


def _version(uri: str, options: dict[str, str] | None) -> tuple[str, str | None]:
    try:
        table = open_table(uri, options)
    except LakeError as exc:
        return "?", str(exc)
    return ("no table", None) if table is None else (str(table.version()), None)
