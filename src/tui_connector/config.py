"""The `sources.yaml` schema: pydantic models, `${ENV}` interpolation, and errors that name
the file, line, column and field.

Nothing here knows about HTTP, SQLite or Textual; the rest of the program receives a
validated `Config` or a `ConfigError` whose message is ready to print.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jmespath
import yaml
from jmespath.exceptions import JMESPathError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
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


JMESPath = Annotated[str, AfterValidator(_check_jmespath)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Scalar = str | int | float | bool


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
PAGINATION_TYPES = ("none", "page_number", "offset", "cursor", "next_url")


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
AUTH_TYPES = ("bearer", "basic", "api_key")


class Timeouts(Strict):
    connect: PositiveFloat = 10.0
    read: PositiveFloat = 30.0
    total: PositiveFloat = 120.0


class RetryPolicy(Strict):
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    backoff_base: Annotated[float, Field(ge=0)] = 0.5
    backoff_max: PositiveFloat = 30.0
    max_wait: PositiveFloat = Field(
        default=300.0,
        description="a Retry-After longer than this fails the source instead of sleeping",
    )
    statuses: tuple[Annotated[int, Field(ge=400, le=599)], ...] = (429, 500, 502, 503, 504)


class SourceDefaults(Strict):
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 4
    rate_limit: PositiveFloat | None = None
    timeout: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    headers: dict[str, Scalar] = {}


class Source(Strict):
    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Scalar] = {}
    headers: dict[str, Scalar] = {}
    body: dict[str, Any] | None = None
    records: JMESPath | None = Field(
        default=None, description="JMESPath to the list of records; omit for a bare JSON array"
    )
    errors: JMESPath | None = Field(
        default=None,
        description="JMESPath to an error value returned with HTTP 200 (e.g. GraphQL 'errors')",
    )
    pagination: Pagination = NoPagination()
    auth: Auth | None = None
    # The knobs below default to the top-level `defaults:` block (filled in by the loader).
    concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    rate_limit: PositiveFloat | None = None
    timeout: Timeouts | None = None
    retry: RetryPolicy | None = None
    transport: Literal["aiohttp", "httpx"] | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

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
        return self


class Config(Strict):
    version: Literal[1] = 1
    out: str = "lake"
    state: str = ".tui-connector/state.db"
    fsync: bool = False
    max_concurrency: Annotated[int, Field(ge=1, le=10000)] = 256
    defaults: SourceDefaults = SourceDefaults()
    sources: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], Source]

    @field_validator("sources")
    @classmethod
    def _not_empty(cls, value: dict[str, Source]) -> dict[str, Source]:
        if not value:
            raise ValueError("no sources defined; add at least one under 'sources:'")
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
    rate_limit: float | None
    timeout: Timeouts
    retry: RetryPolicy
    transport: str


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    model: Config
    sources: dict[str, SourceSpec]
    out: Path
    state: Path
    redactor: Redactor


def _spec(name: str, source: Source, defaults: SourceDefaults) -> SourceSpec:
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
        concurrency=source.concurrency or defaults.concurrency,
        rate_limit=source.rate_limit if source.rate_limit is not None else defaults.rate_limit,
        timeout=source.timeout or defaults.timeout,
        retry=source.retry or defaults.retry,
        transport=source.transport or defaults.transport,
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
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# ---------------------------------------------------------------------------------------------
# `${VAR}` and `${VAR:-default}`

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


def _interpolate(value: str, env: Mapping[str, str], secrets: set[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default, malformed = match.group(1), match.group(2), match.group(3)
        if name is None:
            raise ValueError(
                f"malformed variable reference '${{{malformed}'; "
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


def _resolve_env(
    data: Any, loc: Loc, env: Mapping[str, str], secrets: set[str], errors: list[tuple[Loc, str]]
) -> Any:
    if isinstance(data, str):
        if "$" not in data:
            return data
        try:
            return _interpolate(data, env, secrets)
        except ValueError as exc:
            errors.append((loc, str(exc)))
            return data
    if isinstance(data, dict):
        return {k: _resolve_env(v, (*loc, k), env, secrets, errors) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve_env(v, (*loc, i), env, secrets, errors) for i, v in enumerate(data)]
    return data


# ---------------------------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
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

# A document of aliases can expand exponentially ("billion laughs"); real configs use few.
_MAX_ALIASES = 100


def _count_aliases(text: str) -> int:
    count = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            count += 1
    return count


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
        message += f" (got {error.get('input')!r})"
    return message


def _loc_for(error: dict[str, Any]) -> Loc:
    """The error's path in the user's document: pydantic inserts the union member's tag
    ("page_number") after a discriminated field, and validator names; drop those."""
    raw = error["loc"]
    loc: list[str | int] = []
    for index, part in enumerate(raw):
        after_union = index > 0 and raw[index - 1] in ("pagination", "auth")
        if after_union and part in (*PAGINATION_TYPES, *AUTH_TYPES):
            continue
        if isinstance(part, str) and ("[" in part or "function-" in part):
            continue
        loc.append(part)
    return tuple(loc)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, interpolate and validate a config file. Raises ConfigError, never anything else."""
    env = os.environ if env is None else env
    file = Path(path)
    shown = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{shown}: file not found; pass the path of your sources.yaml"]
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"{shown}: is a directory; pass the path of your sources.yaml"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{shown}: cannot be read: {exc.strerror}"]) from None

    try:
        if _count_aliases(text) > _MAX_ALIASES:
            raise ConfigError(
                [
                    f"{shown}:1:1: (top level): more than {_MAX_ALIASES} YAML aliases; "
                    "write the values out instead of nesting anchors"
                ]
            )
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{where}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{shown}: YAML syntax error: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{shown}: the YAML nests too deeply"]) from None

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

    secrets: set[str] = set()
    env_errors: list[tuple[Loc, str]] = []
    data = _resolve_env(data, (), env, secrets, env_errors)
    messages = [_format(shown, locations.find(loc), loc, msg) for loc, msg in env_errors]
    if messages:
        raise ConfigError(messages)

    try:
        model = Config.model_validate(data)
    except ValidationError as exc:
        messages = []
        for details in exc.errors():
            error = dict(details)
            loc = _loc_for(error)
            place = locations.find(loc, key=error["type"] == "extra_forbidden")
            messages.append(_format(shown, place, loc, _explain(error)))
        raise ConfigError(sorted(set(messages), key=messages.index)) from None

    base = file.resolve().parent
    sources = {name: _spec(name, source, model.defaults) for name, source in model.sources.items()}
    redactor = Redactor(secrets | set(_secret_values(sources)))
    return LoadedConfig(
        path=file,
        model=model,
        sources=sources,
        out=(base / model.out) if not Path(model.out).is_absolute() else Path(model.out),
        state=(base / model.state) if not Path(model.state).is_absolute() else Path(model.state),
        redactor=redactor,
    )


def _format(shown: str, mark: _Mark, loc: Loc, message: str) -> str:
    return f"{shown}:{mark.line}:{mark.column}: {_field_name(loc)}: {message}"


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
