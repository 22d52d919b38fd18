"""The `sources.yaml` schema: pydantic models, `${ENV}` interpolation, and errors that name
the file, line, column and field.

Nothing here knows about HTTP, SQLite or Textual; the rest of the program receives a
validated `Config` or a `ConfigError` whose message is ready to print.
"""

from __future__ import annotations

import base64
import json
import os
import re
import reprlib
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

import jmespath
import yaml
from jmespath.exceptions import JMESPathError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tui_connector.redact import Redactor, looks_secret

# ---------------------------------------------------------------------------------------------
# Field types shared by the models


def _check_jmespath(expression: str) -> str:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(
            f"not a valid JMESPath expression ({exc}); see https://jmespath.org"
        ) from exc
    return expression


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{url!r} is not an absolute http(s) URL; write it like https://api.example.com/v1/items"
        )
    return url


def _check_scalar(value: Any) -> Any:
    # One message for a value that is none of the four (a union would give one per member).
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, date):
        raise ValueError(_read_as_date(value))
    raise ValueError(f"expected text, a number or true/false, got {_preview(value)}")


def _read_as_date(value: date) -> str:
    return f"YAML reads {value} as a date, not text; quote it to send it as text: '{value}'"


def _check_path(path: str) -> str:
    if "\x00" in path:
        raise ValueError(f"{path!r} contains a NUL character, which no file path can")
    return path


JMESPath = Annotated[str, AfterValidator(_check_jmespath)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
FilePath = Annotated[str, AfterValidator(_check_path)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Scalar = str | int | float | bool
ScalarValue = Annotated[Scalar, BeforeValidator(_check_scalar)]


def _preview(value: Any) -> str:
    """A value as a message shows it: its repr, shortened if long."""
    return reprlib.repr(value)


class Strict(BaseModel):
    """Every model rejects unknown keys: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Where a value is read from in a response


class ValueRef(Strict):
    """A value read from the response: a JMESPath into the JSON body, or a header."""

    path: JMESPath | None = None
    header: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueRef:
        if (self.path is None) == (self.header is None):
            raise ValueError("give exactly one of 'path' (JMESPath into the body) or 'header'")
        return self


def _value_ref_from_string(value: Any) -> Any:
    # A bare string is the common case: a body path.
    return {"path": value} if isinstance(value, str) else value


class StopRules(Strict):
    """When a stream is finished. A missing next cursor or next link always ends it."""

    empty_page: bool = True
    short_page: bool = False
    total_records: ValueRef | None = None
    total_pages: ValueRef | None = None
    has_more: ValueRef | None = None
    max_pages: PositiveInt | None = None

    @field_validator("total_records", "total_pages", "has_more", mode="before")
    @classmethod
    def _string_is_path(cls, value: Any) -> Any:
        return _value_ref_from_string(value)


# ---------------------------------------------------------------------------------------------
# Pagination styles


class NoPagination(Strict):
    type: Literal["none"] = "none"


class PageNumberPagination(Strict):
    type: Literal["page_number"]
    page_param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: PositiveInt | None = None
    parallel: bool = Field(
        default=True,
        description="once the first page reveals the total, fetch the rest concurrently",
    )
    stop: StopRules = StopRules()

    @model_validator(mode="after")
    def _size_pair(self) -> PageNumberPagination:
        if self.size is not None and self.size_param is None:
            raise ValueError("'size' needs 'size_param', the query parameter that carries it")
        return self


class OffsetPagination(Strict):
    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: PositiveInt = 100
    start: Annotated[int, Field(ge=0)] = 0
    parallel: bool = Field(
        default=True,
        description="once the first page reveals the total, fetch the rest concurrently",
    )
    stop: StopRules = StopRules()


class CursorPagination(Strict):
    """The next cursor is read from the response and sent as a query param or a body field."""

    type: Literal["cursor"]
    cursor: ValueRef
    cursor_param: str | None = None
    cursor_body_field: str | None = Field(
        default=None, description="dotted path inside the JSON body, e.g. variables.after"
    )
    stop: StopRules = StopRules()

    @field_validator("cursor", mode="before")
    @classmethod
    def _string_is_path(cls, value: Any) -> Any:
        return _value_ref_from_string(value)

    @model_validator(mode="after")
    def _one_destination(self) -> CursorPagination:
        if (self.cursor_param is None) == (self.cursor_body_field is None):
            raise ValueError(
                "give exactly one of 'cursor_param' (query parameter) or "
                "'cursor_body_field' (dotted path in the JSON body, for POST)"
            )
        return self


class NextUrlPagination(Strict):
    """The next page's URL is read from the body, the RFC 8288 `Link` header, or a header."""

    type: Literal["next_url"]
    next: ValueRef = ValueRef(header="Link")
    allow_other_hosts: bool = False
    stop: StopRules = StopRules()

    @field_validator("next", mode="before")
    @classmethod
    def _string_is_path(cls, value: Any) -> Any:
        return _value_ref_from_string(value)


Pagination = Annotated[
    NoPagination | PageNumberPagination | OffsetPagination | CursorPagination | NextUrlPagination,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------------------------------------
# Partitions: one source split into streams, each with its own cursor and checkpoint

# Date windows beyond this many are surely a mistake (a step of minutes over years).
MAX_DATE_WINDOWS = 100_000
_STEP = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_STEP_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_step(text: str) -> timedelta:
    match = _STEP.match(text)
    if match is None or not match.group(1).strip("0"):
        raise ValueError(
            f"{text!r} is not a step; write a positive whole number and a unit: "
            "30m, 6h, 1d, 1w (s, m, h, d, w)"
        )
    try:
        return timedelta(**{_STEP_UNITS[match.group(2)]: int(match.group(1))})
    except (OverflowError, ValueError):  # past timedelta's range, or int()'s 4300 digits
        raise ValueError(
            f"{_preview(text)} is too long a step; at most 999999999d (2.7 million years)"
        ) from None


def parse_instant(value: Any) -> datetime:
    """A point in time from YAML: a date, a datetime, or an ISO 8601 string (UTC if no zone)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date or time; write 2024-01-01 or 2024-01-01T06:00:00Z"
            ) from None
    else:
        raise ValueError(f"expected a date or time like 2024-01-01, got {value!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise ValueError(f"{value!r} is out of range once converted to UTC") from None


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
    start: datetime
    end: datetime | None = Field(default=None, description="default: the time the run starts")
    step: timedelta
    format: Literal["iso", "date", "epoch", "epoch_ms"] = "iso"
    start_param: str | None = None
    start_body_field: str | None = None
    end_param: str | None = None
    end_body_field: str | None = None

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> datetime:
        return parse_instant(value)

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, value: Any) -> datetime | None:
        if value is None or (isinstance(value, str) and value.strip().lower() == "now"):
            return None
        return parse_instant(value)

    @field_validator("step", mode="before")
    @classmethod
    def _step(cls, value: Any) -> timedelta:
        if not isinstance(value, str):
            raise ValueError(f"write the step as text like 1d or 6h, not {value!r}")
        return parse_step(value)

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
            _check_values(self.values)
        return self


def _check_values(values: tuple[Scalar, ...]) -> None:
    if not values:
        raise ValueError("the list of values is empty: there would be nothing to fetch")
    seen: set[str] = set()
    for value in values:
        text = scalar_text(value)
        if text in seen:
            raise ValueError(f"the value {text!r} is listed twice")
        seen.add(text)


def scalar_text(value: Scalar) -> str:
    """A value as it goes into a query string or a name: JSON-style booleans (str(True) is
    "True", which APIs do not expect)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


class AutoConcurrency(Strict):
    """Adaptive concurrency between `min` and `max`, starting at `start`."""

    min: Annotated[int, Field(ge=1, le=1000)] = 1
    max: Annotated[int, Field(ge=1, le=1000)] = 64
    start: Annotated[int, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> AutoConcurrency:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


def _concurrency_kind(value: Any) -> str:
    return "auto" if isinstance(value, dict | AutoConcurrency) else "fixed"


def _concurrency_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return AutoConcurrency()
        raise ValueError(
            f"{value!r} is not a concurrency; write a whole number, 'auto', "
            "or a range {min: 2, max: 64} (adaptive within it)"
        )
    return value


Concurrency = Annotated[
    Annotated[Annotated[int, Field(ge=1, le=1000)], Tag("fixed")]
    | Annotated[AutoConcurrency, Tag("auto")],
    Discriminator(_concurrency_kind),
]


# ---------------------------------------------------------------------------------------------
# Auth, HTTP behaviour


class BearerAuth(Strict):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(Strict):
    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(Strict):
    type: Literal["api_key"]
    key: SecretStr
    header: str | None = None
    param: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.param is None):
            raise ValueError("give exactly one of 'header' or 'param' to say where the key goes")
        return self


Auth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="type")]


class Timeouts(Strict):
    connect: PositiveFloat = 10.0
    read: PositiveFloat = 30.0
    total: PositiveFloat = 120.0


# A byte count or a size such as "64MiB" or "500 kB": the most one response body may hold, so a
# broken or hostile server cannot exhaust memory.
ResponseSize = Annotated[ByteSize, Field(ge=1024)]


class RetryPolicy(Strict):
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    backoff_base: Annotated[float, Field(ge=0)] = 0.5
    backoff_max: PositiveFloat = 30.0
    max_wait: PositiveFloat = Field(
        default=300.0,
        description="a Retry-After longer than this fails the source instead of sleeping",
    )
    statuses: tuple[Annotated[int, Field(ge=400, le=599)], ...] = (429, 500, 502, 503, 504)
    retry_after: Literal["request", "source"] = Field(
        default="request",
        description="what a 429's or 503's Retry-After holds back: the request that got it, "
        "or every request of the source",
    )


class SourceDefaults(Strict):
    concurrency: Concurrency = 4
    rate_limit: PositiveFloat | None = None
    timeout: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    headers: dict[str, ScalarValue] = {}
    max_response_size: ResponseSize = ByteSize(64 * 1024 * 1024)

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        return _concurrency_shorthand(value)


class Source(Strict):
    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, ScalarValue] = {}
    headers: dict[str, ScalarValue] = {}
    body: dict[str, JsonValue] | None = None
    records: JMESPath | None = Field(
        default=None, description="JMESPath to the list of records; omit for a bare JSON array"
    )
    errors: JMESPath | None = Field(
        default=None,
        description="JMESPath to an error value returned with HTTP 200 (e.g. GraphQL 'errors')",
    )
    pagination: Pagination = NoPagination()
    partitions: Partitions | None = None
    incremental: Incremental | None = None
    auth: Auth | None = None
    # The knobs below default to the top-level `defaults:` block (filled in by the loader).
    concurrency: Concurrency | None = None
    rate_limit: PositiveFloat | None = None
    timeout: Timeouts | None = None
    retry: RetryPolicy | None = None
    transport: Literal["aiohttp", "httpx"] | None = None
    max_response_size: ResponseSize | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        return _concurrency_shorthand(value)

    @model_validator(mode="after")
    def _coherent(self) -> Source:
        if self.body is not None and self.method == "GET":
            raise ValueError(
                "'body' is sent only with 'method: POST'; set the method or drop the body"
            )
        pagination = self.pagination
        if (
            isinstance(pagination, CursorPagination)
            and pagination.cursor_body_field
            and self.method != "POST"
        ):
            raise ValueError(
                "pagination.cursor_body_field puts the cursor in the JSON body, "
                "which needs 'method: POST'"
            )
        body_fields = [
            f"{section}.{key}"
            for section, model in (
                ("partitions", self.partitions),
                ("incremental", self.incremental),
            )
            for key in ("body_field", "start_body_field", "end_body_field")
            if getattr(model, key, None)
        ]
        if body_fields and self.method != "POST":
            raise ValueError(
                f"{body_fields[0]} puts a value in the JSON body, which needs 'method: POST'"
            )
        placeholders = url_placeholders(self.url)
        path = getattr(self.partitions, "path", None)
        for name in placeholders:
            if name != path:
                raise ValueError(
                    f"the url has a placeholder {{{name}}} but no partitions put a value "
                    "there; add partitions with 'path: " + name + "', or remove it"
                )
        if path is not None and path not in placeholders:
            raise ValueError(
                f"partitions.path is {path!r} but the url has no {{{path}}} placeholder; "
                f"write the url like https://api.example.com/items/{{{path}}}"
            )
        return self


def url_placeholders(url: str) -> list[str]:
    """The `{name}` placeholders in a url template."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(url) if name is not None]
    except ValueError as exc:
        raise ValueError(f"the url has an unbalanced brace ({exc}); write {{name}}") from None


class Config(Strict):
    version: Literal[1] = 1
    out: FilePath = "lake"
    state: FilePath = ".tui-connector/state.db"
    fsync: bool = False
    # Seconds: a stream's pages fetched within it go to one lake file and one checkpoint (0: a
    # file per page). A crash fetches about this much again (more when the disk falls behind).
    commit_interval: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 1.0
    max_concurrency: Annotated[int, Field(ge=1, le=10000)] = 256
    defaults: SourceDefaults = SourceDefaults()
    sources: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], Source]

    @field_validator("sources")
    @classmethod
    def _not_empty(cls, value: dict[str, Source]) -> dict[str, Source]:
        if not value:
            raise ValueError("no sources defined; add at least one under 'sources:'")
        seen: dict[str, str] = {}
        for name in value:
            other = seen.setdefault(name.casefold(), name)
            if other != name:
                raise ValueError(
                    f"sources {other!r} and {name!r} differ only in case: where file names "
                    "ignore case (macOS, Windows) they would share one lake directory; rename one"
                )
        return value


# ---------------------------------------------------------------------------------------------
# What the engine gets: a source with defaults applied, and paths resolved


@dataclass(frozen=True)
class SourceSpec:
    name: str
    url: str
    method: str
    params: Mapping[str, Scalar]
    headers: Mapping[str, Scalar]
    body: Mapping[str, Any] | None
    records: str | None
    errors: str | None
    pagination: (
        NoPagination
        | PageNumberPagination
        | OffsetPagination
        | CursorPagination
        | NextUrlPagination
    )
    auth: BearerAuth | BasicAuth | ApiKeyAuth | None
    concurrency: int
    """The fixed limit, or the starting one of an adaptive limit."""
    rate_limit: float | None
    timeout: Timeouts
    retry: RetryPolicy
    transport: str
    max_response_size: int = 64 * 1024 * 1024
    partitions: AnyPartitions | None = None
    incremental: Incremental | None = None
    auto_concurrency: AutoConcurrency | None = None


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    model: Config
    sources: dict[str, SourceSpec]
    out: Path
    state: Path
    redactor: Redactor


def _spec(
    name: str,
    source: Source,
    defaults: SourceDefaults,
    partitions: AnyPartitions | None,
) -> SourceSpec:
    concurrency = source.concurrency if source.concurrency is not None else defaults.concurrency
    auto = concurrency if isinstance(concurrency, AutoConcurrency) else None
    if auto is not None:
        start = auto.start if auto.start is not None else max(auto.min, min(auto.max, 4))
        concurrency = max(auto.min, min(auto.max, start))
    assert isinstance(concurrency, int)
    return SourceSpec(
        name=name,
        url=source.url,
        method=source.method,
        params=dict(source.params),
        headers={**defaults.headers, **source.headers},
        body=source.body,
        records=source.records,
        errors=source.errors,
        pagination=source.pagination,
        auth=source.auth,
        concurrency=concurrency,
        rate_limit=source.rate_limit if source.rate_limit is not None else defaults.rate_limit,
        timeout=source.timeout or defaults.timeout,
        retry=source.retry or defaults.retry,
        transport=source.transport or defaults.transport,
        max_response_size=int(source.max_response_size or defaults.max_response_size),
        partitions=partitions,
        incremental=source.incremental,
        auto_concurrency=auto,
    )


# ---------------------------------------------------------------------------------------------
# Errors with a location


class ConfigError(Exception):
    """A problem in the config, already phrased for the user: `file:line:col: field: message`."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class _Mark:
    line: int
    column: int

    @classmethod
    def of(cls, mark: Any) -> _Mark:
        """From a PyYAML mark (counted from 0); 1:1 when PyYAML gives none."""
        return cls(1, 1) if mark is None else cls(mark.line + 1, mark.column + 1)


Loc = tuple[str | int, ...]


class _Locations:
    """Maps a path in the YAML document to the line and column where it was written."""

    def __init__(self) -> None:
        self.keys: dict[Loc, _Mark] = {}
        self.values: dict[Loc, _Mark] = {}

    def record(self, node: yaml.Node, loc: Loc = ()) -> None:
        self.values[loc] = _Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self.keys[(*loc, key)] = _Mark(
                    key_node.start_mark.line + 1, key_node.start_mark.column + 1
                )
                self.record(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.record(item, (*loc, index))

    def find(self, loc: Loc, *, key: bool = False) -> _Mark:
        """The closest recorded place for `loc`: the key itself, else its nearest parent."""
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            table = self.keys if key or end < len(loc) else self.values
            mark = table.get(prefix) or self.values.get(prefix)
            if mark is not None:
                return mark
        return _Mark(1, 1)


def _field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        name = _printable(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out or "(top level)"


# ---------------------------------------------------------------------------------------------
# `${VAR}` and `${VAR:-default}`

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


def _interpolate(value: str, env: Mapping[str, str], secrets: set[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default, malformed = match.group(1), match.group(2), match.group(3)
        if name is None:
            raise ValueError(
                f"malformed variable reference {_preview('${' + malformed)}; "
                "write ${NAME} or ${NAME:-default}"
            )
        if name in env:
            resolved = env[name]
        elif default is not None:
            resolved = default
        else:
            raise ValueError(
                f"environment variable {name} is not set; export it, or give a default "
                f"with ${{{name}:-value}}"
            )
        if looks_secret(name) and resolved:
            secrets.add(resolved)
        return resolved

    return _ENV_PATTERN.sub(substitute, value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(text: str) -> str:
    """Text that can be printed and sent: a lone surrogate (from a YAML escape like "\\ud800",
    or an environment variable's bytes that are not UTF-8) cannot be encoded."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise ValueError(
            f"{_preview(text)} contains {found.group()!r}, half of a UTF-16 surrogate pair, "
            "which is not a character; write the character itself, or an escape like "
            "\\U0001F600"
        )
    return text


def _resolve_env(
    data: Any, loc: Loc, env: Mapping[str, str], secrets: set[str], errors: list[tuple[Loc, str]]
) -> Any:
    """Interpolate every string value; check that every string, keys too, is text."""
    if isinstance(data, str):
        try:
            return _check_text(_interpolate(data, env, secrets) if "$" in data else data)
        except ValueError as exc:
            errors.append((loc, str(exc)))
            return data
    if isinstance(data, dict):
        for key in data:
            try:
                _check_text(key)
            except ValueError as exc:
                errors.append(((*loc, key), f"the key {exc}"))
        return {k: _resolve_env(v, (*loc, k), env, secrets, errors) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve_env(v, (*loc, i), env, secrets, errors) for i, v in enumerate(data)]
    return data


# ---------------------------------------------------------------------------------------------
# Loading


# What YAML made of a scalar, by the last part of its tag.
_YAML_KINDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "timestamp": "a date or time",
    "binary": "binary data",
}


def _yaml_kind(node: yaml.Node) -> str:
    return _YAML_KINDS.get(node.tag.rpartition(":")[2], node.tag)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one) and keys that
    are not text, and reports a scalar it cannot build at its place."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, AttributeError) as exc:
            # How PyYAML's scalar constructors fail on text that matches a tag's pattern but
            # is no such value (2024-02-30, an int past Python's 4300 digits), or on text given
            # an explicit tag it does not fit (`!!int abc`, `!!bool maybe`, `!!timestamp x`).
            if not isinstance(node, yaml.ScalarNode):
                raise
            reason = f" ({str(exc).split(';')[0]})" if isinstance(exc, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {_preview(node.value)} as {_yaml_kind(node)}{reason}",
                node.start_mark,
            ) from None


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be text, not {kind}", key_node.start_mark
            )
        if key_node.tag != "tag:yaml.org,2002:str":
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key_node.value!r} is read by YAML as {_yaml_kind(key_node)}, not as "
                f'text; quote it: "{key_node.value}"',
                key_node.start_mark,
            )
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

# A config nests a few levels deep and repeats little through aliases. Past these limits a
# file is broken or hostile: deep nesting overflows the stack of every recursive walk, and
# aliases of aliases expand exponentially ("billion laughs") in each of them.
_MAX_DEPTH = 64
_MAX_ALIASED_VALUES = 100_000


def _check_shape(text: str, shown: str) -> None:
    """Refuse deep nesting and alias bombs from the parser's events, before anything is built
    (composing 10,000 nested lists recurses; validating a bomb walks it whole)."""

    def refuse(event: yaml.Event, message: str) -> NoReturn:
        raise ConfigError([_at(shown, _Mark.of(event.start_mark), message)])

    sizes: dict[str, int] = {}  # anchor -> how many values its node expands to
    open_: list[tuple[str | None, int]] = []  # collections being read: anchor, `total` before
    total = aliased = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) == _MAX_DEPTH:
                refuse(event, f"the YAML nests deeper than {_MAX_DEPTH} levels")
            open_.append((event.anchor, total))
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = open_.pop()
            if anchor is not None:
                sizes[anchor] = total - before
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            name = str(event.anchor)
            if name not in sizes and any(anchor == name for anchor, _ in open_):
                refuse(event, f"the YAML alias *{name} is inside &{name}: it would contain itself")
            size = sizes.get(name, 1)  # an undefined alias: the composer reports it
            total += size
            aliased += size
            if aliased > _MAX_ALIASED_VALUES:
                refuse(
                    event,
                    f"the YAML expands to more than {_MAX_ALIASED_VALUES:,} values through "
                    "anchors and aliases (an alias bomb?); write the values out, or alias less",
                )


def _explain(error: dict[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}; check the spelling (see the sources.yaml reference)"
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing"
    if kind == "union_tag_invalid":
        tag = error.get("input", {}).get("type") if isinstance(error.get("input"), dict) else None
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown type {tag!r}; use one of {expected}"
    if kind == "union_tag_not_found":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"'type' is missing; use one of {expected}"
    if kind == "invalid-json-value":
        value = error.get("input")
        if isinstance(value, date):
            return _read_as_date(value)
        return (
            f"{_preview(value)} cannot be sent as JSON; write text, a number, true/false, "
            "null, a list or a mapping"
        )
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind in (
        "int_parsing",
        "int_type",
        "float_parsing",
        "float_type",
        "bool_parsing",
        "bool_type",
        "string_type",
        "dict_type",
        "list_type",
        "tuple_type",
        "model_type",
        "literal_error",
    ):
        message += f" (got {_preview(error.get('input'))})"
    return message


_DISCRIMINATED = ("pagination", "auth", "partitions")


def _loc_for(error: dict[str, Any], data: Any) -> Loc:
    """The error's path in the user's document. Pydantic's path holds parts of its own too (a
    union member's tag like "page_number" or "str", "[key]", "function-after[...]"): keep the
    parts the document has, and the name of a missing key."""
    raw = error["loc"]
    loc: list[str | int] = []
    node = data
    for index, part in enumerate(raw):
        if isinstance(node, dict):
            # The tag pydantic inserts after a discriminated union may also be a key of it:
            # `pagination: {type: cursor, cursor: ...}` has loc (..., "pagination", "cursor").
            is_tag = index > 0 and raw[index - 1] in _DISCRIMINATED and part == node.get("type")
            present = part in node and not is_tag
        else:
            present = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if present:
            node = node[part]
        elif not (error["type"] == "missing" and index == len(raw) - 1):
            continue
        loc.append(part)
    return tuple(loc)


@dataclass(frozen=True)
class _Document:
    file: Path
    shown: str
    data: dict[str, Any]
    locations: _Locations


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, interpolate and validate a config file. Raises ConfigError, never anything else."""
    env = os.environ if env is None else env
    document = _read_document(path)
    file, shown, locations = document.file, document.shown, document.locations

    secrets: set[str] = set()
    env_errors: list[tuple[Loc, str]] = []
    data = _resolve_env(document.data, (), env, secrets, env_errors)
    messages = [_format(shown, locations.find(loc), loc, msg) for loc, msg in env_errors]
    if messages:
        raise ConfigError(messages)

    try:
        model = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_messages(exc, data, shown, locations)) from None

    base = file.resolve().parent
    partitions, problems = _resolve_partitions(model, base)
    if problems:
        raise ConfigError([_format(shown, locations.find(loc), loc, msg) for loc, msg in problems])
    sources = {
        name: _spec(name, source, model.defaults, partitions[name])
        for name, source in model.sources.items()
    }
    redactor = Redactor(secrets | set(_secret_values(sources)))
    return LoadedConfig(
        path=file,
        model=model,
        sources=sources,
        out=_beside(file, model.out),
        state=_beside(file, model.state),
        redactor=redactor,
    )


class _StateOnly(Strict):
    model_config = ConfigDict(extra="ignore")
    state: FilePath = Config.model_fields["state"].default


def state_path_of(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Path:
    """Where a config keeps its state, read from its `state:` alone: `status` and `reset` work
    without the sources' secrets in the environment, and after the sources were edited."""
    env = os.environ if env is None else env
    document = _read_document(path)
    shown, locations = document.shown, document.locations
    errors: list[tuple[Loc, str]] = []
    data = {key: value for key, value in document.data.items() if key == "state"}
    data = _resolve_env(data, (), env, set(), errors)
    if errors:
        raise ConfigError([_format(shown, locations.find(loc), loc, msg) for loc, msg in errors])
    try:
        model = _StateOnly.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_messages(exc, data, shown, locations)) from None
    return _beside(document.file, model.state)


def _beside(config_file: Path, path: str) -> Path:
    """A path from the config: a relative one is relative to the config file."""
    return Path(path) if Path(path).is_absolute() else config_file.resolve().parent / path


def _validation_messages(
    exc: ValidationError, data: Any, shown: str, locations: _Locations
) -> list[str]:
    messages = []
    for details in exc.errors():
        error = dict(details)
        loc = _loc_for(error, data)
        place = locations.find(loc, key=error["type"] == "extra_forbidden")
        messages.append(_format(shown, place, loc, _explain(error)))
    return sorted(set(messages), key=messages.index)


def _read_document(path: str | os.PathLike[str]) -> _Document:
    """The config file parsed: a mapping, with where each value stands in the text."""
    file = Path(path)
    shown = str(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{shown}: file not found; pass the path of your sources.yaml"]
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"{shown}: is a directory; pass the path of your sources.yaml"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{shown}: cannot be read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        where = _Mark(raw.count(b"\n", 0, exc.start) + 1, column)
        problem = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}: {exc.reason})"
        raise ConfigError([_at(shown, where, f"{problem}; save the file as UTF-8")]) from None

    try:
        _check_shape(text, shown)
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([_at(shown, _Mark.of(mark), f"YAML syntax error: {problem}")]) from None
    except yaml.reader.ReaderError as exc:
        # Characters YAML refuses anywhere in the file (control characters but tab and newline).
        where = _Mark(
            text.count("\n", 0, exc.position) + 1,
            exc.position - text.rfind("\n", 0, exc.position),
        )
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        problem = f"the character {character!r} is not allowed"
        advice = "remove it, or write it as an escape in a double-quoted string"
        raise ConfigError([_at(shown, where, f"YAML syntax error: {problem}; {advice}")]) from None

    if node is None or data is None:
        raise ConfigError([f"{shown}:1:1: (top level): the file is empty; define 'sources:'"])
    locations = _Locations()
    locations.record(node)
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{shown}:1:1: (top level): expected a mapping with a 'sources:' key, "
                f"got {type(data).__name__}"
            ]
        )
    return _Document(file, shown, data, locations)


def _resolve_partitions(
    model: Config, base: Path
) -> tuple[dict[str, AnyPartitions | None], list[tuple[Loc, str]]]:
    """Read `values_file`s, and check what spans sources: parents exist and form no cycle."""
    resolved: dict[str, AnyPartitions | None] = {}
    problems: list[tuple[Loc, str]] = []
    for name, source in model.sources.items():
        partitions = source.partitions
        loc = _partitions_loc(name)
        if isinstance(partitions, ValuePartitions) and partitions.values_file is not None:
            try:
                values = _read_values_file(base / partitions.values_file)
                _check_values(values)
            except ValueError as exc:
                problems.append(((*loc, "values_file"), f"{partitions.values_file}: {exc}"))
            else:
                partitions = partitions.model_copy(update={"values": values})
        if isinstance(partitions, ParentPartitions):
            parent = partitions.source
            if parent == name:
                problems.append(((*loc, "source"), "a source cannot be its own parent"))
            elif parent not in model.sources:
                known = ", ".join(n for n in model.sources if n != name) or "none"
                problems.append(
                    ((*loc, "source"), f"no source named {parent!r}; the others are: {known}")
                )
        resolved[name] = partitions
    for name in model.sources:
        chain = [name]
        current = resolved.get(name)
        while isinstance(current, ParentPartitions) and current.source in model.sources:
            if current.source == name:
                cycle = " -> ".join([*chain, name])
                problems.append(
                    ((*_partitions_loc(name), "source"), f"parents form a cycle: {cycle}")
                )
                break
            if current.source in chain:
                break  # a cycle that does not pass through `name`: reported at its members
            chain.append(current.source)
            current = resolved.get(current.source)
    return resolved, problems


def _partitions_loc(name: str) -> Loc:
    return ("sources", name, "partitions")


def _read_values_file(path: Path) -> tuple[Scalar, ...]:
    """One value per line (blank lines and # comments skipped), or a JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError("file not found (the path is relative to the config file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, list) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in data
        ):
            raise ValueError("a .json values file must hold a list of strings or numbers")
        return tuple(data)
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _format(shown: str, mark: _Mark, loc: Loc, message: str) -> str:
    return _at(shown, mark, f"{_field_name(loc)}: {message}")


def _at(shown: str, mark: _Mark, message: str) -> str:
    return f"{shown}:{mark.line}:{mark.column}: {_printable(message, newlines=True)}"


def _printable(text: str, *, newlines: bool = False) -> str:
    """Control characters escaped: text from the file must not garble (or drive) the terminal."""
    return "".join(
        c if c.isprintable() or (newlines and c == "\n") else repr(c)[1:-1] for c in text
    )


def _secret_values(sources: Mapping[str, SourceSpec]) -> Iterator[str]:
    for spec in sources.values():
        auth = spec.auth
        if isinstance(auth, BearerAuth):
            yield auth.token.get_secret_value()
        elif isinstance(auth, BasicAuth):
            password = auth.password.get_secret_value()
            yield password
            # The Authorization header carries it base64-encoded; a body may echo that.
            yield base64.b64encode(f"{auth.username}:{password}".encode()).decode()
        elif isinstance(auth, ApiKeyAuth):
            yield auth.key.get_secret_value()
        url_password = urlsplit(spec.url).password
        if url_password:
            yield url_password
        for mapping in (spec.headers, spec.params):
            for name, value in mapping.items():
                if looks_secret(name) and isinstance(value, str) and value:
                    yield value
