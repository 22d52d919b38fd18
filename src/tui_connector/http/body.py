"""A response's body: read under `max_response_size`, released at once, decoded as JSON or
as JSON Lines (NDJSON: a JSON value a line, the body the list of them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from json import JSONDecodeError
from typing import Any

import httpx
import humanize
import orjson

from tui_connector.config.schema import ResponseFormat
from tui_connector.exchange import shorten
from tui_connector.http.errors import FetchError, fetch_error
from tui_connector.redact import Redactor

# What a response's stream is once its body has been read (see `release`).
_READ_STREAM = httpx.ByteStream(b"")

# Digits as "1", every other byte as "0": 19 ones in a row are a number orjson may not hold
# exactly (it turns integers past 64 bits into floats, without a word).
_DIGIT_MAP = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_LONG_NUMBER = b"1" * 19

# The content types JSON Lines is served as: there is no registered one, and these are in use.
JSON_LINES_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-lines",
    }
)
_LINE_SHOWN = 80


@dataclass(frozen=True)
class Response:
    url: str  # the URL requested, with its query (not redacted: pagination resolves links on it)
    headers: httpx.Headers
    body: Any
    size: int


class ResponseTooLarge(Exception):
    """A body past `max_response_size`: refused, and not worth another attempt."""

    def __init__(self, limit: int) -> None:
        # Built only when refusing: `humanize` per response was a line of the profile.
        shown = humanize.naturalsize(limit, binary=True)
        super().__init__(
            f"the response is larger than max_response_size ({shown}); raise "
            "max_response_size if the API really sends pages this large, or ask for "
            "smaller pages"
        )


async def release(response: httpx.Response) -> None:
    """Close a response and let go of its stream. httpx's response and its stream refer to
    each other, so each request's objects (30-odd, with aiohttp's) were otherwise left for
    the garbage collector to find and free."""
    await response.aclose()
    response.stream = _READ_STREAM


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed response, which is released. Raises `ResponseTooLarge` past
    `limit` bytes: a broken or hostile server must not make the process hold gigabytes."""
    try:
        declared = int(response.headers.get("Content-Length", "0"))
    except ValueError:
        declared = 0
    if declared > limit:
        await release(response)
        raise ResponseTooLarge(limit)
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise ResponseTooLarge(limit)
    finally:
        await release(response)
    return bytes(body)


def decode_json(content: bytes) -> Any:
    """A response body as Python values, exactly as `json.loads` gives them. orjson decodes a
    page in less than half the stdlib's time, and decoding is the client's largest cost of a
    page. The stdlib decodes what orjson refuses (NaN, a byte-order mark, UTF-16, invalid
    JSON, for its error message) and any body with 19 digits in a row, whose integers orjson
    could change. Finding those costs about a fifth of what orjson saves. (One difference is
    left: orjson decodes arrays nested 995 to 1024 deep, where the stdlib raises
    RecursionError, as it does for anything deeper.)"""
    return _decode(content, orjson_exact=_orjson_exact(content))


def _orjson_exact(content: bytes) -> bool:
    """Whether orjson would decode every number in `content` exactly (see `decode_json`)."""
    return _LONG_NUMBER not in content.translate(_DIGIT_MAP)


def _decode(content: bytes, *, orjson_exact: bool) -> Any:
    if orjson_exact:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


class BadJsonLine(ValueError):
    """A line of a JSON Lines body that is not JSON."""

    def __init__(self, number: int, line: bytes, reason: Exception) -> None:
        shown = shorten(line.decode("utf-8", "replace").strip(), _LINE_SHOWN)
        # The decoder counts lines and columns within the line: only the column says more.
        why = (
            f"{reason.msg} at column {reason.colno}"
            if isinstance(reason, JSONDecodeError)
            else reason
        )
        super().__init__(f"line {number} is not valid JSON ({why}): {shown}")


def decode_json_lines(content: bytes) -> list[Any]:
    """A JSON Lines body as the list of its lines' values, each decoded as `decode_json`
    decodes a body; blank lines (and a line end of CR LF) are skipped. Raises `BadJsonLine`
    naming the first line that is not JSON (RecursionError for one nested too deeply).

    Whether orjson decodes exactly is asked of the whole body once: asked per line, it took
    as long as decoding."""
    orjson_exact = _orjson_exact(content)
    values: list[Any] = []
    append = values.append
    for number, line in enumerate(content.split(b"\n"), 1):
        if not line or line.isspace():
            continue
        try:
            append(_decode(line, orjson_exact=orjson_exact))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJsonLine(number, line, exc) from None
    return values


def body_format(response_format: ResponseFormat, content_type: str) -> ResponseFormat:
    """`json` or `jsonl`: as configured, or for `auto`, by the response's media type."""
    if response_format != "auto":
        return response_format
    media_type = content_type.partition(";")[0].strip().lower()
    return "jsonl" if media_type in JSON_LINES_TYPES else "json"


def decode_response(
    response: httpx.Response,
    content: bytes,
    shown_url: str,
    attempt: int,
    redact: Redactor,
    response_format: ResponseFormat = "auto",
) -> Response:
    """A successful response's body decoded (as `response_format` says, see `body_format`),
    or the `FetchError` that says why it cannot be (worth another attempt, unless it nests too
    deeply: a proxy's error page or a body cut short may come right the next time)."""
    content_type = response.headers.get("Content-Type", "")
    lines = body_format(response_format, content_type) == "jsonl"
    try:
        body = decode_json_lines(content) if lines else decode_json(content)
    except RecursionError:
        raise _undecodable(
            "response nests arrays and objects too deeply to decode (about 1000 levels or more)",
            response,
            content,
            shown_url,
            attempt,
            redact,
            retryable=False,
        ) from None
    except BadJsonLine as exc:
        shown_type = content_type or f"response_format: {response_format}"
        raise _undecodable(
            f"response is not valid JSON Lines ({shown_type}; {exc})",
            response,
            content,
            shown_url,
            attempt,
            redact,
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _undecodable(
            f"response is not valid JSON ({content_type or 'no content type'}; {exc})",
            response,
            content,
            shown_url,
            attempt,
            redact,
            hint=_json_lines_hint(content) if response_format == "auto" else "",
        ) from None
    return Response(str(response.url), response.headers, body, len(content))


def _json_lines_hint(content: bytes) -> str:
    """For a body that is not JSON: a hint when its first two lines are JSON each."""
    lines = [line for line in content.split(b"\n", 16) if line and not line.isspace()]
    if len(lines) < 2:
        return ""
    try:
        decode_json_lines(b"\n".join(lines[:2]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    return "it looks like JSON Lines: set response_format: jsonl"


def _undecodable(
    message: str,
    response: httpx.Response,
    content: bytes,
    shown_url: str,
    attempt: int,
    redact: Redactor,
    *,
    retryable: bool = True,
    hint: str = "",
) -> FetchError:
    return fetch_error(
        redact,
        message,
        shown_url,
        attempt,
        status=response.status_code,
        content=content,
        retryable=retryable,
        hint=hint,
    )
