"""The schema of how a source splits into streams (`partitions:`), and of what it fetches
incrementally (`incremental:`)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from tui_connector.config.fields import (
    FilePath,
    Instant,
    InstantOrNow,
    JMESPath,
    Scalar,
    ScalarValue,
    Step,
    Strict,
    scalar_text,
)

# Date windows beyond this many are surely a mistake (a step of minutes over years).
MAX_DATE_WINDOWS = 100_000


class Placement(Strict):
    """Where a partition's value goes in each request: exactly one of these."""

    param: str | None = Field(default=None, description="a query parameter")
    body_field: str | None = Field(default=None, description="dotted path in the JSON body")
    path: str | None = Field(default=None, description="the {name} placeholder in the url")

    @model_validator(mode="after")
    def _exactly_one_place(self) -> Placement:
        given = [name for name in ("param", "body_field", "path") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'param' (query parameter), 'body_field' (dotted path in "
                "the JSON body) or 'path' (the {name} placeholder in the url) to say where "
                "each partition's value goes"
            )
        return self


class DatePartitions(Strict):
    """Consecutive time windows [start, start + step), ..., up to `end` (default: now)."""

    type: Literal["dates"]
    start: Instant
    end: InstantOrNow = Field(default=None, description="default: the time the run starts")
    step: Step
    format: Literal["iso", "date", "epoch", "epoch_ms"] = Field(
        default="iso", description="how a window's bounds are written in the request"
    )
    start_param: str | None = None
    start_body_field: str | None = None
    end_param: str | None = None
    end_body_field: str | None = None

    @model_validator(mode="after")
    def _coherent(self) -> DatePartitions:
        if (self.start_param is None) == (self.start_body_field is None):
            raise ValueError(
                "give exactly one of 'start_param' or 'start_body_field': where each window's "
                "start goes"
            )
        if self.end_param is not None and self.end_body_field is not None:
            raise ValueError("give at most one of 'end_param' or 'end_body_field'")
        latest = self.end or max(self.start, datetime.now(UTC))
        if self.step > datetime.max.replace(tzinfo=UTC) - latest:
            raise ValueError(
                "the last window would end after the year 9999; use a shorter 'step' or an "
                "earlier 'end'"
            )
        if self.end is not None:
            if self.end <= self.start:
                raise ValueError(f"'end' ({self.end:%Y-%m-%d %H:%M}) is not after 'start'")
            windows = (self.end - self.start) / self.step
            if windows > MAX_DATE_WINDOWS:
                raise ValueError(
                    f"{windows:,.0f} windows of {self.step} between start and end; at most "
                    f"{MAX_DATE_WINDOWS:,}: use a longer step"
                )
        return self


class ValuePartitions(Placement):
    """One stream per value: a literal list, or a file with one value per line (or a JSON list)."""

    type: Literal["values"]
    values: tuple[ScalarValue, ...] | None = None
    values_file: FilePath | None = Field(default=None, description="relative to this config file")

    @model_validator(mode="after")
    def _one_source_of_values(self) -> ValuePartitions:
        if (self.values is None) == (self.values_file is None):
            raise ValueError("give exactly one of 'values' (a list) or 'values_file' (a path)")
        if self.values is not None:
            check_values(self.values)
        return self


def check_values(values: tuple[Scalar, ...]) -> None:
    """Values that make one stream each: at least one, none twice."""
    if not values:
        raise ValueError("the list of values is empty: there would be nothing to fetch")
    seen: set[str] = set()
    for value in values:
        text = scalar_text(value)
        if text in seen:
            raise ValueError(f"the value {text!r} is listed twice")
        seen.add(text)


class ParentPartitions(Placement):
    """One stream per record of another source (e.g. every repository, then its issues)."""

    type: Literal["parent"]
    source: str = Field(description="the parent source, defined in this file")
    value: JMESPath = Field(description="JMESPath into each parent record, e.g. id")
    copy_fields: dict[str, JMESPath] | tuple[str, ...] = Field(
        default=(),
        description="parent fields copied into each child record: a list of names, or "
        "{child_field: JMESPath into the parent record}",
    )

    @property
    def copied(self) -> dict[str, str]:
        if isinstance(self.copy_fields, dict):
            return dict(self.copy_fields)
        return {name: _quoted_path(name) for name in self.copy_fields}


def _quoted_path(name: str) -> str:
    # A field name with dashes or dots is not a bare JMESPath identifier.
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name)


Partitions = Annotated[
    DatePartitions | ValuePartitions | ParentPartitions, Field(discriminator="type")
]
AnyPartitions = DatePartitions | ValuePartitions | ParentPartitions


class Incremental(Strict):
    """Fetch only what is newer than the last successful run's high-water mark."""

    cursor_field: JMESPath = Field(description="JMESPath into each record, e.g. updated_at")
    initial: ScalarValue | None = Field(default=None, description="sent on the first run")
    param: str | None = None
    body_field: str | None = None
    primary_key: JMESPath | None = Field(
        default=None,
        description="identifies a record; records at the boundary are recognised by it "
        "(default: the whole record's hash)",
    )

    @model_validator(mode="after")
    def _one_place(self) -> Incremental:
        if (self.param is None) == (self.body_field is None):
            raise ValueError(
                "give exactly one of 'param' or 'body_field': where the high-water mark goes"
            )
        return self
