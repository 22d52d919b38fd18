"""Partitions as pure logic: which streams a source is split into, and the request each one
makes. Nothing here does I/O.

A partition has a key (its lake directory and its checkpoint's name, safe as a file name),
the values it puts into the request, and the fields it copies into every record (a child
copies fields of its parent). Date windows and value lists are planned up front; the
partitions of a child source come from its parent's records as they land.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from tui_connector.config import (
    DatePartitions,
    ParentPartitions,
    Placement,
    Scalar,
    SourceSpec,
    ValuePartitions,
    scalar_text,
)
from tui_connector.extract import compile_path
from tui_connector.paginate import place

# The partition of a source that has no partitions.
WHOLE_SOURCE = "all"

_MAX_KEY = 120


@dataclass(frozen=True)
class Partition:
    key: str
    """Names the lake directory and the checkpoint: unique in its source, safe as a file name."""
    params: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)
    """Dotted body path -> value."""
    path: Mapping[str, str] = field(default_factory=dict)
    """URL placeholder -> value (already percent-encoded)."""
    copy: Mapping[str, Any] = field(default_factory=dict)
    """Fields added to every record of the partition (a child's parent fields)."""
    open_ended: bool = False
    """A date window cut short by the present: fetched again by the next run."""

    def identity(self) -> str:
        """What the partition asks the server for: a checkpoint made for another request
        (a date window whose end moved with the present) cannot be resumed."""
        shape = {"params": dict(self.params), "body": dict(self.body), "path": dict(self.path)}
        encoded = json.dumps(shape, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:12]


WHOLE = Partition(WHOLE_SOURCE)


def partition_key(value: Scalar) -> str:
    """A file-name-safe, injective name for a value: percent-encoding everything but letters,
    digits and `-_.~`, a leading dot encoded too (no `.` or `..`); long values are cut and
    suffixed with a hash.

    Injective even where file names ignore case (macOS, Windows): a value with capitals is
    suffixed with a hash of itself, so `abC` and `Abc` (base62 ids) get distinct directories.
    """
    text = scalar_text(value)
    key = quote(text, safe="")
    if key.startswith("."):
        key = "%2E" + key[1:]
    if not key:
        key = "%00empty"
    if len(key) > _MAX_KEY:
        key = f"{key[: _MAX_KEY - 17]}~{_digest(text, 16)}"
    elif any("A" <= c <= "Z" for c in text):
        key = f"{key[: _MAX_KEY - 9]}~{_digest(text, 8)}"
    return key


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _placed(placement: Placement, value: Any) -> dict[str, Any]:
    if placement.param is not None:
        return {"params": {placement.param: scalar_text(value)}}
    if placement.body_field is not None:
        return {"body": {placement.body_field: value}}
    assert placement.path is not None  # config: exactly one place
    return {"path": {placement.path: quote(scalar_text(value), safe="")}}


# -- planning ---------------------------------------------------------------------------------


def plan(spec: SourceSpec, now: datetime | None = None) -> list[Partition] | None:
    """The partitions of a source, in order; None when they come from a parent's records."""
    partitions = spec.partitions
    if partitions is None:
        return [WHOLE]
    if isinstance(partitions, DatePartitions):
        return list(date_windows(partitions, now or datetime.now(UTC)))
    if isinstance(partitions, ValuePartitions):
        assert partitions.values is not None  # the loader reads values_file into values
        return [value_partition(partitions, value) for value in partitions.values]
    return None


def value_partition(partitions: ValuePartitions, value: Scalar) -> Partition:
    return Partition(partition_key(value), **_placed(partitions, value))


def date_windows(partitions: DatePartitions, now: datetime) -> Iterator[Partition]:
    """[start, start + step), ... up to the end; a window reaching past `now` is cut there
    (the server cannot know the future) and marked open-ended."""
    end = partitions.end or now
    whole_days = partitions.step.total_seconds() % 86_400 == 0 and (
        partitions.start.time() == datetime.min.time()
    )
    start = partitions.start
    while start < end:
        stop = start + partitions.step
        open_ended = stop > now
        stop = min(stop, end, now) if open_ended else min(stop, end)
        if stop <= start:
            break
        values: dict[str, dict[str, Any]] = {"params": {}, "body": {}}
        for bound, param, body_field in (
            (start, partitions.start_param, partitions.start_body_field),
            (stop, partitions.end_param, partitions.end_body_field),
        ):
            shown = format_instant(bound, partitions.format)
            if param is not None:
                values["params"][param] = scalar_text(shown)
            elif body_field is not None:
                values["body"][body_field] = shown
        key = f"{start:%Y-%m-%d}" if whole_days else f"{start:%Y-%m-%dT%H-%M-%S}"
        yield Partition(key, open_ended=open_ended, **values)
        start += partitions.step


def format_instant(moment: datetime, style: str) -> str | int:
    moment = moment.astimezone(UTC)
    if style == "date":
        return f"{moment:%Y-%m-%d}"
    if style == "epoch":
        return int(moment.timestamp())
    if style == "epoch_ms":
        return int(moment.timestamp() * 1000)
    return moment.isoformat().replace("+00:00", "Z")


class ParentValues:
    """Turns a parent's records into its children's partitions (deduplicated by key)."""

    def __init__(self, partitions: ParentPartitions) -> None:
        self.partitions = partitions
        self._value = compile_path(partitions.value)
        self._copied = {name: compile_path(path) for name, path in partitions.copied.items()}
        self.skipped = 0  # parent records without a value

    def partition(self, record: Any) -> Partition | None:
        value = self._value.search(record)
        if value is None or value == "" or isinstance(value, dict | list):
            self.skipped += 1
            return None
        copied = {name: path.search(record) for name, path in self._copied.items()}
        return Partition(partition_key(value), copy=copied, **_placed(self.partitions, value))


# -- applying -----------------------------------------------------------------------------------


def stream_spec(spec: SourceSpec, partition: Partition, since: Any = None) -> SourceSpec:
    """The source's spec as one stream sends it: the partition's values (and an incremental
    run's high-water mark) placed into the url, params and body."""
    params = dict(spec.params)
    params.update(partition.params)
    body_values = dict(partition.body)
    incremental = spec.incremental
    if incremental is not None and since is not None:
        if incremental.param is not None:
            params[incremental.param] = scalar_text(since)
        else:
            assert incremental.body_field is not None  # config: exactly one place
            body_values[incremental.body_field] = since
    url = spec.url
    for name, value in partition.path.items():
        url = url.replace("{" + name + "}", value)
    body = spec.body
    if body_values:
        body = copy.deepcopy(dict(spec.body or {}))
        for dotted, value in body_values.items():
            body = place(body, dotted, value)
    if (url, params, body) == (spec.url, dict(spec.params), spec.body):
        return spec
    return spec.model_copy(update={"url": url, "params": params, "body": body})
