"""What the schema's models share: their base, field types and the parsing behind them
(JMESPath expressions, http(s) URLs and their `{name}` placeholders, scalar values, sizes,
steps like `6h`, dates).

Where the JSON Schema that pydantic would derive from a type refuses what the loader accepts
(text read as a date, sizes with units, steps), the type says what an editor should expect.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    GetPydanticSchema,
    WithJsonSchema,
)

from tui_connector.config.environment import REFERENCE_PATTERN
from tui_connector.config.errors import preview, read_as_date


class Strict(BaseModel):
    """Every model rejects unknown keys: a typo must not be silently ignored.

    Validators are built when first needed (`defer_build`): loading a config builds
    `Config`'s alone, and commands that load none (`--help`) build nothing. So a default that
    is a model is made with `model_construct()`, which needs no validator.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
        raise ValueError(read_as_date(value))
    raise ValueError(f"expected text, a number or true/false, got {preview(value)}")


def _check_path(path: str) -> str:
    if "\x00" in path:
        raise ValueError(f"{path!r} contains a NUL character, which no file path can")
    return path


def _or_reference(pattern: str) -> str:
    """A JSON Schema pattern that also lets the value come from the environment (`${VAR}`)."""
    return f"{pattern}|{REFERENCE_PATTERN}"


JMESPath = Annotated[str, AfterValidator(_check_jmespath)]
HttpUrl = Annotated[
    str,
    AfterValidator(_check_http_url),
    WithJsonSchema({"type": "string", "pattern": _or_reference(r"^[Hh][Tt][Tt][Pp][Ss]?://.")}),
]
FilePath = Annotated[str, AfterValidator(_check_path)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Scalar = str | int | float | bool
ScalarValue = Annotated[Scalar, BeforeValidator(_check_scalar)]

# A byte count or a size such as "64MiB" or "500 kB": the most one response body may hold, so a
# broken or hostile server cannot exhaust memory.
ResponseSize = Annotated[
    int,
    GetPydanticSchema(lambda _type, handler: handler.generate_schema(ByteSize)),
    Field(ge=1024),
    AfterValidator(int),  # read as pydantic's ByteSize, kept as a plain count of bytes
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1024},
                {"type": "string", "pattern": _or_reference(r"^\s*\d+(\.\d+)?\s*[A-Za-z]*\s*$")},
            ],
            "description": "bytes, or a size with a unit: 500kB, 64MiB, 1GB",
        }
    ),
]


def listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 address in brackets: `[::1]:9464`) as the host and the port to
    listen on; ValueError says what is wrong."""
    host, colon, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, like [::1]:9464")
    if not colon or not host or any(character.isspace() for character in host):
        raise ValueError(
            f"{text!r} is not HOST:PORT; write it like 127.0.0.1:9464 (0.0.0.0:9464 listens "
            "on every interface)"
        )
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _check_listen_address(text: str) -> str:
    listen_address(text)
    return text.strip()


ListenAddress = Annotated[
    str,
    AfterValidator(_check_listen_address),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _or_reference(r"^\s*(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}\s*$"),
            "description": "HOST:PORT, e.g. 127.0.0.1:9464; an IPv6 address in brackets",
        }
    ),
]


def scalar_text(value: Scalar) -> str:
    """A value as it goes into a query string or a name: JSON-style booleans (str(True) is
    "True", which APIs do not expect)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def url_placeholders(url: str) -> list[str]:
    """The `{name}` placeholders in a url template."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(url) if name is not None]
    except ValueError as exc:
        raise ValueError(f"the url has an unbalanced brace ({exc}); write {{name}}") from None


# ---------------------------------------------------------------------------------------------
# Time

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
            f"{preview(text)} is too long a step; at most 999999999d (2.7 million years)"
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


def _step(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"write the step as text like 1d or 6h, not {value!r}")
    return parse_step(value)


def _end(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "now"):
        return None
    return parse_instant(value)


# Editors read YAML 1.2, where 2024-01-01 is text: a date or time in ISO 8601.
_INSTANT_JSON = {"type": "string", "pattern": _or_reference(r"^\s*\d{4}-\d{2}-\d{2}([Tt ].*)?$")}

Instant = Annotated[
    datetime,
    BeforeValidator(parse_instant),
    WithJsonSchema({**_INSTANT_JSON, "description": "2024-01-01 or 2024-01-01T06:00:00Z"}),
]
InstantOrNow = Annotated[
    datetime | None,
    BeforeValidator(_end),
    WithJsonSchema(
        {
            "anyOf": [_INSTANT_JSON, {"const": "now"}, {"type": "null"}],
            "description": "2024-01-01, 2024-01-01T06:00:00Z, or now",
        }
    ),
]
Step = Annotated[
    timedelta,
    BeforeValidator(_step),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _or_reference(r"^\s*\d+\s*[smhdw]\s*$"),
            "description": "a whole number and a unit: 30m, 6h, 1d, 1w (s, m, h, d, w)",
        }
    ),
]
