"""The `sources.yaml` schema: one pydantic model per section, every knob declared once.

The models validate what the loader hands them (YAML already read, `${VAR}` already
interpolated); their docstrings and field descriptions are also what an editor shows from the
JSON Schema (`tui-connector schema`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    field_validator,
    model_validator,
)

from tui_connector.config.auth_schema import Auth
from tui_connector.config.fields import (
    FilePath,
    HttpUrl,
    JMESPath,
    ListenAddress,
    PositiveFloat,
    PositiveInt,
    ResponseSize,
    ScalarValue,
    Strict,
    url_placeholders,
)
from tui_connector.config.lake import LakeFormat, LakeLocation, WriteDisposition
from tui_connector.config.partition_schema import Incremental, Partitions

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


ValueRefOrPath = Annotated[
    ValueRef,
    BeforeValidator(
        _value_ref_from_string,
        json_schema_input_type=Annotated[str, Field(description="a JMESPath into the body")]
        | ValueRef,
    ),
]


class StopRules(Strict):
    """When a stream is finished. A missing next cursor or next link always ends it."""

    empty_page: bool = Field(default=True, description="an empty page ends the stream")
    short_page: bool = Field(default=False, description="a page shorter than the others ends it")
    total_records: ValueRefOrPath | None = None
    total_pages: ValueRefOrPath | None = None
    has_more: ValueRefOrPath | None = Field(
        default=None,
        description='a value that says whether another page follows: null, false, 0, "", '
        "an empty list (or missing, after the first page) ends the stream; missing from the "
        "first page, it is an error",
    )
    max_pages: PositiveInt | None = None


# ---------------------------------------------------------------------------------------------
# Pagination styles

_PARALLEL = "once the first page reveals the total, fetch the rest concurrently"


class NoPagination(Strict):
    """One request per stream."""

    type: Literal["none"] = "none"


class PageNumberPagination(Strict):
    """Pages numbered from `start`: ?page=1, ?page=2, ..."""

    type: Literal["page_number"]
    page_param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: PositiveInt | None = None
    parallel: bool = Field(default=True, description=_PARALLEL)
    stop: StopRules = StopRules.model_construct()

    @model_validator(mode="after")
    def _size_pair(self) -> PageNumberPagination:
        if self.size is not None and self.size_param is None:
            raise ValueError("'size' needs 'size_param', the query parameter that carries it")
        return self


class OffsetPagination(Strict):
    """?offset=0&limit=100, ?offset=100&limit=100, ..."""

    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: PositiveInt = 100
    start: Annotated[int, Field(ge=0)] = 0
    parallel: bool = Field(default=True, description=_PARALLEL)
    stop: StopRules = StopRules.model_construct()


class CursorPagination(Strict):
    """The next cursor is read from the response and sent as a query param or a body field."""

    type: Literal["cursor"]
    cursor: ValueRefOrPath
    cursor_param: str | None = None
    cursor_body_field: str | None = Field(
        default=None, description="dotted path inside the JSON body, e.g. variables.after"
    )
    stop: StopRules = StopRules.model_construct()

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
    next: ValueRefOrPath = ValueRef.model_construct(header="Link")
    allow_other_hosts: bool = False
    stop: StopRules = StopRules.model_construct()


Pagination = Annotated[
    NoPagination | PageNumberPagination | OffsetPagination | CursorPagination | NextUrlPagination,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------------------------------------
# Concurrency, auth, HTTP behaviour


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

    @property
    def initial(self) -> int:
        """Where the limit starts: `start`, else 4, within [min, max]."""
        start = self.start if self.start is not None else 4
        return max(self.min, min(self.max, start))


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


FixedConcurrency = Annotated[int, Field(ge=1, le=1000)]
Concurrency = Annotated[
    Annotated[FixedConcurrency, Tag("fixed")] | Annotated[AutoConcurrency, Tag("auto")],
    Discriminator(_concurrency_kind),
    BeforeValidator(
        _concurrency_shorthand,
        json_schema_input_type=FixedConcurrency | Literal["auto"] | AutoConcurrency,
    ),
]


class Timeouts(Strict):
    """Seconds."""

    connect: PositiveFloat = Field(default=10.0, description="to open a connection")
    read: PositiveFloat = Field(default=30.0, description="between bytes")
    total: PositiveFloat = Field(
        default=120.0, description="for a whole request, however it trickles"
    )


class RetryPolicy(Strict):
    """Which failures are retried, how often and how long apart."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="attempts per request, the first included"
    )
    backoff_base: Annotated[float, Field(ge=0)] = Field(
        default=0.5, description="exponential backoff with full jitter: random(0, base * 2^n)"
    )
    backoff_max: PositiveFloat = Field(default=30.0, description="the backoff's cap, seconds")
    max_wait: PositiveFloat = Field(
        default=300.0,
        description="a Retry-After longer than this fails the source instead of sleeping",
    )
    statuses: tuple[Annotated[int, Field(ge=400, le=599)], ...] = Field(
        default=(429, 500, 502, 503, 504),
        description="retried; others (401, 404, ...) fail the source at once",
    )
    retry_after: Literal["request", "source"] = Field(
        default="request",
        description="what a 429's or 503's Retry-After holds back: the request that got it, "
        "or every request of the source",
    )


# ---------------------------------------------------------------------------------------------
# Sources


class SourceKnobs(Strict):
    """How requests are made: set under `defaults:` for every source; a source's own setting
    wins. Each knob is declared here, once, with its default."""

    concurrency: Concurrency = Field(
        default=4,
        description="requests in flight: a whole number, auto, or a range {min, max} "
        "(adaptive within it)",
    )
    rate_limit: PositiveFloat | None = Field(
        default=None, description="requests per second; none by default"
    )
    timeout: Timeouts = Timeouts.model_construct()
    retry: RetryPolicy = RetryPolicy.model_construct()
    transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="aiohttp (fast, HTTP/1.1) or httpx (its own pool; needed for HTTP/2)",
    )
    headers: dict[str, ScalarValue] = Field(
        default={},
        description="sent with every request; a source's are added to those of `defaults:`",
    )
    max_response_size: ResponseSize = Field(
        default=64 * 1024 * 1024,
        description="a larger body fails the source (bytes, or kB, MB, MiB, GiB, ...)",
    )


class SourceDefaults(SourceKnobs):
    """The knobs of every source that does not set them itself."""


_KNOBS = frozenset(SourceKnobs.model_fields)
# A source's knob given as null takes the default's value too (headers: null never was valid).
_NULL_INHERITS = _KNOBS - {"headers"}


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Method = Annotated[
    Literal["GET", "POST"],
    BeforeValidator(_upper, json_schema_input_type=Literal["GET", "POST", "get", "post"]),
]


def _key_fields(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


PrimaryKey = Annotated[
    tuple[Annotated[str, Field(min_length=1)], ...],
    BeforeValidator(_key_fields),
    Field(min_length=1),
]


ResponseFormat = Literal["auto", "json", "jsonl"]
"""How a response body is read: JSON, JSON Lines, or by its content type."""


class _Request(Strict):
    """What a source fetches and how it reads the answers: its own, never inherited."""

    url: HttpUrl = Field(description="may hold {name} placeholders filled by partitions")
    method: Method = "GET"
    params: dict[str, ScalarValue] = Field(default={}, description="query parameters")
    body: dict[str, JsonValue] | None = Field(default=None, description="the JSON body of a POST")
    records: JMESPath | None = Field(
        default=None, description="JMESPath to the list of records; omit for a bare JSON array"
    )
    errors: JMESPath | None = Field(
        default=None,
        description="JMESPath to an error value returned with HTTP 200 (e.g. GraphQL 'errors')",
    )
    response_format: ResponseFormat = Field(
        default="auto",
        description="how response bodies are read: json; jsonl (JSON Lines, NDJSON: a JSON "
        "value a line, blank lines skipped; the lines make the array `records` reads); auto: "
        "jsonl for a JSON Lines content type (application/x-ndjson, application/jsonl, ...), "
        "json otherwise",
    )
    pagination: Pagination = NoPagination.model_construct()
    partitions: Partitions | None = None
    incremental: Incremental | None = None
    auth: Auth | None = None
    format: LakeFormat | None = Field(
        default=None,
        description="how this source's records land: jsonl, parquet or delta (a Delta table "
        "per source); omitted: the top level's `format`",
    )
    write: WriteDisposition = Field(
        default="append",
        description="append (runs add records), replace (each complete run replaces the "
        "source's records, swapped in at the end) or merge (upsert by primary_key; delta only)",
    )
    primary_key: PrimaryKey | None = Field(
        default=None,
        description="the field, or fields, that identify a record (for write: merge)",
    )


def _knobs_inherit_in_schema(schema: dict[str, Any]) -> None:
    # In a source, a knob left out takes the value of `defaults:`, not the knob's own default.
    for name in _KNOBS:
        schema["properties"][name].pop("default", None)


class Source(SourceKnobs, _Request):
    """One API endpoint to pull. The knobs it leaves unset (or null) are those of
    `defaults:`."""

    # The request's fields come first (SourceKnobs is first in the MRO, so last in pydantic's
    # field order): errors are listed in field order.
    model_config = ConfigDict(json_schema_extra=_knobs_inherit_in_schema)

    @model_validator(mode="before")
    @classmethod
    def _null_knob_inherits(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(data.get(name, 0) is None for name in _NULL_INHERITS):
            return {k: v for k, v in data.items() if not (k in _NULL_INHERITS and v is None)}
        return data

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
        if self.write == "merge" and not self.primary_key:
            raise ValueError("write: merge needs primary_key: the field(s) that identify a record")
        if self.primary_key and self.write != "merge":
            raise ValueError(
                "primary_key is used by write: merge only; set write: merge, or drop the key"
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


SourceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class Config(Strict):
    """A `sources.yaml`: what tui-connector pulls, and how."""

    version: Literal[1] = 1
    out: LakeLocation = Field(
        default="lake",
        description="the lake: a directory (relative to this file) or a URL: s3://bucket/prefix, "
        "gs://bucket/prefix, az://container/prefix, file:///path",
    )
    format: LakeFormat = Field(
        default="jsonl",
        description="how records land: jsonl (<out>/<source>/<partition>/page-<position>.jsonl), "
        "parquet (the same, .parquet) or delta (a Delta table at <out>/<source>)",
    )
    storage: dict[str, str] = Field(
        default={},
        description="object-store options, named as obstore and delta-rs name them (e.g. "
        "aws_endpoint_url, aws_region, aws_access_key_id); they override the standard "
        "environment variables (AWS_*, GOOGLE_*, AZURE_*)",
    )
    state: FilePath = Field(
        default=".tui-connector/state.db",
        description="the checkpoint database; one run at a time may use it",
    )
    fsync: bool = Field(
        default=False,
        description="fsync every page file (and SQLite synchronous=FULL): survives power loss",
    )
    # A crash fetches about this much again (more when the disk falls behind).
    commit_interval: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = Field(
        default=1.0,
        description="seconds: a stream's pages fetched within it go to one lake file and one "
        "checkpoint (0: a file per page)",
    )
    max_concurrency: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=256, description="requests in flight across all sources at most"
    )
    metrics: ListenAddress | None = Field(
        default=None,
        description="HOST:PORT: serve Prometheus metrics at http://HOST:PORT/metrics while a "
        "run lasts (`run --metrics` overrides it)",
    )
    defaults: SourceDefaults = SourceDefaults.model_construct()
    sources: dict[SourceName, Source] = Field(
        description="the sources to pull, by name", json_schema_extra={"minProperties": 1}
    )

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
