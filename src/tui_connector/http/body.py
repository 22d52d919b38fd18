"""A response's body: read under `max_response_size`, released at once, decoded as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import humanize
import orjson

from tui_connector.http.errors import fetch_error
from tui_connector.redact import Redactor

# What a response's stream is once its body has been read (see `release`).
_READ_STREAM = httpx.ByteStream(b"")

# Digits as "1", every other byte as "0": 19 ones in a row are a number orjson may not hold
# exactly (it turns integers past 64 bits into floats, without a word).
_DIGIT_MAP = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_LONG_NUMBER = b"1" * 19


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
    if _LONG_NUMBER not in content.translate(_DIGIT_MAP):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


def decode_response(
    response: httpx.Response, content: bytes, shown_url: str, attempt: int, redact: Redactor
) -> Response:
    """A successful response's body decoded, or the `FetchError` that says why it is not
    JSON (worth another attempt, unless it nests too deeply: a proxy's error page or a body
    cut short may come right the next time)."""
    try:
        body = decode_json(content)
    except RecursionError:
        raise fetch_error(
            redact,
            "response nests arrays and objects too deeply to decode (about 1000 levels or more)",
            shown_url,
            attempt,
            status=response.status_code,
            content=content,
            retryable=False,
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        content_type = response.headers.get("Content-Type", "no content type")
        raise fetch_error(
            redact,
            f"response is not valid JSON ({content_type}; {exc})",
            shown_url,
            attempt,
            status=response.status_code,
            content=content,
        ) from None
    return Response(str(response.url), response.headers, body, len(content))
